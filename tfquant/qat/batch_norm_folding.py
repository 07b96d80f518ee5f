"""The paper's batch-norm folding for training (section 3.2.2), as a Keras 3 layer.

A convolution (Conv2D, DepthwiseConv2D, Conv2DTranspose) or Dense followed by
BatchNormalization becomes one
layer whose weights are always folded with the long-term sigma and then fake-quantized, so the
quantized weights do not jitter from batch to batch:

  w_fold = gamma * W / sigma                  (sigma: moving statistics)
  before the freeze:  y = conv(x, Q(w_fold)) * sigma / sigma_B + beta - gamma * mu_B / sigma_B
                      (equals ordinary batch norm in training mode when Q is the identity;
                      the moving statistics keep updating)
  after the freeze:   y = conv(x, Q(w_fold)) + beta - gamma * mu / sigma
                      (the moving statistics stop updating; this is the int8 model)

Batch statistics use the biased variance, as Keras' BatchNormalization and the paper's TF1
implementation do.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfquant.qat import fake_quant
from tfquant.spec import QuantSpec

KINDS = ("conv2d", "depthwise_conv2d", "conv2d_transpose", "dense")


@keras.saving.register_keras_serializable(package="tfquant")
class FoldedBatchNorm(keras.layers.Layer):
    """conv / depthwise conv / dense + batch norm, folded for quantization-aware training.

    Args:
      kind: "conv2d", "depthwise_conv2d", "conv2d_transpose" or "dense".
      filters: output channels (conv2d, dense) or depth multiplier (depthwise_conv2d).
      kernel_size, strides, padding, dilation_rate: as in the Keras layer.
      use_bias: the convolution's own bias (folded into the batch-norm shift).
      epsilon, momentum: as in BatchNormalization (momentum of the moving statistics).
      weight_bits, weight_symmetric, weight_per_channel: the weight quantizer.
      batch_norm: False for a layer without batch norm (then only the weights are
        fake-quantized: y = conv(x, Q(W)) + b).
    """

    def __init__(self, kind, filters, kernel_size=(1, 1), strides=(1, 1), padding="valid",
                 dilation_rate=(1, 1), use_bias=False, epsilon=1e-3, momentum=0.99,
                 weight_bits=8, weight_symmetric=True, weight_per_channel=True,
                 batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.filters = int(filters)
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)
        self.padding = padding.upper()
        self.dilation_rate = tuple(dilation_rate)
        self.use_bias = bool(use_bias)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.weight_bits = int(weight_bits)
        self.weight_symmetric = bool(weight_symmetric)
        self.weight_per_channel = bool(weight_per_channel)
        self.batch_norm = bool(batch_norm)

    # -- weights ------------------------------------------------------------------------------

    def build(self, input_shape):
        channels_in = int(input_shape[-1])
        if self.kind == "conv2d":
            kernel_shape = self.kernel_size + (channels_in, self.filters)
            channels_out = self.filters
        elif self.kind == "depthwise_conv2d":
            kernel_shape = self.kernel_size + (channels_in, self.filters)
            channels_out = channels_in * self.filters
        elif self.kind == "conv2d_transpose":  # Keras Conv2DTranspose's [kh, kw, out, in]
            kernel_shape = self.kernel_size + (self.filters, channels_in)
            channels_out = self.filters
        else:
            kernel_shape = (channels_in, self.filters)
            channels_out = self.filters
        self.channels_out = channels_out
        self.kernel = self.add_weight(name="kernel", shape=kernel_shape,
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(channels_out,), initializer="zeros",
                                    trainable=self.use_bias)
        self.gamma = self.add_weight(name="gamma", shape=(channels_out,), initializer="ones",
                                     trainable=self.batch_norm)
        self.beta = self.add_weight(name="beta", shape=(channels_out,), initializer="zeros",
                                    trainable=self.batch_norm)
        self.moving_mean = self.add_weight(name="moving_mean", shape=(channels_out,),
                                           initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(channels_out,),
                                               initializer="ones", trainable=False)
        # Schedule state, driven by the QuantizationScheduler callback (1.0 = on).
        self.quantize = self.add_weight(name="quantize", shape=(), initializer="ones",
                                        trainable=False)
        self.frozen = self.add_weight(name="frozen", shape=(), initializer="zeros",
                                      trainable=False)

    @property
    def weight_spec(self) -> QuantSpec:
        # Per-channel axis in the Keras kernel layouts: the last axis (conv2d, dense), the
        # third (conv2d_transpose) or, for depthwise, the flattened (in, multiplier) channel,
        # handled in folded_kernel.
        axis = (2 if self.kind == "conv2d_transpose" else -1) if self.weight_per_channel \
            else None
        return QuantSpec(bits=self.weight_bits, signed=True, symmetric=self.weight_symmetric,
                         narrow_range=self.weight_symmetric, axis=axis)

    # -- math ---------------------------------------------------------------------------------

    def _apply_kernel(self, x, kernel):
        if self.kind == "conv2d":
            return tf.nn.conv2d(x, kernel, (1,) + self.strides + (1,), self.padding,
                                dilations=(1,) + self.dilation_rate + (1,))
        if self.kind == "depthwise_conv2d":
            return tf.nn.depthwise_conv2d(x, kernel, (1,) + self.strides + (1,), self.padding,
                                          dilations=self.dilation_rate)
        if self.kind == "conv2d_transpose":
            return tf.nn.conv2d_transpose(x, kernel, self._transposed_shape(x),
                                          (1,) + self.strides + (1,), self.padding)
        return tf.matmul(x, kernel) if len(x.shape) == 2 else tf.tensordot(x, kernel, 1)

    def _transposed_shape(self, x):
        """Keras Conv2DTranspose's output shape (no output padding, no dilation)."""
        sizes = []
        for axis, (stride, kernel) in enumerate(zip(self.strides, self.kernel_size)):
            size = x.shape[axis + 1]
            sizes.append(size * stride if self.padding == "SAME" else
                         (size - 1) * stride + max(kernel, stride))
        return tf.stack([tf.shape(x)[0], *sizes, self.filters])

    def _channel_scale_kernel(self, kernel, scale):
        if self.kind == "depthwise_conv2d":
            kh, kw, cin, mult = kernel.shape
            return kernel * tf.reshape(scale, (1, 1, cin, mult))
        if self.kind == "conv2d_transpose":
            return kernel * tf.reshape(scale, (1, 1, -1, 1))
        return kernel * scale  # last axis is the output channel

    def _float_folded_kernel(self):
        if not self.batch_norm:
            return self.kernel
        sigma = tf.sqrt(self.moving_variance + self.epsilon)
        return self._channel_scale_kernel(self.kernel, self.gamma / sigma)

    def _fake_quantized(self, folded):
        if self.kind == "depthwise_conv2d":
            kh, kw, cin, mult = folded.shape
            flat = tf.reshape(folded, (kh, kw, cin * mult))
            return tf.reshape(self._quantize_weights(flat), folded.shape)
        return self._quantize_weights(folded)

    def folded_kernel(self):
        """gamma * W / sigma with the moving sigma, fake-quantized when quantization is on."""
        folded = self._float_folded_kernel()
        return self.quantize * self._fake_quantized(folded) + (1.0 - self.quantize) * folded

    def weight_quantization_error(self):
        """The folded kernel's fake-quantized minus float values, whatever the schedule."""
        folded = self._float_folded_kernel()
        return self._fake_quantized(folded) - folded

    def _quantize_weights(self, w):
        spec = self.weight_spec
        lo, hi = fake_quant.weight_range(w, spec.axis)
        return fake_quant.fake_quant(w, lo, hi, spec)

    def folded_bias(self):
        """The inference bias beta + gamma * (b - mu) / sigma (the frozen / exported form)."""
        if not self.batch_norm:
            return self.bias + 0.0
        sigma = tf.sqrt(self.moving_variance + self.epsilon)
        return self.beta + self.gamma * (self.bias - self.moving_mean) / sigma

    def call(self, x, training=False):
        kernel = self.folded_kernel()
        y = self._apply_kernel(x, kernel)
        if not training or not self.batch_norm:
            return y + self.folded_bias()
        return tf.cond(self.frozen > 0.5, lambda: y + self.folded_bias(),
                       lambda: self._batch_statistics_output(x, y))

    def _batch_statistics_output(self, x, y_folded):
        raw = self._apply_kernel(x, self.kernel) + self.bias
        axes = list(range(len(raw.shape) - 1))
        mean, variance = tf.nn.moments(raw, axes)  # biased variance, as BatchNormalization
        sigma = tf.sqrt(self.moving_variance + self.epsilon)
        sigma_batch = tf.sqrt(variance + self.epsilon)
        self.moving_mean.assign(self.momentum * self.moving_mean + (1 - self.momentum) * mean)
        self.moving_variance.assign(self.momentum * self.moving_variance
                                    + (1 - self.momentum) * variance)
        correction = sigma / sigma_batch  # 1 / c, c = sigma_B / sigma
        shift = self.beta + self.gamma * (self.bias - mean) / sigma_batch
        return y_folded * correction + shift

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, filters=self.filters, kernel_size=self.kernel_size,
                      strides=self.strides, padding=self.padding.lower(),
                      dilation_rate=self.dilation_rate, use_bias=self.use_bias,
                      epsilon=self.epsilon, momentum=self.momentum,
                      weight_bits=self.weight_bits, weight_symmetric=self.weight_symmetric,
                      weight_per_channel=self.weight_per_channel, batch_norm=self.batch_norm)
        return config
