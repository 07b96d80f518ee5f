"""Helpers for the records' Keras layer converters (Keras 3 and tf_keras alike).

A converter is `convert(builder, layer, input names, output shape) -> output name`; the
builder (tfquant.frontends.keras_model) adds IR tensors and ops. A converter raises Unsupported
for a layer configuration TFLite int8 cannot express; the frontend then reports the layer (or
keeps it float, as the caller asked).
"""

from __future__ import annotations

import numpy as np

from tfquant.errors import TfquantError


class Unsupported(Exception):
    """Raised by a layer converter for a configuration TFLite int8 cannot express."""


def shape(keras_tensor) -> tuple:
    """A Keras 3 or tf_keras tensor's shape with -1 for unknown dimensions."""
    dims = keras_tensor.shape
    dims = dims.as_list() if hasattr(dims, "as_list") else list(dims)
    return tuple(-1 if d is None else int(d) for d in dims)


def dtype(keras_tensor) -> np.dtype:
    """A Keras 3 or tf_keras tensor's numpy dtype."""
    kind = getattr(keras_tensor, "dtype", "float32")
    return np.dtype(getattr(kind, "as_numpy_dtype", None) or str(kind))


def value(variable) -> np.ndarray:
    """A Keras variable (or array) as a float32 numpy array."""
    return np.array(variable.numpy() if hasattr(variable, "numpy") else variable, np.float32)


def activation_name(activation) -> str:
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def padding(layer) -> str:
    text = str(layer.padding).upper()
    if text not in ("SAME", "VALID"):
        raise TfquantError(f"layer {layer.name!r} uses padding={layer.padding!r}; only 'same' "
                           "and 'valid' exist in TFLite")
    return text


def pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def last_axis(axis, rank: int, what: str):
    """Check that a layer's `axis` (int or one-element list) is the last of `rank` axes."""
    axis = axis[0] if isinstance(axis, (list, tuple)) else axis
    if axis not in (-1, rank - 1):
        raise Unsupported(what)


def bias_or_zeros(layer, channels: int) -> np.ndarray:
    return value(layer.bias) if layer.use_bias else np.zeros(channels, np.float32)


def pre_activation_name(layer, suffix: str) -> str:
    """The name of a layer's op output before its activation function (the layer's own name
    when it has none)."""
    if activation_name(layer.activation) != "linear":
        return f"{layer.name}/{suffix}"
    return layer.name
