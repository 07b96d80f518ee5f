"""What a record of the op registry holds, and the small types its fields use.

A record is everything tfquant knows about one op: how its options read from and write to a
flatbuffer, which operator version a set of tensor types needs, how it quantizes (the TFLite
int8 / int16 spec's constraints), where its weights are, which Keras layers and activation
functions become it, how quantization-aware training renders it, and the delegate's test models
for it. A field that does not apply holds NotApplicable with the reason, so that a test can
check that every record is complete.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class NotApplicable:
    """A record field that does not apply to this op, and why."""

    reason: str

    def __bool__(self):
        return False


@dataclasses.dataclass(frozen=True)
class QatCompute:
    """QAT rendering of an op that no Keras layer computes alone: a tfquant.qat.OpLayer that
    evaluates `compute(tf, operands, options)` (operands: the op's inputs in order, its integer
    constants included) and that the Keras frontend reads back as this op. `render(r, op, x,
    name)`, when given, renders instead where a Keras layer fits (it may call r.op_layer)."""

    compute: Callable
    render: Optional[Callable] = None

    def __call__(self, r, op, x, name):
        return (self.render or type(r).op_layer)(r, op, x, name)


@dataclasses.dataclass(frozen=True)
class QuantRule:
    """How the op is quantized (notes/tflite-int8.md section 1)."""

    # Input index of the bias (int32, scale = input_scale * weight_scale).
    bias_input: Optional[int] = None
    # Output must use the same params as its (first) activation input.
    same_scale: bool = False
    # All activation inputs and the output share params (CONCATENATION).
    same_scale_all_inputs: bool = False
    # Fixed output params per activation bit width: {bits: (scale, zero_point)}.
    fixed_output: Optional[dict] = None
    # Accepts a fused RELU / RELU6 activation.
    fused_activation: bool = False
    # Inputs that are int32 shape / axis / padding tensors, never quantized.
    int_inputs: tuple = ()
    # TFLite has an int16-activation kernel (16x8 mode); without one the op runs in float there.
    int16: bool = True
    # Constant operands are int8 symmetric per tensor (else asymmetric, like activations).
    symmetric_const_operands: bool = False
    # QUANTIZE / DEQUANTIZE: converts between float and integer grids (the quantizer inserts
    # them; mixed precision and the debugger treat them as boundaries).
    type_conversion: bool = False
    # options -> the smallest int8 input scale the op's kernels accept (SOFTMAX), or None.
    min_int8_input_scale: Optional[Callable] = None
    # The largest ratio of an int8 input scale to the output scale the kernels accept (ADD and
    # SUB rescale both inputs by 2^20 / (2 max input scale) and need a multiplier below one).
    max_int8_input_to_output_scale: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class OpTypes:
    """What an op version depends on: the types of its first input, its weights (input 1) and
    its output, whether the weights have one scale per channel, its options and the version
    its source file gave it."""

    input: Optional[np.dtype]
    weights: Optional[np.dtype]
    output: Optional[np.dtype]
    per_channel_weights: bool
    options: object
    source_version: int = 1

    @property
    def hybrid(self) -> bool:
        """Float activations with int8 weights (the dynamic-range kernels)."""
        return self.input == np.float32 and self.weights == np.int8


@dataclasses.dataclass(frozen=True)
class DelegateCase:
    """A small model exercising the op in the DSP delegate's bit-exactness tests.

    `build()` returns (model: a Keras model or an IR graph, input shape with batch, Recipe
    keyword arguments). `claimed`: the delegate runs every node of it (else it must leave the
    op to the CPU, with the same outputs). `threads`: also run it with worker threads."""

    name: str
    build: Callable
    claimed: bool = True
    threads: bool = False


@dataclasses.dataclass(frozen=True)
class OpRecord:
    """Everything tfquant knows about one op type (see the module docstring)."""

    name: str
    # The typed options class of the op (an instance sits in ir.Op.options).
    options: type
    # options -> (flatbuffer BuiltinOptions type, options object or None).
    write: Callable | NotApplicable
    # TFLite frontend: (importer, inputs, outputs, flatbuffer options, label) ->
    # (op type, inputs, options); raises tflite_support.KeepFloat to keep the op float.
    read: Callable | NotApplicable
    # OpTypes -> operator version (the one TF 2.21's TFLiteConverter writes).
    version: Callable | NotApplicable
    quant: QuantRule | NotApplicable
    # Where the op's weights are and how their channels map (ops with weights).
    weights: object
    # Keras layer class name -> converter(builder, layer, inputs, output shape) -> output name.
    keras: Mapping[str, Callable] | NotApplicable
    # QAT: (renderer, op, input Keras tensors, name) -> output Keras tensor.
    qat: Callable | NotApplicable
    delegate: tuple | NotApplicable
    # Keras activation function names that become this op (activation="relu", ...).
    keras_activations: tuple = ()
    # Keras activation functions that become this op with others: (name, converter(builder,
    # layer, input, output shape, output name) -> output name) pairs (silu: LOGISTIC and MUL).
    keras_composite_activations: tuple = ()
    # Pseudo-ops never reach the writer (tfquant.vocabulary).
    pseudo: bool = False
    # The op commutes with a positive per-channel scaling of its input (zero padding): cross-
    # layer equalization may look through it.
    commutes_with_channel_scaling: bool = False

    def __post_init__(self):
        missing = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]
        if missing:
            raise ValueError(f"op record {self.name}: fields {missing} are None; give a value "
                             "or NotApplicable(reason)")
