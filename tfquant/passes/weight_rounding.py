"""Data-driven weight rounding (Recipe.weight_rounding): each conv / depthwise / dense op's
weights take the integer codes that keep the op's output on the calibration data closest to
the float op's (GPTQ-style error compensation or AdaRound-style learned rounding, see
tfquant.rounding), on a grid round-to-nearest could use. The chosen weights are written back
as codes x scales with the scales pinned (ir.WeightGrid.scale), so the quantizer stores
exactly these codes: the TFLite model computes what the reconstruction optimised. Each
weight tensor's grid is the one, of max-|w| and MSE clipping (Recipe.weight_range_method's
choices), on which the reconstructed output error is smaller.

With Recipe.bias_correction, each rounded op's bias also absorbs the mean output shift of its
rounding, E[(W_q - W) x], from the exact mean input vectors (padding included); weights read
by several ops keep their biases."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfquant import ir, ops, params, spec
from tfquant.progress import Progress
from tfquant.recipe import WEIGHT_RANGE_METHODS, Recipe
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
        # A one-sample probe: None where the layout has no reconstruction (TRANSPOSE_CONV) or
        # the input's shape does not fit the weights.
        if layout.columns(np.zeros((1,) + tuple(max(d, 1) for d in data.shape[1:]),
                                   np.float32), weights.shape, first.options, 1,
                          np.random.default_rng(0)) is None:
            continue
        after = graph.consumers(first.outputs[0])
        activation = after[0].type if len(readers) == 1 and len(after) == 1 and \
            getattr(first.options, "fused_activation", "NONE") == "NONE" else None
        targets[name] = InputStatistics(graph, first, seed=len(targets), activation=activation)
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


def _reconstruct(rows, problems, grid_spec, grid, recipe: Recipe) -> tuple:
    """(output error, codes, row scales, spec, params) of the rows on one grid: per problem,
    the method's codes, or the nearest ones where those reconstruct it better (a safety net:
    the method minimises the same error, but not always to below round-to-nearest's)."""
    scale = np.broadcast_to(grid.scale.astype(np.float64), rows.shape[:1])
    qmin, qmax = grid_spec.qmin, grid_spec.qmax
    codes = np.clip(spec.round_half_away(rows / scale[:, None]), qmin, qmax)
    columns = np.arange(rows.shape[1])
    error = 0.0
    for problem in problems:
        picked = (problem.rows[:, :, None], columns[problem.inputs][None, None, :])
        w, s = rows[picked], scale[problem.rows]
        if recipe.weight_rounding == "gptq":
            found = gptq_codes(w, s, problem.hessian, qmin, qmax)
        else:
            found = adaround_codes(w, s, problem.hessian, qmin, qmax,
                                   recipe.rounding_iterations)
        errors = [_group_errors(c, s, w, problem.hessian) for c in (found, codes[picked])]
        better = (errors[0] <= errors[1])[:, None, None]
        codes[picked] = np.where(better, found, codes[picked])
        error += float(np.minimum(*errors).sum())
    return error, codes, scale, grid_spec, grid


def _group_errors(codes, scale, w, hessian) -> np.ndarray:
    """tr(D H D^T) of each group."""
    delta = codes * scale[:, :, None] - w
    return np.einsum("grk,grk->g", delta @ hessian, delta)


def _round_weights(graph: ir.Graph, name: str, stats: InputStatistics, recipe: Recipe):
    readers = graph.consumers(name)
    op = readers[0]
    layout = ops.weight_layout(op.type)
    tensor = graph.tensors[name]
    rows = layout.rows(tensor.data).astype(np.float64)
    problems = stats.problems()
    candidates = [_reconstruct(rows, problems, *params.weight_grid(graph, op, dataclasses.replace(
        recipe, weight_range_method=method)), recipe) for method in WEIGHT_RANGE_METHODS]
    _, codes, scale, grid_spec, grid = min(candidates, key=lambda c: c[0])
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
