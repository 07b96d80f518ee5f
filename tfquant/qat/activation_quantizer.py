"""Activation fake quantization with moving-average ranges (paper section 2 and 3.2)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from tfquant.qat import fake_quant
from tfquant.spec import QuantSpec


@keras.saving.register_keras_serializable(package="tfquant")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantizes a tensor with a per-tensor range tracked as an exponential moving average
    of per-batch min / max (decay 0.999 by default, as in the paper's TF implementation).

    The first training batch initialises the range, or, with `initial_range=(min, max)`, the
    average starts from that range (TF's contrib.quantize and tfmot start from (-6, 6), and so
    does QatRecipe by default).
    `quantize` (0/1) turns the fake quantization on (the quantization delay), `freeze_range`
    (0/1) stops updating the range; both are set by tfquant.qat.callbacks.QuantizationScheduler.
    """

    def __init__(self, bits=8, symmetric=False, decay=0.999, initial_range=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.bits = int(bits)
        self.symmetric = bool(symmetric)
        self.decay = float(decay)
        self.initial_range = check_initial_range(initial_range)
        # Set by tfquant.qat.simulation while calibrating: called with each (eager) input.
        self.observer = None

    @property
    def spec(self) -> QuantSpec:
        return QuantSpec(bits=self.bits, signed=True, symmetric=self.symmetric)

    def build(self, input_shape):
        low, high = self.initial_range or (0.0, 0.0)
        self.range_min = self.add_weight(name="range_min", shape=(),
                                         initializer=keras.initializers.Constant(low),
                                         trainable=False)
        self.range_max = self.add_weight(name="range_max", shape=(),
                                         initializer=keras.initializers.Constant(high),
                                         trainable=False)
        self.initialized = self.add_weight(
            name="initialized", shape=(), trainable=False,
            initializer="ones" if self.initial_range else "zeros")
        self.quantize = self.add_weight(name="quantize", shape=(), initializer="ones",
                                        trainable=False)
        self.freeze_range = self.add_weight(name="freeze_range", shape=(),
                                            initializer="zeros", trainable=False)

    def _update_range(self, x):
        """EMA step (the first batch initialises); no change while the range is frozen."""
        batch_min, batch_max = tf.reduce_min(x), tf.reduce_max(x)
        decay = tf.where(self.initialized < 0.5, 0.0, self.decay)
        decay = tf.where(self.freeze_range > 0.5, 1.0, decay)
        self.range_min.assign(decay * self.range_min + (1.0 - decay) * batch_min)
        self.range_max.assign(decay * self.range_max + (1.0 - decay) * batch_max)
        self.initialized.assign(tf.maximum(self.initialized, 1.0 - self.freeze_range))

    def call(self, x, training=False):
        if self.observer is not None:
            self.observer(x)
        if training:
            self._update_range(x)
        quantized = fake_quant.fake_quant(x, self.range_min, self.range_max, self.spec)
        return self.quantize * quantized + (1.0 - self.quantize) * x

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits, symmetric=self.symmetric, decay=self.decay,
                      initial_range=list(self.initial_range) if self.initial_range else None)
        return config


def check_initial_range(initial_range):
    """None, or (min, max) as floats with min <= 0 <= max and min < max (a quantization range
    holds zero); a clear ValueError otherwise."""
    if initial_range is None:
        return None
    try:
        low, high = (float(v) for v in initial_range)
    except (TypeError, ValueError):
        raise ValueError(f"initial activation range must be (min, max), got {initial_range!r}")
    if not (math.isfinite(low) and math.isfinite(high) and low <= 0.0 <= high and low < high):
        raise ValueError(f"initial activation range must be finite with min <= 0 <= max and "
                         f"min < max, got {initial_range!r}")
    return (low, high)
