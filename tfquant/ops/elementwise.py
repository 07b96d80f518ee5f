"""Two-operand element-wise ops: ADD (Keras Add), SUB (Subtract), MUL (Multiply, Rescaling,
Normalization), and SQUARED_DIFFERENCE."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError
from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QatCompute, QuantRule
from tfquant.vocabulary import NoOptions


@dataclasses.dataclass(frozen=True)
class BinaryOptions:
    fused_activation: str = "NONE"


# -- Keras ------------------------------------------------------------------------------------

def _add(b, layer, inputs, out_shape):
    y = inputs[0]
    for i, other in enumerate(inputs[1:]):
        last = i == len(inputs) - 2
        y = b.op("ADD", [y, other], out_shape, layer.name if last else f"{layer.name}/{i}",
                 layer, BinaryOptions())
    return y


def _chain(op_type):
    """Keras Multiply / Subtract of two (Multiply: or more) inputs."""
    def convert(b, layer, inputs, out_shape):
        if op_type == "SUB" and len(inputs) != 2:
            raise ks.Unsupported(f"Subtract of {len(inputs)} inputs")
        y = inputs[0]
        for i, other in enumerate(inputs[1:]):
            last = i == len(inputs) - 2
            y = b.op(op_type, [y, other], out_shape, layer.name if last else
                     f"{layer.name}/{i}", layer, BinaryOptions())
        return y
    return convert


def _channel_constant(values, rank: int) -> np.ndarray:
    """A Keras broadcast constant as a 1-D per-channel vector when it is one."""
    values = np.asarray(values, np.float32)
    if values.ndim > 1 and all(d == 1 for d in values.shape[:-1]):
        return values.reshape(-1)
    return values


def _normalization(b, layer, inputs, out_shape):
    """(x - mean) / max(sqrt(variance), epsilon) (or its inverse) as one MUL and one ADD."""
    axis = getattr(layer, "axis", (-1,))
    axis = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    if tuple(a % len(out_shape) for a in axis) != (len(out_shape) - 1,):
        raise ks.Unsupported(f"Normalization axis={layer.axis} (only the channel axis)")
    mean = _channel_constant(ks.value(layer.mean), len(out_shape))
    std = np.maximum(np.sqrt(_channel_constant(ks.value(layer.variance), len(out_shape))),
                     np.float32(1e-7))
    if getattr(layer, "invert", False):
        scale, offset = std, mean
    else:
        scale, offset = 1.0 / std, -mean / std
    return _scale_and_offset(b, layer, inputs[0], out_shape, scale.astype(np.float32),
                             offset.astype(np.float32))


def _layer_scale(b, layer, inputs, out_shape):
    """keras.applications ConvNeXt's LayerScale: x * gamma per channel."""
    if not type(layer).__module__.split(".applications.")[-1].startswith("convnext"):
        raise ks.Unsupported("a custom layer named LayerScale")
    gamma = ks.value(layer.gamma)
    return _scale_and_offset(b, layer, inputs[0], out_shape, gamma, np.zeros_like(gamma))


def _rescaling(b, layer, inputs, out_shape):
    return _scale_and_offset(b, layer, inputs[0], out_shape,
                             np.asarray(layer.scale, np.float32),
                             np.asarray(layer.offset, np.float32))


def _scale_and_offset(b, layer, x, out_shape, scale, offset):
    inputs = [x]
    y = x
    if np.any(scale != 1.0):
        s = b.const(f"{layer.name}/scale", scale)
        name = f"{layer.name}/mul" if np.any(offset != 0.0) else layer.name
        y = b.op("MUL", [y, s], out_shape, name, layer, BinaryOptions())
    if np.any(offset != 0.0):
        o = b.const(f"{layer.name}/offset", offset)
        y = b.op("ADD", [y, o], out_shape, layer.name, layer, BinaryOptions())
    if y == inputs[0]:
        y = b.op("IDENTITY", [y], out_shape, layer.name, layer)
    return y


# -- TFLite -----------------------------------------------------------------------------------

def _operands(imp, inputs, label):
    if len(inputs) != 2 or not all(inputs):
        raise ModelLoadError(f"{label} needs two inputs")
    tensors = [imp.graph.tensors[n] for n in inputs]
    if all(t.is_const for t in tensors):
        raise ts.KeepFloat("both operands are constant")
    if any(t.dtype != np.float32 for t in tensors):
        raise ts.KeepFloat("non-float operands")


def _reader(op_type, options_class):
    def read(imp, inputs, outputs, options, label):
        o = ts.require(options, options_class, label)
        _operands(imp, inputs, label)
        return op_type, list(inputs), BinaryOptions(ts.activation(o))
    return read


def _read_squared_difference(imp, inputs, outputs, options, label):
    _operands(imp, inputs, label)
    return "SQUARED_DIFFERENCE", list(inputs), NoOptions()


def _writer(options_class, options_type):
    def write(options):
        o = options_class()
        o.fusedActivationFunction = common.activation_code(options)
        if hasattr(o, "potScaleInt16"):
            o.potScaleInt16 = False
        return options_type, o
    return write


def _mul_version(t) -> int:
    return 4 if t.input == common.INT16 else common.version_by_type(t)


# -- QAT --------------------------------------------------------------------------------------

def _render_add(r, op, x, name):
    if len(x) == 1:
        return r.constant_operand(op, x, name)
    return r.keras.layers.Add(name=name)(x)


def _render_mul(r, op, x, name):
    if len(x) == 1:
        return r.constant_operand(op, x, name)
    return r.keras.layers.Multiply(name=name)(x)


# -- delegate ---------------------------------------------------------------------------------

def _squared_difference_model():
    rng = np.random.default_rng(11)
    return delegate_models.after_conv_graph(
        "squared_difference", "SQUARED_DIFFERENCE",
        constants=[rng.uniform(-1, 1, 4).astype(np.float32)])


# The int8 ADD / SUB kernels shift inputs left by 20 bits and need 2 * max input scale /
# (2^20 * output scale) < 1, else the runtime aborts (a margin of 1%).
_ADD_RESCALE_LIMIT = 2.0 ** 19 / 1.01

ADD = OpRecord(
    name="ADD", options=BinaryOptions,
    write=_writer(schema.AddOptionsT, schema.BuiltinOptions.AddOptions),
    read=_reader("ADD", schema.AddOptionsT), version=common.version_by_type,
    quant=QuantRule(fused_activation=True, max_int8_input_to_output_scale=_ADD_RESCALE_LIMIT),
    weights=NotApplicable("no weights"), keras={"Add": _add}, qat=_render_add,
    delegate=(DelegateCase("add_residual_and_batchnorm",
                           delegate_models.add_residual_and_batchnorm),
              DelegateCase("biased_activations", delegate_models.biased_activations,
                           threads=True)))

SUB = OpRecord(
    name="SUB", options=BinaryOptions,
    write=_writer(schema.SubOptionsT, schema.BuiltinOptions.SubOptions),
    read=_reader("SUB", schema.SubOptionsT), version=common.version_by_type,
    quant=QuantRule(fused_activation=True, max_int8_input_to_output_scale=_ADD_RESCALE_LIMIT),
    weights=NotApplicable("no weights"),
    keras={"Subtract": _chain("SUB")},
    qat=QatCompute(lambda tf, operands, options: operands[0] - operands[1]),
    delegate=(DelegateCase("sub_on_cpu", lambda: delegate_models.after_conv_graph(
        "sub", "SUB", BinaryOptions(), [np.full(4, 0.25, np.float32)]), claimed=False),))

MUL = OpRecord(
    name="MUL", options=BinaryOptions,
    write=_writer(schema.MulOptionsT, schema.BuiltinOptions.MulOptions),
    read=_reader("MUL", schema.MulOptionsT), version=_mul_version,
    quant=QuantRule(fused_activation=True), weights=NotApplicable("no weights"),
    keras={"Rescaling": _rescaling, "Normalization": _normalization,
           "Multiply": _chain("MUL"), "LayerScale": _layer_scale}, qat=_render_mul,
    delegate=(DelegateCase("add_residual_and_batchnorm",
                           delegate_models.add_residual_and_batchnorm),))

SQUARED_DIFFERENCE = OpRecord(
    name="SQUARED_DIFFERENCE", options=NoOptions,
    write=common.empty_options(schema.SquaredDifferenceOptionsT,
                               schema.BuiltinOptions.SquaredDifferenceOptions),
    read=_read_squared_difference, version=common.version_by_type,
    # No int16 kernel on any runtime (TFLiteConverter writes one that fails at invoke).
    quant=QuantRule(int16=False), weights=NotApplicable("no weights"),
    keras=NotApplicable("no Keras layer computes it"),
    qat=QatCompute(lambda tf, operands, options: tf.math.squared_difference(*operands)),
    delegate=(DelegateCase("squared_difference_on_cpu", _squared_difference_model,
                           claimed=False),))

RECORDS = (ADD, SUB, MUL, SQUARED_DIFFERENCE)
