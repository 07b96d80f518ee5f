"""Quantization vocabulary and numerics: specs, params, quantize / dequantize, SQNR.

This is the single place where the paper's quantizer math (section 2) lives. Everything is numpy,
computed in float64 and stored as float32 scales / int64 zero points, as the flatbuffer wants.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Optional

import ml_dtypes
import numpy as np

# Packed 4-bit weights (TFLite INT4): IR tensors of this dtype hold values in [-8, 7].
INT4 = np.dtype(ml_dtypes.int4)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Smallest scale we ever emit. Below this a float32 scale loses precision and the runtime's
# multiplier computation underflows.
_MIN_SCALE = 1e-30


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How a tensor is quantized.

    Attributes:
      bits: 2..16 bits per value.
      signed: storage is signed (int8: [-128, 127]) or unsigned (uint8: [0, 255]).
      symmetric: zero point fixed at 0 (scale from max |x|); otherwise affine (asymmetric).
      narrow_range: drop the most negative code ([-127, 127] at 8 bits), as TFLite wants for
        weights so that SIMD code can avoid an overflow case.
      axis: None for one (scale, zero point) per tensor, else the channel axis.
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = False
    narrow_range: bool = False
    axis: Optional[int] = None

    def __post_init__(self):
        if not 2 <= self.bits <= 16:
            raise ValueError(f"QuantSpec.bits must be in 2..16, got {self.bits}")
        if self.symmetric and not self.signed:
            raise ValueError("a symmetric QuantSpec must be signed (its zero point is 0)")

    @property
    def qmin(self) -> int:
        if self.signed:
            low = -(1 << (self.bits - 1))
            return low + 1 if self.narrow_range else low
        return 1 if self.narrow_range else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def storage_dtype(self) -> np.dtype:
        """The narrowest numpy integer type that holds every code."""
        if self.bits <= 8:
            return np.dtype(np.int8 if self.signed else np.uint8)
        if self.bits <= 16:
            return np.dtype(np.int16 if self.signed else np.uint16)
        return np.dtype(np.int32)


# The specs of the TFLite int8 specification (notes/tflite-int8.md section 1).
INT8_ACTIVATION = QuantSpec(bits=8, signed=True, symmetric=False)
INT16_ACTIVATION = QuantSpec(bits=16, signed=True, symmetric=True)


def int8_weight(axis: Optional[int]) -> QuantSpec:
    return QuantSpec(bits=8, signed=True, symmetric=True, narrow_range=True, axis=axis)


@dataclasses.dataclass(frozen=True)
class QuantParams:
    """Scale and zero point, one per tensor (arrays of length 1) or one per channel."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: Optional[int] = None

    def __post_init__(self):
        scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        if scale.shape != zero_point.shape:
            raise ValueError(f"scale {scale.shape} and zero point {zero_point.shape} differ")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"scales must be finite and positive, got {scale}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int = 0) -> "QuantParams":
        return cls(np.array([scale]), np.array([zero_point]))

    def __eq__(self, other):
        return (isinstance(other, QuantParams) and self.axis == other.axis
                and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))

    def __hash__(self):
        return hash((self.scale.tobytes(), self.zero_point.tobytes(), self.axis))

    def broadcast_to(self, shape) -> tuple[np.ndarray, np.ndarray]:
        """Scale and zero point reshaped to broadcast against a tensor of `shape`."""
        if self.axis is None:
            return self.scale[0], self.zero_point[0]
        bshape = [1] * len(shape)
        bshape[self.axis] = -1
        return self.scale.reshape(bshape), self.zero_point.reshape(bshape)


def _sanitize_range(rmin, rmax):
    """Finite float64 ranges that contain 0 (the paper: zero must be representable)."""
    rmin = np.nan_to_num(np.asarray(rmin, np.float64), nan=0.0, posinf=_FLOAT32_MAX,
                         neginf=-_FLOAT32_MAX)
    rmax = np.nan_to_num(np.asarray(rmax, np.float64), nan=0.0, posinf=_FLOAT32_MAX,
                         neginf=-_FLOAT32_MAX)
    rmin, rmax = np.minimum(rmin, rmax), np.maximum(rmin, rmax)
    return np.minimum(rmin, 0.0), np.maximum(rmax, 0.0)


def params_from_range(rmin, rmax, spec: QuantSpec) -> QuantParams:
    """Quantization params for values in [rmin, rmax] (scalars, or arrays for per-channel).

    The range is widened to include 0 and the zero point is an integer, so real 0 is exact.
    Degenerate ranges (all zero, infinite) give valid params: an all-zero range gets scale 1
    for symmetric specs (any scale represents 0 exactly) and the [0, 1] range otherwise.
    """
    rmin, rmax = _sanitize_range(rmin, rmax)
    rmin, rmax = np.atleast_1d(rmin), np.atleast_1d(rmax)
    qmin, qmax = spec.qmin, spec.qmax
    if spec.symmetric:
        bound = np.maximum(-rmin, rmax)
        scale = bound / qmax
        scale = np.where(bound > 0, scale, 1.0)
        zero_point = np.zeros_like(scale, dtype=np.int64)
    else:
        width = rmax - rmin
        degenerate = width <= 0
        rmax = np.where(degenerate, 1.0, rmax)
        width = np.where(degenerate, 1.0, width)
        scale = width / (qmax - qmin)
        zero_point = np.clip(np.round(qmin - rmin / scale), qmin, qmax).astype(np.int64)
    scale = np.clip(scale, _MIN_SCALE, _FLOAT32_MAX)
    return QuantParams(scale, zero_point, spec.axis)


def weight_range(weights: np.ndarray, axis: Optional[int]):
    """(min, max) of a weight tensor, per channel along `axis` or over the whole tensor."""
    weights = np.asarray(weights, np.float64)
    if axis is None:
        return np.array([weights.min(initial=0.0)]), np.array([weights.max(initial=0.0)])
    reduce_axes = tuple(i for i in range(weights.ndim) if i != axis % weights.ndim)
    return (weights.min(axis=reduce_axes, initial=0.0),
            weights.max(axis=reduce_axes, initial=0.0))


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero, as TFLite rounds (np.round rounds
    ties to even): trunc(x +- 0.5), the same values as sign(x) * floor(|x| + 0.5)."""
    x = np.asarray(x)
    return np.trunc(x + np.copysign(0.5, x))


# Codes of arrays quantized while a memo is active (quantization_memo): candidates of the
# "auto" calibration quantize the same weights with the same params several times.
_MEMO: contextvars.ContextVar = contextvars.ContextVar("tfquant_quantize_memo", default=None)


@contextlib.contextmanager
def quantization_memo():
    """Within the block, quantize() of the same array object with equal params and spec
    returns the codes computed the first time (read-only)."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def quantize(x: np.ndarray, params: QuantParams, spec: QuantSpec) -> np.ndarray:
    """Real values to integer codes: clamp(round(x / scale) + zero_point), half away from 0."""
    memo = _MEMO.get()
    if memo is not None and isinstance(x, np.ndarray) and x.size >= 4096:
        key = (id(x), x.shape, hash(params), spec)
        found = memo.get(key)
        if found is not None and found[0] is x:
            return found[1]
    source = x
    x = np.asarray(x, np.float64, order="C")  # C-ordered codes: the writer copies no views
    scale, zero_point = params.broadcast_to(x.shape)
    codes = round_half_away(x / scale.astype(np.float64)) + zero_point
    codes = np.clip(codes, spec.qmin, spec.qmax).astype(spec.storage_dtype())
    if memo is not None and isinstance(source, np.ndarray) and source.size >= 4096:
        codes.flags.writeable = False
        memo[key] = (source, codes)  # holding the source keeps its id from being reused
    return codes


def quantize_bias(values: np.ndarray, params: QuantParams, dtype) -> np.ndarray:
    """Bias codes: round(b / scale), half away from 0, clamped to the integer type (int32, or
    int64 in 16x8 mode, kept clear of its extreme values)."""
    b = np.asarray(values, np.float64)
    scale = np.broadcast_to(params.scale, b.shape).astype(np.float64)
    limit = 2 ** 31 - 1 if np.dtype(dtype) == np.int32 else 2 ** 63 - 1024
    return np.clip(round_half_away(b / scale), -limit, limit).astype(dtype)


def integer_spec(dtype) -> QuantSpec:
    """The QuantSpec whose codes fill integer type `dtype` (int8, uint8, int16)."""
    info = np.iinfo(dtype)
    return QuantSpec(bits=info.bits, signed=info.min < 0)


def dequantize(codes: np.ndarray, params: QuantParams) -> np.ndarray:
    """Integer codes back to real values: (q - zero_point) * scale."""
    codes = np.asarray(codes)
    scale, zero_point = params.broadcast_to(codes.shape)
    return ((codes.astype(np.float64) - zero_point) * scale).astype(np.float32)


def fake_quantize(x: np.ndarray, params: QuantParams, spec: QuantSpec) -> np.ndarray:
    """Quantize then dequantize ("simulated quantization" in the paper)."""
    return dequantize(quantize(x, params, spec), params)


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - approx)^2).

    Returns +inf for an exact approximation and -inf when the reference is all zero but the
    approximation is not.
    """
    reference = np.asarray(reference, np.float64)
    noise = np.sum((reference - np.asarray(approximation, np.float64)) ** 2)
    return sqnr_db_of_energies(np.sum(reference ** 2), noise)


def sqnr_db_of_energies(signal: float, noise: float) -> float:
    """sqnr_db from accumulated energies: sum of reference^2 and sum of error^2."""
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


# Whether mse_optimal_range may use tfquant.native's search (tests switch it off to compare).
_NATIVE = contextvars.ContextVar("tfquant_native_range_search", default=True)


def _quantization_mses(low: float, width: float, prefix_sums, rmins, rmaxs,
                       spec: QuantSpec) -> np.ndarray:
    """The weighted quantization error of a histogram under each range (rmins[k], rmaxs[k]):
    what fake_quantize with params_from_range makes of the bin centers, for all ranges at once.
    The histogram's bins start at `low` and are `width` wide; `prefix_sums` are the running
    sums of count, count * c and count * c^2 over its bin centers c.

    Each quantization level takes the centers between its rounding boundaries (ties away from
    zero), so the error of a level is sum(n c^2) - 2 g sum(n c) + g^2 sum(n), g the level's
    (float32) value: O(levels) per range instead of O(bins)."""
    params = params_from_range(rmins, rmaxs, spec)
    scale = params.scale.astype(np.float64)[:, None]
    zero_point = params.zero_point.astype(np.float64)[:, None]
    levels = np.arange(spec.qmin, spec.qmax + 1, dtype=np.float64)[None, :]
    values = ((levels - zero_point) * scale).astype(np.float32).astype(np.float64)
    halfway = levels[:, :-1] - zero_point + 0.5  # code-space boundary below the next level
    # Centers below each boundary: center i is low + (i + 0.5) width. A center on a boundary
    # rounds away from zero: up above zero, down below it.
    position = (halfway * scale - low) / width - 0.5
    below = np.where(halfway > 0, np.ceil(position), np.floor(position) + 1.0)
    bins = len(prefix_sums[0]) - 1
    edges = np.empty((len(scale), levels.shape[1] + 1), np.int64)
    edges[:, 0], edges[:, -1] = 0, bins
    edges[:, 1:-1] = np.clip(below, 0, bins)
    n, first, second = (s[edges[:, 1:]] - s[edges[:, :-1]] for s in prefix_sums)
    return np.sum(second - 2.0 * values * first + values * values * n, axis=1)


def mse_optimal_range(values: np.ndarray, rmin: float, rmax: float, spec: QuantSpec,
                      bins: int = 2048, steps: int = 64) -> tuple:
    """The clipping range inside [rmin, rmax] whose quantization (clipping plus rounding)
    error on `values` is smallest, per tensor.

    Works on a histogram of the values: first both ends shrink together toward 0, then each end
    moves alone (the other fixed), on a grid of `steps` fractions.
    """
    rmin, rmax = float(min(rmin, 0.0)), float(max(rmax, 0.0))
    if rmax - rmin <= 0:
        return rmin, rmax
    counts, edges = np.histogram(np.asarray(values, np.float64), bins=bins, range=(rmin, rmax))
    centers = 0.5 * (edges[:-1] + edges[1:])
    counts = counts.astype(np.float64)
    prefix_sums = [np.concatenate([[0.0], np.cumsum(counts * centers ** p)]) for p in range(3)]
    width = (rmax - rmin) / bins
    fractions = np.linspace(1.0 / steps, 1.0, steps)
    from tfquant import native
    if _NATIVE.get() and native.available():  # the same search, bit for bit, 7x faster
        return native.mse_optimal_range(prefix_sums, rmin, rmax, width, fractions, spec)

    def best(candidates):
        lows, highs = np.array(candidates, np.float64).T
        return candidates[int(np.argmin(_quantization_mses(rmin, width, prefix_sums, lows,
                                                           highs, spec)))]

    low, high = best([(f * rmin, f * rmax) for f in fractions])
    if rmin == 0 or rmax == 0:  # one-sided: moving the other end alone tries the same ranges
        return low, high
    low, high = best([(low, f * rmax) for f in fractions] + [(low, high)])
    low, high = best([(f * rmin, high) for f in fractions] + [(low, high)])
    return low, high


def mse_optimal_weight_range(weights: np.ndarray, axis: Optional[int], spec: QuantSpec,
                             steps: int = 50):
    """Per-channel (or per-tensor) symmetric clipping bounds of `weights` minimizing the
    quantization error of each channel: (-bound, bound) arrays as weight_range returns them.

    Searches bound = f * max|w| for f on a grid in [0.5, 1] (weights rarely gain from more)."""
    if not spec.symmetric:
        raise ValueError("mse_optimal_weight_range searches symmetric weight ranges")
    w = np.asarray(weights, np.float64)
    if axis is None:
        w = w.reshape(1, -1)
    else:
        w = np.moveaxis(w, axis % w.ndim, 0).reshape(w.shape[axis % w.ndim], -1)
    peak = np.abs(w).max(axis=1)
    best_error = np.full(peak.shape, np.inf)
    best_bound = peak.copy()
    for f in np.linspace(0.5, 1.0, steps):
        bound = f * peak
        scale = np.where(bound > 0, bound / spec.qmax, 1.0)[:, None]
        codes = np.clip(round_half_away(w / scale), spec.qmin, spec.qmax)
        error = np.sum((w - codes * scale) ** 2, axis=1)
        better = error < best_error
        best_error = np.where(better, error, best_error)
        best_bound = np.where(better, bound, best_bound)
    return -best_bound, best_bound
