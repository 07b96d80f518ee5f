"""The weight layout of an op with weights (OpRecord.weights): which axis holds output
channels, which input channels, the per-channel arithmetic that batch-norm folding,
cross-layer equalization, bias correction and QAT need, and how runtimes store the weights.
This is the base; each op's module defines its layout (conv.py: CONV_2D [out, kh, kw, in],
DEPTHWISE_CONV_2D [1, kh, kw, in * multiplier]; fully_connected.py: [out, in])."""

from __future__ import annotations

from typing import Optional

import numpy as np


class WeightLayout:
    """The base: data at input 0, weights at input 1, bias at input 2, output channels on
    `output_axis`; and how the op's weights are stored where runtimes differ."""

    data_input = 0
    weight_input = 1
    bias_input = 2
    output_axis = 0
    # The kind of tfquant.qat.FoldedBatchNorm that trains this op.
    qat_kind = ""
    # Recipe.per_channel_dense (not per_channel) decides per-channel weights.
    dense = False
    # The Recipe.int4_packing setting from which 4-bit weights are packed TFLite INT4 (None:
    # always int8 containers): measured per runtime, see Recipe.int4_packing.
    int4_packing = None
    # Weight-only (hybrid) kernels: None follows the recipe; False forces one scale per
    # tensor; True writes one scale per channel even for a per-tensor grid.
    hybrid_per_channel = None
    # Every runtime has a hybrid kernel for the op (else weight-only models keep it float).
    hybrid = True
    # Inputs that the FoldedBatchNorm training the op computes itself (TRANSPOSE_CONV's output
    # shape): QAT renders none of the integer ops that make them.
    qat_computed_inputs = ()

    def hybrid_options(self, options):
        """The op's options in a weight-only model."""
        return options

    def output_channel_range(self, w: np.ndarray) -> np.ndarray:
        """max |w| of each output channel."""
        return np.abs(w).reshape(w.shape[0], -1).max(axis=1)

    def input_channel_range(self, w: np.ndarray) -> np.ndarray:
        """max |w| over the weights reading each input channel."""
        return np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)

    def scale_output_channels(self, w: np.ndarray, factor: np.ndarray) -> np.ndarray:
        return w * factor.reshape((-1,) + (1,) * (w.ndim - 1))

    def scale_input_channels(self, w: np.ndarray, factor: np.ndarray) -> np.ndarray:
        return w * factor.reshape((1,) * (w.ndim - 1) + (-1,))

    def mean_shift(self, error: np.ndarray, input_mean: np.ndarray, options) -> Optional[
            np.ndarray]:
        """The shift of each output channel's mean that a weight error causes on inputs of
        per-channel mean `input_mean`: sum(error * E[x]); None if the shapes do not fit."""
        raise NotImplementedError

    def to_keras(self, w: np.ndarray, options) -> np.ndarray:
        """The Keras kernel layout of TFLite weights `w`."""
        raise NotImplementedError

    def from_keras(self, kernel: np.ndarray) -> np.ndarray:
        """TFLite weights from a Keras kernel."""
        raise NotImplementedError

    def qat_layer_arguments(self, w: np.ndarray, options) -> dict:
        """The tfquant.qat.FoldedBatchNorm arguments (filters, kernel size, strides, ...) that
        train an op of these weights and options."""
        raise NotImplementedError

    def options_from_qat_layer(self, layer, kernel: np.ndarray):
        """The op's options for a trained FoldedBatchNorm `layer` (its Keras kernel)."""
        raise NotImplementedError

    def rows(self, w: np.ndarray) -> np.ndarray:
        """The weights as one row per output channel, in the order of `columns`' values."""
        return w.reshape(w.shape[0], -1)

    def from_rows(self, rows: np.ndarray, shape: tuple) -> np.ndarray:
        """Weights of `shape` from `rows`."""
        return rows.reshape(shape)

    def columns(self, x: np.ndarray, w_shape: tuple, options, count: int,
                rng: np.random.Generator) -> Optional[np.ndarray]:
        """At most `count` of the input vectors that the rows multiply (sampled from the op's
        input `x`): [M, K] when every row reads the same vectors, [M, K, G] when the rows of
        group g read their own (depthwise: one group per input channel); None where tfquant
        has no reconstruction for the op (its weights are rounded to nearest)."""
        return None

    def row_groups(self, w_shape: tuple, options) -> Optional[np.ndarray]:
        """For [M, K, G] columns: each row's group."""
        return None

    def op_inputs(self, b, name: str, x: str, w: str, bias: str, out_shape) -> list:
        """The op's inputs for data `x`, weights `w` and `bias` (tensor names), emitting what
        else it reads into the Keras frontend's builder `b`."""
        return [x, w, bias]


def computed_by_qat_layers(graph, candidates) -> set:
    """The ops among `candidates` (graph order) that only compute inputs a FoldedBatchNorm
    computes itself (WeightLayout.qat_computed_inputs), directly or through one another: QAT
    neither renders nor requires a QAT form of them."""
    from tfquant import ops
    found = set()
    for op in reversed(list(candidates)):
        uses = [(c, i) for out in op.outputs for c in graph.consumers(out)
                for i, n in enumerate(c.inputs) if n == out]
        if uses and all(id(c) in found or (
                (layout := ops.weight_layout(c.type)) is not None
                and i in layout.qat_computed_inputs) for c, i in uses):
            found.add(id(op))
    return found


def render_folded(r, op, x, name):
    """QAT rendering of an op with weights: a FoldedBatchNorm (tfquant.qat.rewrite)."""
    return r.linear(op)


def sampled_patches(x: np.ndarray, kernel: tuple, options, count: int,
                    rng: np.random.Generator) -> np.ndarray:
    """[M, kh, kw, C] input windows of a 2-D convolution over NHWC `x` (TFLite SAME / VALID
    padding, stride, dilation) at at most `count` output positions drawn without
    replacement."""
    n, h, w, _ = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, options.stride, options.dilation
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if options.padding == "SAME":
        oh, ow = -(-h // sh), -(-w // sw)
        pad_h = max((oh - 1) * sh + span_h - h, 0)
        pad_w = max((ow - 1) * sw + span_w - w, 0)
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                       (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        oh, ow = (h - span_h) // sh + 1, (w - span_w) // sw + 1
    total = n * oh * ow
    if total <= 0:
        return np.zeros((0, kh, kw, x.shape[-1]), x.dtype)
    picked = rng.choice(total, count, replace=False) if total > count else np.arange(total)
    b, rest = np.divmod(picked, oh * ow)
    oy, ox = np.divmod(rest, ow)
    iy = (oy * sh)[:, None] + np.arange(kh) * dh
    ix = (ox * sw)[:, None] + np.arange(kw) * dw
    return x[b[:, None, None], iy[:, :, None], ix[:, None, :]]
