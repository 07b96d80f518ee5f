"""QAT fake quantization equals tfquant.spec's numpy quantizer; straight-through gradient."""

import numpy as np
import pytest
import tensorflow as tf

from tfquant import spec
from tfquant.qat.fake_quant import fake_quant, weight_range

SPECS = [
    spec.INT8_ACTIVATION,
    spec.int8_weight(None),
    spec.int8_weight(0),
    spec.QuantSpec(bits=4, symmetric=True, narrow_range=True, axis=0),
    spec.QuantSpec(bits=4),
    spec.INT16_ACTIVATION,
]


@pytest.mark.parametrize("s", SPECS, ids=lambda s: f"{s.bits}b-sym{s.symmetric}-ax{s.axis}")
def test_forward_equals_numpy_quantizer(s):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6, 40)) * rng.uniform(0.01, 3, size=(6, 1))).astype(np.float32)
    if s.axis is None:
        lo, hi = np.float32(x.min() * 0.8), np.float32(x.max() * 0.9)
    else:
        lo, hi = (x.min(axis=1) * 0.8).astype(np.float32), (x.max(axis=1) * 0.9).astype(np.float32)
    params = spec.params_from_range(lo, hi, s)
    expected = spec.fake_quantize(x, params, s)
    got = fake_quant(x, lo, hi, s).numpy()
    # Same codes everywhere except where float32 vs float64 scale rounding flips a tie.
    steps = np.abs(got - expected) / np.broadcast_to(params.broadcast_to(x.shape)[0], x.shape)
    assert np.mean(steps < 1e-3) >= 0.999 and steps.max() <= 1.0 + 1e-3


def test_straight_through_gradient_is_zero_outside_the_range():
    x = tf.constant(np.linspace(-2, 2, 41, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(fake_quant(x, -1.0, 1.0, spec.INT8_ACTIVATION))
    grad = tape.gradient(total, x).numpy()
    xs = x.numpy()
    assert np.all(grad[np.abs(xs) <= 0.99] == 1.0)
    assert np.all(grad[np.abs(xs) > 1.01] == 0.0)


def test_degenerate_ranges_are_finite():
    for lo, hi in [(0.0, 0.0), (3.0, 3.0)]:
        for s in SPECS[:2]:
            y = fake_quant(np.array([0.0, 1.0, -1.0], np.float32), lo, hi, s).numpy()
            assert np.all(np.isfinite(y)) and y[0] == 0.0


def test_weight_range_per_channel():
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 10
    lo, hi = weight_range(tf.constant(w), axis=2)
    np_lo, np_hi = spec.weight_range(w, 2)
    np.testing.assert_array_equal(lo.numpy(), np_lo)
    np.testing.assert_array_equal(hi.numpy(), np_hi)
