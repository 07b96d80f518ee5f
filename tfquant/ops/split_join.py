"""Ops that move int8 codes without arithmetic, so their outputs share their data input's
params: SPLIT, SPLIT_V, UNPACK (several outputs), PACK (several inputs, one grid), GATHER
(Keras Embedding: a constant table read by integer indices), BROADCAST_TO, TILE (Keras
RepeatVector). Versions are those TF 2.21's TFLiteConverter writes for int8 (measured)."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError
from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QatCompute, QuantRule
from tfquant.vocabulary import NoOptions

_NO_WEIGHTS = NotApplicable("no weights")
_NO_QAT = NotApplicable("QAT of this op is the QAT issue's work; QAT keeps it float")
_I32 = np.int32


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    num_splits: int


@dataclasses.dataclass(frozen=True)
class StackOptions:
    count: int
    axis: int


@dataclasses.dataclass(frozen=True)
class GatherOptions:
    axis: int = 0
    batch_dims: int = 0


# -- Keras ------------------------------------------------------------------------------------

def _embedding(b, layer, inputs, out_shape):
    if b.graph.tensors[inputs[0]].dtype not in (np.int32, np.int64):
        raise ks.Unsupported("Embedding of a float input (cast it to int32 in the data)")
    if getattr(layer, "quantization_mode", None):
        return _keras_quantized_embedding(b, layer, inputs, out_shape)
    table = b.const(f"{layer.name}/embeddings", ks.value(layer.embeddings))
    return b.op("GATHER", [table, inputs[0]], out_shape, layer.name, layer, GatherOptions())


def _keras_quantized_embedding(b, layer, inputs, out_shape):
    """An Embedding Keras quantized (int8 / int4 codes, one scale and zero point per row): the
    codes stay in the file as an int8 table with per-row params, a DEQUANTIZE (computed once,
    its input being constant) gives the float table and a float GATHER reads it. Per-row
    scales fit no per-tensor int8 GATHER, so both ops stay float in every mode."""
    from tfquant.spec import QuantParams
    codes, scale, zero = ks.keras_quantized_table(layer)
    graph = b.graph
    table = graph.add_tensor(f"{layer.name}/embeddings_codes", codes.shape, np.int8, codes,
                             QuantParams(scale, zero, 0))
    floats = graph.add_tensor(f"{layer.name}/embeddings", codes.shape)
    graph.add_op("DEQUANTIZE", [table], [floats], source=(layer.name,), keep_float=True)
    out = graph.add_tensor(layer.name, out_shape)
    graph.add_op("GATHER", [floats, inputs[0]], [out], GatherOptions(), source=(layer.name,),
                 keep_float=True)
    return out


def _repeat_vector(b, layer, inputs, out_shape):
    x = inputs[0]
    features = out_shape[-1]
    expanded = b.op("RESHAPE", [x, b.const(f"{layer.name}/shape", np.array([-1, 1, features],
                                                                           _I32), _I32)],
                    (out_shape[0], 1, features), f"{layer.name}/expand", layer)
    multiples = b.const(f"{layer.name}/multiples", np.array([1, int(layer.n), 1], _I32), _I32)
    return b.op("TILE", [expanded, multiples], out_shape, layer.name, layer)


# -- TFLite -----------------------------------------------------------------------------------

def _ints(imp, inputs, indices, label):
    for i in indices:
        ts.constant_int32(imp, inputs[i], f"input {i} is not a constant int32 tensor")


def _read_split(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.SplitOptionsT, label)
    ts.inputs_count(inputs, 2, label)
    _ints(imp, inputs, (0,), label)
    ts.activation_input(imp, inputs[1], label)
    return "SPLIT", list(inputs), SplitOptions(int(o.numSplits))


def _read_split_v(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.SplitVOptionsT, label)
    ts.inputs_count(inputs, 3, label)
    ts.activation_input(imp, inputs[0], label)
    _ints(imp, inputs, (1, 2), label)
    return "SPLIT_V", list(inputs), SplitOptions(int(o.numSplits))


def _read_unpack(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.UnpackOptionsT, label)
    ts.unary(imp, inputs, label)
    return "UNPACK", list(inputs), StackOptions(int(o.num), int(o.axis))


def _read_pack(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.PackOptionsT, label)
    if not inputs or not all(inputs):
        raise ModelLoadError(f"{label} has no inputs")
    for name in inputs:  # one grid for all: a constant would have to be re-gridded
        ts.activation_input(imp, name, label)
    return "PACK", list(inputs), StackOptions(int(o.valuesCount), int(o.axis))


def _read_gather(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.GatherOptionsT, label)
    ts.inputs_count(inputs, 2, label)
    params = imp.graph.tensors[inputs[0]]
    if params.dtype != np.float32:
        raise ts.KeepFloat(f"it gathers {params.dtype} values")
    if imp.graph.tensors[inputs[1]].dtype not in (np.int32, np.int64):
        raise ModelLoadError(f"{label}: indices must be int32 or int64")
    return "GATHER", list(inputs), GatherOptions(int(o.axis), int(o.batchDims))


def _read_broadcast(op_type, schema_class):
    def read(imp, inputs, outputs, options, label):
        if schema_class is not None:
            ts.require(options, schema_class, label)
        ts.inputs_count(inputs, 2, label)
        ts.activation_input(imp, inputs[0], label)
        if imp.graph.tensors[inputs[1]].dtype not in (np.int32, np.int64):
            raise ModelLoadError(f"{label}: its shape input is not an integer tensor")
        return op_type, list(inputs), NoOptions()
    return read


def _write_split(schema_class, options_type):
    def write(options):
        o = schema_class()
        o.numSplits = int(options.num_splits)
        return options_type, o
    return write


def _write_stack(schema_class, options_type, count_field):
    def write(options):
        o = schema_class()
        setattr(o, count_field, int(options.count))
        o.axis = int(options.axis)
        return options_type, o
    return write


def _write_gather(options):
    o = schema.GatherOptionsT()
    o.axis, o.batchDims = int(options.axis), int(options.batch_dims)
    return schema.BuiltinOptions.GatherOptions, o


def _version_three_for_int8(lowest):
    """BROADCAST_TO (whose versions start at 2) and TILE: 3 for int8."""
    def version(t) -> int:
        return 3 if t.input == common.INT8 else max(t.source_version, lowest)
    return version


def _version_gather(t) -> int:
    return max(common.version_by_type(t), t.source_version)


# -- delegate ---------------------------------------------------------------------------------

def _case(op_type, options=None, constants=(), out_shape=None, **kwargs):
    def build():
        return delegate_models.after_conv_graph(op_type.lower(), op_type, options, constants,
                                                out_shape, **kwargs)
    return (DelegateCase(f"{op_type.lower()}_on_cpu", build, claimed=False),)


def _record(name, options, write, read, quant, delegate, keras=None,
            version=common.version_by_type, qat=None):
    return OpRecord(
        name=name, options=options, write=write, read=read, version=version, quant=quant,
        weights=_NO_WEIGHTS,
        keras=keras or NotApplicable("no Keras layer becomes it alone (it comes from .tflite "
                                     "files and lowered models)"),
        qat=qat or _NO_QAT, delegate=delegate)


SPLIT = _record(
    "SPLIT", SplitOptions, _write_split(schema.SplitOptionsT, schema.BuiltinOptions.SplitOptions),
    _read_split, QuantRule(same_scale=True, int_inputs=(0,), int16=False),
    _case("SPLIT", SplitOptions(2), [np.array(3, _I32)], out_shape=(6, 5, 2),
          constants_first=True, outputs=2),
    qat=QatCompute(lambda tf, operands, options: tf.split(
        operands[1], options.num_splits, axis=operands[0])))
SPLIT_V = _record(
    "SPLIT_V", SplitOptions,
    _write_split(schema.SplitVOptionsT, schema.BuiltinOptions.SplitVOptions), _read_split_v,
    QuantRule(same_scale=True, int_inputs=(1, 2), int16=False),
    _case("SPLIT_V", SplitOptions(2), [np.array([1, 3], _I32), np.array(3, _I32)],
          out_shape=[(6, 5, 1), (6, 5, 3)], outputs=2),
    qat=QatCompute(lambda tf, operands, options: tf.split(
        operands[0], operands[1], axis=operands[2])))
UNPACK = _record(
    "UNPACK", StackOptions,
    _write_stack(schema.UnpackOptionsT, schema.BuiltinOptions.UnpackOptions, "num"),
    _read_unpack, QuantRule(same_scale=True, int16=False),
    _case("UNPACK", StackOptions(6, 1), out_shape=(5, 4), outputs=6),
    qat=QatCompute(lambda tf, operands, options: tf.unstack(
        operands[0], options.count, axis=options.axis)))
PACK = _record(
    "PACK", StackOptions,
    _write_stack(schema.PackOptionsT, schema.BuiltinOptions.PackOptions, "valuesCount"),
    _read_pack, QuantRule(same_scale=True, same_scale_all_inputs=True, int16=False),
    _case("PACK", StackOptions(2, 1), out_shape=(2, 6, 5, 4), second_input=True),
    qat=QatCompute(lambda tf, operands, options: tf.stack(operands, axis=options.axis)))
GATHER = _record(
    "GATHER", GatherOptions, _write_gather, _read_gather,
    QuantRule(same_scale=True, int_inputs=(1,), int16=False),
    _case("GATHER", GatherOptions(1), [np.array([4, 0, 2], _I32)], out_shape=(6, 3, 5, 4)),
    keras={"Embedding": _embedding}, version=_version_gather,
    qat=lambda r, op, x, name: r.embedding(op, x, name))
BROADCAST_TO = _record(
    "BROADCAST_TO", NoOptions, common.no_options, _read_broadcast("BROADCAST_TO", None),
    QuantRule(same_scale=True, int_inputs=(1,), int16=False),
    _case("BROADCAST_TO", constants=[np.array([2, 2, 6, 5, 4], _I32)], out_shape=(2, 6, 5, 4)),
    version=_version_three_for_int8(2),
    qat=QatCompute(lambda tf, operands, options: tf.broadcast_to(*operands)))
TILE = _record(
    "TILE", NoOptions, common.empty_options(schema.TileOptionsT, schema.BuiltinOptions.TileOptions),
    _read_broadcast("TILE", schema.TileOptionsT),
    QuantRule(same_scale=True, int_inputs=(1,), int16=False),
    NotApplicable("TFLite's reference op resolver has no int8 TILE kernel to check the "
                  "delegate's CPU fallback against"),
    keras={"RepeatVector": _repeat_vector}, version=_version_three_for_int8(1),
    qat=QatCompute(lambda tf, operands, options: tf.tile(*operands)))

RECORDS = (SPLIT, SPLIT_V, UNPACK, PACK, GATHER, BROADCAST_TO, TILE)
