"""The DSP delegate: tfquant's TFLite delegate that runs int8 ops on an emulated
Hexagon-HVX-like fixed-point vector ISA, bit-exact with TFLite's reference kernels.

    import tfquant.delegate
    delegate = tfquant.delegate.load(runtime="litert")
    interpreter = tfquant.runtime.make_interpreter(model, "litert", delegates=[delegate])

The C++ sources are in delegates/tfquant_dsp; `pip install` compiles them into the package.
The Delegate object must outlive every interpreter that uses it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Sequence

from tfquant import runtime as _runtime

# How each runtime's reference FULLY_CONNECTED requantizes: TF 2.21 and LiteRT 2.3 in double,
# tflite-runtime 2.14 with the fixed-point multiplier (../shared/notes/tflite-int8.md §2).
FC_REQUANT = {"litert": "double", "tf": "double", "tflite_runtime": "fixed_point"}


def _isa_entries() -> list:
    """The delegate library's ISA registry: [(name, runnable, chosen by isa="auto")], in
    registry order. The choice depends on TFQUANT_DSP_ISA, read by the library when asked."""
    import os
    return _isa_entries_under(os.environ.get("TFQUANT_DSP_ISA"))


@functools.lru_cache(maxsize=None)
def _isa_entries_under(cap: Optional[str]) -> list:
    """_isa_entries for one value of TFQUANT_DSP_ISA (the cache key)."""
    import ctypes
    library = ctypes.CDLL(library_path())
    library.tfquant_dsp_isas.argtypes = [ctypes.c_char_p, ctypes.c_int]
    library.tfquant_dsp_isas.restype = ctypes.c_int
    buffer = ctypes.create_string_buffer(1024)
    if library.tfquant_dsp_isas(buffer, len(buffer)) < 0:
        raise MemoryError("the delegate library could not list its ISAs")
    entries = [entry.split(":") for entry in buffer.value.decode().split(",") if entry]
    return [(name, status != "0", status == "2") for name, status, _ in entries]


def isas(runnable_only: bool = False) -> tuple:
    """The ISA implementations the delegate library knows (its registry, in registry order),
    or only those this CPU runs: names for the `isa` option, e.g. ("scalar", "avx2",
    "avx512", "neon", "neon_i8mm")."""
    return tuple(name for name, runnable, _ in _isa_entries() if runnable or not runnable_only)


def best_isa() -> str:
    """The ISA the delegate's isa="auto" picks on this CPU (the environment variable
    TFQUANT_DSP_ISA caps it), as the library reports it."""
    return next(name for name, _, chosen in _isa_entries() if chosen)


def library_path() -> str:
    """The path of the compiled delegate library inside the installed package."""
    here = Path(__file__).resolve().parent
    found = sorted(here.glob("_tfquant_dsp*.so"))
    if not found:
        raise FileNotFoundError(
            f"the DSP delegate library is not built in {here}; reinstall tfquant "
            "(`pip install .` or `pip install -e .`) with a C++ compiler available")
    return str(found[0])


def options(runtime: str = "litert", num_threads: int = 1, ops: Optional[Sequence[str]] = None,
            verbose: bool = False, isa: str = "auto", profile: Optional[str] = None,
            packed_weights_kb: Optional[int] = None) -> dict:
    """The load_delegate options for these settings (all values are strings).

    packed_weights_kb: memory each claimed partition may spend on packed copies of
    CONV_2D / FULLY_CONNECTED weights, for the ops with the fewest rows per invoke first
    (default 2048). Other weights stay only in
    the model's buffer and are packed at every invoke: 0 keeps the weights' memory at one copy,
    a large value trades memory for a few percent of latency."""
    if runtime not in FC_REQUANT:
        raise ValueError(f"unknown runtime {runtime!r}; use one of {tuple(FC_REQUANT)}")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    known = ("auto",) + isas()
    if isa not in known:
        raise ValueError(f"isa must be one of {known}, got {isa!r}")
    result = {"num_threads": str(num_threads), "verbose": "true" if verbose else "false",
              "fc_requant": FC_REQUANT[runtime], "isa": isa}
    if ops is not None:
        if isinstance(ops, str):
            ops = [ops]
        ops = [str(op).strip().upper() for op in ops]
        if not ops or not all(ops):
            raise ValueError("ops must name at least one op, e.g. ['CONV_2D', 'ADD']")
        from tfquant import ops as records
        unknown = [op for op in ops if op not in records.REGISTRY or
                   records.REGISTRY[op].pseudo]
        if unknown:
            raise ValueError(f"ops names unknown TFLite op(s) {', '.join(unknown)}; tfquant "
                             "knows: " + ", ".join(sorted(
                                 n for n, r in records.REGISTRY.items() if not r.pseudo)))
        result["ops"] = ",".join(ops)
    if packed_weights_kb is not None:
        if (isinstance(packed_weights_kb, bool) or not isinstance(packed_weights_kb, int)
                or not 0 <= packed_weights_kb <= 2 ** 30):
            raise ValueError("packed_weights_kb must be an int in [0, 2**30], got "
                             f"{packed_weights_kb!r}")
        result["packed_weights_kb"] = str(packed_weights_kb)
    if profile:
        result["profile"] = str(profile)
    return result


def load(runtime: str = "litert", num_threads: int = 1, ops: Optional[Sequence[str]] = None,
         verbose: bool = False, isa: str = "auto", profile: Optional[str] = None,
         packed_weights_kb: Optional[int] = None):
    """The runtime's Delegate object for the DSP delegate.

    runtime: "litert", "tflite_runtime" or "tf" (decides the FULLY_CONNECTED requantization
    formula the delegate reproduces); ops: an allow-list of TFLite op names (default: every op
    the delegate supports); verbose: print what is claimed and why the rest is not; isa: force
    an ISA implementation (a name of isas(runnable_only=True); default the best the CPU
    has);
    profile: a file path: the delegate measures its CPU's int8 dot-product peak (about 20 ms,
    see read_profile_peak) and writes it there, and when an interpreter using the delegate is
    destroyed, appends one line per op it ran (see read_profile);
    packed_weights_kb: see options().
    Raises ValueError for bad options (the delegate's message included).
    """
    return _runtime.load_delegate(
        library_path(),
        options(runtime, num_threads, ops, verbose, isa, profile, packed_weights_kb), runtime)


PROFILE_FIELDS = ("node", "op", "output_shape", "invokes", "total_us", "min_us", "macs", "vrmpy",
                  "vmpy", "valu", "vshift", "vload", "vstore")


def read_profile(path) -> list:
    """The delegate's profile file as dicts, one per op it ran: node (the TFLite node index),
    op, output_shape, invokes (timed ones: the first invoke is not timed), total_us (summed over
    them), min_us (the fastest), macs, and the emulated HVX instructions one invoke issues by
    class (vrmpy, vmpy, valu, vshift, vload, vstore; the DSP cost model's input)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):  # read_profile_peak's line
            continue
        fields = line.split("\t")
        if len(fields) != len(PROFILE_FIELDS):
            raise ValueError(f"{path}: unexpected profile line {line!r}")
        row = dict(zip(PROFILE_FIELDS, fields))
        for key in PROFILE_FIELDS:
            if key not in ("op", "output_shape"):
                row[key] = float(row[key]) if key.endswith("_us") else int(row[key])
        rows.append(row)
    return rows


def read_profile_peak(path) -> tuple:
    """(GMAC/s, form) from the delegate's profile file: the int8 multiply-accumulates per
    second one core achieved in a register-only loop of independent VPDPBUSD run by the
    delegate when it was created (form "zmm": AVX-512 VNNI, "ymm": AVX-VNNI; (0.0, "none")
    without VNNI). The last measurement in the file."""
    found = (0.0, "none")
    for line in Path(path).read_text().splitlines():
        if line.startswith("#vnni_peak\t"):
            _, gmacs, form = line.split("\t")
            found = (float(gmacs), form)
    return found


def claimed_nodes(model, runtime: str = "litert", **load_options) -> tuple:
    """(claimed, total): how many of the model's nodes the delegate takes, from its verbose
    report (read from the process's stderr while the interpreter is built)."""
    import os
    import re
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            delegate = load(runtime, verbose=True, **load_options)
            interpreter = _runtime.make_interpreter(model, runtime, "reference",
                                                    delegates=[delegate])
            interpreter.allocate_tensors()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        report = captured.read().decode(errors="replace")
    found = re.findall(r"tfquant_dsp: claimed (\d+) of (\d+) nodes", report)
    if not found:
        raise RuntimeError(f"the delegate printed no partition report: {report[-500:]!r}")
    claimed, total = found[-1]
    return int(claimed), int(total)
