"""The DSP delegate, op by op: small tfquant-converted models with random shapes and params run
through the delegate on every runtime and every ISA implementation, and every output element
equals TFLite's reference kernels (BUILTIN_REF). The delegate must claim every node."""

import re

import keras
import numpy as np
import pytest

import tfquant
import tfquant.delegate
from tfquant import runtime

RUNTIMES = runtime.available_runtimes()
L = keras.layers


def claimed_counts(stderr: str):
    """(claimed, total) from the delegate's verbose report (last interpreter built)."""
    found = re.findall(r"tfquant_dsp: claimed (\d+) of (\d+) nodes", stderr)
    assert found, stderr
    return tuple(int(v) for v in found[-1])


def run(model, x, runtime_name, delegate=None):
    interpreter = runtime.make_interpreter(model, runtime_name, "reference",
                                           delegates=[delegate] if delegate else ())
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != x.shape:
        interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def encode(model, x):
    """The float batch in the model's input type."""
    from ai_edge_litert.interpreter import Interpreter
    detail = Interpreter(model_content=model).get_input_details()[0]
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(detail["dtype"])


def check_exact(model, x, capfd, runtime_name, isa="auto", expect_all=True, threads=1):
    """Runs reference and delegate; asserts bit equality. Returns (elements, claimed, total)."""
    x = encode(model, x)
    want = run(model, x, runtime_name)
    capfd.readouterr()
    delegate = tfquant.delegate.load(runtime_name, num_threads=threads, verbose=True, isa=isa)
    got = run(model, x, runtime_name, delegate)
    claimed, total = claimed_counts(capfd.readouterr().err)
    if expect_all:
        assert claimed == total, f"claimed {claimed} of {total}"
    elements = 0
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape
        mismatch = np.flatnonzero(w.ravel() != g.ravel())
        assert mismatch.size == 0, (
            f"{runtime_name}/{isa}: {mismatch.size} of {w.size} elements differ, first at "
            f"{mismatch[0]}: reference {w.ravel()[mismatch[0]]} delegate {g.ravel()[mismatch[0]]}")
        elements += w.size
    return elements, claimed, total


def build(name):
    """(keras model, input shape incl. batch, recipe kwargs) for each op case."""
    keras.utils.set_random_seed(hash(name) % 1000)
    int8_io = {"inference_input_type": "int8", "inference_output_type": "int8"}
    if name == "conv_same_stride2_relu":
        x = keras.Input((13, 11, 5))
        y = L.Conv2D(7, 3, strides=2, padding="same", activation="relu")(x)
        return keras.Model(x, y), (3, 13, 11, 5), int8_io
    if name == "conv_valid_dilated_relu6":
        x = keras.Input((15, 12, 3))
        y = L.Conv2D(9, (3, 2), dilation_rate=2, padding="valid", activation="relu6")(x)
        return keras.Model(x, y), (2, 15, 12, 3), int8_io
    if name == "conv_1x1_stride2_65_channels":
        x = keras.Input((9, 9, 6))
        y = L.Conv2D(65, 1, strides=2, use_bias=False)(x)
        return keras.Model(x, y), (1, 9, 9, 6), int8_io
    if name == "conv_5x5_same_dilated":
        x = keras.Input((10, 10, 4))
        y = L.Conv2D(5, 5, padding="same", dilation_rate=(2, 1))(x)
        return keras.Model(x, y), (2, 10, 10, 4), {}
    if name == "depthwise_multiplier3_stride2":
        x = keras.Input((11, 9, 5))
        y = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3,
                              activation="relu")(x)
        return keras.Model(x, y), (2, 11, 9, 5), int8_io
    if name == "depthwise_dilated_valid_40ch":
        x = keras.Input((12, 12, 40))
        y = L.DepthwiseConv2D((3, 2), dilation_rate=2, padding="valid", activation="relu6")(x)
        return keras.Model(x, y), (1, 12, 12, 40), int8_io
    if name == "depthwise_64ch_unpadded_paths":
        # Channels a multiple of 32 and multiplier 1: interior windows are read in place,
        # border windows copied (3x3 same, stride 2, dilated 5x3, valid 2x2; batch 2).
        x = keras.Input((9, 7, 64))
        y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        y = L.DepthwiseConv2D(3, strides=2, padding="same")(y)
        y = L.DepthwiseConv2D((5, 3), padding="same", dilation_rate=(1, 2))(y)
        y = L.DepthwiseConv2D(2, padding="valid", activation="relu6")(y)
        return keras.Model(x, y), (2, 9, 7, 64), int8_io
    if name in ("dense_per_channel", "dense_per_tensor"):
        x = keras.Input((4, 5, 3))
        y = L.Flatten()(x)
        y = L.Dense(37, activation="relu")(y)
        y = L.Dense(10)(y)
        return keras.Model(x, y), (5, 4, 5, 3), {**int8_io,
                                                  "per_channel_dense": name.endswith("channel")}
    if name in ("dense_wide_per_channel", "dense_wide_per_tensor"):
        # Wide enough that the fixed-point and double requantizations differ on some outputs
        # (measured: 2-6 per 10,000), so the per-runtime formula is really tested.
        x = keras.Input((64,))
        y = L.Dense(500)(x)
        return keras.Model(x, y), (20, 64), {**int8_io,
                                             "per_channel_dense": name.endswith("channel")}
    if name == "add_residual_and_batchnorm":
        x = keras.Input((8, 7, 6))
        a = L.Conv2D(6, 3, padding="same")(x)
        y = L.ReLU()(L.Add()([x, a]))
        b = L.Conv2D(4, 1)(y)
        y = L.Concatenate()([y, b])
        y = L.BatchNormalization()(y)  # after a concat: MUL + ADD with broadcast constants
        model = keras.Model(x, y)
        bn = model.layers[-1]
        rng = np.random.default_rng(3)
        bn.set_weights([rng.uniform(0.5, 1.5, 10), rng.normal(0, 0.2, 10),
                        rng.normal(0, 0.2, 10), rng.uniform(0.5, 1.5, 10)])
        return model, (2, 8, 7, 6), {}
    if name == "pools":
        x = keras.Input((13, 10, 6))
        a = L.MaxPooling2D(3, strides=2, padding="same")(x)
        b = L.AveragePooling2D(3, strides=2, padding="same")(x)
        y = L.Concatenate()([a, b])
        y = L.AveragePooling2D(2, strides=1, padding="valid")(y)
        return keras.Model(x, y), (2, 13, 10, 6), int8_io
    if name == "mean_and_softmax":
        x = keras.Input((7, 9, 12))
        y = L.Conv2D(16, 3, activation="relu")(x)
        y = L.GlobalAveragePooling2D()(y)
        y = L.Dense(11)(y)
        y = L.Softmax()(y)
        return keras.Model(x, y), (4, 7, 9, 12), {}
    if name == "sigmoid_hard_swish":
        x = keras.Input((6, 6, 8))
        y = L.Conv2D(8, 3, padding="same", activation="hard_swish")(x)
        y = L.Conv2D(5, 1, activation="sigmoid")(y)
        return keras.Model(x, y), (3, 6, 6, 8), int8_io
    if name == "pad_reshape_concat":
        x = keras.Input((5, 6, 3))
        y = L.ZeroPadding2D(((1, 2), (0, 1)))(x)
        y = L.Conv2D(4, 3, strides=2)(y)
        f = L.Reshape((-1, 4))(y)
        g = L.Reshape((-1, 4))(L.Conv2D(4, 1)(y))
        y = L.Concatenate(axis=1)([f, g])
        y = L.Flatten()(y)
        return keras.Model(x, y), (2, 5, 6, 3), int8_io
    if name == "conv_narrow_taps":
        # One input channel: the 3x1 and 2x3 convs read their input lines in place (no
        # im2col); the strided 1x1 conv copies im2col rows of 1 byte 16 bytes at a time (the
        # overrun must stay inside the task's rows: checked with worker threads too).
        x = keras.Input((30, 21, 1))
        y = L.Conv2D(16, (3, 1), padding="same", activation="relu")(x)
        z = L.Conv2D(8, (2, 3), strides=(1, 2))(x)
        w = L.Conv2D(8, 1, strides=(2, 1))(x)
        return keras.Model(x, [y, z, w]), (1, 30, 21, 1), int8_io
    if name == "pad_fused_into_depthwise":
        # A PAD read only by a depthwise conv is fused into it (zero-point taps): MobileNet's
        # bottom/right pad before a valid stride-2 conv (64 channels: in place), an asymmetric
        # pad before a same-padded stride-1 conv (small image: padded copy), a pad before a
        # 40-channel conv; a pad read by two ops stays a PAD.
        x = keras.Input((11, 10, 64))
        y = L.DepthwiseConv2D(3, strides=2, activation="relu")(L.ZeroPadding2D(((0, 1), (0, 1)))(x))
        y = L.DepthwiseConv2D(3, padding="same")(L.ZeroPadding2D(((2, 1), (1, 3)))(y))
        y = L.Conv2D(40, 1)(y)
        y = L.DepthwiseConv2D(3, strides=(1, 2), activation="relu6")(L.ZeroPadding2D(1)(y))
        p = L.ZeroPadding2D(((1, 0), (0, 2)))(y)
        a = L.DepthwiseConv2D(2, strides=2)(p)
        b = L.Conv2D(8, 2, strides=2)(p)
        return keras.Model(x, [a, b]), (2, 11, 10, 64), int8_io
    if name == "pointwise_register_tiles":
        # Small-K pointwise convs requantized from the GEMM's registers: 77 rows (full 6-row
        # tiles and a remainder), a block pair and a single block, ReLU6 and no activation,
        # channels not a multiple of 32.
        x = keras.Input((7, 11, 16))
        y = L.Conv2D(96, 1, activation="relu6")(x)
        y = L.Conv2D(40, 1)(y)
        return keras.Model(x, y), (2, 7, 11, 16), int8_io
    if name == "biased_activations":
        # Tensors read only by convolutions travel biased (u8) inside the delegate: a depthwise
        # output read in place by a pointwise conv, a tensor read by three convs (im2col, strided
        # 1x1, 1x1 with channels not a multiple of 4), one read by a conv and an ADD (int8).
        x = keras.Input((10, 9, 8))
        a = L.Conv2D(32, 3, padding="same", activation="relu")(x)
        b = L.DepthwiseConv2D(3, padding="same")(a)
        c = L.Conv2D(6, 1, activation="relu6")(b)
        d = L.Conv2D(8, 3, strides=2, padding="same")(c)
        f = L.Conv2D(8, 1, strides=2)(c)
        g = L.Conv2D(5, 1)(c)
        y = L.Add()([d, L.Conv2D(8, 1)(d)])
        y = L.Concatenate()([y, f])
        return keras.Model(x, [y, g]), (2, 10, 9, 8), int8_io
    if name.startswith("first_conv_"):
        # 1-4 input channels: kernel rows read in place from the input lines (no im2col), the
        # MobileNet stem (3x3 stride 2 same, float input through QUANTIZE), a strided valid
        # conv with a partial second block of channels, a row-dilated one; odd sizes, batch 2.
        c = int(name.split("_")[2][0])
        x = keras.Input((17, 15, c))
        y = L.Conv2D(32, 3, strides=2, padding="same", activation="relu6")(x)
        y = L.Conv2D(8, 1)(y)
        z = L.Conv2D(40, (2, 3), strides=(1, 2), padding="valid")(x)
        w = L.Conv2D(7, (3, 2), padding="same", dilation_rate=(2, 1), activation="relu")(x)
        return keras.Model(x, [y, z, w]), (2, 17, 15, c), {} if c == 3 else int8_io
    raise KeyError(name)


CASES = ["conv_same_stride2_relu", "conv_valid_dilated_relu6", "conv_1x1_stride2_65_channels",
         "conv_5x5_same_dilated", "conv_narrow_taps", "depthwise_multiplier3_stride2", "depthwise_dilated_valid_40ch",
         "depthwise_64ch_unpadded_paths",
         "dense_per_channel", "dense_per_tensor", "dense_wide_per_channel",
         "dense_wide_per_tensor", "add_residual_and_batchnorm", "pools",
         "mean_and_softmax", "sigmoid_hard_swish", "pad_reshape_concat", "pad_fused_into_depthwise",
         "biased_activations", "first_conv_1ch", "first_conv_2ch", "first_conv_3ch",
         "first_conv_4ch", "pointwise_register_tiles"]

_converted = {}


def converted(name):
    if name not in _converted:
        model, shape, recipe = build(name)
        calibration = np.random.default_rng(0).uniform(-1, 1, (32, *shape[1:])).astype(np.float32)
        _converted[name] = (tfquant.convert(model, calibration, tfquant.Recipe(**recipe),
                                            show_progress=False), shape)
    return _converted[name]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_op_bit_exact(name, runtime_name, capfd):
    model, shape = converted(name)
    x = np.random.default_rng(1).uniform(-1.2, 1.2, shape).astype(np.float32)
    check_exact(model, x, capfd, runtime_name)


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_every_isa_gives_the_same_bits(isa, capfd):
    for name in CASES:
        model, shape = converted(name)
        x = np.random.default_rng(2).uniform(-1.2, 1.2, shape).astype(np.float32)
        try:
            check_exact(model, x, capfd, "litert", isa=isa)
        except ValueError as e:  # the CPU lacks this ISA
            pytest.skip(str(e))


@pytest.mark.parametrize("name", ["conv_same_stride2_relu", "conv_narrow_taps", "biased_activations",
                                  "pad_fused_into_depthwise", "first_conv_1ch",
                                  "first_conv_3ch", "pointwise_register_tiles",
                                  "depthwise_64ch_unpadded_paths"])
def test_worker_threads_give_the_same_bits(name, capfd):
    model, shape = converted(name)
    x = np.random.default_rng(3).uniform(-1.2, 1.2, shape).astype(np.float32)
    check_exact(model, x, capfd, "litert", threads=2)
