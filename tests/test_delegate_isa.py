"""The DSP delegate's emulated ISA: every SIMD implementation equals its scalar definition
(delegates/tfquant_dsp/tests/isa_test.cc), also under AddressSanitizer + UBSan, and the library
builds with SIMD compiled out and exports only the two plugin symbols."""

import shutil
import subprocess
from pathlib import Path

import pytest

import tfquant.delegate

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "delegates" / "tfquant_dsp"
CXX = shutil.which("g++")

pytestmark = [pytest.mark.skipif(CXX is None, reason="needs g++"), pytest.mark.delegate]


def _build_and_run(tmp_path, name, flags, trials):
    binary = tmp_path / name
    sources = sorted(str(p) for p in (SRC / "isa").glob("*.cc")) + [str(SRC / "tests" / "isa_test.cc")]
    subprocess.run([CXX, "-std=c++17", *flags, f"-I{SRC}", *sources, "-o", str(binary)],
                   check=True, capture_output=True, text=True)
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
    assert exported == ["tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"]
