"""CONV_2D and DEPTHWISE_CONV_2D (Keras Conv2D with groups, Conv1D, DepthwiseConv2D,
SeparableConv2D).

Conv1D is a CONV_2D over a height-1 image between two RESHAPEs ('causal' padding: a PAD on
the left first), as TFLiteConverter lowers it; grouped Conv2D is a DEPTHWISE_CONV_2D when each group reads
one channel, else a SPLIT of the channels, one CONV_2D per group and a CONCATENATION (TFLite's
int8 CONV_2D kernels do not all take groups).

TRANSPOSE_CONV (Keras Conv2DTranspose) keeps TFLite's operand order:
output shape (int32, computed at run time for a dynamic batch), weights [out, kh, kw, in], data,
bias (a zero bias is added when the file has none)."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops import weights
from tfquant.errors import ModelLoadError
from tfquant.ops.record import DelegateCase, OpRecord, QuantRule


@dataclasses.dataclass(frozen=True)
class Conv2DOptions:
    padding: str
    stride: tuple
    dilation: tuple = (1, 1)
    fused_activation: str = "NONE"


@dataclasses.dataclass(frozen=True)
class DepthwiseConv2DOptions:
    padding: str
    stride: tuple
    depth_multiplier: int
    dilation: tuple = (1, 1)
    fused_activation: str = "NONE"


# -- weights ----------------------------------------------------------------------------------

class ConvWeights(weights.WeightLayout):
    """CONV_2D: [out, kh, kw, in]; Keras [kh, kw, in, out]."""

    qat_kind = "conv2d"
    int4_packing = "portable"

    def mean_shift(self, error, input_mean, options):
        return (error.sum(axis=(1, 2)) * input_mean[None, :]).sum(axis=1)

    def to_keras(self, w, options):
        return w.transpose(1, 2, 3, 0)

    def from_keras(self, kernel):
        return kernel.transpose(3, 0, 1, 2)

    def qat_layer_arguments(self, w, options):
        return dict(filters=w.shape[0], kernel_size=w.shape[1:3], strides=options.stride,
                    padding=options.padding.lower(), dilation_rate=options.dilation)

    def options_from_qat_layer(self, layer, kernel):
        return Conv2DOptions(layer.padding, tuple(layer.strides), tuple(layer.dilation_rate))

    def columns(self, x, w_shape, options, count, rng):
        if x.ndim != 4 or x.shape[-1] != w_shape[3]:
            return None
        patches = weights.sampled_patches(x, w_shape[1:3], options, count, rng)
        return patches.reshape(len(patches), -1)


class DepthwiseWeights(weights.WeightLayout):
    """DEPTHWISE_CONV_2D: [1, kh, kw, in * multiplier] (channel c reads input c // multiplier);
    Keras [kh, kw, in, multiplier]."""

    output_axis = 3
    qat_kind = "depthwise_conv2d"
    # XNNPACK-era kernels disagree with the reference on INT4 depthwise weights.
    int4_packing = None
    # Hybrid depthwise reads one scale per channel on every runtime.
    hybrid_per_channel = True

    def output_channel_range(self, w):
        return np.abs(w).max(axis=(0, 1, 2))

    def scale_output_channels(self, w, factor):
        return w * factor.reshape(1, 1, 1, -1)

    def mean_shift(self, error, input_mean, options):
        return error.sum(axis=(0, 1, 2)) * np.repeat(input_mean, options.depth_multiplier)

    def to_keras(self, w, options):
        kh, kw, channels = w.shape[1:]
        multiplier = options.depth_multiplier
        return w.reshape(kh, kw, channels // multiplier, multiplier)

    def from_keras(self, kernel):
        kh, kw, cin, multiplier = kernel.shape
        return kernel.reshape(1, kh, kw, cin * multiplier)

    def qat_layer_arguments(self, w, options):
        return dict(filters=options.depth_multiplier, kernel_size=w.shape[1:3],
                    strides=options.stride, padding=options.padding.lower(),
                    dilation_rate=options.dilation)

    def options_from_qat_layer(self, layer, kernel):
        return DepthwiseConv2DOptions(layer.padding, tuple(layer.strides), int(kernel.shape[3]),
                                      tuple(layer.dilation_rate))

    def rows(self, w):
        return w.reshape(-1, w.shape[3]).T  # [channels, kh * kw]

    def from_rows(self, rows, shape):
        return rows.T.reshape(shape)

    def columns(self, x, w_shape, options, count, rng):
        if x.ndim != 4 or x.shape[-1] * options.depth_multiplier != w_shape[3]:
            return None
        patches = weights.sampled_patches(x, w_shape[1:3], options, count, rng)
        return patches.reshape(len(patches), -1, x.shape[-1])

    def row_groups(self, w_shape, options):
        return np.arange(w_shape[3]) // options.depth_multiplier


class TransposeConvWeights(ConvWeights):
    """TRANSPOSE_CONV: the output shape is input 0, the data input 2, the bias input 3;
    weights [out, kh, kw, in] as CONV_2D's; Keras Conv2DTranspose [kh, kw, out, in]. The
    per-channel mean shift of a weight error depends on each output pixel's taps: bias
    correction leaves it alone. QAT trains it as FoldedBatchNorm("conv2d_transpose"), which
    computes the output shape itself."""

    data_input = 2
    bias_input = 3
    qat_kind = "conv2d_transpose"
    qat_computed_inputs = (0,)
    int4_packing = None
    # tflite-runtime 2.14 has no hybrid TRANSPOSE_CONV: weight-only models keep it float.
    hybrid = False

    def qat_layer_arguments(self, w, options):
        return dict(filters=w.shape[0], kernel_size=w.shape[1:3], strides=options.stride,
                    padding=options.padding.lower())

    def options_from_qat_layer(self, layer, kernel):
        return TransposeConvOptions(layer.padding, tuple(layer.strides))

    def op_inputs(self, b, name, x, w, bias, out_shape):
        return [_output_shape(b, name, x, out_shape), w, x, bias]

    def mean_shift(self, error, input_mean, options):
        return None

    def columns(self, x, w_shape, options, count, rng):
        return None  # each output pixel reads its own taps: no reconstruction

    def to_keras(self, w, options):
        return w.transpose(1, 2, 0, 3)

    def from_keras(self, kernel):
        return kernel.transpose(2, 0, 1, 3)


CONV_WEIGHTS = ConvWeights()
TRANSPOSE_CONV_WEIGHTS = TransposeConvWeights()
DEPTHWISE_WEIGHTS = DepthwiseWeights()


# -- Keras ------------------------------------------------------------------------------------

def _emit_conv(b, layer, x, kernel, bias, options, out_shape, name, weights_name=None):
    weights_name = weights_name or name
    w = b.const(f"{weights_name}/kernel", CONV_WEIGHTS.from_keras(kernel))
    bias_name = b.const(f"{weights_name}/bias", bias)
    return b.op("CONV_2D", [x, w, bias_name], out_shape, name, layer, options)


def _conv2d(b, layer, inputs, out_shape):
    kernel = ks.value(layer.kernel)  # [kh, kw, in / groups, out]
    bias = ks.bias_or_zeros(layer, kernel.shape[-1])
    options = Conv2DOptions(ks.padding(layer), ks.pair(layer.strides),
                            ks.pair(layer.dilation_rate))
    name = ks.pre_activation_name(layer, "conv")
    groups = int(getattr(layer, "groups", 1))
    if groups == 1:
        y = _emit_conv(b, layer, inputs[0], kernel, bias, options, out_shape, name,
                       layer.name)
    elif kernel.shape[2] == 1:  # one input channel per group: a depthwise conv (ConvNeXt)
        kh, kw, _, filters = kernel.shape
        y = _emit_depthwise(b, layer, inputs[0],
                            kernel.reshape(kh, kw, groups, filters // groups), bias,
                            out_shape, name)
    else:
        y = _grouped(b, layer, inputs[0], kernel, bias, options, out_shape, name, groups)
    return b.act(layer, y, out_shape, layer.activation, layer.name)


def _grouped(b, layer, x, kernel, bias, options, out_shape, name, groups):
    from tfquant.ops.shape import ConcatenationOptions
    from tfquant.ops.split_join import SplitOptions
    in_shape = b.graph.tensors[x].shape
    part_in, part_out = in_shape[-1] // groups, kernel.shape[-1] // groups
    axis = b.const(f"{name}/split_axis", np.array(3, np.int32), np.int32)
    parts = [b.graph.add_tensor(f"{name}/group{g}_in", in_shape[:-1] + (part_in,))
             for g in range(groups)]
    b.graph.add_op("SPLIT", [axis, x], parts, SplitOptions(groups), source=(layer.name,))
    outs = [_emit_conv(b, layer, part, kernel[..., g * part_out:(g + 1) * part_out],
                       bias[g * part_out:(g + 1) * part_out], options,
                       out_shape[:-1] + (part_out,), f"{name}/group{g}")
            for g, part in enumerate(parts)]
    return b.op("CONCATENATION", outs, out_shape, name, layer, ConcatenationOptions(3))


def _conv1d(b, layer, inputs, out_shape):
    in_shape = b.graph.tensors[inputs[0]].shape  # [batch, steps, channels]
    if int(getattr(layer, "groups", 1)) != 1:
        raise ks.Unsupported(f"Conv1D groups={layer.groups}")
    if -1 in in_shape[1:] or -1 in out_shape[1:]:
        raise ks.Unsupported("Conv1D on sequences of unknown length")
    kernel = ks.value(layer.kernel)[None]  # [1, k, in, out]
    padding = str(layer.padding).lower()
    x = b.op("RESHAPE", [inputs[0], b.const(f"{layer.name}/to_2d", np.array(
        (-1, 1) + tuple(in_shape[1:]), np.int32), np.int32)], (-1, 1) + tuple(in_shape[1:]),
        f"{layer.name}/to_2d", layer)
    if padding == "causal":
        left = (kernel.shape[1] - 1) * int(ks.pair(layer.dilation_rate)[0])
        pads = b.const(f"{layer.name}/causal_pad",
                       np.array([[0, 0], [0, 0], [left, 0], [0, 0]], np.int32), np.int32)
        x = b.op("PAD", [x, pads], (-1, 1, in_shape[1] + left, in_shape[2]),
                 f"{layer.name}/causal_pad", layer)
        padding = "valid"
    if padding not in ("same", "valid"):
        raise ks.Unsupported(f"Conv1D padding={layer.padding}")
    options = Conv2DOptions(padding.upper(), (1, int(ks.pair(layer.strides)[0])),
                            (1, int(ks.pair(layer.dilation_rate)[0])))
    wide = (-1, 1) + tuple(out_shape[1:])
    y = _emit_conv(b, layer, x, kernel, ks.bias_or_zeros(layer, kernel.shape[-1]), options,
                   wide, f"{layer.name}/conv")
    y = b.act(layer, y, wide, layer.activation, f"{layer.name}/act")
    return b.op("RESHAPE", [y, b.const(f"{layer.name}/to_1d", np.array(out_shape, np.int32),
                                       np.int32)], out_shape, layer.name, layer)


def _depthwise_kernel(layer) -> np.ndarray:
    variable = getattr(layer, "depthwise_kernel", None)
    return ks.value(variable if variable is not None else layer.kernel)


def _emit_depthwise(b, layer, x, kernel, bias, out_shape, name):
    options = DepthwiseConv2DOptions(ks.padding(layer), ks.pair(layer.strides),
                                     int(kernel.shape[3]), ks.pair(layer.dilation_rate))
    w = b.const(f"{name}/depthwise_kernel", DEPTHWISE_WEIGHTS.from_keras(kernel))
    bias_name = b.const(f"{name}/bias", bias)
    return b.op("DEPTHWISE_CONV_2D", [x, w, bias_name], out_shape, name, layer, options)


def _depthwise_conv2d(b, layer, inputs, out_shape):
    kernel = _depthwise_kernel(layer)
    bias = ks.bias_or_zeros(layer, kernel.shape[2] * kernel.shape[3])
    y = _emit_depthwise(b, layer, inputs[0], kernel, bias, out_shape,
                        ks.pre_activation_name(layer, "dw"))
    return b.act(layer, y, out_shape, layer.activation, layer.name)


def _separable_conv2d(b, layer, inputs, out_shape):
    kernel = _depthwise_kernel(layer)
    kh, kw, cin, mult = kernel.shape
    mid = _emit_depthwise(b, layer, inputs[0], kernel, np.zeros(cin * mult, np.float32),
                          out_shape[:-1] + (cin * mult,), f"{layer.name}/depthwise")
    pointwise = ks.value(layer.pointwise_kernel)  # [1, 1, cin*mult, out]
    bias = ks.bias_or_zeros(layer, pointwise.shape[-1])
    w = b.const(f"{layer.name}/pointwise_kernel", CONV_WEIGHTS.from_keras(pointwise))
    bias_name = b.const(f"{layer.name}/bias", bias)
    y = b.op("CONV_2D", [mid, w, bias_name], out_shape, ks.pre_activation_name(layer, "pw"),
             layer, Conv2DOptions("VALID", (1, 1), (1, 1)))
    return b.act(layer, y, out_shape, layer.activation, layer.name)


# -- TFLite -----------------------------------------------------------------------------------

def _read_conv(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.Conv2DOptionsT, label)
    new_inputs = ts.weighted(imp, inputs, outputs, label, 4, 0)
    return "CONV_2D", new_inputs, Conv2DOptions(
        ts.padding(o, label), ts.positive((o.strideH, o.strideW), "stride", label),
        ts.positive((o.dilationHFactor, o.dilationWFactor), "dilation", label),
        ts.activation(o))


def _read_depthwise(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.DepthwiseConv2DOptionsT, label)
    new_inputs = ts.weighted(imp, inputs, outputs, label, 4, 3)
    shape = imp.graph.tensors[inputs[1]].shape
    in_channels = imp.graph.tensors[inputs[0]].shape[-1:]
    multiplier = int(o.depthMultiplier)
    if in_channels and in_channels[0] > 0 and shape[3] % in_channels[0] == 0:
        multiplier = shape[3] // in_channels[0]  # what the kernels use
    if shape[0] != 1 or multiplier < 1:
        raise ts.ModelLoadError(f"{label}: depthwise weights of shape {shape} do not fit the "
                                "input")
    return "DEPTHWISE_CONV_2D", new_inputs, DepthwiseConv2DOptions(
        ts.padding(o, label), ts.positive((o.strideH, o.strideW), "stride", label),
        multiplier, ts.positive((o.dilationHFactor, o.dilationWFactor), "dilation", label),
        ts.activation(o))


def _write_conv(options):
    o = schema.Conv2DOptionsT()
    o.padding = common.padding_code(options.padding)
    o.strideH, o.strideW = options.stride
    o.dilationHFactor, o.dilationWFactor = options.dilation
    o.fusedActivationFunction = common.activation_code(options)
    return schema.BuiltinOptions.Conv2DOptions, o


def _write_depthwise(options):
    o = schema.DepthwiseConv2DOptionsT()
    o.padding = common.padding_code(options.padding)
    o.strideH, o.strideW = options.stride
    o.dilationHFactor, o.dilationWFactor = options.dilation
    o.depthMultiplier = options.depth_multiplier
    o.fusedActivationFunction = common.activation_code(options)
    return schema.BuiltinOptions.DepthwiseConv2DOptions, o


def _conv_version(t) -> int:
    if t.input == common.INT16:
        return 4
    if t.hybrid:
        return 5 if t.per_channel_weights else 2
    return 3 if t.input == common.INT8 else 1


def _depthwise_version(t) -> int:
    if t.input == common.INT16:
        return 5
    if t.hybrid:
        return 6 if t.per_channel_weights else 4
    if t.input == common.INT8:
        return 3
    return 2 if tuple(t.options.dilation) != (1, 1) else 1


CONV_2D = OpRecord(
    name="CONV_2D", options=Conv2DOptions, write=_write_conv, read=_read_conv,
    version=_conv_version, quant=QuantRule(bias_input=2, fused_activation=True),
    weights=CONV_WEIGHTS,
    keras={"Conv2D": _conv2d, "Conv1D": _conv1d, "SeparableConv2D": _separable_conv2d},
    qat=weights.render_folded,
    delegate=(
        DelegateCase("conv_same_stride2_relu", delegate_models.conv_same_stride2_relu,
                     threads=True),
        DelegateCase("conv_valid_dilated_relu6", delegate_models.conv_valid_dilated_relu6),
        DelegateCase("conv_1x1_stride2_65_channels",
                     delegate_models.conv_1x1_stride2_65_channels),
        DelegateCase("conv_5x5_same_dilated", delegate_models.conv_5x5_same_dilated),
        DelegateCase("conv_narrow_taps", delegate_models.conv_narrow_taps, threads=True),
        DelegateCase("pointwise_register_tiles", delegate_models.pointwise_register_tiles,
                     threads=True),
        DelegateCase("biased_activations", delegate_models.biased_activations, threads=True),
        DelegateCase("first_conv_1ch", delegate_models.first_conv(1), threads=True),
        DelegateCase("first_conv_2ch", delegate_models.first_conv(2)),
        DelegateCase("first_conv_3ch", delegate_models.first_conv(3), threads=True),
        DelegateCase("first_conv_4ch", delegate_models.first_conv(4)),
    ))

DEPTHWISE_CONV_2D = OpRecord(
    name="DEPTHWISE_CONV_2D", options=DepthwiseConv2DOptions, write=_write_depthwise,
    read=_read_depthwise, version=_depthwise_version,
    quant=QuantRule(bias_input=2, fused_activation=True), weights=DEPTHWISE_WEIGHTS,
    keras={"DepthwiseConv2D": _depthwise_conv2d}, qat=weights.render_folded,
    delegate=(
        DelegateCase("depthwise_multiplier3_stride2",
                     delegate_models.depthwise_multiplier3_stride2),
        DelegateCase("depthwise_dilated_valid_40ch",
                     delegate_models.depthwise_dilated_valid_40ch),
        DelegateCase("depthwise_64ch_unpadded_paths",
                     delegate_models.depthwise_64ch_unpadded_paths, threads=True),
        DelegateCase("pad_fused_into_depthwise", delegate_models.pad_fused_into_depthwise,
                     threads=True),
    ))



@dataclasses.dataclass(frozen=True)
class TransposeConvOptions:
    padding: str
    stride: tuple


def _read_transpose_conv(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.TransposeConvOptionsT, label)
    if len(inputs) not in (3, 4):
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")
    if ts.activation(o) != "NONE":
        raise ts.KeepFloat("a fused activation")
    shape = imp.graph.tensors[inputs[0]]
    if shape.dtype != np.int32:
        raise ModelLoadError(f"{label}: its output shape is not int32")
    ts.activation_input(imp, inputs[2], label)
    weights = ts.const(imp, inputs[1], 4, "weights", label)
    channels = weights.shape[0]
    if len(inputs) == 4 and inputs[3]:
        bias = ts.const(imp, inputs[3], None, "bias", label)
        if bias.data.size != channels:
            raise ModelLoadError(f"{label}: bias has {bias.data.size} values for {channels} "
                                 "output channels")
        bias_name = inputs[3]
    else:
        bias_name = imp.graph.add_const(f"{outputs[0]}/bias", np.zeros(channels, np.float32))
    return "TRANSPOSE_CONV", [inputs[0], inputs[1], inputs[2], bias_name], TransposeConvOptions(
        ts.padding(o, label), ts.positive((o.strideH, o.strideW), "stride", label))


def _write_transpose_conv(options):
    o = schema.TransposeConvOptionsT()
    o.padding = common.padding_code(options.padding)
    o.strideH, o.strideW = options.stride
    return schema.BuiltinOptions.TransposeConvOptions, o


def _output_shape(b, name, x, out_shape) -> str:
    """TRANSPOSE_CONV's output-shape input: a constant for a fixed batch, else SHAPE of the
    input, STRIDED_SLICE of its batch and PACK with the output's sizes, as TFLiteConverter
    lowers it."""
    i32 = np.int32
    if out_shape[0] > 0:
        return b.const(f"{name}/output_shape", np.array(out_shape, i32), i32)
    from tfquant.ops.data_movement import StridedSliceOptions
    from tfquant.ops.shape import ShapeOptions
    from tfquant.ops.split_join import StackOptions
    g = b.graph
    dims = g.add_tensor(f"{name}/input_shape", (4,), i32)
    g.add_op("SHAPE", [x], [dims], ShapeOptions(), source=(name,))
    batch = g.add_tensor(f"{name}/batch", (), i32)
    ends = [b.const(f"{name}/batch_{part}", np.array([v], i32), i32)
            for part, v in (("begin", 0), ("end", 1), ("stride", 1))]
    # Integer shape arithmetic is carried as it is (keep_float), as the lowered route's.
    g.add_op("STRIDED_SLICE", [dims] + ends, [batch], StridedSliceOptions(shrink_axis_mask=1),
             source=(name,), keep_float=True)
    sizes = [b.const(f"{name}/output_{axis}", np.array(v, i32), i32)
             for axis, v in zip(("height", "width", "channels"), out_shape[1:])]
    shape = g.add_tensor(f"{name}/output_shape", (4,), i32)
    g.add_op("PACK", [batch] + sizes, [shape], StackOptions(4, 0), source=(name,),
             keep_float=True)
    return shape


def _conv2d_transpose(b, layer, inputs, out_shape):
    """Keras Conv2DTranspose as TFLiteConverter lowers it: the output shape is built at run
    time (SHAPE, STRIDED_SLICE of the batch, PACK) unless the batch is fixed."""
    if tuple(ks.pair(layer.dilation_rate)) != (1, 1):
        raise ks.Unsupported(f"Conv2DTranspose dilation_rate={layer.dilation_rate}")
    if getattr(layer, "output_padding", None) is not None:
        raise ks.Unsupported(f"Conv2DTranspose output_padding={layer.output_padding}")
    if -1 in out_shape[1:]:
        raise ks.Unsupported("Conv2DTranspose on images of unknown size")
    shape = _output_shape(b, layer.name, inputs[0], out_shape)
    kernel = ks.value(layer.kernel)  # [kh, kw, out, in]
    w = b.const(f"{layer.name}/kernel", TRANSPOSE_CONV_WEIGHTS.from_keras(kernel))
    bias = b.const(f"{layer.name}/bias", ks.bias_or_zeros(layer, kernel.shape[2]))
    y = b.op("TRANSPOSE_CONV", [shape, w, inputs[0], bias], out_shape,
             ks.pre_activation_name(layer, "conv"), layer,
             TransposeConvOptions(ks.padding(layer), ks.pair(layer.strides)))
    return b.act(layer, y, out_shape, layer.activation, layer.name)


def _transpose_conv_version(t) -> int:
    """3 with a bias (always, in tfquant's graphs), 5 for int16 activations."""
    return 5 if t.input == common.INT16 else 3


def _transpose_conv_model():
    from tfquant import ir
    rng = np.random.default_rng(13)
    g = ir.Graph()
    x = g.add_tensor("x", (-1, 5, 5, 4))
    g.inputs = [x]
    shape = g.add_const("output_shape", np.array([2, 10, 10, 3], np.int32), np.int32)
    w = g.add_const("w", rng.uniform(-0.5, 0.5, (3, 3, 3, 4)).astype(np.float32))
    b = g.add_const("b", rng.uniform(-0.1, 0.1, 3).astype(np.float32))
    y = g.add_tensor("y", (-1, 10, 10, 3))
    g.add_op("TRANSPOSE_CONV", [shape, w, x, b], [y], TransposeConvOptions("SAME", (2, 2)))
    g.outputs = [y]
    return g, (2, 5, 5, 4), {}


# Weights int8 symmetric per channel (axis 0), bias int32, as TFLiteConverter; no fused
# activation (a later version).
TRANSPOSE_CONV = OpRecord(
    name="TRANSPOSE_CONV", options=TransposeConvOptions, write=_write_transpose_conv,
    read=_read_transpose_conv, version=_transpose_conv_version,
    quant=QuantRule(bias_input=3, int_inputs=(0,), int16=False),
    weights=TRANSPOSE_CONV_WEIGHTS,
    keras={"Conv2DTranspose": _conv2d_transpose},
    qat=weights.render_folded,
    delegate=(DelegateCase("transpose_conv_on_cpu", _transpose_conv_model, claimed=False),))

RECORDS = (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV)
