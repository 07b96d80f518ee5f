"""The DSP delegate built with AddressSanitizer + UndefinedBehaviorSanitizer runs the per-op
models (every ISA implementation this CPU has) and a MobileNetV2 clean and bit-exact, in a child
process with the sanitizer runtimes preloaded."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tfquant.delegate

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "delegates" / "tfquant_dsp"
CXX = shutil.which("g++")

SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import numpy as np
import keras
import tfquant
from tfquant import runtime
import test_delegate_ops as t
from test_delegate_models import application_model

def delegate(isa):
    return runtime.load_delegate(os.environ["DSP_LIB"], {{"isa": isa, "fc_requant": "double"}},
                                 "litert")

def check(model, x, isa):
    want = t.run(model, x, "litert")
    got = t.run(model, x, "litert", delegate(isa))
    assert all(np.array_equal(a, b) for a, b in zip(want, got))

isas = list(tfquant.delegate.isas(runnable_only=True))
runs = 0
for name in t.CASES:
    model, shape = t.converted(name)
    x = t.encode(model, np.random.default_rng(1).uniform(-1.2, 1.2, shape).astype(np.float32))
    for isa in isas:
        check(model, x, isa)
        runs += 1
model, x = application_model("MobileNetV2", include_top=True)
check(model, t.encode(model, x), "auto")
print("SANITIZED_RUNS", runs + 1, "ISAS", ",".join(isas))
"""

pytestmark = [pytest.mark.slow, pytest.mark.delegate]


@pytest.mark.skipif(CXX is None or not sys.platform.startswith("linux"), reason="needs g++")
def test_delegate_under_asan_and_ubsan(tmp_path):
    lib = tmp_path / "libtfquant_dsp_asan.so"
    sources = [str(p) for sub in ("isa", "kernels", "delegate") for p in (SRC / sub).glob("*.cc")]
    subprocess.run([CXX, "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-fPIC",
                    "-shared", "-fvisibility=hidden", f"-I{SRC}", *sources, "-o", str(lib)],
                   check=True, capture_output=True, text=True)
    preload = [subprocess.run([CXX, f"-print-file-name={name}"], capture_output=True, text=True,
                              check=True).stdout.strip() for name in ("libasan.so", "libubsan.so")]
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    env = dict(os.environ, DSP_LIB=str(lib), LD_PRELOAD=" ".join(preload),
               ASAN_OPTIONS="detect_leaks=0,verify_asan_link_order=0",
               UBSAN_OPTIONS="print_stacktrace=1", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, timeout=900, cwd=str(ROOT))
    assert result.returncode == 0 and "SANITIZED_RUNS" in result.stdout, (
        result.stdout[-3000:] + result.stderr[-6000:])
    isas = result.stdout.split("ISAS")[-1].split()[0].split(",")
    assert isas[0] == "scalar" and set(isas) <= set(tfquant.delegate.isas()), result.stdout
    for marker in ("AddressSanitizer", "runtime error:"):
        assert marker not in result.stderr, result.stderr[-6000:]
