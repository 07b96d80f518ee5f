"""Recipe + tensor ranges -> a quantized IR graph ready for the writer.

This is where the TFLite int8 specification is applied (via op_constraints): int8 symmetric
narrow-range weights (per channel by default), int32 biases with scale input * weight, int8
asymmetric per-tensor activations, shared params for same-scale ops, fixed params for SOFTMAX /
LOGISTIC / TANH, and QUANTIZE / DEQUANTIZE at the model boundary as the recipe asks.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfquant import ir, spec, writer
from tfquant.errors import ConversionError
from tfquant.frontends.float_fallback import FLOAT_FALLBACK
from tfquant.op_constraints import OP_CONSTRAINTS, constraint
from tfquant.recipe import INT4_PACKING, Recipe
from tfquant.spec import QuantParams

log = logging.getLogger("tfquant")

_INT32_MAX = 2 ** 31 - 1
_ACTIVATION_DTYPES = (np.dtype(np.int8), np.dtype(np.int16))
# The reference SOFTMAX kernel aborts when beta * input_scale * 2^26 <= 1
# (notes/tflite-int8.md section 2); keep a margin above that bound.
_SOFTMAX_MIN_SCALE_TIMES_BETA = 2.0 / 2 ** 26


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> dict:
        out = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return out


def _float_activations(graph: ir.Graph) -> list:
    return [n for n in graph.activation_tensors() if graph.tensors[n].dtype == np.float32]


def same_scale_groups(graph: ir.Graph) -> list:
    """Sets of activation tensors that must share quantization params (same-scale ops)."""
    uf = _UnionFind()
    for name in _float_activations(graph):
        uf.find(name)
    for op in graph.ops:
        c = OP_CONSTRAINTS.get(op.type)
        if c is None or not c.same_scale or op.stays_float:
            continue
        tied = [n for i, n in enumerate(op.inputs)
                if n and not graph.tensors[n].is_const and i not in c.int_inputs]
        if not c.same_scale_all_inputs:
            tied = tied[:1]
        for name in tied:
            uf.union(name, op.outputs[0])
    return list(uf.groups().values())


def _inside_float_island(graph: ir.Graph, name: str, producers: dict) -> bool:
    op = producers.get(name)
    return (op is not None and op.stays_float and name not in graph.outputs
            and all(c.stays_float for c in graph.consumers(name)))


def _activation_params(graph: ir.Graph, ranges: dict, bits: int = 8) -> dict:
    """Params of every activation tensor: fixed where the op dictates, else from ranges."""
    producers = {out: op for op in graph.ops for out in op.outputs}
    params = {}
    for group in same_scale_groups(graph):
        fixed = set()
        for name in group:
            op = producers.get(name)
            if op is not None and not op.stays_float and op.type in OP_CONSTRAINTS and \
                    constraint(op.type).fixed_output:
                fixed.add(constraint(op.type).fixed_output[bits])
        if len(fixed) > 1:
            raise ConversionError(
                f"tensors {sorted(group)} must share quantization params but come from ops "
                f"with different fixed output params {sorted(fixed)}")
        if fixed:
            scale, zero_point = fixed.pop()
            group_params = QuantParams.per_tensor(scale, zero_point)
        else:
            known = [ranges[n] for n in group if n in ranges]
            if not known and all(_inside_float_island(graph, n, producers) for n in group):
                continue  # read and written by float ops only: it stays float, no params
            if not known:
                raise ConversionError(
                    f"no range for tensor(s) {sorted(group)}: calibrate with representative "
                    "data, or (QAT models) put an ActivationQuantizer after the layer that "
                    "produces it")
            group_params = spec.params_from_range(min(r.min for r in known),
                                                  max(r.max for r in known),
                                                  _activation_spec(bits))
        for name in group:
            params[name] = group_params
    if bits == 8:
        _guard_softmax_inputs(graph, params)
    _guard_activation_clamps(graph, params)
    return params


def _activation_spec(bits: int):
    """int8 asymmetric activations, or int16 symmetric ones (16x8 mode)."""
    return spec.INT8_ACTIVATION if bits == 8 else spec.INT16_ACTIVATION


# Upper clamp of the fused activations with one; TFLite's kernels compute zp + round(bound / scale)
# in int32 and refuse the model at allocation when that overflows.
_CLAMP_BOUNDS = {"RELU6": 6.0, "RELU_N1_TO_1": 1.0}


def _guard_activation_clamps(graph: ir.Graph, params: dict):
    for op in graph.ops:
        bound = _CLAMP_BOUNDS.get(op.options.get("fused_activation", "NONE"))
        if bound is None or op.stays_float or op.outputs[0] not in params:
            continue
        current = params[op.outputs[0]]
        minimum = bound / 2.0 ** 30
        if current.scale[0] >= minimum:
            continue
        log.warning("%s: output range is too small for TFLite's int8 activation clamp (scale "
                    "%.3g; the calibration data hardly excites this layer); widening it to "
                    "scale %.3g", op.label, current.scale[0], minimum)
        widened = QuantParams.per_tensor(minimum, int(current.zero_point[0]))
        for name, p in params.items():
            if p is current:
                params[name] = widened


def _guard_softmax_inputs(graph: ir.Graph, params: dict):
    for op in graph.ops_of_type("SOFTMAX"):
        beta = float(op.options.get("beta", 1.0))
        source = op.inputs[0]
        current = params[source]
        minimum = _SOFTMAX_MIN_SCALE_TIMES_BETA / beta
        if current.scale[0] >= minimum:
            continue
        log.warning("softmax %s: input range is too small for TFLite's int8 softmax "
                    "(scale %.3g); widening it to scale %.3g", op.label, current.scale[0],
                    minimum)
        widened = QuantParams.per_tensor(minimum, int(current.zero_point[0]))
        for name, p in params.items():
            if p is current:
                params[name] = widened


def _weight_axis(op: ir.Op, recipe: Recipe):
    c = constraint(op.type)
    per_channel = recipe.dense_per_channel if op.type == "FULLY_CONNECTED" else \
        recipe.per_channel
    return c.weight_axis if per_channel else None


def _weight_params(graph: ir.Graph, op: ir.Op, recipe: Recipe):
    """(weight tensor, spec, params) for an op's float weights: int8 symmetric narrow range,
    per channel along the op's weight axis unless the recipe says per-tensor."""
    c = constraint(op.type)
    weights = graph.tensors[op.inputs[c.weight_input]]
    weight_spec = dataclasses.replace(spec.int8_weight(_weight_axis(op, recipe)),
                                      bits=recipe.weight_bits)
    trained = op.options.get("qat_weights")
    if trained is not None:  # a QAT layer: the grid it trained on
        if not trained["symmetric"]:
            raise ConversionError(
                f"{op.label} was trained with asymmetric weights, which TFLite cannot hold "
                "(int8 weights have zero point 0); asymmetric weights are simulation only - "
                "train with QatRecipe(weight_symmetric=True) to export")
        weight_spec = spec.QuantSpec(bits=trained["bits"], signed=True, symmetric=True,
                                     narrow_range=True,
                                     axis=c.weight_axis if trained["per_channel"] else None)
        if weight_spec.bits > 8:
            raise ConversionError(f"{op.label} was trained with {weight_spec.bits}-bit weights; "
                                  "TFLite int8 models hold weights of at most 8 bits")
    if recipe.weight_range_method == "mse" and trained is None:
        rmin, rmax = spec.mse_optimal_weight_range(weights.data, weight_spec.axis, weight_spec)
    else:
        rmin, rmax = spec.weight_range(weights.data, weight_spec.axis)
    params = spec.params_from_range(rmin, rmax, weight_spec)
    return weights, weight_spec, params


def _quantize_weights_and_bias(graph, op, input_scale, weights, weight_spec, weight_params,
                               bias_dtype=np.int32):
    """int8 weights and an int32 bias with scale input_scale * weight_scale; weight scales of
    channels whose bias would overflow int32 are raised so that it fits."""
    c = constraint(op.type)
    bias = graph.tensors[op.inputs[c.bias_input]]
    b = bias.data.astype(np.float64)
    w_scale = weight_params.scale.astype(np.float64)
    if w_scale.size == 1:
        w_scale = np.full(b.shape, w_scale[0])
        needed = np.max(np.abs(b)) / (input_scale * _INT32_MAX) if b.size else 0.0
        w_scale = np.maximum(w_scale, needed)
        per_tensor = True
    else:
        w_scale = np.maximum(w_scale, np.abs(b) / (input_scale * _INT32_MAX))
        per_tensor = False
    weight_params = QuantParams(w_scale[:1] if per_tensor else w_scale,
                                np.zeros(1 if per_tensor else w_scale.size, np.int64),
                                weight_spec.axis)
    weights.data = spec.quantize(weights.data, weight_params, weight_spec)
    weights.dtype, weights.quant = np.dtype(np.int8), weight_params
    bias_scale = (input_scale * weight_params.scale.astype(np.float64)).astype(np.float32)
    bias_scale_b = np.broadcast_to(bias_scale, b.shape).astype(np.float64)
    codes = np.sign(b) * np.floor(np.abs(b) / bias_scale_b + 0.5)
    limit = _INT32_MAX if bias_dtype == np.int32 else 2 ** 63 - 1024
    bias.data = np.clip(codes, -limit, limit).astype(bias_dtype)
    bias.dtype = np.dtype(bias_dtype)
    bias.quant = QuantParams(bias_scale, np.zeros(bias_scale.size, np.int64),
                             0 if bias_scale.size > 1 else None)


def _correct_bias(graph, op, weights, weight_spec, weight_params, ranges):
    """Empirical bias correction (Nagel et al. 2019): the quantized weights shift each output
    channel's mean by sum((W_q - W) * E[x]); subtract that shift from the float bias. E[x] is the
    calibration data's per-channel mean of the op's input (zero-padded borders are ignored)."""
    observed = ranges.get(op.inputs[0])
    if observed is None or observed.channel_mean is None:
        return
    mean = np.asarray(observed.channel_mean, np.float64)
    w = weights.data.astype(np.float64)
    error = spec.fake_quantize(w, weight_params, weight_spec).astype(np.float64) - w
    if op.type == "DEPTHWISE_CONV_2D":  # [1, kh, kw, in * multiplier]
        multiplier = op.options.get("depth_multiplier", 1)
        shift = error.sum(axis=(0, 1, 2)) * np.repeat(mean, multiplier)
    elif op.type == "CONV_2D":  # [out, kh, kw, in]
        shift = (error.sum(axis=(1, 2)) * mean[None, :]).sum(axis=1)
    else:  # FULLY_CONNECTED [out, in]
        if mean.size != error.shape[1]:
            return
        shift = error @ mean
    bias = graph.tensors[op.inputs[constraint(op.type).bias_input]]
    bias.data = (bias.data.astype(np.float64) - shift).astype(np.float32)


def _quantize_const_operand(tensor: ir.Tensor, bits: int = 8, symmetric: bool = False):
    """A constant operand of an elementwise op (MUL/ADD/SUB, PRELU's alpha): quantized
    per-tensor like the activations (int8 asymmetric, or int16 symmetric in 16x8 mode), or int8
    symmetric where the op's constraint asks for it."""
    data = tensor.data.astype(np.float64)
    operand_spec = spec.int8_weight(None) if symmetric and bits == 8 else _activation_spec(bits)
    params = spec.params_from_range(data.min(initial=0.0), data.max(initial=0.0), operand_spec)
    tensor.data = spec.quantize(data, params, operand_spec)
    tensor.dtype, tensor.quant = operand_spec.storage_dtype(), params


def _unshare_constants(graph: ir.Graph):
    """Give every op its own copy of shared constant tensors (each is quantized per use)."""
    seen = set()
    for op in graph.ops:
        for i, name in enumerate(op.inputs):
            if name and graph.tensors[name].is_const:
                if name in seen:
                    t = graph.tensors[name]
                    op.inputs[i] = graph.add_tensor(name, t.shape, t.dtype, t.data.copy())
                seen.add(op.inputs[i])


def _check_supported(graph: ir.Graph):
    unknown = [op for op in graph.ops if op.type not in OP_CONSTRAINTS and not op.stays_float]
    if unknown:
        raise ConversionError("ops without an int8 implementation: "
                              + ", ".join(op.label for op in unknown))


def _quantize_io(graph: ir.Graph, recipe: Recipe):
    """QUANTIZE / DEQUANTIZE at the model boundary, or integer I/O as the recipe asks."""
    new_inputs = []
    for name in graph.inputs:
        tensor = graph.tensors[name]
        kind = recipe.inference_input_type
        if kind == "int8":
            new_inputs.append(name)
            continue
        inner = graph.unique_name(name + "/int8")
        graph.tensors[inner] = ir.Tensor(inner, tensor.shape, tensor.dtype, quant=tensor.quant)
        graph.replace_uses(name, inner)
        if kind == "uint8":
            tensor.dtype = np.dtype(np.uint8)
            tensor.quant = QuantParams(tensor.quant.scale, tensor.quant.zero_point + 128)
        else:
            tensor.dtype, tensor.quant = np.dtype(np.float32), None
        graph.ops.insert(0, ir.Op("QUANTIZE", [name], [inner], source=("input",)))
        new_inputs.append(name)
    graph.inputs = new_inputs

    kind = recipe.inference_output_type
    for name in list(graph.outputs):
        tensor = graph.tensors[name]
        if kind == "int8" or tensor.dtype == np.float32:  # float outputs of float-fallback ops
            continue
        inner = graph.unique_name(name + "/int8")
        graph.tensors[inner] = ir.Tensor(inner, tensor.shape, tensor.dtype, quant=tensor.quant)
        for op in graph.ops:
            op.outputs = [inner if n == name else n for n in op.outputs]
            op.inputs = [inner if n == name else n for n in op.inputs]
        if kind == "uint8":
            tensor.dtype = np.dtype(np.uint8)
            tensor.quant = QuantParams(tensor.quant.scale, tensor.quant.zero_point + 128)
            graph.ops.append(ir.Op("QUANTIZE", [inner], [name], source=("output",)))
        else:
            tensor.dtype, tensor.quant = np.dtype(np.float32), None
            graph.ops.append(ir.Op("DEQUANTIZE", [inner], [name], source=("output",)))


def quantize_int8(graph: ir.Graph, ranges: dict, recipe: Recipe) -> ir.Graph:
    """Full-integer quantization of a canonical float graph with calibrated ranges."""
    graph = graph.copy()
    _check_supported(graph)
    _unshare_constants(graph)
    bits = 16 if recipe.mode == "int16x8" else 8
    if bits == 16:
        _keep_float_without_int16_kernel(graph)
    params = _activation_params(graph, ranges, bits)
    for name, p in params.items():
        tensor = graph.tensors[name]
        tensor.dtype, tensor.quant = _activation_spec(bits).storage_dtype(), p

    _isolate_float_ops(graph)
    for op in graph.ops:
        if op.stays_float:
            continue
        c = constraint(op.type)
        if c.weight_input is not None:
            weights, weight_spec, weight_params = _weight_params(graph, op, recipe)
            if recipe.bias_correction:
                _correct_bias(graph, op, weights, weight_spec, weight_params, ranges)
            input_scale = float(graph.tensors[op.inputs[0]].quant.scale[0])
            _quantize_weights_and_bias(graph, op, input_scale, weights, weight_spec,
                                       weight_params, np.int32 if bits == 8 else np.int64)
            if weight_spec.bits <= 4 and op.type in INT4_PACKING[recipe.int4_packing]:
                weights.data = weights.data.astype(writer.INT4)
                weights.dtype = writer.INT4
            continue
        for i, name in enumerate(op.inputs):
            tensor = graph.tensors[name] if name else None
            if tensor is None or not tensor.is_const or i in c.int_inputs:
                continue
            if tensor.dtype != np.float32:
                continue
            _quantize_const_operand(tensor, bits, c.symmetric_const_operands)
    _quantize_io(graph, recipe)
    graph.toposort()
    graph.validate()
    return graph


def _keep_float_without_int16_kernel(graph: ir.Graph):
    """16x8 mode: ops TFLite has no int16 kernel for (HARD_SWISH) run in float between a
    DEQUANTIZE and a QUANTIZE instead of failing when the model is run."""
    kept = {}
    for op in graph.ops:
        if not op.stays_float and not constraint(op.type).int16:
            op.options[FLOAT_FALLBACK] = True
            kept.setdefault(op.type, []).append(op.label)
    for op_type, labels in kept.items():
        log.warning("TFLite has no int16 kernel for %s: %d op(s) run in float inside the 16x8 "
                    "model (%s%s)", op_type, len(labels), ", ".join(labels[:3]),
                    " ..." if len(labels) > 3 else "")


def _isolate_float_ops(graph: ir.Graph):
    """Float-fallback ops read and write float: their outputs go back to float32, int8 inputs
    get a DEQUANTIZE, and outputs read by quantized ops get a QUANTIZE (with the params
    calibrated for that tensor)."""
    float_ops = [op for op in graph.ops if op.stays_float]
    int8_params = {}
    for op in float_ops:
        for name in op.outputs:
            tensor = graph.tensors[name]
            if tensor.dtype in _ACTIVATION_DTYPES:
                int8_params[name] = (tensor.quant, tensor.dtype)
                tensor.dtype, tensor.quant = np.dtype(np.float32), None
    dequantized = {}
    for op in float_ops:
        for i, name in enumerate(op.inputs):
            tensor = graph.tensors[name] if name else None
            if tensor is None or tensor.is_const or tensor.dtype not in _ACTIVATION_DTYPES:
                continue
            if name not in dequantized:
                twin = graph.add_tensor(name + "/dequantized", tensor.shape)
                graph.ops.append(ir.Op("DEQUANTIZE", [name], [twin], source=op.source))
                dequantized[name] = twin
            op.inputs[i] = dequantized[name]
    for name, (params, dtype) in int8_params.items():
        quantized_readers = [c for c in graph.consumers(name) if not c.stays_float]
        if quantized_readers:
            twin = graph.add_tensor(name + "/quantized", graph.tensors[name].shape, dtype)
            graph.tensors[twin].quant = params
            graph.ops.append(ir.Op("QUANTIZE", [name], [twin],
                                   source=graph.producer(name).source))
            graph.replace_uses(name, twin, ops=quantized_readers)
    graph.toposort()


def quantize_weights_only(graph: ir.Graph, recipe: Recipe) -> ir.Graph:
    """Weight-only ("dynamic range") quantization: int8 weights, float activations; the
    runtime's hybrid kernels quantize activations on the fly.

    Two runtime facts shape the format (tests/test_quantize.py checks both): hybrid
    FULLY_CONNECTED ignores per-channel scales on tflite-runtime 2.14, so its weights are always
    per-tensor; hybrid DEPTHWISE_CONV_2D reads one scale per channel on every runtime, so a
    per-tensor scale is written once per channel.
    """
    graph = graph.copy()
    _unshare_constants(graph)
    for op in graph.ops:
        c = OP_CONSTRAINTS.get(op.type)
        if c is None or c.weight_input is None or op.stays_float:
            continue
        if op.type == "FULLY_CONNECTED":
            recipe_for_op = dataclasses.replace(recipe, per_channel_dense=False)
        else:
            recipe_for_op = recipe
        weights, weight_spec, weight_params = _weight_params(graph, op, recipe_for_op)
        weights.data = spec.quantize(weights.data, weight_params, weight_spec)
        if op.type == "DEPTHWISE_CONV_2D" and weight_params.axis is None:
            channels = weights.shape[c.weight_axis]
            weight_params = QuantParams(np.repeat(weight_params.scale, channels),
                                        np.zeros(channels, np.int64), c.weight_axis)
        weights.dtype, weights.quant = np.dtype(np.int8), weight_params
        if op.type == "FULLY_CONNECTED":
            # Quantize the float input with its own zero point at run time, as TFLiteConverter.
            op.options["asymmetric_quantize_inputs"] = True
    graph.validate()
    return graph


def quantize_float16(graph: ir.Graph) -> ir.Graph:
    """float16 weights: every float32 constant becomes a float16 constant read through a
    DEQUANTIZE op (half the size; the kernels still compute in float32), as TFLiteConverter's
    float16 quantization writes it."""
    graph = graph.copy()
    _unshare_constants(graph)
    for op in list(graph.ops):
        if op.stays_float and op.type not in OP_CONSTRAINTS:
            continue  # opaque float-fallback ops keep their own constants
        c = OP_CONSTRAINTS.get(op.type)
        for i, name in enumerate(op.inputs):
            tensor = graph.tensors[name] if name else None
            if (tensor is None or not tensor.is_const or tensor.dtype != np.float32
                    or (c is not None and i in c.int_inputs)):
                continue
            half = graph.add_const(name + "/fp16", tensor.data.astype(np.float16), np.float16)
            widened = graph.add_tensor(name + "/dequantized", tensor.shape)
            graph.ops.append(ir.Op("DEQUANTIZE", [half], [widened], source=op.source))
            op.inputs[i] = widened
    graph.toposort()
    graph.prune()
    graph.validate()
    return graph
