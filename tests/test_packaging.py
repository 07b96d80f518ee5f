"""Packaging: pins inside setup.cfg's ranges, console scripts installed, versions importable."""

import configparser
import os
import shutil
import sys

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


def test_console_scripts_installed():
    bindir = os.path.dirname(sys.executable)
    for script in ("tfquant-convert", "tfquant-compare", "tfquant-qat-compare",
                   "tfquant-delegate-check", "tfquant-ptq-grid", "tfquant-compare-tflite",
                   "tfquant-benchmark"):
        assert shutil.which(script, path=bindir), script


def test_every_tool_runs_and_documents_its_flags():
    import subprocess
    for module, flag in (("tfquant.tools.convert", "--calibration_data"),
                         ("tfquant.tools.compare_converters", "--architecture"),
                         ("tfquant.tools.demo", "--output_dir"),
                         ("tfquant.tools.qat_compare", "--freeze_bn_epochs"),
                         ("tfquant.tools.delegate_check", "--applications"),
                         ("tfquant.tools.ptq_grid", "--fold_plot"),
                         ("tfquant.tools.compare_tflite_quantizers", "--weights"),
                         ("tfquant.tools.benchmark", "--threads")):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                              text=True, timeout=300)
        assert flag in proc.stdout + proc.stderr, module
