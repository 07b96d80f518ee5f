"""Cross-layer equalization and bias correction: the float function is preserved, channel
ranges are equalized, and per-tensor PTQ of a badly scaled model gets much closer to float."""

import keras
import numpy as np

import tfquant
from tfquant import ops as op_records
from tfquant import passes, runtime, spec
from tfquant.frontends.keras_model import from_keras


def _output_channel_range(op, w):
    return op_records.weight_layout(op.type).output_channel_range(w)


def _input_channel_range(op, w):
    return op_records.weight_layout(op.type).input_channel_range(w)


def _badly_scaled_model(activation="relu"):
    """conv -> dw -> pw -> dense where batch norm left channel scales spread over 10^4
    (the paper's explanation of per-layer collapse in MobileNets)."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((12, 12, 3))
    y = L.Conv2D(16, 3, padding="same", activation=activation, name="stem")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation=activation, name="dw")(y)
    y = L.Conv2D(24, 1, activation=activation, name="pw")(y)
    y = L.GlobalAveragePooling2D()(y)
    model = keras.Model(x, L.Dense(10, name="logits")(y))
    rng = np.random.default_rng(0)
    spread = 10.0 ** rng.uniform(-2, 2, 16)
    kernel, bias = model.get_layer("stem").get_weights()
    model.get_layer("stem").set_weights([kernel * spread, bias * spread])
    kernel, bias = model.get_layer("dw").get_weights()
    model.get_layer("dw").set_weights([kernel / spread[None, None, :, None], bias])
    return model


def _data(n, seed):
    return np.random.default_rng(seed).uniform(0, 1, (n, 12, 12, 3)).astype(np.float32)


def test_equalization_preserves_the_function_and_equalizes_ranges():
    model = _badly_scaled_model()
    graph = passes.canonicalize(from_keras(model))
    equalized = passes.cross_layer_equalization(graph)
    x = _data(16, 0)
    expected = model.predict(x, verbose=0)
    for g in (graph, equalized):
        out = runtime.Runner(tfquant.convert(g, recipe=tfquant.Recipe(mode="float")),
                             resolver="reference").predict(x)
        assert np.abs(out - expected).max() <= 1e-4 * np.abs(expected).max()
    ops = {op.source[0]: op for op in equalized.ops if op.source}
    before = {op.source[0]: op for op in graph.ops if op.source}
    r_stem = _output_channel_range(ops["stem"], equalized.tensors[ops["stem"].inputs[1]].data)
    r_dw = _input_channel_range(ops["dw"], equalized.tensors[ops["dw"].inputs[1]].data)
    np.testing.assert_allclose(r_stem, r_dw, rtol=1e-3)
    assert len(equalized.tensors) == len(graph.tensors)  # copies replace, not add
    spread_before = _output_channel_range(
        before["stem"], graph.tensors[before["stem"].inputs[1]].data)
    assert spread_before.max() / spread_before.min() > 1e3
    assert r_stem.max() / r_stem.min() < 0.1 * spread_before.max() / spread_before.min()


def test_relu6_is_equalized_only_on_request():
    model = _badly_scaled_model("relu6")
    graph = passes.canonicalize(from_keras(model))
    untouched = passes.cross_layer_equalization(graph)
    for op, original in zip(untouched.ops, graph.ops):
        if op.inputs[1:] and original.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            np.testing.assert_array_equal(untouched.tensors[op.inputs[1]].data,
                                          graph.tensors[original.inputs[1]].data)
    relu = passes.cross_layer_equalization(graph, relu6_to_relu=True)
    assert "RELU6" not in {op.options.fused_activation for op in relu.ops[:2]}


def test_per_tensor_ptq_with_equalization_and_bias_correction_approaches_per_channel():
    model = _badly_scaled_model()
    calibration, test = _data(512, 1), _data(256, 2)
    expected = model.predict(test, verbose=0)

    def sqnr(**recipe):
        data = tfquant.convert(model, calibration, tfquant.Recipe(**recipe),
                               show_progress=False)
        return spec.sqnr_db(expected, runtime.Runner(data, resolver="reference").predict(test))

    per_channel = sqnr()
    per_tensor = sqnr(per_channel=False)
    equalized = sqnr(per_channel=False, cross_layer_equalization=True)
    corrected = sqnr(per_channel=False, cross_layer_equalization=True, bias_correction=True)
    print(f"SQNR dB: per-channel {per_channel:.1f}, per-tensor {per_tensor:.1f}, "
          f"+CLE {equalized:.1f}, +CLE+BC {corrected:.1f}")
    # Per-tensor activations collapse the small channels whatever the weights do; equalizing
    # fixes weights and activations together, so it beats per-channel weights here.
    assert per_tensor < 10 and per_channel < 10
    assert equalized > max(per_tensor, per_channel) + 20
    assert corrected >= equalized - 0.5


def test_bias_correction_removes_the_mean_output_shift():
    # One loud output channel sets a coarse per-tensor weight grid; the rounding errors of the
    # other channels' weights shift their outputs by sum(error * E[x]) with E[x] = 0.5.
    keras.utils.set_random_seed(0)
    x = keras.Input((12, 12, 3))
    model = keras.Model(x, keras.layers.Conv2D(16, 3, name="conv")(x))
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., 0] *= 40.0
    model.get_layer("conv").set_weights([kernel, bias])
    calibration = _data(512, 1)
    expected = model.predict(calibration, verbose=0)
    shifts = {}
    for corrected in (False, True):
        data = tfquant.convert(model, calibration,
                               tfquant.Recipe(per_channel=False, bias_correction=corrected),
                               show_progress=False)
        got = runtime.Runner(data, resolver="reference").predict(calibration)
        shifts[corrected] = np.abs((got - expected).mean(axis=(0, 1, 2)))[1:].mean()
    assert shifts[True] < 0.3 * shifts[False], shifts
