"""Packaging: pins inside setup.cfg's ranges, console scripts installed, versions importable."""

import configparser
import os
import shutil
import sys
import typing

from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins():
    pins = {}
    for line in open(os.path.join(ROOT, "requirements.txt")):
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = req
    return pins


def test_pins_lie_inside_setup_cfg_ranges():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    ranges = [Requirement(r) for r in config["options"]["install_requires"].split("\n") if r]
    extras = config["options.extras_require"]
    for group in extras:
        ranges += [Requirement(r) for r in extras[group].split("\n") if r]
    pins = _pins()
    for req in ranges:
        pin = pins[req.name.lower()]
        exact = [s.version for s in pin.specifier if s.operator == "=="]
        if exact:
            assert req.specifier.contains(exact[0]), (req, pin)


def test_required_pins():
    pins = _pins()
    expected = {"tensorflow": "2.21.0", "tf-keras": "2.21.0",
                "tensorflow-model-optimization": "0.8.1", "tflite-runtime": "2.14.0",
                "ai-edge-litert": "2.3.0"}
    for name, version in expected.items():
        assert str(pins[name].specifier) == f"=={version}"
    assert pins["numpy"].specifier.contains("1.26.4")
    assert not pins["ml-dtypes"].specifier.contains("0.6.0")


def test_installed_versions_match_pins():
    import importlib.metadata as md
    for name, req in _pins().items():
        assert req.specifier.contains(md.version(name), prereleases=True), name


# Every tool: its module, and how it is started (console script, or python -m for the demo).
TOOLS = {
    "convert": "tfquant-convert", "compare_converters": "tfquant-compare",
    "qat_compare": "tfquant-qat-compare", "delegate_check": "tfquant-delegate-check",
    "ptq_grid": "tfquant-ptq-grid", "paper_tables": "tfquant-paper-tables",
    "compare_tflite_quantizers": "tfquant-compare-tflite", "benchmark": "tfquant-benchmark",
    "coverage": "tfquant-coverage", "qat_families": "tfquant-qat-families",
    "low_bit": "tfquant-low-bit", "demo": None,
}


def test_console_scripts_installed():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    declared = {line.split("=")[0].strip(): line.split("=")[1].strip()
                for line in config["options.entry_points"]["console_scripts"].split("\n")
                if line.strip()}
    assert declared == {script: f"tfquant.tools.{module}:run"
                        for module, script in TOOLS.items() if script}
    bindir = os.path.dirname(sys.executable)
    for script in declared:
        assert shutil.which(script, path=bindir), script


def test_every_tool_runs_and_documents_its_flags():
    """`python -m tfquant.tools.<tool> --help` (one process per tool, run side by side) shows
    the tool's docstring and every field of its Config as a flag."""
    import importlib
    import subprocess
    procs = {module: subprocess.Popen([sys.executable, "-m", f"tfquant.tools.{module}", "--help"],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for module in TOOLS}
    texts = {}
    for module, proc in procs.items():
        texts[module], _ = proc.communicate(timeout=300)  # (absl's --help exits with 1)
        assert "Traceback" not in texts[module], (module, texts[module][-2000:])
    for module, text in texts.items():
        tool = importlib.import_module(f"tfquant.tools.{module}")
        assert tool.__doc__.splitlines()[0] in text, module
        hints = typing.get_type_hints(tool.Config)
        assert hints, module
        for name, kind in hints.items():
            shown = f"--[no]{name}:" if kind is bool else f"--{name}:"
            assert shown in text, (module, name)
    assert "Examples:" in texts["convert"] and len(typing.get_type_hints(
        importlib.import_module("tfquant.tools.convert").Config)) >= 12


def test_source_distribution_carries_every_delegate_source():
    """MANIFEST.in's patterns cover every file under delegates/ that the delegate build reads
    (the .inc micro-kernels included by the ISA files too), so `pip install` from an sdist
    compiles."""
    import fnmatch
    patterns = []
    for line in open(os.path.join(ROOT, "MANIFEST.in")):
        words = line.split()
        if words[:2] == ["recursive-include", "delegates"]:
            patterns += words[2:]
    sources = [os.path.join(d, f) for d, _, files in
               os.walk(os.path.join(ROOT, "delegates", "tfquant_dsp")) for f in files]
    assert sources
    missing = [s for s in sources if not any(fnmatch.fnmatch(os.path.basename(s), p)
                                             for p in patterns)]
    assert not missing, f"MANIFEST.in misses {missing[:5]}"
