"""Empirical bias correction (Nagel et al. 2019): quantized weights shift each output
channel's mean by sum((W_q - W) * E[x]); subtract that shift from the float bias. E[x] is the
calibration data's per-channel mean of the op's input (zero-padded borders are ignored)."""

import numpy as np

from tfquant import ir, ops, params, spec
from tfquant.recipe import Recipe


def correct_bias(graph: ir.Graph, ranges: dict, recipe: Recipe) -> ir.Graph:
    """`ranges` must hold channel means (calibrate(channel_means=True)); ops whose input has
    none keep their bias, and so do ops with fixed weights (a source's codes, or weights
    passes.round_weights rounded and corrected itself)."""
    graph = graph.copy()
    for op in graph.ops:
        layout = ops.weight_layout(op.type)
        observed = ranges.get(op.inputs[layout.data_input]) if layout is not None else None
        if op.keep_float or layout is None or observed is None or op.fixed_weights or \
                observed.channel_mean is None:
            continue
        grid_spec, grid = params.weight_grid(graph, op, recipe)
        w = graph.tensors[op.inputs[layout.weight_input]].data.astype(np.float64)
        error = spec.fake_quantize(w, grid, grid_spec).astype(np.float64) - w
        shift = layout.mean_shift(error, np.asarray(observed.channel_mean, np.float64),
                                  op.options)
        if shift is None:
            continue
        bias = graph.tensors[op.inputs[layout.bias_input]]
        graph.set_tensor(bias.name, data=(bias.data.astype(np.float64) - shift).astype(
            np.float32))
    return graph
