"""Range estimators beyond min/max: percentile and MSE-optimal clipping, for activations
(calibration) and weights (per channel)."""

import keras
import numpy as np
import pytest

import tfquant
from tfquant import runtime, spec


def _mse(values, rmin, rmax, s):
    params = spec.params_from_range(rmin, rmax, s)
    return float(np.mean((values - spec.fake_quantize(values, params, s)) ** 2))


def test_mse_range_clips_heavy_tails_and_lowers_the_error():
    # Laplace(0, 1): the MSE-optimal 8-bit clipping is about 9.9 (Banner et al., ACIQ), while
    # the extremes of 400k samples lie near +-13.
    values = np.random.default_rng(0).laplace(0, 1, 400_000)
    low, high = spec.mse_optimal_range(values, values.min(), values.max(),
                                       spec.INT8_ACTIVATION)
    assert 8.0 < high < 11.5 and -11.5 < low < -8.0, (low, high)
    assert _mse(values, low, high, spec.INT8_ACTIVATION) < \
        0.9 * _mse(values, values.min(), values.max(), spec.INT8_ACTIVATION)


def test_mse_range_keeps_a_uniform_distribution_whole():
    values = np.random.default_rng(1).uniform(-2, 3, 100_000)
    low, high = spec.mse_optimal_range(values, values.min(), values.max(),
                                       spec.INT8_ACTIVATION)
    assert low <= -1.8 and high >= 2.7


def test_mse_weight_ranges_never_lose_to_min_max_per_channel():
    rng = np.random.default_rng(2)
    w = rng.standard_t(3, size=(16, 3, 3, 8))  # heavy tails: clipping pays on some channels
    s = spec.int8_weight(0)
    low, high = spec.mse_optimal_weight_range(w, 0, s)
    peak = np.abs(w).reshape(16, -1).max(1)
    assert np.all(high <= peak + 1e-12) and np.all(high >= 0.5 * peak) and np.all(low == -high)
    for c in range(16):
        channel = w[c].ravel()
        best = _mse(channel, -high[c], high[c], spec.int8_weight(None))
        full = _mse(channel, -peak[c], peak[c], spec.int8_weight(None))
        assert best <= full + 1e-15


def _sqnr(model, calibration, test, **recipe):
    result = tfquant.convert_model(model, calibration, tfquant.Recipe(**recipe),
                                   show_progress=False)
    got = runtime.Runner(result.model, resolver="reference").predict(test)
    return spec.sqnr_db(model.predict(test, verbose=0), got), result


def _dense_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((64,))
    y = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(x, keras.layers.Dense(10)(y))


def test_percentile_ignores_rare_glitches_in_calibration_data():
    model = _dense_model()
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(3200, 64)).astype(np.float32)
    calibration[rng.integers(0, 3200, 3), rng.integers(0, 64, 3)] = 400.0  # rare glitches
    test = rng.normal(size=(500, 64)).astype(np.float32)
    minmax, _ = _sqnr(model, calibration, test, calibration_method="minmax")
    percentile, result = _sqnr(model, calibration, test, calibration_method="percentile")
    assert result.ranges[result.float_graph.inputs[0]].max < 10.0  # glitches clipped away
    assert percentile > minmax + 6.0, (percentile, minmax)
    # The default ("auto") sees the glitches cost precision on the first calibration samples
    # and keeps an estimator that discounts them.
    auto, result = _sqnr(model, calibration, test)
    print(result.calibration)
    assert result.calibration.startswith("auto: ") and " minmax " in result.calibration
    assert result.calibration.split()[1] != "minmax", result.calibration
    assert auto > minmax + 6.0, (auto, minmax)


def test_mse_calibration_on_heavy_tailed_inputs():
    model = _dense_model()
    rng = np.random.default_rng(0)
    calibration = rng.laplace(size=(3200, 64)).astype(np.float32)
    test = rng.laplace(size=(1000, 64)).astype(np.float32)
    minmax, _ = _sqnr(model, calibration, test, calibration_method="minmax")
    mse, result = _sqnr(model, calibration, test, calibration_method="mse",
                        weight_range_method="mse")
    input_range = result.ranges[result.float_graph.inputs[0]]
    assert input_range.max < 0.95 * calibration.max()  # the tails are clipped
    assert mse > minmax, (mse, minmax)


def test_auto_keeps_the_candidate_with_the_best_calibration_sample_sqnr():
    """Each candidate's model is what that estimator alone gives, and "auto" returns the one
    its score names, with every candidate's score in the summary."""
    from tfquant import range_selection
    model = _dense_model()
    rng = np.random.default_rng(1)
    calibration = rng.laplace(size=(640, 64)).astype(np.float32)
    auto = tfquant.convert_model(model, calibration, show_progress=False)
    scores = {}
    for method in range_selection.CANDIDATES:
        alone = tfquant.convert_model(model, calibration,
                                      tfquant.Recipe(calibration_method=method),
                                      show_progress=False)
        held = calibration[:range_selection.HELD_SAMPLES]
        scores[method] = spec.sqnr_db(model.predict(held, verbose=0),
                                      runtime.Runner(alone.model).predict(held))
        if auto.calibration.split()[1] == method:
            assert auto.model == alone.model
    print(auto.calibration, scores)
    best = max(scores, key=scores.get)
    assert auto.calibration.split()[1] == best, (auto.calibration, scores)
    assert f"ranges {best}" in auto.summary() or "ranges auto" in auto.summary()


def test_auto_keeps_minmax_for_16_bit_activations():
    model = _dense_model()
    data = np.random.default_rng(2).laplace(size=(256, 64)).astype(np.float32)
    wide = tfquant.convert_model(model, data, tfquant.Recipe(mode="int16x8"),
                                 show_progress=False)
    assert wide.calibration == "minmax"


def test_bad_estimator_settings_are_clear_errors():
    with pytest.raises(ValueError, match="calibration_method"):
        tfquant.Recipe(calibration_method="kl")
    with pytest.raises(ValueError, match="percentile"):
        tfquant.Recipe(calibration_method="percentile", percentile=20.0)
    with pytest.raises(ValueError, match="weight_range_method"):
        tfquant.Recipe(weight_range_method="percentile")


def test_mse_range_of_a_one_sided_tensor_is_the_best_of_its_grid():
    """A tensor that never goes below zero (ReLU, LOGISTIC) only moves its upper end: the
    range found is the grid's best, by brute-force fake quantization of the values."""
    values = np.maximum(np.random.default_rng(3).standard_t(3, 50_000), 0.0)
    low, high = spec.mse_optimal_range(values, 0.0, values.max(), spec.INT8_ACTIVATION)
    grid = [_mse(values, 0.0, f * values.max(), spec.INT8_ACTIVATION)
            for f in np.linspace(1 / 64, 1, 64)]
    assert low == 0.0 and high < values.max()
    assert _mse(values, low, high, spec.INT8_ACTIVATION) <= 1.001 * min(grid)


def test_native_mse_search_chooses_the_numpy_search_range_bit_for_bit():
    """tfquant.native's C++ search computes what the numpy definition computes (same float64
    operations and summation order): the same range, to the bit, on heavy-tailed, one-sided
    and shifted distributions, for 4-, 8- and 16-bit, signed and unsigned, symmetric and
    asymmetric specs."""
    from tfquant import native
    assert native.available(), "the package's native library is not built"
    rng = np.random.default_rng(4)
    specs = (spec.INT8_ACTIVATION, spec.QuantSpec(bits=4), spec.QuantSpec(bits=8, signed=False),
             spec.QuantSpec(bits=8, symmetric=True), spec.QuantSpec(bits=16, symmetric=True))
    compared = 0
    for trial in range(24):
        values = rng.standard_t(3, 4096) * rng.uniform(0.01, 10)
        values = (values, np.abs(values), -np.abs(values) + rng.uniform(-1, 1),
                  rng.normal(size=4096))[trial % 4]
        for s in specs if trial < 4 else specs[:-1]:  # numpy's 16-bit search takes 0.2 s
            fast = spec.mse_optimal_range(values, values.min(), values.max(), s)
            token = spec._NATIVE.set(False)
            try:
                slow = spec.mse_optimal_range(values, values.min(), values.max(), s)
            finally:
                spec._NATIVE.reset(token)
            assert np.float64(fast[0]).tobytes() == np.float64(slow[0]).tobytes(), (s, fast, slow)
            assert np.float64(fast[1]).tobytes() == np.float64(slow[1]).tobytes(), (s, fast, slow)
            compared += 1
    assert compared == 24 * (len(specs) - 1) + 4


def test_auto_scores_dense_output_models_on_fewer_samples():
    """Held samples stop (in whole batches) once their float outputs have
    HELD_OUTPUT_VALUES values: 24 batches of 8 samples of a model with 8192 outputs per
    sample hold 4 batches (4 x 8 x 8192 = 2^18 values), a classifier holds 256 samples."""
    from tfquant import range_selection
    from tfquant.calibrate import calibrate_all
    from tfquant.frontends.keras_model import from_keras
    from tfquant import passes
    assert range_selection.HELD_OUTPUT_VALUES == 1 << 18
    inputs = keras.Input((64,))
    dense = keras.Model(inputs, keras.layers.Dense(8192)(inputs))
    small = keras.Model(inputs, keras.layers.Dense(10)(inputs))
    data = np.random.default_rng(5).normal(size=(192, 64)).astype(np.float32)
    for model, held in ((dense, 32), (small, 192)):
        graph = passes.canonicalize(from_keras(model))
        calibration = calibrate_all(graph, data, ("minmax",), batch_size=8,
                                    held_samples=range_selection.HELD_SAMPLES,
                                    held_values=range_selection.HELD_OUTPUT_VALUES,
                                    show_progress=False)
        assert len(calibration.inputs[0]) == held, model.output_shape
        np.testing.assert_array_equal(calibration.inputs[0], data[:held])
