"""The DSP delegate's emulated ISA and kernels: every SIMD implementation equals its scalar
definition (delegates/tfquant_dsp/tests/isa_test.cc) and the kernels their reference loops
(tests/kernels_test.cc), also under AddressSanitizer + UBSan and, built for aarch64, under
qemu-aarch64 (NEON, NEON + I8MM); the library builds with SIMD compiled out and for aarch64, and
exports only the two plugin symbols and the ISA registry."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import tfquant.delegate

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "delegates" / "tfquant_dsp"
CXX = shutil.which("g++")

pytestmark = [pytest.mark.skipif(CXX is None, reason="needs g++"), pytest.mark.delegate]


def _sources(test):
    """The sources of a C++ test program: the ISA (kernels_test: and the kernels;
    delegate_test: the whole delegate) and tests/<test>.cc."""
    subdirs = {"isa_test": ("isa",), "kernels_test": ("isa", "kernels")}.get(
        test, ("isa", "kernels", "delegate"))
    return [str(p) for sub in subdirs for p in sorted((SRC / sub).glob("*.cc"))] + [
        str(SRC / "tests" / f"{test}.cc")]


def _build_and_run(tmp_path, name, flags, trials, test="isa_test"):
    binary = tmp_path / name
    subprocess.run([CXX, "-std=c++17", *flags, f"-I{SRC}", *_sources(test), "-o", str(binary),
                    "-lpthread"], check=True, capture_output=True, text=True)
    result = subprocess.run([str(binary), str(trials)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_simd_equals_scalar_definition(tmp_path):
    out = _build_and_run(tmp_path, "isa_test", ["-O2"], 3000)
    assert "OK" in out
    print(out)


@pytest.mark.slow
def test_simd_equals_scalar_under_sanitizers(tmp_path):
    out = _build_and_run(tmp_path, "isa_test_asan",
                         ["-O1", "-g", "-fsanitize=address,undefined",
                          "-fno-sanitize-recover=undefined"], 300)
    assert "OK" in out


@pytest.mark.slow
def test_kernels_equal_their_reference_loops(tmp_path):
    """tests/kernels_test.cc: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED against naive loops
    of TFLite's reference arithmetic, ADD / MAX_POOL_2D / QUANTIZE against the scalar ISA, on
    every ISA this CPU runs and on 1 and 2 threads; then again under ASan + UBSan."""
    out = _build_and_run(tmp_path, "kernels_test", ["-O2", "-Wall", "-Werror"], 1000,
                         "kernels_test")
    assert "OK (" in out and "testing scalar" in out, out
    print(out)
    out = _build_and_run(tmp_path, "kernels_test_asan",
                         ["-O1", "-g", "-fsanitize=address,undefined",
                          "-fno-sanitize-recover=undefined"], 200, "kernels_test")
    assert "OK (" in out, out


@pytest.mark.slow
def test_plugin_against_a_fake_context(tmp_path):
    """tests/delegate_test.cc: the plugin's partitioning, PAD fusion, arena, re-prepare on a
    new input shape and error statuses against a fake TfLiteContext; also under ASan + UBSan."""
    for name, flags in (("delegate_test", ["-O2", "-Wall", "-Werror"]),
                        ("delegate_test_asan", ["-O1", "-g", "-fsanitize=address,undefined",
                                                "-fno-sanitize-recover=undefined"])):
        out = _build_and_run(tmp_path, name, flags, str(tmp_path), "delegate_test")
        assert "OK (" in out, out


@pytest.mark.slow
def test_library_builds_without_simd(tmp_path):
    sources = [str(p) for sub in ("isa", "kernels", "delegate") for p in (SRC / sub).glob("*.cc")]
    target = tmp_path / "libscalar.so"
    subprocess.run([CXX, "-std=c++17", "-O1", "-fPIC", "-shared", "-fvisibility=hidden",
                    "-DTFQUANT_DSP_NO_SIMD", f"-I{SRC}", *sources, "-o", str(target)],
                   check=True, capture_output=True, text=True)
    assert target.exists()


def test_only_the_plugin_symbols_are_exported():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("needs nm")
    out = subprocess.run([nm, "-D", "--defined-only", tfquant.delegate.library_path()],
                         check=True, capture_output=True, text=True).stdout
    exported = sorted(line.split()[-1] for line in out.splitlines()
                      if line.split() and line.split()[-2] in ("T", "D", "B", "R"))
    assert exported == ["tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate",
                        "tfquant_dsp_isas"]


AARCH64_CXX = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64")


def _needs_aarch64_tools():
    if AARCH64_CXX and QEMU:
        return
    message = ("needs g++-aarch64-linux-gnu and qemu-user (apt-get install "
               "g++-aarch64-linux-gnu qemu-user)")
    if os.environ.get("TFQUANT_REQUIRE_AARCH64"):  # CI installs them: never skip there
        pytest.fail(message)
    pytest.skip(message)


def _aarch64_run(binary, trials, cpu=None, sanitized=False):
    env = dict(os.environ)
    if cpu:
        env["QEMU_CPU"] = cpu
    if sanitized:  # LeakSanitizer cannot run under qemu's emulation
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    result = subprocess.run([QEMU, "-L", "/usr/aarch64-linux-gnu", str(binary), str(trials)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_neon_equals_scalar_definition_under_qemu(tmp_path):
    """The aarch64 build (g++-aarch64-linux-gnu) of the ISA test under qemu-aarch64: both NEON
    tables equal the scalar definitions on a CPU with I8MM (qemu's default), and without it
    (Cortex-A72) the registry skips neon_i8mm and picks neon. Also under ASan + UBSan, and
    the kernel sweeps (tests/kernels_test.cc) on both tables."""
    _needs_aarch64_tools()
    binary, sanitized = tmp_path / "isa_test_aarch64", tmp_path / "isa_test_aarch64_asan"
    kernels = tmp_path / "kernels_test_aarch64"
    for target, flags, test in (
            (binary, ["-O2", "-static"], "isa_test"),
            (sanitized, ["-O1", "-g", "-fsanitize=address,undefined",
                         "-fno-sanitize-recover=undefined"], "isa_test"),
            (kernels, ["-O2", "-static"], "kernels_test"),
            (tmp_path / "delegate_test_aarch64", ["-O2", "-static"], "delegate_test")):
        subprocess.run([AARCH64_CXX, "-std=c++17", "-Wall", "-Werror", *flags, f"-I{SRC}",
                        *_sources(test), "-o", str(target), "-lpthread"], check=True,
                       capture_output=True, text=True)
    out = _aarch64_run(binary, 3000)
    assert "neon: 3000 trials" in out and "neon_i8mm: 3000 trials" in out and "OK" in out, out
    assert "best implementation here: neon_i8mm" in out, out
    out = _aarch64_run(binary, 300, cpu="cortex-a72")
    assert "neon: 300 trials" in out and "skip neon_i8mm (not supported" in out, out
    assert "best implementation here: neon\n" in out, out
    out = _aarch64_run(sanitized, 100, sanitized=True)
    assert "neon_i8mm: 100 trials" in out and "OK" in out, out
    out = _aarch64_run(kernels, 300)  # the kernels on NEON and NEON + I8MM, 1 and 2 threads
    assert "testing neon (" in out and "testing neon_i8mm (" in out and "OK (" in out, out
    out = _aarch64_run(tmp_path / "delegate_test_aarch64", str(tmp_path))
    assert "OK (" in out, out


@pytest.mark.slow
def test_delegate_library_builds_for_aarch64(tmp_path):
    """The whole delegate (kernels, plugin; the ABI layout asserts hold for aarch64 too)
    cross-compiles and exports the same three symbols as on x86-64."""
    _needs_aarch64_tools()
    sources = [str(p) for sub in ("isa", "kernels", "delegate") for p in (SRC / sub).glob("*.cc")]
    target = tmp_path / "libtfquant_dsp_aarch64.so"
    subprocess.run([AARCH64_CXX, "-std=c++17", "-O2", "-Wall", "-Werror", "-fPIC", "-shared",
                    "-fvisibility=hidden", f"-Wl,--version-script={SRC / 'exports.map'}",
                    f"-I{SRC}", *sources, "-o", str(target)], check=True, capture_output=True,
                   text=True)
    nm = shutil.which("aarch64-linux-gnu-nm") or shutil.which("nm")
    out = subprocess.run([nm, "-D", "--defined-only", str(target)], check=True,
                         capture_output=True, text=True).stdout
    assert sorted(line.split()[-1] for line in out.splitlines() if line.split()) == [
        "tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate", "tfquant_dsp_isas"]
