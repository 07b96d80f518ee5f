"""Simulated ("fake") quantization in TensorFlow for quantization-aware training.

The forward pass computes exactly what tfquant.spec.fake_quantize computes (same params from
the range, same round-half-away-from-zero, same clamp), so a model trained with these ops is
the model the int8 export runs. The backward pass is the paper's straight-through estimator:
gradient 1 where the input lies inside the quantizer's range, 0 outside.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tfquant.spec import QuantSpec


def _round_half_away_from_zero(x):
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def quant_params(rmin, rmax, spec: QuantSpec):
    """(scale, zero_point) as float32 tensors, following tfquant.spec.params_from_range."""
    rmin = tf.minimum(tf.cast(rmin, tf.float32), 0.0)
    rmax = tf.maximum(tf.cast(rmax, tf.float32), 0.0)
    qmin, qmax = float(spec.qmin), float(spec.qmax)
    if spec.symmetric:
        bound = tf.maximum(-rmin, rmax)
        scale = tf.where(bound > 0, bound / qmax, tf.ones_like(bound))
        zero_point = tf.zeros_like(scale)
    else:
        degenerate = rmax - rmin <= 0
        width = tf.where(degenerate, tf.ones_like(rmax), rmax - rmin)
        rmin = tf.where(degenerate, tf.zeros_like(rmin), rmin)
        scale = width / (qmax - qmin)
        zero_point = tf.clip_by_value(tf.round(qmin - rmin / scale), qmin, qmax)
    return tf.maximum(scale, 1e-30), zero_point


def _broadcast(v, rank: int, axis: Optional[int]):
    if axis is None:
        return v
    shape = [1] * rank
    shape[axis % rank] = -1
    return tf.reshape(v, shape)


def fake_quant(x, rmin, rmax, spec: QuantSpec):
    """Quantize-dequantize `x` with the params of [rmin, rmax] (vectors for per-axis specs)
    and a straight-through gradient inside the representable range."""
    x = tf.convert_to_tensor(x, tf.float32)
    scale, zero_point = quant_params(rmin, rmax, spec)
    rank = len(x.shape)
    scale = _broadcast(scale, rank, spec.axis)
    zero_point = _broadcast(zero_point, rank, spec.axis)
    codes = tf.clip_by_value(_round_half_away_from_zero(x / scale) + zero_point,
                             float(spec.qmin), float(spec.qmax))
    y = (codes - zero_point) * scale
    low = (spec.qmin - zero_point) * scale
    high = (spec.qmax - zero_point) * scale
    inside = tf.cast((x >= low) & (x <= high), x.dtype)
    return x * inside + tf.stop_gradient(y - x * inside)


def weight_range(w, axis: Optional[int]):
    """Per-channel (or whole-tensor) min and max of a weight tensor, as in tfquant.spec."""
    if axis is None:
        return tf.minimum(tf.reduce_min(w), 0.0), tf.maximum(tf.reduce_max(w), 0.0)
    rank = len(w.shape)
    axes = [i for i in range(rank) if i != axis % rank]
    return (tf.minimum(tf.reduce_min(w, axis=axes), 0.0),
            tf.maximum(tf.reduce_max(w, axis=axes), 0.0))
