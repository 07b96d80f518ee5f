"""Embedding in quantization-aware training: a trainable table read by integer indices.

The int8 model reads the table with GATHER, which keeps its codes: the table is stored int8
asymmetric per tensor over its own range, and the output shares that grid (tfquant.params:
GATHER is a same-scale op whose constant table sets the group's range). The layer
fake-quantizes the table on that grid before the lookup, so training sees the rows the int8
model returns, and no activation quantizer follows it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfquant import spec
from tfquant.qat import fake_quant


@keras.saving.register_keras_serializable(package="tfquant")
class QuantizedEmbedding(keras.layers.Layer):
    """Rows of an (input_dim, output_dim) table, fake-quantized on the int8 grid of the
    table's range (when `quantize` is on), by int32 indices."""

    def __init__(self, input_dim: int, output_dim: int, table=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self._initial = None if table is None else np.asarray(table, np.float32)
        if self._initial is not None and self._initial.shape != (self.input_dim,
                                                                 self.output_dim):
            raise ValueError(f"table shape {self._initial.shape} is not "
                             f"({self.input_dim}, {self.output_dim})")

    def build(self, input_shape):
        initializer = "zeros" if self._initial is None else \
            keras.initializers.Constant(self._initial)
        self.embeddings = self.add_weight(name="embeddings",
                                          shape=(self.input_dim, self.output_dim),
                                          initializer=initializer, trainable=True)
        self.quantize = self.add_weight(name="quantize", shape=(), initializer="ones",
                                        trainable=False, aggregation="only_first_replica")

    def quantized_table(self):
        """The table as the int8 model holds it (when quantizing), a float tensor."""
        table = tf.convert_to_tensor(self.embeddings)
        bounds = tf.stop_gradient(tf.reduce_min(table)), tf.stop_gradient(tf.reduce_max(table))
        quantized = fake_quant.fake_quant(table, *bounds, spec.INT8_ACTIVATION)
        return self.quantize * quantized + (1.0 - self.quantize) * table

    def call(self, indices):
        return tf.gather(self.quantized_table(), tf.cast(indices, tf.int32), axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, output_dim=self.output_dim)
        return config
