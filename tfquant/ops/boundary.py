"""QUANTIZE and DEQUANTIZE: the boundaries between float and integer tensors (and between
int8 and int16 grids) that the quantizer inserts."""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from tfquant.ops import common, delegate_models
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QuantRule
from tfquant.vocabulary import NoOptions

_INSERTED = "the quantizer inserts it"
# Every float-I/O int8 model has both at its borders.
_CASE = (DelegateCase("mean_and_softmax", delegate_models.mean_and_softmax),)


def _quantize_version(t) -> int:
    return 2 if t.input in (common.INT8, common.UINT8) else 1


def _dequantize_version(t) -> int:
    if t.input == common.FLOAT16:
        return 3
    return 2 if t.input in (common.INT8, common.INT16) else 1


QUANTIZE = OpRecord(
    name="QUANTIZE", options=NoOptions,
    write=common.empty_options(schema.QuantizeOptionsT, schema.BuiltinOptions.QuantizeOptions),
    read=NotApplicable("a QUANTIZE in a float model stays float (tfquant reads float models)"),
    version=_quantize_version, quant=QuantRule(type_conversion=True),
    weights=NotApplicable("no weights"), keras=NotApplicable(_INSERTED),
    qat=NotApplicable(_INSERTED), delegate=_CASE)

# DEQUANTIZE of a constant (fp16 / int8 weights) is folded by the TFLite frontend before the
# record is asked; one of an activation stays float.
DEQUANTIZE = OpRecord(
    name="DEQUANTIZE", options=NoOptions, write=common.no_options,
    read=NotApplicable("a DEQUANTIZE of an activation stays float"),
    version=_dequantize_version, quant=QuantRule(type_conversion=True),
    weights=NotApplicable("no weights"), keras=NotApplicable(_INSERTED),
    qat=NotApplicable(_INSERTED), delegate=_CASE)

RECORDS = (QUANTIZE, DEQUANTIZE)
