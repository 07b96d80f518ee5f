"""Calibration: data forms, batch limit, estimators, and clear errors on bad data."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfquant
from tfquant import passes
from tfquant.calibrate import calibrate
from tfquant.errors import CalibrationDataError
from tfquant.frontends.keras_model import from_keras


@pytest.fixture(scope="module")
def graph():
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 2))
    y = keras.layers.Conv2D(4, 3, activation="relu")(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(3, activation="softmax")(y)
    return passes.canonicalize(from_keras(keras.Model(x, y)))


def _data(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 6, 6, 2)).astype(np.float32)


def test_every_activation_tensor_gets_a_range(graph):
    ranges = calibrate(graph, _data(), show_progress=False)
    assert set(ranges) == set(graph.activation_tensors())
    for r in ranges.values():
        assert r.min <= r.max


def test_ranges_are_true_extremes(graph):
    data = _data()
    ranges = calibrate(graph, data, show_progress=False)
    assert ranges[graph.inputs[0]].min == pytest.approx(data.min())
    assert ranges[graph.inputs[0]].max == pytest.approx(data.max())


def test_data_forms_agree(graph):
    data = _data()
    reference = calibrate(graph, data, batch_size=16, show_progress=False)
    batches = [data[i:i + 16] for i in range(0, 64, 16)]
    forms = {
        "tuple of arrays": (data,),
        "tf.data": tf.data.Dataset.from_tensor_slices(data).batch(16),
        "tf.data (x, y)": tf.data.Dataset.from_tensor_slices((data, np.zeros(64))).batch(16),
        "generator function": lambda: iter(batches),
        "list of batches": batches,
        "list of [batch] lists": [[b] for b in batches],
    }
    for name, form in forms.items():
        ranges = calibrate(graph, form, batch_size=16, show_progress=False)
        for tensor, r in reference.items():
            assert ranges[tensor].min == pytest.approx(r.min), name
            assert ranges[tensor].max == pytest.approx(r.max), name


def test_at_most_num_batches_are_read(graph):
    consumed = []

    def generator():
        for i in range(500):
            consumed.append(i)
            yield _data(4, seed=i)
    calibrate(graph, generator, show_progress=False)
    assert len(consumed) == 100  # the default, as the paper suggests
    consumed.clear()
    calibrate(graph, generator, num_batches=7, show_progress=False)
    assert len(consumed) == 7


def test_ema_ranges_lie_inside_minmax(graph):
    data = _data(512)
    minmax = calibrate(graph, data, batch_size=8, show_progress=False)
    ema = calibrate(graph, data, batch_size=8, method="ema", ema_decay=0.9,
                    show_progress=False)
    inside = [minmax[t].min <= ema[t].min and ema[t].max <= minmax[t].max for t in minmax]
    assert all(inside)
    assert any(ema[t].max < minmax[t].max for t in minmax)  # it does average


def test_progress_bar(graph, capsys):
    calibrate(graph, _data(), batch_size=16, show_progress=True)
    err = capsys.readouterr().err
    assert "calibrating" in err and "4/100" in err


@pytest.mark.parametrize("bad,message", [
    (np.full((8, 6, 6, 2), np.nan, np.float32), "NaN"),
    (np.full((8, 6, 6, 2), np.inf, np.float32), "inf"),
    (np.zeros((0, 6, 6, 2), np.float32), "empty"),
    (np.zeros((8, 5, 6, 2), np.float32), r"shape \(8, 5, 6, 2\).*expects \(N, 6, 6, 2\)"),
    (np.zeros((8, 6, 6), np.float32), "shape"),
    ([], "empty"),
    (lambda: iter([]), "empty"),
    ("not data", "not supported"),
])
def test_bad_calibration_data(graph, bad, message):
    with pytest.raises(CalibrationDataError, match=message):
        calibrate(graph, bad, show_progress=False)


def test_int8_without_data_is_a_clear_error():
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2)(x))
    with pytest.raises(CalibrationDataError, match="representative data"):
        tfquant.convert(model)


def test_reference_kernels_give_the_same_ranges_to_float_precision(graph):
    data = _data()
    fast = calibrate(graph, data, show_progress=False)
    reference = calibrate(graph, data, kernels="reference", show_progress=False)
    assert set(fast) == set(reference)
    for name, r in fast.items():
        assert reference[name].min == pytest.approx(r.min, rel=1e-5, abs=1e-6)
        assert reference[name].max == pytest.approx(r.max, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="calibration kernels"):
        calibrate(graph, data, kernels="fast", show_progress=False)
    with pytest.raises(ValueError, match="calibration_kernels"):
        tfquant.Recipe(calibration_kernels="fast")


def test_clipped_ranges_are_searched_only_where_the_quantizer_reads_them(graph, monkeypatch):
    """The softmax output's params are fixed by TFLite: its MSE range is never searched, every
    other activation's is, once (ranges are computed on first read)."""
    searched = []
    search = tfquant.spec.mse_optimal_range
    monkeypatch.setattr(tfquant.spec, "mse_optimal_range",
                        lambda values, *a, **k: searched.append(values.size) or
                        search(values, *a, **k))
    result = tfquant.convert_model(graph, _data(), tfquant.Recipe(calibration_method="mse"),
                                   show_progress=False)
    softmax = next(op for op in graph.ops if op.type == "SOFTMAX").outputs[0]
    assert softmax in result.ranges and len(result.ranges) == len(graph.activation_tensors())
    assert len(searched) == len(graph.activation_tensors()) - 1
    first = result.ranges[graph.inputs[0]]
    assert result.ranges[graph.inputs[0]] is first and len(searched) == len(result.ranges) - 1
    assert result.ranges[softmax].min <= result.ranges[softmax].max  # computed when read
    assert len(searched) == len(graph.activation_tensors())
