"""Params as their own stage: calibrated ranges + Recipe + op registry -> the quantization of
every tensor ({name: TensorQuant}), before anything in the graph changes.

This is where the TFLite int8 / 16x8 specification is applied (rules from tfquant.ops): int8
symmetric narrow-range weights (per channel by default), int32 (int64 in 16x8) biases with
scale input * weight, int8 asymmetric (int16 symmetric) per-tensor activations, shared params
for same-scale ops, fixed params for SOFTMAX / LOGISTIC / TANH, constant operands on their own
grid. passes.apply_params writes the result into the graph.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from tfquant import ir, ops, spec, vocabulary
from tfquant.errors import ConversionError
from tfquant.recipe import Recipe
from tfquant.spec import QuantParams, QuantSpec

log = logging.getLogger("tfquant")

_INT32_MAX = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True, eq=False)
class TensorQuant:
    """How one tensor is stored: params, and the spec of its codes (None for biases, which
    are 32 / 64-bit integers of scale input * weight)."""

    params: QuantParams
    spec: Optional[QuantSpec]
    dtype: np.dtype


def activation_spec(bits: int) -> QuantSpec:
    """int8 asymmetric activations, or int16 symmetric ones (16x8 mode)."""
    return spec.INT8_ACTIVATION if bits == 8 else spec.INT16_ACTIVATION


# -- activations ------------------------------------------------------------------------------

def tied_inputs(graph: ir.Graph, op: ir.Op) -> list:
    """The inputs a same-scale op holds on its output's grid (none for other ops)."""
    rule = ops.quant_rule(op.type)
    if rule is None or not rule.same_scale or op.keep_float:
        return []
    tied = [n for i, n in enumerate(op.inputs)
            if n and not graph.tensors[n].is_const and i not in rule.int_inputs]
    return tied if rule.same_scale_all_inputs else tied[:1]


def tied_constant(graph: ir.Graph, op: ir.Op) -> Optional[str]:
    """The constant data input of a same-scale op (GATHER's table), which is quantized on the
    output's grid, or None."""
    rule = ops.quant_rule(op.type)
    if rule is None or not rule.same_scale or op.keep_float:
        return None
    data = [n for i, n in enumerate(op.inputs) if n and i not in rule.int_inputs]
    if data and graph.tensors[data[0]].is_const and graph.tensors[data[0]].dtype == np.float32:
        return data[0]
    return None


def same_scale_groups(graph: ir.Graph) -> list:
    """Lists of float activation tensors that must share quantization params (tied by
    same-scale ops), each in graph order, the groups in order of their first member."""
    names = [n for n in graph.activation_tensors() if graph.tensors[n].dtype == np.float32]
    groups = DisjointSet(names)
    for op in graph.ops:
        tied = tied_inputs(graph, op)
        if not tied:
            continue
        outputs = [n for n in op.outputs if graph.tensors[n].dtype == np.float32]
        for name in tied + outputs:
            if name not in groups:
                groups.add(name)
        for name in tied + outputs[1:]:  # several outputs (SPLIT): one grid for all
            groups.merge(name, outputs[0])
    order = {name: i for i, name in enumerate(graph.activation_tensors())}
    return sorted((sorted(s, key=order.__getitem__) for s in groups.subsets()),
                  key=lambda group: order[group[0]])


def _inside_float_island(graph: ir.Graph, name: str) -> bool:
    op = graph.producer(name)
    return (op is not None and op.keep_float and name not in graph.outputs
            and all(c.keep_float for c in graph.consumers(name)))


def _fixed_output(op: Optional[ir.Op]):
    rule = ops.quant_rule(op.type) if op is not None and not op.keep_float else None
    return rule.fixed_output if rule is not None else None


def _tied(graph: ir.Graph, name: str) -> bool:
    """Whether `name` is the output of a same-scale op (its grid comes from its inputs)."""
    op = graph.producer(name)
    rule = ops.quant_rule(op.type) if op is not None and not op.keep_float else None
    return bool(rule is not None and rule.same_scale)


def group_roots(graph: ir.Graph, group: list) -> tuple:
    """(roots with ranges, fixed-params roots) of a same-scale group: the members not made by
    a same-scale op, split by whether their op fixes its output params (SOFTMAX, LOGISTIC,
    TANH). A group with both holds the fixed ones on its range through a requantization."""
    roots = [n for n in group if not _tied(graph, n)]
    fixed = [n for n in roots if _fixed_output(graph.producer(n))]
    return [n for n in roots if n not in fixed], fixed


@dataclasses.dataclass
class ActivationParams:
    """Params of every activation tensor, and the fixed-params outputs that must be
    requantized (int8 -> int8 QUANTIZE) to their group's params where same-scale ops read
    them: {tensor: group params} (passes.requantize_fixed_outputs)."""

    tensors: dict
    requantize: dict


def _fixed_range(fixed, bits: int) -> tuple:
    """The real range the fixed params (scale, zero point) of an op's output can hold."""
    scale, zero_point = fixed
    code = activation_spec(bits)
    return (code.qmin - zero_point) * scale, (code.qmax - zero_point) * scale


def activation_params(graph: ir.Graph, ranges: dict, bits: int = 8) -> ActivationParams:
    """Params of every activation tensor: fixed where the op dictates, else from ranges."""
    params, represented_by = {}, {}
    constant_ranges = {}  # a same-scale op's output holds its constant input's values
    for op in graph.ops:
        constant = tied_constant(graph, op)
        if constant is not None:
            data = graph.tensors[constant].data
            for out in op.outputs:
                constant_ranges[out] = (float(data.min(initial=0.0)),
                                        float(data.max(initial=0.0)))
    for group in same_scale_groups(graph):
        free, fixed_roots = group_roots(graph, group)
        fixed = {_fixed_output(graph.producer(n))[bits] for n in fixed_roots}
        if fixed and not free and len(fixed) == 1:
            scale, zero_point = fixed.pop()  # the op's own params, for the whole group
            group_params = QuantParams.per_tensor(scale, zero_point)
        else:
            known = [(r.min, r.max) for r in (ranges.get(n) for n in group) if r is not None]
            known += [constant_ranges[n] for n in group if n in constant_ranges]
            known += [_fixed_range(_fixed_output(graph.producer(n))[bits], bits)
                      for n in fixed_roots if n not in ranges]
            if not known and all(_inside_float_island(graph, n) for n in group):
                continue  # read and written by float ops only: it stays float, no params
            if not known:
                raise ConversionError(
                    f"no range for tensor(s) {sorted(group)}: calibrate with representative "
                    "data, or (QAT models) put an ActivationQuantizer after the layer that "
                    "produces it")
            group_params = spec.params_from_range(min(r[0] for r in known),
                                                  max(r[1] for r in known),
                                                  activation_spec(bits))
        for name in group:
            params[name] = group_params
        if free or len(fixed) > 1:
            member = next(n for n in group if n not in fixed_roots)
            for name in fixed_roots:  # keeps its op's params; its same-scale readers do not
                scale, zero_point = _fixed_output(graph.producer(name))[bits]
                params[name] = QuantParams.per_tensor(scale, zero_point)
                represented_by[name] = member
    if bits == 8:
        _guard_input_scales(graph, params)
        _guard_rescales(graph, params)
    _guard_activation_clamps(graph, params)
    _guard_tiny_scales(params)
    return ActivationParams(params, {name: params[member]
                                     for name, member in represented_by.items()})


def _widen(params: dict, current: QuantParams, scale: float):
    widened = QuantParams.per_tensor(scale, int(current.zero_point[0]))
    for name, p in params.items():
        if p is current:
            params[name] = widened


def _guard_activation_clamps(graph: ir.Graph, params: dict):
    for op in graph.ops:
        bound = vocabulary.CLAMP_BOUNDS.get(getattr(op.options, "fused_activation", "NONE"))
        if bound is None or op.keep_float or op.outputs[0] not in params:
            continue
        current = params[op.outputs[0]]
        minimum = bound / 2.0 ** 30
        if current.scale[0] >= minimum:
            continue
        log.warning("%s: output range is too small for TFLite's int8 activation clamp (scale "
                    "%.3g; the calibration data hardly excites this layer); widening it to "
                    "scale %.3g", op.label, current.scale[0], minimum)
        _widen(params, current, minimum)


# The smallest activation scale written: below it, the rescale multiplier of an op reading a
# normal-sized tensor into this one exceeds what TFLite's QuantizeMultiplier accepts (the
# runtime aborts in AllocateTensors). Only ranges the calibration data hardly excites (dead
# branches of random-weight networks) are this small; 2^-28 stays below the clamp guard's.
MIN_ACTIVATION_SCALE = 2.0 ** -28


def _guard_tiny_scales(params: dict):
    widened = {}
    for name, current in list(params.items()):
        if current.scale[0] < MIN_ACTIVATION_SCALE and id(current) not in widened:
            widened[id(current)] = name
            _widen(params, current, MIN_ACTIVATION_SCALE)
    if widened:
        names = list(widened.values())
        log.warning("%d activation range(s) too small to hold (%s%s; the calibration data "
                    "hardly excites them): widened to scale %.3g", len(names),
                    ", ".join(names[:3]), " ..." if len(names) > 3 else "",
                    MIN_ACTIVATION_SCALE)


def _guard_rescales(graph: ir.Graph, params: dict):
    """Widen int8 outputs far finer than an input where the op's kernels cannot rescale that
    much (QuantRule.max_int8_input_to_output_scale: ADD, SUB)."""
    for op in graph.ops:
        rule = ops.quant_rule(op.type)
        limit = rule.max_int8_input_to_output_scale if rule is not None else None
        if limit is None or op.keep_float or op.outputs[0] not in params:
            continue
        largest = max((float(params[n].scale[0]) for n in op.inputs if n in params),
                      default=0.0)
        current = params[op.outputs[0]]
        if current.scale[0] * limit >= largest:
            continue
        log.warning("%s: output range is too small for its inputs' in TFLite's int8 %s kernel "
                    "(scale %.3g, inputs up to %.3g); widening it to scale %.3g", op.label,
                    op.type, current.scale[0], largest, largest / limit)
        _widen(params, current, largest / limit)


def _guard_input_scales(graph: ir.Graph, params: dict):
    """Widen int8 input ranges below what an op's kernels accept (QuantRule
    .min_int8_input_scale: SOFTMAX)."""
    for op in graph.ops:
        rule = ops.quant_rule(op.type)
        if rule is None or rule.min_int8_input_scale is None or op.keep_float:
            continue
        current = params[op.inputs[0]]
        minimum = rule.min_int8_input_scale(op.options)
        if current.scale[0] >= minimum:
            continue
        log.warning("%s: input range is too small for TFLite's int8 %s kernel (scale %.3g); "
                    "widening it to scale %.3g", op.label, op.type, current.scale[0], minimum)
        _widen(params, current, minimum)


# -- weights and biases -----------------------------------------------------------------------

def weight_spec(op: ir.Op, recipe: Recipe, per_channel: Optional[bool] = None) -> QuantSpec:
    """The grid of an op's weights: symmetric narrow range, the recipe's bits and per-channel
    choice, or the grid a QAT layer trained on (Op.weight_grid)."""
    layout = ops.weight_layout(op.type)
    grid = op.weight_grid
    if grid is not None:
        if not grid.symmetric:
            raise ConversionError(
                f"{op.label} was trained with asymmetric weights, which TFLite cannot hold "
                "(int8 weights have zero point 0); asymmetric weights are simulation only - "
                "train with QatRecipe(weight_symmetric=True) to export")
        if grid.bits > 8:
            raise ConversionError(f"{op.label} was trained with {grid.bits}-bit weights; "
                                  "TFLite int8 models hold weights of at most 8 bits")
        return QuantSpec(bits=grid.bits, signed=True, symmetric=True, narrow_range=True,
                         axis=layout.output_axis if grid.per_channel else None)
    if per_channel is None:
        per_channel = recipe.dense_per_channel if layout.dense else recipe.per_channel
    return dataclasses.replace(spec.int8_weight(layout.output_axis if per_channel else None),
                               bits=recipe.weight_bits)


def weight_grid(graph: ir.Graph, op: ir.Op, recipe: Recipe,
                per_channel: Optional[bool] = None) -> tuple:
    """(spec, params) of an op's float weights from their range (MSE-optimal clipping when
    the recipe asks for it), before any bias needs them wider."""
    weights = graph.tensors[op.inputs[ops.weight_layout(op.type).weight_input]].data
    grid_spec = weight_spec(op, recipe, per_channel)
    if op.fixed_weights and per_channel is not False:  # a source's own codes, exactly
        scale = np.asarray(op.weight_grid.scale, np.float32)
        return grid_spec, QuantParams(scale, np.zeros(scale.size, np.int64), grid_spec.axis)
    if op.fixed_weights:  # per tensor asked (hybrid dense kernels): the codes are redone
        grid_spec = dataclasses.replace(grid_spec, axis=None)
    if recipe.weight_range_method == "mse" and op.weight_grid is None:
        rmin, rmax = spec.mse_optimal_weight_range(weights, grid_spec.axis, grid_spec)
    else:
        rmin, rmax = spec.weight_range(weights, grid_spec.axis)
    return grid_spec, spec.params_from_range(rmin, rmax, grid_spec)


def _weights_and_bias(graph, op, recipe, input_scale: float, bias_dtype) -> dict:
    """TensorQuants of an op's weights and bias: the bias scale is input * weight scale, and
    weight scales of channels whose bias would overflow its integers are raised until it
    fits."""
    layout = ops.weight_layout(op.type)
    grid_spec, grid = weight_grid(graph, op, recipe)
    b = graph.tensors[op.inputs[layout.bias_input]].data.astype(np.float64)
    w_scale = grid.scale.astype(np.float64)
    per_tensor = w_scale.size == 1
    if per_tensor:
        w_scale = np.full(b.shape, w_scale[0])
        needed = np.max(np.abs(b)) / (input_scale * _INT32_MAX) if b.size else 0.0
        w_scale = np.maximum(w_scale, needed)
    else:
        w_scale = np.maximum(w_scale, np.abs(b) / (input_scale * _INT32_MAX))
    weight_params = QuantParams(w_scale[:1] if per_tensor else w_scale,
                                np.zeros(1 if per_tensor else w_scale.size, np.int64),
                                grid_spec.axis)
    bias_scale = (input_scale * weight_params.scale.astype(np.float64)).astype(np.float32)
    bias_params = QuantParams(bias_scale, np.zeros(bias_scale.size, np.int64),
                              0 if bias_scale.size > 1 else None)
    weight_dtype = np.dtype(np.int8)
    if grid_spec.bits <= 4 and layout.int4_packing is not None and \
            recipe.packs_int4(layout.int4_packing):
        weight_dtype = spec.INT4
    return {op.inputs[layout.weight_input]: TensorQuant(weight_params, grid_spec, weight_dtype),
            op.inputs[layout.bias_input]: TensorQuant(bias_params, None, np.dtype(bias_dtype))}


def _constant_operand(tensor: ir.Tensor, bits: int, symmetric: bool) -> TensorQuant:
    """A constant operand of an element-wise op (MUL / ADD / SUB, PRELU's alpha): per tensor
    like the activations (int8 asymmetric, int16 symmetric), or int8 symmetric where the op's
    rule asks for it."""
    data = tensor.data.astype(np.float64)
    operand_spec = spec.int8_weight(None) if symmetric and bits == 8 else activation_spec(bits)
    params = spec.params_from_range(data.min(initial=0.0), data.max(initial=0.0),
                                    operand_spec)
    return TensorQuant(params, operand_spec, operand_spec.storage_dtype())


@dataclasses.dataclass
class Params:
    """What params.compute decides: {tensor name: TensorQuant}, and {fixed-params tensor:
    QuantParams of its group} for the requantizations same-scale readers need."""

    tensors: dict
    requantize: dict


def compute(graph: ir.Graph, ranges: dict, recipe: Recipe) -> Params:
    """The params of a full-integer (int8 or 16x8) graph: activations, weights, biases and
    constant operands of every op that does not stay float, and the requantizations of
    fixed-params outputs. Constants must not be shared between ops
    (passes.unshare_constants)."""
    bits = 16 if recipe.mode == "int16x8" else 8
    activation = activation_spec(bits)
    activations = activation_params(graph, ranges, bits)
    result = {name: TensorQuant(p, activation, activation.storage_dtype())
              for name, p in activations.tensors.items()}
    for op in graph.ops:
        if op.keep_float:
            continue
        rule = ops.quant_rule(op.type)
        layout = ops.weight_layout(op.type)
        if layout is not None:
            input_scale = float(result[op.inputs[layout.data_input]].params.scale[0])
            result.update(_weights_and_bias(graph, op, recipe, input_scale,
                                            np.int32 if bits == 8 else np.int64))
            continue
        constant = tied_constant(graph, op)
        if constant is not None:
            result[constant] = result[op.outputs[0]]
        for i, name in enumerate(op.inputs):
            tensor = graph.tensors[name] if name else None
            if (tensor is None or not tensor.is_const or i in rule.int_inputs
                    or tensor.dtype != np.float32 or name == constant):
                continue
            result[name] = _constant_operand(tensor, bits, rule.symmetric_const_operands)
    return Params(result, activations.requantize)
