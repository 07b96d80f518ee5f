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


def keras_quantized_codes(layer):
    """(integer codes [in, out], float32 scale per output unit) of a Dense layer Keras
    quantized itself (model.quantize "int8", or "int4" per channel or in one group per
    output), such that codes x scale is the kernel Keras computes with; or a str saying why
    such codes do not exist in TFLite's form (per-channel symmetric int8 weights)."""
    mode = getattr(layer, "quantization_mode", None)
    kind = type(layer).__name__
    if kind != "Dense" or mode not in ("int8", "int4"):
        return f"Keras {mode} quantization of {kind} layers is not read yet"
    if getattr(layer, "lora_enabled", False):
        return "its LoRA adapters are not merged into the quantized kernel"
    codes = np.asarray(layer.kernel).astype(np.int64)  # int4: unpacked by Keras
    keras_scale = np.asarray(layer.kernel_scale, np.float64)
    zero = getattr(layer, "kernel_zero", None) if mode == "int4" else None
    if zero is None:  # kernel = codes / kernel_scale
        scale = 1.0 / keras_scale
    elif keras_scale.shape[0] == 1:  # one group per output: (codes - zero) * kernel_scale
        codes = codes - np.asarray(zero).astype(np.int64)[0]
        scale = keras_scale[0]
    else:
        return (f"its int4 kernel has {keras_scale.shape[0]} groups per output (block_size "
                f"{getattr(layer, '_int4_block_size', '?')}), which TFLite's per-channel "
                "weights cannot hold; quantize it with "
                "Int4QuantizationConfig(block_size=None)")
    return codes, scale.astype(np.float32)
