"""Elementwise ops with a constant operand (Rescaling, a batch norm with nothing to fold into)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfquant import spec
from tfquant.qat import fake_quant

OPS = ("mul", "add")


@keras.saving.register_keras_serializable(package="tfquant")
class ConstantOperand(keras.layers.Layer):
    """y = x * c or y = x + c with a constant c broadcast over the last axes.

    The int8 model stores c as an int8 asymmetric per-tensor constant; the layer fake-quantizes
    c on that grid (when `quantize` is on), so training sees what the int8 op computes.
    """

    def __init__(self, op, constant, **kwargs):
        super().__init__(**kwargs)
        if op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {op!r}")
        self.op = op
        self.constant_value = np.asarray(constant, np.float32)

    def build(self, input_shape):
        self.constant = self.add_weight(
            name="constant", shape=self.constant_value.shape,
            initializer=keras.initializers.Constant(self.constant_value), trainable=False)
        self.quantize = self.add_weight(name="quantize", shape=(), initializer="ones",
                                        trainable=False, aggregation="only_first_replica")

    def get_constant(self) -> np.ndarray:
        return np.asarray(self.constant.numpy() if self.built else self.constant_value)

    def call(self, x):
        c = tf.convert_to_tensor(self.constant)
        quantized = fake_quant.fake_quant(c, tf.reduce_min(c), tf.reduce_max(c),
                                          spec.INT8_ACTIVATION)
        c = self.quantize * quantized + (1.0 - self.quantize) * c
        return x * c if self.op == "mul" else x + c

    def get_config(self):
        config = super().get_config()
        config.update(op=self.op, constant=self.get_constant().tolist())
        return config
