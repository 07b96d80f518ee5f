"""Small Keras models for the DSP delegate's bit-exactness tests, referenced by the op records
(OpRecord.delegate). Each returns (model, input shape with batch, Recipe keyword arguments);
the shapes are odd on purpose (tile remainders, borders, partial channel blocks)."""

from __future__ import annotations

import zlib

import numpy as np

from tfquant.vocabulary import NO_OPTIONS

INT8_IO = {"inference_input_type": "int8", "inference_output_type": "int8"}


def _keras(name):
    """Keras 3 with a seed derived from the case name (the same weights in every run)."""
    import keras
    keras.utils.set_random_seed(zlib.crc32(name.encode()) % 1000)
    return keras, keras.layers


def conv_same_stride2_relu():
    keras, L = _keras("conv_same_stride2_relu")
    x = keras.Input((13, 11, 5))
    y = L.Conv2D(7, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(x, y), (3, 13, 11, 5), INT8_IO


def conv_valid_dilated_relu6():
    keras, L = _keras("conv_valid_dilated_relu6")
    x = keras.Input((15, 12, 3))
    y = L.Conv2D(9, (3, 2), dilation_rate=2, padding="valid", activation="relu6")(x)
    return keras.Model(x, y), (2, 15, 12, 3), INT8_IO


def conv_1x1_stride2_65_channels():
    keras, L = _keras("conv_1x1_stride2_65_channels")
    x = keras.Input((9, 9, 6))
    y = L.Conv2D(65, 1, strides=2, use_bias=False)(x)
    return keras.Model(x, y), (1, 9, 9, 6), INT8_IO


def conv_5x5_same_dilated():
    keras, L = _keras("conv_5x5_same_dilated")
    x = keras.Input((10, 10, 4))
    y = L.Conv2D(5, 5, padding="same", dilation_rate=(2, 1))(x)
    return keras.Model(x, y), (2, 10, 10, 4), {}


def conv_narrow_taps():
    # One input channel: the 3x1 and 2x3 convs read their input lines in place (no im2col);
    # the strided 1x1 conv copies im2col rows of 1 byte 16 bytes at a time (the overrun must
    # stay inside the task's rows: checked with worker threads too).
    keras, L = _keras("conv_narrow_taps")
    x = keras.Input((30, 21, 1))
    y = L.Conv2D(16, (3, 1), padding="same", activation="relu")(x)
    z = L.Conv2D(8, (2, 3), strides=(1, 2))(x)
    w = L.Conv2D(8, 1, strides=(2, 1))(x)
    return keras.Model(x, [y, z, w]), (1, 30, 21, 1), INT8_IO


def pointwise_register_tiles():
    # Small-K pointwise convs requantized from the GEMM's registers: 77 rows (full 6-row tiles
    # and a remainder), a block pair and a single block, ReLU6 and no activation, channels not
    # a multiple of 32.
    keras, L = _keras("pointwise_register_tiles")
    x = keras.Input((7, 11, 16))
    y = L.Conv2D(96, 1, activation="relu6")(x)
    y = L.Conv2D(40, 1)(y)
    return keras.Model(x, y), (2, 7, 11, 16), INT8_IO


def biased_activations():
    # Tensors read only by convolutions travel biased (u8) inside the delegate: a depthwise
    # output read in place by a pointwise conv, a tensor read by three convs (im2col, strided
    # 1x1, 1x1 with channels not a multiple of 4), one read by a conv and an ADD (int8).
    keras, L = _keras("biased_activations")
    x = keras.Input((10, 9, 8))
    a = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    b = L.DepthwiseConv2D(3, padding="same")(a)
    c = L.Conv2D(6, 1, activation="relu6")(b)
    d = L.Conv2D(8, 3, strides=2, padding="same")(c)
    f = L.Conv2D(8, 1, strides=2)(c)
    g = L.Conv2D(5, 1)(c)
    y = L.Add()([d, L.Conv2D(8, 1)(d)])
    y = L.Concatenate()([y, f])
    return keras.Model(x, [y, g]), (2, 10, 9, 8), INT8_IO


def first_conv(channels: int):
    # 1-4 input channels: kernel rows read in place from the input lines (no im2col), the
    # MobileNet stem (3x3 stride 2 same, float input through QUANTIZE), a strided valid conv
    # with a partial second block of channels, a row-dilated one; odd sizes, batch 2.
    def build():
        keras, L = _keras(f"first_conv_{channels}ch")
        x = keras.Input((17, 15, channels))
        y = L.Conv2D(32, 3, strides=2, padding="same", activation="relu6")(x)
        y = L.Conv2D(8, 1)(y)
        z = L.Conv2D(40, (2, 3), strides=(1, 2), padding="valid")(x)
        w = L.Conv2D(7, (3, 2), padding="same", dilation_rate=(2, 1), activation="relu")(x)
        return (keras.Model(x, [y, z, w]), (2, 17, 15, channels),
                {} if channels == 3 else INT8_IO)
    return build


def depthwise_multiplier3_stride2():
    keras, L = _keras("depthwise_multiplier3_stride2")
    x = keras.Input((11, 9, 5))
    y = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3,
                          activation="relu")(x)
    return keras.Model(x, y), (2, 11, 9, 5), INT8_IO


def depthwise_dilated_valid_40ch():
    keras, L = _keras("depthwise_dilated_valid_40ch")
    x = keras.Input((12, 12, 40))
    y = L.DepthwiseConv2D((3, 2), dilation_rate=2, padding="valid", activation="relu6")(x)
    return keras.Model(x, y), (1, 12, 12, 40), INT8_IO


def depthwise_64ch_unpadded_paths():
    # Channels a multiple of 32 and multiplier 1: interior windows are read in place, border
    # windows copied (3x3 same, stride 2, dilated 5x3, valid 2x2; batch 2).
    keras, L = _keras("depthwise_64ch_unpadded_paths")
    x = keras.Input((9, 7, 64))
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, strides=2, padding="same")(y)
    y = L.DepthwiseConv2D((5, 3), padding="same", dilation_rate=(1, 2))(y)
    y = L.DepthwiseConv2D(2, padding="valid", activation="relu6")(y)
    return keras.Model(x, y), (2, 9, 7, 64), INT8_IO


def pad_fused_into_depthwise():
    # A PAD read only by a depthwise conv is fused into it (zero-point taps): MobileNet's
    # bottom/right pad before a valid stride-2 conv (64 channels: in place), an asymmetric pad
    # before a same-padded stride-1 conv (small image: padded copy), a pad before a 40-channel
    # conv; a pad read by two ops stays a PAD.
    keras, L = _keras("pad_fused_into_depthwise")
    x = keras.Input((11, 10, 64))
    y = L.DepthwiseConv2D(3, strides=2, activation="relu")(L.ZeroPadding2D(((0, 1), (0, 1)))(x))
    y = L.DepthwiseConv2D(3, padding="same")(L.ZeroPadding2D(((2, 1), (1, 3)))(y))
    y = L.Conv2D(40, 1)(y)
    y = L.DepthwiseConv2D(3, strides=(1, 2), activation="relu6")(L.ZeroPadding2D(1)(y))
    p = L.ZeroPadding2D(((1, 0), (0, 2)))(y)
    a = L.DepthwiseConv2D(2, strides=2)(p)
    b = L.Conv2D(8, 2, strides=2)(p)
    return keras.Model(x, [a, b]), (2, 11, 10, 64), INT8_IO


def dense(per_channel: bool, wide: bool):
    # Wide: the fixed-point and double requantizations differ on some outputs (measured: 2-6
    # per 10,000), so the per-runtime formula is really tested.
    def build():
        keras, L = _keras(f"dense_{'wide_' if wide else ''}{per_channel}")
        recipe = {**INT8_IO, "per_channel_dense": per_channel}
        if wide:
            x = keras.Input((64,))
            return keras.Model(x, L.Dense(500)(x)), (20, 64), recipe
        x = keras.Input((4, 5, 3))
        y = L.Flatten()(x)
        y = L.Dense(37, activation="relu")(y)
        y = L.Dense(10)(y)
        return keras.Model(x, y), (5, 4, 5, 3), recipe
    return build


def add_residual_and_batchnorm():
    keras, L = _keras("add_residual_and_batchnorm")
    x = keras.Input((8, 7, 6))
    a = L.Conv2D(6, 3, padding="same")(x)
    y = L.ReLU()(L.Add()([x, a]))
    b = L.Conv2D(4, 1)(y)
    y = L.Concatenate()([y, b])
    y = L.BatchNormalization()(y)  # after a concat: MUL + ADD with broadcast constants
    model = keras.Model(x, y)
    rng = np.random.default_rng(3)
    model.layers[-1].set_weights([rng.uniform(0.5, 1.5, 10), rng.normal(0, 0.2, 10),
                                  rng.normal(0, 0.2, 10), rng.uniform(0.5, 1.5, 10)])
    return model, (2, 8, 7, 6), {}


def pools():
    keras, L = _keras("pools")
    x = keras.Input((13, 10, 6))
    a = L.MaxPooling2D(3, strides=2, padding="same")(x)
    b = L.AveragePooling2D(3, strides=2, padding="same")(x)
    y = L.Concatenate()([a, b])
    y = L.AveragePooling2D(2, strides=1, padding="valid")(y)
    return keras.Model(x, y), (2, 13, 10, 6), INT8_IO


def mean_and_softmax():
    keras, L = _keras("mean_and_softmax")
    x = keras.Input((7, 9, 12))
    y = L.Conv2D(16, 3, activation="relu")(x)
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(11)(y)
    return keras.Model(x, L.Softmax()(y)), (4, 7, 9, 12), {}


def sigmoid_hard_swish():
    keras, L = _keras("sigmoid_hard_swish")
    x = keras.Input((6, 6, 8))
    y = L.Conv2D(8, 3, padding="same", activation="hard_swish")(x)
    y = L.Conv2D(5, 1, activation="sigmoid")(y)
    return keras.Model(x, y), (3, 6, 6, 8), INT8_IO


def pad_reshape_concat():
    keras, L = _keras("pad_reshape_concat")
    x = keras.Input((5, 6, 3))
    y = L.ZeroPadding2D(((1, 2), (0, 1)))(x)
    y = L.Conv2D(4, 3, strides=2)(y)
    f = L.Reshape((-1, 4))(y)
    g = L.Reshape((-1, 4))(L.Conv2D(4, 1)(y))
    y = L.Concatenate(axis=1)([f, g])
    return keras.Model(x, L.Flatten()(y)), (2, 5, 6, 3), INT8_IO


def unclaimed_activations():
    """Standalone RELU, RELU6, LEAKY_RELU and TANH (after a concatenation, so nothing fuses
    them): the delegate leaves them to the CPU."""
    keras, L = _keras("unclaimed_activations")
    x = keras.Input((6, 5, 4))
    c = L.Concatenate()([L.Conv2D(4, 3, padding="same")(x), x])
    outputs = [L.ReLU()(c), L.ReLU(6.0)(c), L.LeakyReLU(negative_slope=0.2)(c),
               L.Activation("tanh")(c)]
    return keras.Model(x, outputs), (2, 6, 5, 4), {}


def after_conv_graph(name, op_type, options=None, constants=(), out_shape=None,
                     in_shape=(6, 5, 4), batch=2, second_input=False, constants_first=False,
                     outputs=1):
    """A float IR graph x -> CONV_2D -> `op_type`(conv output, *constants) for ops no Keras
    layer produces (they come from .tflite files). `second_input`: the op also reads x (two
    activation operands); `constants_first`: the constants come before the data (SPLIT);
    `outputs` outputs, of `out_shape` (one shape, or one per output). Returns the delegate
    case tuple."""
    from tfquant import ir
    from tfquant.ops.conv import Conv2DOptions
    rng = np.random.default_rng(zlib.crc32(name.encode()) % 1000)
    channels = in_shape[-1]
    g = ir.Graph()
    x = g.add_tensor("x", (-1,) + tuple(in_shape))
    g.inputs = [x]
    w = g.add_const("w", rng.uniform(-0.5, 0.5, (channels, 3, 3, channels)).astype(np.float32))
    b = g.add_const("b", rng.uniform(-0.1, 0.1, channels).astype(np.float32))
    a = g.add_tensor("a", (-1,) + tuple(in_shape))
    g.add_op("CONV_2D", [x, w, b], [a], Conv2DOptions("SAME", (1, 1)))
    data = [a, x] if second_input else [a]
    const_names = [g.add_const(f"c{i}", np.asarray(c), np.asarray(c).dtype)
                   for i, c in enumerate(constants)]
    inputs = const_names + data if constants_first else data + const_names
    shapes = out_shape if isinstance(out_shape, list) else [out_shape or in_shape] * outputs
    ys = [g.add_tensor("y" if outputs == 1 else f"y{i}", (-1,) + tuple(s))
          for i, s in enumerate(shapes)]
    g.add_op(op_type, inputs, ys, options if options is not None else NO_OPTIONS)
    g.outputs = ys
    return g, (batch,) + tuple(in_shape), {}
