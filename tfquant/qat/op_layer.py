"""OpLayer: one IR op in a QAT model, for ops that no Keras layer computes alone (the
squared difference and reciprocal square root of a layer normalization, attention's batched
products and transposes, GELU, resizes, reductions over any axes).

The op record's QatCompute says how TensorFlow computes the op; the Keras frontend reads the
layer back as the same op with the same options and integer constants, so that the exported
int8 model holds what the QAT model trained with. Fake quantization stays where the renderer
puts it (around the layer), as for every other op.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfquant")
class OpLayer(keras.layers.Layer):
    """Computes the IR op `op_type` with `options` (its options' fields) on its variable inputs,
    with the integer `constants` {input position: array} (axes, permutations, sizes) in place."""

    def __init__(self, op_type: str, options: dict | None = None, constants: dict | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        from tfquant import ops
        record = ops.REGISTRY.get(op_type)
        if record is None or not hasattr(record.qat, "compute"):
            raise ValueError(f"OpLayer: {op_type} has no QAT computation")
        self.op_type = op_type
        self.options = dict(options or {})
        self.constants = {int(k): _as_array(v) for k, v in (constants or {}).items()}
        for position, value in self.constants.items():
            if value.dtype.kind not in "iub":
                raise ValueError(f"OpLayer {op_type}: constant input {position} has dtype "
                                 f"{value.dtype}; only integer constants are held here")
        self._compute = record.qat.compute
        self.typed_options()  # fails here, not at call time, on options the op does not have

    def typed_options(self):
        """The op's options object (tuples where the config stored lists)."""
        from tfquant import ops
        options_class = ops.get(self.op_type).options
        return options_class(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in self.options.items()})

    def operand_count(self, variable_inputs: int) -> int:
        return variable_inputs + len(self.constants)

    def call(self, inputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        variable = iter(inputs)
        operands = [tf.constant(self.constants[i]) if i in self.constants else next(variable)
                    for i in range(self.operand_count(len(inputs)))]
        return self._compute(tf, operands, self.typed_options())

    def get_config(self):
        config = super().get_config()
        config.update(op_type=self.op_type, options=self.options,
                      constants={str(k): {"values": v.tolist(), "dtype": v.dtype.name}
                                 for k, v in self.constants.items()})
        return config


def _as_array(value) -> np.ndarray:
    if isinstance(value, dict):  # from a saved config
        return np.asarray(value["values"], value["dtype"])
    return np.asarray(value)


def options_config(options) -> dict:
    """An op's options as a JSON-friendly dict (OpLayer's `options`)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(options).items()}
