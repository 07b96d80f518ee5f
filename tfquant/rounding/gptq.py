"""GPTQ-style rounding (Frantar et al. 2022, after Optimal Brain Quantization): quantize one
input column of the weights at a time, in order of decreasing input energy, and spread each
column's rounding error over the columns not yet quantized so that the layer's output error
E[((W_q - W) x)^2] stays smallest. Exact for the given second moment E[x x^T]."""

from __future__ import annotations

import numpy as np

from tfquant import spec

DAMPING = 0.01  # of the mean diagonal, added to E[x x^T] (GPTQ's default)
LAZY_BLOCK = 128  # columns updated together (the same result, fewer large updates)


def _prepared(hessian: np.ndarray, damping: float):
    """E[x x^T] with dead inputs (never nonzero) made independent, damped; and each group's
    column order (largest diagonal first)."""
    h = np.array(hessian, np.float64)
    g, k, _ = h.shape
    diag = np.diagonal(h, axis1=1, axis2=2).copy()
    dead = diag <= 0
    h[dead[:, :, None] | dead[:, None, :]] = 0.0
    idx = np.arange(k)
    h[:, idx, idx] = np.where(dead, 1.0, diag)
    live_mean = np.where(dead, 0.0, diag).sum(1) / np.maximum((~dead).sum(1), 1)
    h[:, idx, idx] += damping * np.where(live_mean > 0, live_mean, 1.0)[:, None]
    order = np.argsort(-np.where(dead, -1.0, diag), axis=1, kind="stable")
    return h, order


def gptq_codes(w: np.ndarray, scale: np.ndarray, hessian: np.ndarray, qmin: int, qmax: int,
               damping: float = DAMPING) -> np.ndarray:
    """Integer codes [G, r, k] of weights `w` [G, r, k] on symmetric grids of `scale` [G, r],
    for inputs of second moment `hessian` [G, k, k]."""
    groups, _, k = w.shape
    h, order = _prepared(hessian, damping)
    gi = np.arange(groups)[:, None]
    h = h[gi[:, :, None], order[:, :, None], order[:, None, :]]
    w = np.take_along_axis(np.array(w, np.float64), order[:, None, :], axis=2)
    # Upper Cholesky factor U of H^-1 (H^-1 = U^T U): row i gives column i's error spread.
    u = np.swapaxes(np.linalg.cholesky(np.linalg.inv(h)), 1, 2)
    s = np.asarray(scale, np.float64)
    codes = np.zeros_like(w)
    for a in range(0, k, LAZY_BLOCK):
        b = min(a + LAZY_BLOCK, k)
        errors = np.zeros(w.shape[:2] + (b - a,))
        for i in range(a, b):
            q = np.clip(spec.round_half_away(w[:, :, i] / s), qmin, qmax)
            codes[:, :, i] = q
            e = (w[:, :, i] - q * s) / u[:, i, i][:, None]
            w[:, :, i:b] -= e[:, :, None] * u[:, None, i, i:b]
            errors[:, :, i - a] = e
        if b < k:
            w[:, :, b:] -= errors @ u[:, a:b, b:]
    result = np.empty_like(codes)
    np.put_along_axis(result, np.broadcast_to(order[:, None, :], codes.shape), codes, axis=2)
    return result
