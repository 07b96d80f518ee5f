"""RESHAPE (Keras Flatten, Reshape; SQUEEZE and EXPAND_DIMS read as RESHAPE), PAD (Keras
ZeroPadding2D) and CONCATENATION (Keras Concatenate): data movement on one quantization
grid."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError
from tfquant.ops import common, delegate_models, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QatCompute, QuantRule
from tfquant.vocabulary import NoOptions



@dataclasses.dataclass(frozen=True)
class ConcatenationOptions:
    axis: int


# -- Keras ------------------------------------------------------------------------------------

def _reshape(b, layer, inputs, out_shape):
    new_shape = b.const(f"{layer.name}/shape", np.array(out_shape, np.int32), np.int32)
    return b.op("RESHAPE", [inputs[0], new_shape], out_shape, layer.name, layer)


def _zero_padding2d(b, layer, inputs, out_shape):
    (top, bottom), (left, right) = layer.padding
    paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
    pads = b.const(f"{layer.name}/paddings", paddings, np.int32)
    return b.op("PAD", [inputs[0], pads], out_shape, layer.name, layer)


def _concatenate(b, layer, inputs, out_shape):
    return b.op("CONCATENATION", inputs, out_shape, layer.name, layer,
                ConcatenationOptions(int(layer.axis) % len(out_shape)))


# -- TFLite -----------------------------------------------------------------------------------

def _read_reshape(keep_shape_input):
    """RESHAPE, SQUEEZE and EXPAND_DIMS: a RESHAPE to the output's static shape signature (a
    run-time computed shape input is replaced, as the Keras frontend writes it)."""
    def read(imp, inputs, outputs, options, label):
        if not inputs or not inputs[0]:
            raise ModelLoadError(f"{label} has no data input")
        ts.activation_input(imp, inputs[0], label)
        out_shape = imp.graph.tensors[outputs[0]].shape
        given = imp.graph.tensors[inputs[1]] if len(inputs) > 1 and inputs[1] else None
        if keep_shape_input and given is not None and given.is_const and \
                given.dtype == np.int32 and given.data.ndim == 1:
            return "RESHAPE", [inputs[0], inputs[1]], NoOptions()
        if keep_shape_input and given is not None and not given.is_const and \
                given.dtype == np.int32 and sum(d < 0 for d in out_shape) > 1:
            return "RESHAPE", [inputs[0], inputs[1]], NoOptions()  # a shape computed at run time
        if sum(d < 0 for d in out_shape) > 1:
            raise ts.KeepFloat("target shape has several unknown dimensions")
        shape = imp.graph.add_const(f"{outputs[0]}/shape", np.array(out_shape, np.int32),
                                    np.int32)
        return "RESHAPE", [inputs[0], shape], NoOptions()
    return read


def _read_pad(imp, inputs, outputs, options, label):
    ts.inputs_count(inputs, 2, label)
    ts.activation_input(imp, inputs[0], label)
    ts.constant_int32(imp, inputs[1], "paddings are not a constant int32 tensor")
    return "PAD", list(inputs), NoOptions()


def _read_concatenation(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.ConcatenationOptionsT, label)
    if ts.activation(o) != "NONE":
        raise ts.KeepFloat("fused activation on CONCATENATION")
    if not inputs or not all(inputs):
        raise ModelLoadError(f"{label} has no inputs")
    for name in inputs:
        ts.activation_input(imp, name, label)
    rank = len(imp.graph.tensors[outputs[0]].shape)
    if not -rank <= o.axis < rank:
        raise ModelLoadError(f"{label}: axis {o.axis} out of range for rank {rank}")
    return "CONCATENATION", list(inputs), ConcatenationOptions(int(o.axis) % rank)


def _write_concatenation(options):
    o = schema.ConcatenationOptionsT()
    o.axis = options.axis
    return schema.BuiltinOptions.ConcatenationOptions, o


# -- QAT --------------------------------------------------------------------------------------

def _render_reshape(r, op, x, name):
    """Keras Reshape where the batch stays the first dimension, else an OpLayer (attention
    folds the batch into the rows of its projections)."""
    before = r.graph.tensors[op.inputs[0]].shape[1:]
    after = r.graph.tensors[op.outputs[0]].shape[1:]
    if min(before + after, default=0) < 0 or np.prod(before) != np.prod(after):
        return r.op_layer(op, x, name)
    return r.keras.layers.Reshape(after, name=name)(x[0])


def _render_pad(r, op, x, name):
    pads = r.graph.tensors[op.inputs[1]].data
    return r.keras.layers.ZeroPadding2D((tuple(pads[1]), tuple(pads[2])), name=name)(x[0])


def _render_concatenation(r, op, x, name):
    return r.keras.layers.Concatenate(axis=op.options.axis, name=name)(x)


_PAD_RESHAPE_CONCAT = DelegateCase("pad_reshape_concat", delegate_models.pad_reshape_concat)

RESHAPE = OpRecord(
    name="RESHAPE", options=NoOptions, write=common.no_options, read=_read_reshape(True),
    version=common.version_one, quant=QuantRule(same_scale=True, int_inputs=(1,)),
    weights=NotApplicable("no weights"), keras={"Flatten": _reshape, "Reshape": _reshape},
    qat=QatCompute(lambda tf, operands, options: tf.reshape(*operands), _render_reshape),
    delegate=(_PAD_RESHAPE_CONCAT,))


def _read_as_reshape(name):
    return OpRecord(
        name=name, options=NoOptions, write=NotApplicable("read as RESHAPE"),
        read=_read_reshape(False), version=NotApplicable("read as RESHAPE"),
        quant=NotApplicable("read as RESHAPE"), weights=NotApplicable("no weights"),
        keras=NotApplicable("read as RESHAPE"), qat=NotApplicable("read as RESHAPE"),
        delegate=NotApplicable("read as RESHAPE"))


SQUEEZE = _read_as_reshape("SQUEEZE")
EXPAND_DIMS = _read_as_reshape("EXPAND_DIMS")

PAD = OpRecord(
    name="PAD", options=NoOptions,
    write=common.empty_options(schema.PadOptionsT, schema.BuiltinOptions.PadOptions),
    read=_read_pad, version=common.version_by_type,
    quant=QuantRule(same_scale=True, int_inputs=(1,)), weights=NotApplicable("no weights"),
    keras={"ZeroPadding2D": _zero_padding2d}, qat=_render_pad,
    commutes_with_channel_scaling=True,
    delegate=(_PAD_RESHAPE_CONCAT,
              DelegateCase("pad_fused_into_depthwise", delegate_models.pad_fused_into_depthwise,
                           threads=True)))

# The int8 kernels ignore CONCATENATION's fused-activation field: it never fuses.
CONCATENATION = OpRecord(
    name="CONCATENATION", options=ConcatenationOptions, write=_write_concatenation,
    read=_read_concatenation, version=common.version_by_type,
    quant=QuantRule(same_scale=True, same_scale_all_inputs=True),
    weights=NotApplicable("no weights"), keras={"Concatenate": _concatenate},
    qat=_render_concatenation,
    delegate=(_PAD_RESHAPE_CONCAT, DelegateCase("pools", delegate_models.pools)))



@dataclasses.dataclass(frozen=True)
class ShapeOptions:
    out_type: int = schema.TensorType.INT32


def _read_shape(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.ShapeOptionsT, label)
    ts.inputs_count(inputs, 1, label)
    if imp.graph.tensors[inputs[0]].dtype != np.float32:
        raise ts.KeepFloat(f"its input has type {imp.graph.tensors[inputs[0]].dtype}")
    return "SHAPE", list(inputs), ShapeOptions(int(o.outType))


# Reads only its input's shape: an int8 input needs no DEQUANTIZE (run-time output shapes of
# lowered TRANSPOSE_CONVs). Version 1 for every input type, as TFLiteConverter writes it.
SHAPE = OpRecord(
    name="SHAPE", options=ShapeOptions, read=_read_shape,
    write=ts.options_writer(schema.ShapeOptionsT, schema.BuiltinOptions.ShapeOptions,
                            (("out_type", "outType"),)),
    version=common.version_one, quant=QuantRule(), weights=NotApplicable("no weights"),
    keras=NotApplicable("no Keras layer becomes it alone (Conv2DTranspose's converter emits it "
                          "for the run-time output shape)"),
    qat=NotApplicable("QAT renders Keras models, which never hold it"),
    delegate=NotApplicable("its integer output is never the delegate's; covered by the "
                           "TRANSPOSE_CONV lowering tests"))



@dataclasses.dataclass(frozen=True)
class MirrorPadOptions:
    mode: int = schema.MirrorPadMode.REFLECT


def _read_mirror_pad(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.MirrorPadOptionsT, label)
    ts.inputs_count(inputs, 2, label)
    ts.activation_input(imp, inputs[0], label)
    ts.constant_int32(imp, inputs[1], "paddings are not a constant int32 tensor")
    return "MIRROR_PAD", list(inputs), MirrorPadOptions(int(o.mode))


def _mirror_pad_model():
    paddings = np.array([[0, 0], [2, 1], [1, 1], [0, 0]], np.int32)
    return delegate_models.after_conv_graph("mirror_pad", "MIRROR_PAD", MirrorPadOptions(),
                                            [paddings], out_shape=(9, 7, 4))


# Reflected borders copy codes: the input's params (basic-pitch's CQT front end).
MIRROR_PAD = OpRecord(
    name="MIRROR_PAD", options=MirrorPadOptions, read=_read_mirror_pad,
    write=ts.options_writer(schema.MirrorPadOptionsT, schema.BuiltinOptions.MirrorPadOptions,
                            (("mode", "mode"),)), version=common.version_by_type,
    quant=QuantRule(same_scale=True, int_inputs=(1,), int16=False),
    weights=NotApplicable("no weights"),
    keras=NotApplicable("no Keras layer becomes it (lowered models, .tflite files)"),
    qat=NotApplicable("QAT renders Keras models, which never hold it"),
    delegate=(DelegateCase("mirror_pad_on_cpu", _mirror_pad_model, claimed=False),))



def _read_fill(imp, inputs, outputs, options, label):
    ts.inputs_count(inputs, 2, label)
    if imp.graph.tensors[inputs[0]].dtype not in (np.int32, np.int64):
        raise ModelLoadError(f"{label}: its dims are not an integer tensor")
    value = imp.graph.tensors[inputs[1]]
    if not value.is_const or value.dtype != np.float32:
        raise ts.KeepFloat("its value is not a float constant")
    return "FILL", list(inputs), NoOptions()


def _fill_version(t) -> int:  # int8 is version 3, as TFLiteConverter writes it
    return 3 if t.output == common.INT8 else max(t.source_version, 1)


# An initial state (zeros of a run-time shape, unrolled LSTMs): the value is quantized on the
# output's grid (a same-scale op whose data input is a constant).
FILL = OpRecord(
    name="FILL", options=NoOptions, write=common.no_options, read=_read_fill,
    version=_fill_version, quant=QuantRule(same_scale=True, int_inputs=(0,), int16=False),
    weights=NotApplicable("no weights"),
    keras=NotApplicable("no Keras layer becomes it (lowered models, .tflite files)"),
    qat=NotApplicable("QAT renders Keras models, which never hold it"),
    delegate=NotApplicable("its output has no activation input to run the delegate on; "
                           "tests/test_lowered_ops.py runs it on every runtime"))

RECORDS = (RESHAPE, SQUEEZE, EXPAND_DIMS, PAD, CONCATENATION, SHAPE, MIRROR_PAD, FILL)
