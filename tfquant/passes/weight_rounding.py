"""Data-driven weight rounding (Recipe.weight_rounding): each conv / depthwise / dense op's
weights take the integer codes that keep the op's output on the calibration data closest to
the float op's (GPTQ-style error compensation or AdaRound-style learned rounding, see
tfquant.rounding), on the grid round-to-nearest would use. The chosen weights are written back
as codes x scales with the scales pinned (ir.WeightGrid.scale), so the quantizer stores
exactly these codes: the TFLite model computes what the reconstruction optimised.

With Recipe.bias_correction, each rounded op's bias also absorbs the mean output shift of its
rounding, E[(W_q - W) x], from the exact mean input vectors (padding included)."""

from __future__ import annotations

import numpy as np

from tfquant import ir, ops, params, spec
from tfquant.progress import Progress
from tfquant.recipe import Recipe
from tfquant.rounding.adaround import adaround_codes
from tfquant.rounding.gptq import gptq_codes
from tfquant.rounding.statistics import InputStatistics


def rounding_targets(graph: ir.Graph, recipe: Recipe) -> dict:
    """{op output name: InputStatistics} of the ops whose weights Recipe.weight_rounding
    rounds (their inputs' statistics are then gathered by calibration)."""
    targets = {}
    for op in graph.ops:
        layout = ops.weight_layout(op.type)
        if layout is None or op.keep_float or op.weight_grid is not None or \
                any(n in op.source for n in recipe.int16_layers):
            continue
        weights = graph.tensors[op.inputs[layout.weight_input]]
        data = graph.tensors[op.inputs[layout.data_input]]
        if not weights.is_const or weights.dtype != np.float32 or data.is_const or \
                len(graph.consumers(weights.name)) != 1:
            continue
        if layout.columns(np.zeros((1,) + tuple(max(d, 1) for d in data.shape[1:]),
                                   np.float32), weights.shape, op.options, 1,
                          np.random.default_rng(0)) is None:
            continue
        targets[op.outputs[0]] = InputStatistics(graph, op, seed=len(targets))
    return targets


def observers(graph: ir.Graph, targets: dict) -> dict:
    """{input tensor name: [callables]} feeding each target's statistics (calibrate_all)."""
    found = {}
    for op in graph.ops:
        if op.outputs[0] in targets:
            name = op.inputs[ops.weight_layout(op.type).data_input]
            found.setdefault(name, []).append(targets[op.outputs[0]].observe)
    return found


def round_weights(graph: ir.Graph, targets: dict, recipe: Recipe,
                  show_progress: bool = True) -> ir.Graph:
    """The graph with every target op's weights rounded by recipe.weight_rounding."""
    graph = graph.copy()
    chosen = [op for op in graph.ops if op.outputs[0] in targets
              and targets[op.outputs[0]].ready]
    progress = Progress(f"rounding weights ({recipe.weight_rounding})", len(chosen),
                        enabled=show_progress)
    for op in chosen:
        _round_op(graph, op, targets[op.outputs[0]], recipe)
        progress.update()
    progress.close()
    return graph


def _round_op(graph: ir.Graph, op: ir.Op, stats: InputStatistics, recipe: Recipe):
    layout = ops.weight_layout(op.type)
    grid_spec, grid = params.weight_grid(graph, op, recipe)
    tensor = graph.tensors[op.inputs[layout.weight_input]]
    rows = layout.rows(tensor.data).astype(np.float64)
    scale = np.broadcast_to(grid.scale.astype(np.float64), rows.shape[:1])
    qmin, qmax = grid_spec.qmin, grid_spec.qmax
    codes = np.clip(spec.round_half_away(rows / scale[:, None]), qmin, qmax)
    columns = np.arange(rows.shape[1])
    for problem in stats.problems():
        picked = (problem.rows[:, :, None], columns[problem.inputs][None, None, :])
        w, s = rows[picked], scale[problem.rows]
        if recipe.weight_rounding == "gptq":
            codes[picked] = gptq_codes(w, s, problem.hessian, qmin, qmax)
        else:
            codes[picked] = adaround_codes(w, s, problem.hessian, qmin, qmax,
                                           recipe.rounding_iterations)
    rounded = codes * scale[:, None]
    if recipe.bias_correction:
        mean = stats.mean()
        if mean.ndim == 2:  # grouped rows: each row reads its group's mean vector
            mean = mean[:, layout.row_groups(tensor.shape, op.options)].T
        shift = ((rounded - rows) * mean).sum(axis=1)
        bias = graph.tensors[op.inputs[layout.bias_input]]
        graph.set_tensor(bias.name, data=(bias.data.astype(np.float64) - shift).astype(
            np.float32))
    graph.set_tensor(tensor.name, data=layout.from_rows(rounded, tensor.shape).astype(
        np.float32))
    graph.update_op(op, weight_grid=ir.WeightGrid(
        grid_spec.bits, True, grid.axis is not None,
        tuple(float(v) for v in grid.scale)))
