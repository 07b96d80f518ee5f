"""Measuring the DSP delegate: bit-exactness against the reference kernels, its per-op
profile, and the DSP cost model that turns the emulated HVX instruction counts of each op into
estimated cycles on a Hexagon-class DSP. Used by tfquant-benchmark and the tests."""

from __future__ import annotations

import dataclasses
import gc
import os
import tempfile

# The nominal peak: AVX-512 VNNI, 64 int8 MACs per VPDPBUSD, two per cycle. CPUs issue
# fewer (measured on AMD Zen 4: one per cycle), and run at other clocks than /proc/cpuinfo says;
# profile_delegate's measured peak is what an op can really reach.
PEAK_MACS_PER_CYCLE = 128


def random_input(detail, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    shape = tuple(detail["shape"])
    if detail["dtype"] == np.float32:
        return rng.uniform(-1, 1, shape).astype(np.float32)
    info = np.iinfo(detail["dtype"])
    return rng.integers(info.min, info.max + 1, shape).astype(detail["dtype"])


def interpreter_for(model, resolver, threads, delegates=(), runtime_name="litert"):
    from tfquant import runtime
    interpreter = runtime.make_interpreter(model, runtime_name, resolver, threads,
                                           delegates=delegates)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(detail))
    return interpreter


def outputs(interpreter):
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def _invoke(model, runtime_name, threads, delegates, x):
    """Every output after one invoke: on `x` (a float batch for the first input), or on the
    seeded random inputs of interpreter_for when `x` is None."""
    from tfquant import runtime
    if x is None:
        interpreter = interpreter_for(model, "reference", threads, delegates, runtime_name)
    else:
        interpreter = runtime.make_interpreter(model, runtime_name, "reference", threads,
                                               delegates=delegates)
        detail = interpreter.get_input_details()[0]
        x = runtime.encode(x, detail)
        if tuple(detail["shape"]) != x.shape:
            interpreter.resize_tensor_input(detail["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return outputs(interpreter)


def compare_with_reference(model, x=None, runtime_name: str = "litert", threads: int = 1,
                           isa: str = "auto") -> dict:
    """The delegate (ISA table `isa`) against TFLite's reference kernels on the same input:
    nodes claimed / total, output elements compared, how many differ and the largest
    difference."""
    import numpy as np

    import tfquant.delegate
    want = _invoke(model, runtime_name, 1, (), x)
    delegate = tfquant.delegate.load(runtime_name, num_threads=threads, isa=isa)
    got = _invoke(model, runtime_name, threads, [delegate], x)
    claimed, total = tfquant.delegate.claimed_nodes(model, runtime_name, num_threads=threads,
                                                    isa=isa)
    differ = sum(int(np.count_nonzero(w != g)) if w.shape == g.shape and w.dtype == g.dtype
                 else w.size for w, g in zip(want, got))
    largest = max((float(np.abs(w.astype(np.float64) - g.astype(np.float64)).max())
                   if w.shape == g.shape and w.size else 0.0) for w, g in zip(want, got))
    return dict(claimed=claimed, total=total, elements=sum(w.size for w in want),
                differ=differ, largest=largest)


def check_bit_exact(model, threads, isa="auto"):
    """(bit-exact, claimed, total): the delegate against the reference kernels, same input."""
    r = compare_with_reference(model, threads=threads, isa=isa)
    return r["differ"] == 0, r["claimed"], r["total"]


def profile_delegate(model, threads, runs, isa="auto"):
    """(rows, peak): the delegate's per-op profile (tfquant.delegate.read_profile rows) over
    `runs` invokes, and the int8 GMAC/s of one core it measured (read_profile_peak; 0.0
    without VNNI)."""
    import tfquant.delegate
    fd, path = tempfile.mkstemp(suffix=".tsv", prefix="tfquant_profile_")
    os.close(fd)
    try:
        delegate = tfquant.delegate.load("litert", num_threads=threads, profile=path, isa=isa)
        interpreter = interpreter_for(model, "reference", threads, [delegate])
        interpreter.invoke()  # warm-up: the delegate does not time its first invoke
        for _ in range(runs):
            interpreter.invoke()
        del interpreter
        gc.collect()
        rows = tfquant.delegate.read_profile(path)
        peak, _ = tfquant.delegate.read_profile_peak(path)
        del delegate
    finally:
        os.unlink(path)
    return rows, peak


@dataclasses.dataclass(frozen=True)
class DspParams:
    """A Hexagon-class vector DSP for the cost model (defaults: an HVX unit at 1 GHz issuing up
    to 4 vector instructions per packet, 2 of them multiply-class, 2 ALU, 1 shift/permute, one
    vector load and one store per cycle, one HVX context, 2000 cycles of overhead per op)."""
    clock_ghz: float = 1.0
    contexts: int = 1
    slots: int = 4
    mpy_units: int = 2
    alu_units: int = 2
    shift_units: int = 1
    load_units: int = 1
    store_units: int = 1
    op_overhead: int = 2000


def dsp_cycles(row, p: DspParams):
    """Estimated cycles of one op on a Hexagon-class DSP from its emulated HVX instruction
    counts: every instruction class is limited by its units per cycle and the packet by its
    slots; perfect packing and no stalls (a lower bound), split over the HVX contexts, plus a
    fixed per-op overhead."""
    bounds = [
        (row["vrmpy"] + row["vmpy"]) / p.mpy_units,
        row["valu"] / p.alu_units,
        row["vshift"] / p.shift_units,
        row["vload"] / p.load_units,
        row["vstore"] / p.store_units,
        sum(row[k] for k in ("vrmpy", "vmpy", "valu", "vshift", "vload", "vstore")) / p.slots,
    ]
    return max(bounds) / p.contexts + p.op_overhead


def cost_model_assumptions(p: DspParams):
    return (f"DSP cost model: {p.clock_ghz:g} GHz, {p.contexts} HVX context(s), "
            f"{p.slots} vector instructions per packet, per cycle {p.mpy_units} "
            f"multiply-class (vrmpy = 128 MACs), {p.alu_units} ALU, "
            f"{p.shift_units} shift/pack, {p.load_units} load, "
            f"{p.store_units} store; perfect packing, no stalls, "
            f"{p.op_overhead} cycles per op. Counts are the emulated kernels' own "
            "instructions (computed from their loop structure at prepare time).")


# A child process that loads only ai-edge-litert: the growth of its peak resident set (VmHWM,
# reset through /proc/self/clear_refs once the runtime is imported) from creating one
# interpreter to three invokes, with or without the delegate.
_MEMORY_CHILD = r"""
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate
path, library, threads, options = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
with open(path, "rb") as f:
    model = f.read()
delegates = [load_delegate(library, json.loads(options))] if library else []
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
interpreter = Interpreter(model_content=model, num_threads=threads,
                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                          if not library else OpResolverType.BUILTIN_REF,
                          experimental_delegates=delegates)
interpreter.allocate_tensors()
for d in interpreter.get_input_details():
    interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
for _ in range(3):
    interpreter.invoke()
print(json.dumps({"growth": status("VmHWM") - before}))
"""


def peak_memory_growth(model: bytes, with_delegate: bool, threads: int = 1,
                       isa: str = "auto") -> int:
    """Bytes the peak resident set grows by when a fresh process (ai-edge-litert only) creates
    an interpreter for `model` and invokes it three times: TFLite's built-in int8 kernels
    (no XNNPACK), or the DSP delegate over the reference kernels."""
    import json
    import subprocess
    import sys
    from tfquant import delegate
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.tflite")
        with open(path, "wb") as f:
            f.write(model)
        done = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, path,
                               delegate.library_path() if with_delegate else "", str(threads),
                               json.dumps(delegate.options("litert", threads, isa=isa))],
                              capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {done.stderr.strip()[-500:]}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["growth"])
