"""The op registry: one record per op type (tfquant.ops.record.OpRecord).

Frontends, writer, params, passes, QAT and the delegate's tests read what they need to know
about an op here. Adding an op is one record (in the module of its family, listed in _MODULES)
plus its test.
"""

from __future__ import annotations

import functools

from tfquant.ops import (activations, attention, boundary, conv, data_movement, elementwise,
                         fully_connected, math_functions, pooling, pseudo, shape, split_join)
from tfquant.ops.record import (DelegateCase, NotApplicable, OpRecord, OpTypes,
                                QuantRule)

_MODULES = (conv, fully_connected, attention, elementwise, activations, math_functions, pooling,
            shape, data_movement, split_join, boundary, pseudo)

REGISTRY: dict[str, OpRecord] = {}
for _module in _MODULES:
    for _record in _module.RECORDS:
        if _record.name in REGISTRY:
            raise ValueError(f"op {_record.name} has two records")
        REGISTRY[_record.name] = _record


def get(op_type: str) -> OpRecord:
    try:
        return REGISTRY[op_type]
    except KeyError:
        raise KeyError(f"tfquant has no record of op {op_type}") from None


def make_options(op_type: str, **fields):
    """The typed options of `op_type` from keyword fields (e.g. padding="SAME")."""
    return get(op_type).options(**fields)


def quant_rule(op_type: str):
    """The op's QuantRule, or None for ops without one (unknown, opaque, not applicable)."""
    record = REGISTRY.get(op_type)
    return record.quant if record is not None and record.quant else None


def weight_layout(op_type: str):
    """The op's weights.WeightLayout, or None for ops without weights."""
    record = REGISTRY.get(op_type)
    return record.weights if record is not None and record.weights else None


@functools.lru_cache(maxsize=None)
def keras_converters() -> dict:
    """Keras layer class name -> converter, over every record."""
    found = {}
    for record in REGISTRY.values():
        for layer, convert in (record.keras or {}).items():
            if layer in found:
                raise ValueError(f"Keras layer {layer} is claimed by two records")
            found[layer] = convert
    return found


@functools.lru_cache(maxsize=None)
def activation_ops() -> dict:
    """Keras activation function name -> op type."""
    return {name: record.name for record in REGISTRY.values()
            for name in record.keras_activations}


def composite_activations() -> dict:
    """Keras activation function name -> converter emitting several ops (silu, ...)."""
    return {name: convert for record in REGISTRY.values()
            for name, convert in record.keras_composite_activations}


def delegate_cases() -> dict:
    """Every DelegateCase of every record, by case name (a case may serve several ops; each
    name must mean the same case everywhere)."""
    cases = {}
    for record in REGISTRY.values():
        for case in record.delegate or ():
            if cases.setdefault(case.name, case) != case:
                raise ValueError(f"delegate case {case.name!r} is defined differently by "
                                 f"{record.name} and another record")
    return cases


__all__ = ["DelegateCase", "NotApplicable", "OpRecord", "OpTypes", "QuantRule", "REGISTRY",
           "activation_ops", "composite_activations", "delegate_cases", "get", "keras_converters", "make_options",
           "quant_rule",
           "weight_layout"]
