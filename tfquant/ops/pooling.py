"""MAX_POOL_2D, AVERAGE_POOL_2D and the reductions MEAN, SUM, REDUCE_MAX / MIN (Keras
Max/AveragePooling1D/2D, GlobalAverage/MaxPooling1D/2D). MEAN and SUM take their own
output params; REDUCE_MAX / MIN keep their input's (TF 2.21's TFLiteConverter, measured)."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError
from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QatCompute, QuantRule


@dataclasses.dataclass(frozen=True)
class Pool2DOptions:
    padding: str
    stride: tuple
    filter: tuple
    fused_activation: str = "NONE"


@dataclasses.dataclass(frozen=True)
class ReducerOptions:
    keep_dims: bool = False


def _keras_pool(op_type):
    def convert(b, layer, inputs, out_shape):
        options = Pool2DOptions(ks.padding(layer), ks.pair(layer.strides),
                                ks.pair(layer.pool_size))
        return b.op(op_type, inputs, out_shape, layer.name, layer, options)
    return convert


def _keras_pool1d(op_type):
    """MaxPooling1D / AveragePooling1D: the 2-D pool over a height-1 image between RESHAPEs."""
    def convert(b, layer, inputs, out_shape):
        in_shape = b.graph.tensors[inputs[0]].shape
        if -1 in in_shape[1:] or -1 in out_shape[1:]:
            raise ks.Unsupported(f"{type(layer).__name__} on sequences of unknown length")
        wide_in, wide_out = (-1, 1) + tuple(in_shape[1:]), (-1, 1) + tuple(out_shape[1:])
        shape = b.const(f"{layer.name}/to_2d", np.array(wide_in, np.int32), np.int32)
        x = b.op("RESHAPE", [inputs[0], shape], wide_in, f"{layer.name}/to_2d", layer)
        options = Pool2DOptions(ks.padding(layer), (1, int(ks.pair(layer.strides)[0])),
                                (1, int(ks.pair(layer.pool_size)[0])))
        y = b.op(op_type, [x], wide_out, f"{layer.name}/pool", layer, options)
        shape = b.const(f"{layer.name}/to_1d", np.array(out_shape, np.int32), np.int32)
        return b.op("RESHAPE", [y, shape], out_shape, layer.name, layer)
    return convert


def _global_pool(op_type, axes):
    def convert(b, layer, inputs, out_shape):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ks.Unsupported(f"{type(layer).__name__} data_format={layer.data_format}")
        constant = b.const(f"{layer.name}/axes", np.array(axes, np.int32), np.int32)
        return b.op(op_type, [inputs[0], constant], out_shape, layer.name, layer,
                    ReducerOptions(len(out_shape) == len(axes) + 2))
    return convert


def _read_pool(op_type):
    def read(imp, inputs, outputs, options, label):
        o = ts.require(options, schema.Pool2DOptionsT, label)
        ts.unary(imp, inputs, label)
        return op_type, list(inputs), Pool2DOptions(
            ts.padding(o, label), ts.positive((o.strideH, o.strideW), "stride", label),
            ts.positive((o.filterHeight, o.filterWidth), "filter", label), ts.activation(o))
    return read


def _read_reducer(op_type):
    def read(imp, inputs, outputs, options, label):
        o = ts.require(options, schema.ReducerOptionsT, label)
        if len(inputs) != 2:
            raise ModelLoadError(f"{label} has {len(inputs)} inputs")
        ts.activation_input(imp, inputs[0], label)
        ts.constant_int32(imp, inputs[1], "axes are not a constant int32 tensor")
        return op_type, list(inputs), ReducerOptions(bool(o.keepDims))
    return read


def _write_pool(options):
    o = schema.Pool2DOptionsT()
    o.padding = common.padding_code(options.padding)
    o.strideH, o.strideW = options.stride
    o.filterHeight, o.filterWidth = options.filter
    o.fusedActivationFunction = common.activation_code(options)
    return schema.BuiltinOptions.Pool2DOptions, o


def _write_mean(options):
    o = schema.ReducerOptionsT()
    o.keepDims = bool(options.keep_dims)
    return schema.BuiltinOptions.ReducerOptions, o


def _render_pool(layer_name):
    def render(r, op, x, name):
        o = op.options
        pool = getattr(r.keras.layers, layer_name)
        return pool(o.filter, o.stride, o.padding.lower(), name=name)(x[0])
    return render


def _render_mean(r, op, x, name):
    """GlobalAveragePooling2D where it is one, else an OpLayer (MEAN over any axes)."""
    axes = r.graph.tensors[op.inputs[1]].data
    if len(r.graph.tensors[op.inputs[0]].shape) != 4 or sorted(np.ravel(axes)) != [1, 2]:
        return r.op_layer(op, x, name)
    return r.keras.layers.GlobalAveragePooling2D(keepdims=op.options.keep_dims,
                                                 name=name)(x[0])


def _reduction(function_name):
    def compute(tf, operands, options):
        return getattr(tf, function_name)(operands[0], axis=operands[1],
                                          keepdims=options.keep_dims)
    return compute


_POOLS_CASE = (DelegateCase("pools", delegate_models.pools),)


def _pool_record(op_type, layer_name):
    return OpRecord(
        name=op_type, options=Pool2DOptions, write=_write_pool, read=_read_pool(op_type),
        version=common.version_by_type,
        quant=QuantRule(same_scale=True, fused_activation=True),
        weights=NotApplicable("no weights"),
        keras={layer_name: _keras_pool(op_type),
               layer_name.replace("2D", "1D"): _keras_pool1d(op_type)},
        qat=_render_pool(layer_name), delegate=_POOLS_CASE)


MAX_POOL_2D = _pool_record("MAX_POOL_2D", "MaxPooling2D")
AVERAGE_POOL_2D = _pool_record("AVERAGE_POOL_2D", "AveragePooling2D")

MEAN = OpRecord(
    name="MEAN", options=ReducerOptions, write=_write_mean, read=_read_reducer("MEAN"),
    version=common.version_by_type, quant=QuantRule(int_inputs=(1,)),
    weights=NotApplicable("no weights"),
    keras={"GlobalAveragePooling2D": _global_pool("MEAN", [1, 2]),
           "GlobalAveragePooling1D": _global_pool("MEAN", [1])}, qat=QatCompute(_reduction("reduce_mean"), _render_mean),
    delegate=(DelegateCase("mean_and_softmax", delegate_models.mean_and_softmax),))


def _reduction_case(op_type):
    def build():
        return delegate_models.after_conv_graph(
            op_type.lower(), op_type, ReducerOptions(False), [np.array([1, 2], np.int32)],
            out_shape=(4,))
    return (DelegateCase(f"{op_type.lower()}_on_cpu", build, claimed=False),)


# No int16 kernel for SUM on tflite-runtime 2.14: float in 16x8 models.
SUM = OpRecord(
    name="SUM", options=ReducerOptions, write=_write_mean, read=_read_reducer("SUM"),
    version=common.version_by_type, quant=QuantRule(int_inputs=(1,), int16=False),
    weights=NotApplicable("no weights"),
    keras=NotApplicable("no Keras layer becomes it alone (lowered models, .tflite files)"),
    qat=QatCompute(_reduction("reduce_sum")), delegate=_reduction_case("SUM"))

REDUCE_MAX = OpRecord(
    name="REDUCE_MAX", options=ReducerOptions, write=_write_mean,
    read=_read_reducer("REDUCE_MAX"), version=common.version_by_type,
    quant=QuantRule(same_scale=True, int_inputs=(1,), int16=False),
    weights=NotApplicable("no weights"),
    keras={"GlobalMaxPooling2D": _global_pool("REDUCE_MAX", [1, 2]),
           "GlobalMaxPooling1D": _global_pool("REDUCE_MAX", [1])},
    qat=QatCompute(_reduction("reduce_max")),
    delegate=_reduction_case("REDUCE_MAX"))

REDUCE_MIN = OpRecord(
    name="REDUCE_MIN", options=ReducerOptions, write=_write_mean,
    read=_read_reducer("REDUCE_MIN"), version=common.version_by_type,
    quant=QuantRule(same_scale=True, int_inputs=(1,), int16=False),
    weights=NotApplicable("no weights"),
    keras=NotApplicable("no Keras layer becomes it (lowered models, .tflite files)"),
    qat=QatCompute(_reduction("reduce_min")), delegate=_reduction_case("REDUCE_MIN"))

RECORDS = (MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, SUM, REDUCE_MAX, REDUCE_MIN)
