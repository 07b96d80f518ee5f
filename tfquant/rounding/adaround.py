"""AdaRound-style learned rounding (Nagel et al. 2020): each weight rounds up or down, chosen by
a continuous variable h in [0, 1] (a rectified sigmoid) trained with Adam to minimise the
layer's output error E[((W_q - W) x)^2] = tr(D E[x x^T] D^T) plus a regulariser that anneals
every h to 0 or 1. The output error is normalised by its round-to-nearest value, so one
regulariser weight serves layers of any scale."""

from __future__ import annotations

import numpy as np

from tfquant import spec

ITERATIONS = 1000
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch
REGULARISER = 10.0  # per weight, against the round-to-nearest output error of 1 per weight
WARMUP = 0.2  # share of the iterations without the regulariser
BETA = (20.0, 2.0)  # the regulariser's exponent, annealed from the first to the second
LEARNING_RATE = 0.03


def _output_error(delta, h):
    """tr(D H D^T), summed over the groups."""
    return float(np.sum((delta @ h) * delta))


def adaround_codes(w: np.ndarray, scale: np.ndarray, hessian: np.ndarray, qmin: int,
                   qmax: int, iterations: int = ITERATIONS) -> np.ndarray:
    """Integer codes [G, r, k] of weights `w` [G, r, k] on symmetric grids of `scale` [G, r],
    for inputs of second moment `hessian` [G, k, k]."""
    w = np.asarray(w, np.float64)
    s = np.asarray(scale, np.float64)[:, :, None]
    nearest = np.clip(spec.round_half_away(w / s), qmin, qmax)
    baseline = _output_error(nearest * s - w, np.asarray(hessian, np.float64))
    if iterations <= 0 or baseline <= 0:
        return nearest
    # float32 from here: the loop is elementwise-bound, and only the final side of 0.5 counts.
    floor = np.floor(w / s)
    rest = np.clip(w / s - floor, 0.0, 1.0)
    h = np.asarray(hessian, np.float32)
    # d loss / d soft = 2 (D H) * s, normalised: the output error of round-to-nearest is 1
    # per weight.
    gain = (2.0 * w.size / baseline * s).astype(np.float32)
    offset = (floor * s - w).astype(np.float32)  # D = soft * s + offset (unclipped codes)
    s32 = np.broadcast_to(s, w.shape).astype(np.float32)
    low, high = (qmin - floor).astype(np.float32), (qmax - floor).astype(np.float32)
    # Start at the float weights: h(v) = rest.
    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-4, 1 - 1e-4)
    v = np.log(p / (1 - p)).astype(np.float32)
    m, m2 = np.zeros_like(v), np.zeros_like(v)
    warm = int(iterations * WARMUP)
    for t in range(iterations):
        sig = 1.0 / (1.0 + np.exp(-v))
        stretched = sig * np.float32(ZETA - GAMMA) + np.float32(GAMMA)
        soft = np.clip(stretched, 0.0, 1.0)
        inside = (soft >= low) & (soft <= high)  # the code floor + soft is on the grid
        delta = np.clip(soft, low, high) * s32 + offset
        grad = (delta @ h) * gain * inside
        if t >= warm:
            beta = BETA[0] + (BETA[1] - BETA[0]) * (t - warm) / max(iterations - warm - 1, 1)
            u = 2.0 * soft - 1.0
            grad -= np.float32(2.0 * beta * REGULARISER) * np.abs(u) ** np.float32(
                beta - 1) * np.sign(u)
        grad *= np.float32(ZETA - GAMMA) * sig * (1 - sig) * ((stretched > 0) & (stretched < 1))
        m *= 0.9
        m += 0.1 * grad
        m2 *= 0.999
        m2 += 0.001 * grad * grad
        v -= np.float32(LEARNING_RATE / (1 - 0.9 ** (t + 1))) * m / (
            np.sqrt(m2 / np.float32(1 - 0.999 ** (t + 1))) + np.float32(1e-8))
    up = np.clip(1.0 / (1.0 + np.exp(-v.astype(np.float64))) * (ZETA - GAMMA) + GAMMA,
                 0, 1) >= 0.5
    return np.clip(floor + up, qmin, qmax)
