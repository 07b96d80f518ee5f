"""Helpers for the records' TFLite readers (the TFLite frontend's per-op import).

A reader is `read(importer, inputs, outputs, options, label) -> (op type, inputs, options)`;
`importer.graph` is the IR being built. It raises ModelLoadError for a malformed op and
KeepFloat for a valid op tfquant keeps in float (an opaque op with its TFLite options).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError

ACTIVATIONS = {schema.ActivationFunctionType.NONE: "NONE",
               schema.ActivationFunctionType.RELU: "RELU",
               schema.ActivationFunctionType.RELU6: "RELU6"}
ACTIVATION_CODES = {name: code for code, name in ACTIVATIONS.items()}
PADDINGS = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
PADDING_CODES = {name: code for code, name in PADDINGS.items()}


class KeepFloat(Exception):
    """The op is valid TFLite but tfquant keeps it as an opaque float op (the reason)."""


def activation(options) -> str:
    code = getattr(options, "fusedActivationFunction", 0)
    if code not in ACTIVATIONS:
        raise KeepFloat(f"fused activation {code} (only RELU and RELU6 are quantized)")
    return ACTIVATIONS[code]


def padding(options, label) -> str:
    if options.padding not in PADDINGS:
        raise ModelLoadError(f"{label}: unknown padding {options.padding}")
    return PADDINGS[options.padding]


def positive(values, what, label) -> tuple:
    values = tuple(int(v) for v in values)
    if any(v < 1 for v in values):
        raise ModelLoadError(f"{label}: {what} {values} must be positive")
    return values


def require(options, cls, label):
    """The op's options object, of the type the op must have (a default one if absent)."""
    if options is None:
        return cls()
    if not isinstance(options, cls):
        raise ModelLoadError(f"{label} has options of the wrong type ({type(options).__name__})")
    return options


def const(imp, name, rank=None, what="weights", label=""):
    tensor = imp.graph.tensors[name] if name else None
    if tensor is None or not tensor.is_const:
        raise KeepFloat(f"{what} are not constant")
    if tensor.dtype != np.float32:
        raise KeepFloat(f"{what} have type {tensor.dtype}")
    if rank is not None and tensor.data.ndim != rank:
        raise ModelLoadError(f"{label}: {what} have rank {tensor.data.ndim}, expected {rank}")
    return tensor


def activation_input(imp, name, label):
    tensor = imp.graph.tensors[name] if name else None
    if tensor is None:
        raise ModelLoadError(f"{label} has no data input")
    if tensor.is_const:
        raise KeepFloat("its data input is constant")
    if tensor.dtype != np.float32:
        raise KeepFloat(f"its input has type {tensor.dtype}")
    return tensor


def inputs_count(inputs, count, label):
    if len(inputs) != count:
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")


def unary(imp, inputs, label):
    inputs_count(inputs, 1, label)
    activation_input(imp, inputs[0], label)


def unary_reader(op_type, schema_class=None):
    """The reader of a one-input op without options to keep (options of `schema_class`, if
    given, are only checked)."""
    from tfquant.vocabulary import NoOptions

    def read(imp, inputs, outputs, options, label):
        if schema_class is not None:
            require(options, schema_class, label)
        unary(imp, inputs, label)
        return op_type, list(inputs), NoOptions()
    return read


def constant_int32(imp, name, reason):
    """The constant int32 tensor `name`, or KeepFloat(reason)."""
    tensor = imp.graph.tensors[name] if name else None
    if tensor is None or not tensor.is_const or tensor.dtype != np.int32:
        raise KeepFloat(reason)
    return tensor


def weighted(imp, inputs, outputs, label, rank, out_axis) -> list:
    """[data, weights, bias] of a conv / depthwise / fully-connected op; a zero bias is added
    when the op has none."""
    if len(inputs) not in (2, 3):
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")
    activation_input(imp, inputs[0], label)
    weights = const(imp, inputs[1], rank, "weights", label)
    channels = weights.shape[out_axis]
    if len(inputs) == 3 and inputs[2]:
        bias = const(imp, inputs[2], None, "bias", label)
        if bias.data.size != channels:
            raise ModelLoadError(f"{label}: bias has {bias.data.size} values for "
                                 f"{channels} output channels")
        if bias.data.ndim != 1:
            imp.graph.set_tensor(inputs[2], data=bias.data.reshape(-1))
        bias_name = inputs[2]
    else:
        bias_name = imp.graph.add_const(f"{outputs[0]}/bias", np.zeros(channels, np.float32))
    return [inputs[0], inputs[1], bias_name]


def options_writer(schema_class, options_type, fields):
    """An OpRecord.write that copies `fields` ((ours, theirs) names) of tfquant's options into
    a new `schema_class` (BuiltinOptions `options_type`)."""
    def write(options):
        o = schema_class()
        for ours, theirs in fields:
            setattr(o, theirs, getattr(options, ours))
        return options_type, o
    return write
