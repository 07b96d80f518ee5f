"""The second moments E[x x^T] (the layer-wise Hessian of the squared output error, up to a
factor 2) and means E[x] of the input vectors each weight row multiplies, gathered from the
calibration pass (tfquant.calibrate observers).

Memory and time stay bounded on large layers: at most COLUMN_BUDGET // K^2 vectors (within
[MIN_COLUMNS, MAX_COLUMNS]) are sampled from each batch, and layers with K inputs per row keep
E[x x^T] in diagonal blocks of at most HESSIAN_BUDGET // K inputs (<= 256 MB per layer in
float64); the rounding treats the blocks as independent.

An op whose output goes through a saturating activation (LOGISTIC, TANH: a sigmoid mask, a
bounded output) is reconstructed after it, to first order: each output channel r gets its own
E[f'(z_r)^2 x x^T], so errors where the activation is flat count little (the layer-wise
objective otherwise spends its codes on saturated logits). Only while R K^2 fits the Hessian
budget; larger layers keep the shared E[x x^T]."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from tfquant import ir, ops

COLUMN_BUDGET = 2 ** 28  # multiply-adds per batch and layer
MIN_COLUMNS, MAX_COLUMNS = 256, 4096
MAX_BLOCK = 4096
HESSIAN_BUDGET = 2 ** 25  # float64 values per layer
# Each saturating activation and its derivative (from its output value).
SATURATING = {"LOGISTIC": (lambda z: 1.0 / (1.0 + np.exp(-z)), lambda y: y * (1.0 - y)),
              "TANH": (np.tanh, lambda y: 1.0 - y * y)}


@dataclasses.dataclass
class Problem:
    """One independent reconstruction: rows [G, r, k] of weights (r rows of each of G groups)
    that read inputs of second moment `hessian` [G, k, k]; `rows` and `inputs` index the op's
    2-D weight rows [R, K] (layout.rows)."""

    rows: np.ndarray  # [G, r] row indices
    inputs: slice  # the K range
    hessian: np.ndarray  # [G, k, k], E[x x^T]


class InputStatistics:
    """E[x x^T] and E[x] of the vectors one op's weight rows multiply."""

    def __init__(self, graph: ir.Graph, op: ir.Op, seed: int = 0,
                 activation: Optional[str] = None):
        self.layout = ops.weight_layout(op.type)
        self.options = op.options
        weights = graph.tensors[op.inputs[self.layout.weight_input]].data
        self.w_shape = weights.shape
        rows = self.layout.rows(weights)
        self.num_rows, k = rows.shape
        self.groups = self.layout.row_groups(self.w_shape, op.options)
        self.per_batch = int(np.clip(COLUMN_BUDGET // k ** 2, MIN_COLUMNS, MAX_COLUMNS))
        size = k if self.groups is not None else min(k, MAX_BLOCK,
                                                     max(HESSIAN_BUDGET // k, 256))
        self.blocks = [slice(a, min(a + size, k)) for a in range(0, k, size)]
        # (activation, derivative, rows [R, K], bias [R]) when reconstructed after it
        self.activation = None
        if activation in SATURATING and self.groups is None and \
                self.num_rows * k * k <= HESSIAN_BUDGET:
            bias = graph.tensors[op.inputs[self.layout.bias_input]].data
            self.activation = (*SATURATING[activation], rows, bias)
            self.blocks = [slice(0, k)]
            self.per_batch = int(np.clip(COLUMN_BUDGET // (self.num_rows * k * k), MIN_COLUMNS,
                                         MAX_COLUMNS))
        self.rng = np.random.default_rng(seed)
        self.moments: Optional[list] = None
        self.total: Optional[np.ndarray] = None
        self.count = 0
        self.readable = True

    def observe(self, values: np.ndarray):
        """Add one batch of the op's input."""
        if not self.readable:
            return
        columns = self.layout.columns(np.asarray(values, np.float32), self.w_shape,
                                      self.options, self.per_batch, self.rng)
        if columns is None:
            self.readable = False
            return
        if self.moments is None:
            self.moments = [0.0] * len(self.blocks)
            self.total = np.zeros(columns.shape[1:], np.float64)
        for i, block in enumerate(self.blocks):
            part = columns[:, block]
            if self.activation is not None:
                self.moments[i] = self._add_weighted(self.moments[i], part)
            elif part.ndim == 2:
                self.moments[i] = self.moments[i] + (part.T @ part)[None].astype(np.float64)
            else:
                self.moments[i] = self.moments[i] + np.einsum(
                    "mkg,mlg->gkl", part, part, optimize=True).astype(np.float64)
        self.total += columns.sum(axis=0, dtype=np.float64)
        self.count += len(columns)

    def _add_weighted(self, moments, part: np.ndarray) -> np.ndarray:
        """moments [R, K, K] + sum over the batch of f'(z_r)^2 x x^T, in chunks of rows that
        keep the [rows, M, K] products near 64 MB."""
        forward, derivative, rows, bias = self.activation
        z = np.clip(part.astype(np.float64) @ rows.T.astype(np.float64) + bias, -60, 60)
        weight = (derivative(forward(z)) ** 2).astype(np.float32)  # [M, R]
        if np.isscalar(moments):
            moments = np.zeros((self.num_rows,) + (part.shape[1],) * 2, np.float64)
        chunk = max(1, 2 ** 24 // max(part.size, 1))
        for a in range(0, self.num_rows, chunk):
            scaled = weight[:, a:a + chunk].T[:, :, None] * part[None]  # [c, M, K]
            moments[a:a + chunk] += np.swapaxes(scaled, 1, 2) @ part
        return moments

    @property
    def ready(self) -> bool:
        return self.readable and self.count > 0

    def mean(self) -> np.ndarray:
        """E[x]: [K], or [K, G] for grouped rows."""
        return self.total / self.count

    def problems(self) -> list:
        """The op's independent reconstructions."""
        if self.activation is not None:
            return [Problem(np.arange(self.num_rows)[:, None], self.blocks[0],
                            self.moments[0] / self.count)]
        if self.groups is None:
            every = np.arange(self.num_rows)[None]
            return [Problem(every, block, m / self.count)
                    for block, m in zip(self.blocks, self.moments)]
        order = np.argsort(self.groups, kind="stable")
        per_group = self.num_rows // (int(self.groups.max()) + 1)
        return [Problem(order.reshape(-1, per_group), self.blocks[0],
                        self.moments[0] / self.count)]
