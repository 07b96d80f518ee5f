"""tfquant's native helpers: C++ loops that numpy runs too slowly, each computing exactly what
its numpy definition computes (the same float64 operations in the same order), loaded with
ctypes from the library setup.py builds beside this file.

`available()` says whether the library is built; callers fall back to their numpy definition
when it is not (a source checkout without `pip install -e .`).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Optional

import numpy as np

_DOUBLES = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")


@functools.lru_cache(maxsize=None)
def _library() -> Optional[ctypes.CDLL]:
    found = sorted(Path(__file__).resolve().parent.glob("_range_search*.so"))
    if not found:
        return None
    try:
        library = ctypes.CDLL(str(found[0]))
    except OSError:  # built for another platform: the numpy definitions serve
        return None
    function = library.tfquant_mse_optimal_range
    function.argtypes = [_DOUBLES, _DOUBLES, _DOUBLES, ctypes.c_int64, ctypes.c_double,
                         ctypes.c_double, ctypes.c_double, _DOUBLES, ctypes.c_int64,
                         ctypes.c_int64, ctypes.c_int64, ctypes.c_int, _DOUBLES]
    function.restype = ctypes.c_int
    return library


def available() -> bool:
    """Whether the native library is built and loads."""
    return _library() is not None


def mse_optimal_range(prefix_sums, rmin: float, rmax: float, width: float,
                      fractions: np.ndarray, spec) -> tuple:
    """spec.mse_optimal_range's search (see there) over a histogram of [rmin, rmax] with
    `width`-wide bins and its running sums `prefix_sums` (count, count * center,
    count * center^2), for a QuantSpec `spec`; raises RuntimeError when the library is not
    available."""
    library = _library()
    if library is None:
        raise RuntimeError("tfquant's native library is not built; reinstall tfquant")
    count, first, second = (np.ascontiguousarray(s, np.float64) for s in prefix_sums)
    fractions = np.ascontiguousarray(fractions, np.float64)
    out = np.empty(2, np.float64)
    if library.tfquant_mse_optimal_range(count, first, second, len(count) - 1, float(rmin),
                                         float(rmax), float(width), fractions, len(fractions),
                                         int(spec.qmin), int(spec.qmax), int(spec.symmetric),
                                         out) != 0:
        raise ValueError(f"mse_optimal_range: bad histogram or range [{rmin}, {rmax}]")
    return out[0], out[1]
