"""The TFLite int8 per-op constraints, as one table of data (notes/tflite-int8.md section 1).

Every stage that needs to know how an op quantizes (the params computation, the same-scale
analysis, the writer's op versions) reads this module and nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class OpConstraint:
    # Input index of the weight tensor and its per-channel axis (None if the op has no weights).
    weight_input: Optional[int] = None
    weight_axis: Optional[int] = None
    # Input index of the bias (int32, scale = input_scale * weight_scale).
    bias_input: Optional[int] = None
    # Output must use the same params as its (first) activation input(s).
    same_scale: bool = False
    # All activation inputs and the output share params (CONCATENATION).
    same_scale_all_inputs: bool = False
    # Fixed output params per activation bit width: {bits: (scale, zero_point)}.
    fixed_output: Optional[dict] = None
    # Accepts a fused RELU / RELU6 activation.
    fused_activation: bool = False
    # Inputs that are int32 shape/axis/padding tensors, never quantized.
    int_inputs: tuple = ()
    # TFLite has an int16-activation kernel (16x8 mode); without one the op runs in float there.
    int16: bool = True
    # Constant operands are int8 symmetric per tensor (else asymmetric, like activations).
    symmetric_const_operands: bool = False


OP_CONSTRAINTS: dict[str, OpConstraint] = {
    "CONV_2D": OpConstraint(weight_input=1, weight_axis=0, bias_input=2, fused_activation=True),
    "DEPTHWISE_CONV_2D": OpConstraint(weight_input=1, weight_axis=3, bias_input=2,
                                      fused_activation=True),
    "FULLY_CONNECTED": OpConstraint(weight_input=1, weight_axis=0, bias_input=2,
                                    fused_activation=True),
    "ADD": OpConstraint(fused_activation=True),
    "SUB": OpConstraint(fused_activation=True),
    "MUL": OpConstraint(fused_activation=True),
    # CONCATENATION has a fused-activation field but int8 kernels ignore it: never fuse.
    "CONCATENATION": OpConstraint(same_scale=True, same_scale_all_inputs=True),
    "MAX_POOL_2D": OpConstraint(same_scale=True, fused_activation=True),
    "AVERAGE_POOL_2D": OpConstraint(same_scale=True, fused_activation=True),
    "RESHAPE": OpConstraint(same_scale=True, int_inputs=(1,)),
    "SQUEEZE": OpConstraint(same_scale=True),
    "PAD": OpConstraint(same_scale=True, int_inputs=(1,)),
    # Data movement (only from .tflite input; their TFLite options are carried over as read).
    "TRANSPOSE": OpConstraint(same_scale=True, int_inputs=(1,)),
    "STRIDED_SLICE": OpConstraint(same_scale=True, int_inputs=(1, 2, 3)),
    "SLICE": OpConstraint(same_scale=True, int_inputs=(1, 2)),
    "RESIZE_BILINEAR": OpConstraint(same_scale=True, int_inputs=(1,)),
    "RESIZE_NEAREST_NEIGHBOR": OpConstraint(same_scale=True, int_inputs=(1,)),
    "MEAN": OpConstraint(int_inputs=(1,)),
    "SOFTMAX": OpConstraint(fixed_output={8: (1.0 / 256.0, -128), 16: (1.0 / 32768.0, 0)}),
    "LOGISTIC": OpConstraint(fixed_output={8: (1.0 / 256.0, -128), 16: (1.0 / 32768.0, 0)}),
    "TANH": OpConstraint(fixed_output={8: (1.0 / 128.0, 0), 16: (1.0 / 32768.0, 0)}),
    "RELU": OpConstraint(),
    "RELU6": OpConstraint(),
    "LEAKY_RELU": OpConstraint(),
    # Alpha int8 symmetric, as TFLiteConverter writes it (asymmetric measured 0.3 dB lower).
    "PRELU": OpConstraint(int16=False, symmetric_const_operands=True),
    "HARD_SWISH": OpConstraint(int16=False),  # int8 / uint8 only, on every runtime
    "QUANTIZE": OpConstraint(),
    "DEQUANTIZE": OpConstraint(),
}

# Activation ops that the fusion pass folds into a producer that accepts a fused activation.
FUSABLE_ACTIVATIONS = ("RELU", "RELU6")


def constraint(op_type: str) -> OpConstraint:
    try:
        return OP_CONSTRAINTS[op_type]
    except KeyError:
        raise KeyError(f"no quantization constraint is known for op {op_type}") from None
