"""Peer helpers: reading a flatbuffer's depthwise weight quantization (used to report whether
each QAT tool quantizes depthwise weights per channel)."""

import keras
import numpy as np

import tfquant
from tfquant.experiments import peers
from tflite_builders import int8_range, read_ops


def _depthwise_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 4))
    y = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    y = keras.layers.Conv2D(4, 1)(y)
    return keras.Model(x, keras.layers.GlobalAveragePooling2D()(y))


def test_depthwise_weight_scales_per_channel_and_per_tensor():
    model = _depthwise_model()
    data = np.random.default_rng(0).normal(size=(32, 8, 8, 4)).astype(np.float32)
    per_channel = tfquant.convert(model, data, show_progress=False)
    per_tensor = tfquant.convert(model, data, tfquant.Recipe(per_channel=False),
                                 show_progress=False)
    assert peers.depthwise_weight_scales(per_channel) == [(8, True)]
    assert peers.depthwise_weight_scales(per_tensor) == [(1, None)]
    reference = peers.convert_with_tflite_converter(model, [data[:16], data[16:]])
    assert peers.depthwise_weight_scales(reference) == [(8, True)]


def _residual_add_ranges(tflite_model: bytes) -> tuple:
    """(int8 range of the residual branch's ADD input, of the ADD output) in a model of
    _residual_model: the branch is the ADD input made by an op that reads the other one."""
    ops = read_ops(tflite_model)
    producer_inputs = {out[0]: {t[0] for t in inputs} for _, _, inputs, outputs in ops
                       for out in outputs}
    ((_, _, inputs, (output,)),) = [op for op in ops if op[0] == "ADD"]
    (branch,) = [t for t in inputs if {u[0] for u in inputs} - {t[0]} <=
                 producer_inputs.get(t[0], set())]
    return int8_range(branch), int8_range(output)


def _residual_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((32, 32, 16))
    shortcut = keras.layers.Conv2D(16, 3, padding="same")(x)
    branch = keras.layers.Conv2D(
        16, 3, padding="same", name="branch",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=1))(shortcut)
    y = keras.layers.Add()([branch, shortcut])
    return keras.Model(x, keras.layers.Conv2D(8, 1)(y))


def test_tflite_converter_widens_residual_add_input_to_the_add_output():
    """docs/tflite_frontend.md explains the one systematic parameter difference to
    TFLiteConverter: its range of a residual branch feeding an ADD is the union of the branch's
    own range and the ADD output's (TFLite's calibrator logs each op's inputs again after the
    kernel ran, and the interpreter lets the ADD write its output into the branch's buffer).
    tfquant keeps the branch's own range. This keeps that statement checked against the
    installed TensorFlow."""
    model = _residual_model()
    data = np.random.default_rng(0).normal(size=(64, 32, 32, 16)).astype(np.float32)
    batches = [data[i:i + 16] for i in range(0, 64, 16)]
    add = keras.Model(model.input, model.layers[-2].output).predict(data, verbose=0)
    branch = keras.Model(model.input, model.get_layer("branch").output).predict(data, verbose=0)
    assert branch.max() < 0.3 * add.max() and branch.min() > 0.3 * add.min()

    ours, ours_add = _residual_add_ranges(tfquant.convert(
        model, batches, tfquant.Recipe(num_calibration_batches=4, calibration_method="minmax"),
        show_progress=False))
    theirs, theirs_add = _residual_add_ranges(
        peers.convert_with_tflite_converter(model, batches))
    step = (ours[1] - ours[0]) / 255
    assert ours[0] <= branch.min() + step and ours[1] >= branch.max() - step
    assert ours[1] - ours[0] < 1.2 * (branch.max() - branch.min())
    np.testing.assert_allclose(ours_add, theirs_add, rtol=0.02, atol=0.02)
    assert theirs[0] <= 0.95 * add.min() and theirs[1] >= 0.95 * add.max()
