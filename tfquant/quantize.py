"""The quantization modes as chains of passes over a canonical float graph:

  integer (int8, 16x8):  unshare constants -> [16x8: float ops without int16 kernels]
                         -> [bias correction] -> params.compute -> apply params
                         -> requantize fixed outputs -> float islands -> I/O boundary
  weights_only:          int8 weights for the dynamic-range (hybrid) kernels
  float16:               float16 weights behind DEQUANTIZE
"""

from __future__ import annotations

import numpy as np

from tfquant import ir, ops, params, spec
from tfquant.errors import ConversionError
from tfquant.passes.apply_params import apply_params
from tfquant.passes.bias_correction import correct_bias
from tfquant.passes.float_islands import isolate_float_ops
from tfquant.passes.io_boundary import quantize_io
from tfquant.passes.keep_float import keep_float_without_int16_kernel
from tfquant.passes.requantize import requantize_fixed_outputs
from tfquant.passes.unshare_constants import unshare_constants
from tfquant.recipe import Recipe
from tfquant.spec import QuantParams


def _check_supported(graph: ir.Graph):
    unknown = [op for op in graph.ops if ops.quant_rule(op.type) is None and not op.keep_float]
    if unknown:
        raise ConversionError("ops without an int8 implementation: "
                              + ", ".join(op.label for op in unknown))


def quantize_int8(graph: ir.Graph, ranges: dict, recipe: Recipe) -> ir.Graph:
    """Full-integer quantization (int8, or 16x8 when recipe.mode is "int16x8") of a canonical
    float graph with calibrated ranges."""
    _check_supported(graph)
    graph = unshare_constants(graph)
    if recipe.mode == "int16x8":
        graph = keep_float_without_int16_kernel(graph)
    if recipe.bias_correction:
        graph = correct_bias(graph, ranges, recipe)
    decided = params.compute(graph, ranges, recipe)
    graph = apply_params(graph, decided.tensors)
    graph = requantize_fixed_outputs(graph, decided.requantize)
    graph = isolate_float_ops(graph)
    graph = quantize_io(graph, recipe)
    graph.toposort()
    graph.validate()
    return graph


def quantize_weights_only(graph: ir.Graph, recipe: Recipe) -> ir.Graph:
    """Weight-only ("dynamic range") quantization: int8 weights, float activations; the
    runtime's hybrid kernels quantize activations on the fly. What hybrid kernels accept
    differs by op (WeightLayout.hybrid_per_channel, tests/test_quantize.py checks it)."""
    graph = unshare_constants(graph)
    for op in graph.ops:
        layout = ops.weight_layout(op.type)
        if layout is None or op.keep_float or not layout.hybrid:
            continue
        per_channel = False if layout.hybrid_per_channel is False else None
        grid_spec, grid = params.weight_grid(graph, op, recipe, per_channel)
        name = op.inputs[layout.weight_input]
        codes = spec.quantize(graph.tensors[name].data, grid, grid_spec)
        if layout.hybrid_per_channel and grid.axis is None:
            channels = codes.shape[layout.output_axis]
            grid = QuantParams(np.repeat(grid.scale, channels), np.zeros(channels, np.int64),
                               layout.output_axis)
        graph.set_tensor(name, data=codes, dtype=np.dtype(np.int8), quant=grid)
        options = layout.hybrid_options(op.options)
        if options != op.options:
            graph.update_op(op, options=options)
    graph.validate()
    return graph


def quantize_float16(graph: ir.Graph) -> ir.Graph:
    """float16 weights: every float32 constant becomes a float16 constant read through a
    DEQUANTIZE op (half the size; the kernels still compute in float32), as TFLiteConverter's
    float16 quantization writes it."""
    graph = unshare_constants(graph)
    for op in graph.ops:
        rule = ops.quant_rule(op.type)
        if op.keep_float and rule is None:
            continue  # opaque float-fallback ops keep their own constants
        inputs = list(op.inputs)
        for i, name in enumerate(inputs):
            tensor = graph.tensors[name] if name else None
            if (tensor is None or not tensor.is_const or tensor.dtype != np.float32
                    or (rule is not None and i in rule.int_inputs)):
                continue
            half = graph.add_const(name + "/fp16", tensor.data.astype(np.float16), np.float16)
            inputs[i] = graph.add_tensor(name + "/dequantized", tensor.shape)
            graph.add_op("DEQUANTIZE", [half], [inputs[i]], source=op.source)
        if tuple(inputs) != op.inputs:
            graph.update_op(op, inputs=tuple(inputs))
    graph.toposort()
    graph.prune()
    graph.validate()
    return graph
