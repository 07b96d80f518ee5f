"""Data-driven weight rounding (Recipe.weight_rounding): each conv / depthwise / dense op's
weights take the integer codes that keep the op's output on the calibration data closest to
the float op's (GPTQ-style error compensation or AdaRound-style learned rounding, see
tfquant.rounding), on the grid round-to-nearest would use. The chosen weights are written back
as codes x scales with the scales pinned (ir.WeightGrid.scale), so the quantizer stores
exactly these codes: the TFLite model computes what the reconstruction optimised.

With Recipe.bias_correction, each rounded op's bias also absorbs the mean output shift of its
rounding, E[(W_q - W) x], from the exact mean input vectors (padding included); weights read
by several ops keep their biases."""

from __future__ import annotations

import numpy as np

from tfquant import ir, ops, params, spec
from tfquant.progress import Progress
from tfquant.recipe import Recipe
from tfquant.rounding.adaround import adaround_codes
from tfquant.rounding.gptq import gptq_codes
from tfquant.rounding.statistics import InputStatistics


def rounding_targets(graph: ir.Graph, recipe: Recipe) -> dict:
    """{weight tensor name: InputStatistics} of the weights Recipe.weight_rounding rounds
    (their inputs' statistics are then gathered by calibration). Weights several ops read
    alike (an unrolled RNN's steps) are one target: their statistics pool every reader's
    inputs, the sum of the readers' output errors."""
    targets = {}
    for name, readers in _readers_by_weights(graph).items():
        first = readers[0]
        layout = ops.weight_layout(first.type)
        weights = graph.tensors[name]
        if not weights.is_const or weights.dtype != np.float32:
            continue
        if any(op.type != first.type or op.options != first.options or op.keep_float
               or op.weight_grid is not None or op.inputs[layout.weight_input] != name
               or graph.tensors[op.inputs[layout.data_input]].is_const
               or any(n in op.source for n in recipe.int16_layers) for op in readers):
            continue
        data = graph.tensors[first.inputs[layout.data_input]]
        if layout.columns(np.zeros((1,) + tuple(max(d, 1) for d in data.shape[1:]),
                                   np.float32), weights.shape, first.options, 1,
                          np.random.default_rng(0)) is None:
            continue
        targets[name] = InputStatistics(graph, first, seed=len(targets))
    return targets


def _readers_by_weights(graph: ir.Graph) -> dict:
    """{weight tensor name: the ops with a weight layout reading it} (graph order)."""
    found = {}
    for op in graph.ops:
        layout = ops.weight_layout(op.type)
        if layout is not None:
            found.setdefault(op.inputs[layout.weight_input], []).append(op)
    return {name: readers for name, readers in found.items()
            if len(graph.consumers(name)) == len(readers)}


def observers(graph: ir.Graph, targets: dict) -> dict:
    """{input tensor name: [callables]} feeding each target's statistics (calibrate_all)."""
    found = {}
    for name, stats in targets.items():
        for op in graph.consumers(name):
            data = op.inputs[ops.weight_layout(op.type).data_input]
            found.setdefault(data, []).append(stats.observe)
    return found


def round_weights(graph: ir.Graph, targets: dict, recipe: Recipe,
                  show_progress: bool = True) -> ir.Graph:
    """The graph with every target's weights rounded by recipe.weight_rounding."""
    graph = graph.copy()
    chosen = [name for name, stats in targets.items() if stats.ready]
    progress = Progress(f"rounding weights ({recipe.weight_rounding})", len(chosen),
                        enabled=show_progress)
    for name in chosen:
        _round_weights(graph, name, targets[name], recipe)
        progress.update()
    progress.close()
    return graph


def _round_weights(graph: ir.Graph, name: str, stats: InputStatistics, recipe: Recipe):
    readers = graph.consumers(name)
    op = readers[0]
    layout = ops.weight_layout(op.type)
    grid_spec, grid = params.weight_grid(graph, op, recipe)
    tensor = graph.tensors[name]
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
    if recipe.bias_correction and len(readers) == 1:  # pooled readers: no one mean
        mean = stats.mean()
        if mean.ndim == 2:  # grouped rows: each row reads its group's mean vector
            mean = mean[:, layout.row_groups(tensor.shape, op.options)].T
        shift = ((rounded - rows) * mean).sum(axis=1)
        bias = graph.tensors[op.inputs[layout.bias_input]]
        graph.set_tensor(bias.name, data=(bias.data.astype(np.float64) - shift).astype(
            np.float32))
    graph.set_tensor(tensor.name, data=layout.from_rows(rounded, tensor.shape).astype(
        np.float32))
    pinned = ir.WeightGrid(grid_spec.bits, True, grid.axis is not None,
                           tuple(float(v) for v in grid.scale))
    for reader in readers:
        graph.update_op(reader, weight_grid=pinned)
