"""Weight layouts of the ops with weights: which axis holds output channels, which input
channels, and the per-channel arithmetic that batch-norm folding, cross-layer equalization,
bias correction and QAT need. The one place that knows CONV_2D is [out, kh, kw, in],
DEPTHWISE_CONV_2D [1, kh, kw, in * multiplier] and FULLY_CONNECTED [out, in]."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


class WeightLayout:
    """The base: weights at input 1, bias at input 2, output channels on `output_axis`; and
    how the op's weights are stored where runtimes differ."""

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


class ConvWeights(WeightLayout):
    """CONV_2D: [out, kh, kw, in]; Keras [kh, kw, in, out]."""

    qat_kind = "conv2d"
    int4_packing = "portable"

    def mean_shift(self, error, input_mean, options):
        return (error.sum(axis=(1, 2)) * input_mean[None, :]).sum(axis=1)

    def to_keras(self, w, options):
        return w.transpose(1, 2, 3, 0)

    def from_keras(self, kernel):
        return kernel.transpose(3, 0, 1, 2)


class DepthwiseWeights(WeightLayout):
    """DEPTHWISE_CONV_2D: [1, kh, kw, in * multiplier] (channel c reads input c // multiplier);
    Keras [kh, kw, in, multiplier]."""

    output_axis = 3
    qat_kind = "depthwise_conv2d"
    # XNNPACK-era kernels disagree with the reference on INT4 depthwise weights.
    int4_packing = None
    # Hybrid depthwise reads one scale per channel on every runtime.
    hybrid_per_channel = True

    def output_channel_range(self, w):
        return np.abs(w).max(axis=(0, 1, 2))

    def scale_output_channels(self, w, factor):
        return w * factor.reshape(1, 1, 1, -1)

    def mean_shift(self, error, input_mean, options):
        return error.sum(axis=(0, 1, 2)) * np.repeat(input_mean, options.depth_multiplier)

    def to_keras(self, w, options):
        kh, kw, channels = w.shape[1:]
        multiplier = options.depth_multiplier
        return w.reshape(kh, kw, channels // multiplier, multiplier)

    def from_keras(self, kernel):
        kh, kw, cin, multiplier = kernel.shape
        return kernel.reshape(1, kh, kw, cin * multiplier)


class DenseWeights(WeightLayout):
    """FULLY_CONNECTED: [out, in]; Keras [in, out]."""

    qat_kind = "dense"
    dense = True
    int4_packing = "litert"  # tflite-runtime 2.14 refuses INT4 FULLY_CONNECTED
    # Hybrid FULLY_CONNECTED ignores per-channel scales on tflite-runtime 2.14.
    hybrid_per_channel = False

    def hybrid_options(self, options):
        # Quantize the float input with its own zero point at run time, as TFLiteConverter.
        return dataclasses.replace(options, asymmetric_quantize_inputs=True)

    def input_channel_range(self, w):
        return np.abs(w).max(axis=0)

    def scale_input_channels(self, w, factor):
        return w * factor.reshape(1, -1)

    def mean_shift(self, error, input_mean, options):
        if input_mean.size != error.shape[1]:
            return None
        return error @ input_mean

    def to_keras(self, w, options):
        return w.T

    def from_keras(self, kernel):
        return kernel.T


CONV = ConvWeights()
DEPTHWISE = DepthwiseWeights()
DENSE = DenseWeights()
