"""Quantization math: params from ranges, quantize/dequantize, SQNR, degenerate ranges."""

import numpy as np
import pytest

from tfquant import spec


def test_int8_code_ranges():
    assert (spec.INT8_ACTIVATION.qmin, spec.INT8_ACTIVATION.qmax) == (-128, 127)
    w = spec.int8_weight(axis=0)
    assert (w.qmin, w.qmax) == (-127, 127)
    assert (spec.QuantSpec(bits=4, signed=False).qmin, spec.QuantSpec(bits=4, signed=False).qmax) == (0, 15)
    assert spec.QuantSpec(bits=16, symmetric=True).storage_dtype() == np.int16


@pytest.mark.parametrize("bits", [1, 17])
def test_bits_out_of_range_rejected(bits):
    with pytest.raises(ValueError, match="2..16"):
        spec.QuantSpec(bits=bits)


def test_range_widened_to_include_zero():
    # The paper's example: (2.1, 3.5) becomes (0, 3.5).
    p = spec.params_from_range(2.1, 3.5, spec.INT8_ACTIVATION)
    assert p.zero_point[0] == -128
    np.testing.assert_allclose(p.scale[0], 3.5 / 255, rtol=1e-6)
    # zero is exactly representable
    assert spec.dequantize(spec.quantize(np.zeros(1), p, spec.INT8_ACTIVATION), p)[0] == 0.0


@pytest.mark.parametrize("lo,hi", [(-1.0, 3.0), (-5.0, 0.5), (-0.3, 0.3), (0.0, 6.0)])
def test_affine_roundtrip_error_at_most_half_step(lo, hi):
    p = spec.params_from_range(lo, hi, spec.INT8_ACTIVATION)
    x = np.linspace(lo, hi, 1001)
    err = np.abs(spec.fake_quantize(x, p, spec.INT8_ACTIVATION) - x)
    # half a step plus the zero-point nudge (at most half a step more)
    assert err.max() <= p.scale[0] * 1.0 + 1e-6
    assert spec.fake_quantize(np.zeros(1), p, spec.INT8_ACTIVATION)[0] == 0.0


def test_symmetric_per_channel_weights():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 2)) * np.array([1e-3, 1.0, 10.0, 0.0]).reshape(4, 1, 1, 1)
    s = spec.int8_weight(axis=0)
    p = spec.params_from_range(*spec.weight_range(w, 0), s)
    assert p.scale.shape == (4,) and np.all(p.zero_point == 0)
    q = spec.quantize(w, p, s)
    assert q.dtype == np.int8 and q.min() >= -127
    # each non-zero channel uses its full range
    assert np.all(np.abs(q[:3]).reshape(3, -1).max(axis=1) == 127)
    assert np.all(q[3] == 0)  # all-zero channel stays zero, valid scale
    assert np.all(np.isfinite(p.scale)) and np.all(p.scale > 0)


def test_degenerate_ranges_give_valid_params():
    for lo, hi in [(0.0, 0.0), (2.0, 2.0), (-np.inf, np.inf), (np.nan, 1.0), (-3.0, -3.0)]:
        for s in (spec.INT8_ACTIVATION, spec.int8_weight(None), spec.INT16_ACTIVATION):
            p = spec.params_from_range(lo, hi, s)
            assert np.all(np.isfinite(p.scale)) and np.all(p.scale > 0), (lo, hi, s)
            assert s.qmin <= p.zero_point[0] <= s.qmax
            x = np.array([0.0, 1.0, -1.0])
            assert np.all(np.isfinite(spec.fake_quantize(x, p, s)))


def test_rounding_is_half_away_from_zero():
    p = spec.QuantParams.per_tensor(1.0, 0)
    q = spec.quantize(np.array([0.5, -0.5, 1.5, -2.5]), p, spec.INT8_ACTIVATION)
    assert q.tolist() == [1, -1, 2, -3]


def test_sqnr():
    x = np.ones(100)
    assert spec.sqnr_db(x, x) == float("inf")
    assert spec.sqnr_db(x, x * 1.1) == pytest.approx(20.0, abs=1e-9)  # noise 0.01 of signal
    assert spec.sqnr_db(np.zeros(3), np.ones(3)) == float("-inf")


def test_per_channel_sqnr_beats_per_tensor_on_mixed_ranges():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 16)) * np.logspace(-3, 0, 8)[:, None]
    pc = spec.int8_weight(0)
    pt = spec.int8_weight(None)
    q_pc = spec.fake_quantize(w, spec.params_from_range(*spec.weight_range(w, 0), pc), pc)
    q_pt = spec.fake_quantize(w, spec.params_from_range(*spec.weight_range(w, None), pt), pt)
    assert spec.sqnr_db(w[0], q_pc[0]) > spec.sqnr_db(w[0], q_pt[0]) + 20


def test_quant_params_validation():
    with pytest.raises(ValueError):
        spec.QuantParams(np.array([0.0]), np.array([0]))
    with pytest.raises(ValueError):
        spec.QuantParams(np.array([1.0, 2.0]), np.array([0]))
