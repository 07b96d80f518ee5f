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


def keras_quantized_refusal(layer):
    """Why a layer Keras quantized itself (model.quantize) has no integer codes in TFLite's
    form (per-channel symmetric weights), or None when it has (keras_quantized_codes):
    Dense in "int8", "int4" or "gptq" (per channel, or in contiguous groups of inputs:
    keras_dense_groups; GPTQ also checks its codes fit int8); EinsumDense in "int8" or "int4"
    (one group, reduced axes leading);
    Embedding in "int8", or "int4" per row or in one group per row
    (keras_quantized_table)."""
    mode = getattr(layer, "quantization_mode", None)
    kind = type(layer).__name__
    readable = {"Dense": ("int8", "int4", "gptq"), "EinsumDense": ("int8", "int4"),
                "Embedding": ("int8", "int4")}
    if mode not in readable.get(kind, ()):
        return f"Keras {mode} quantization of {kind} layers is not read yet"
    if getattr(layer, "lora_enabled", False):
        return "its LoRA adapters are not merged into the quantized kernel"
    if kind == "Embedding":
        groups = tuple(layer.embeddings_scale.shape)[1:]
        if groups and groups[0] != 1:
            return (f"its int4 table has {groups[0]} groups per row (block_size "
                    f"{getattr(layer, '_int4_block_size', '?')}), which TFLite's per-row "
                    "dequantization cannot hold; quantize it with "
                    "Int4QuantizationConfig(block_size=None)")
        return None
    if mode == "gptq":
        return _gptq_refusal(layer)
    if kind == "EinsumDense" and mode == "int4":
        reduced = sorted(a % len(layer.original_kernel_shape)
                         for a in layer._kernel_reduced_axes)
        if reduced != list(range(len(reduced))):
            return ("its int4 kernel is packed in a [reduced, other] view that does not "
                    f"follow its output channels (equation {layer.equation})")
    groups = tuple(layer.kernel_scale.shape)[0]
    if mode == "int4" and getattr(layer, "kernel_zero", None) is not None and groups != 1 \
            and kind != "Dense":
        return (f"its int4 kernel has {groups} groups per output (block_size "
                f"{getattr(layer, '_int4_block_size', '?')}), which TFLite's per-channel "
                "weights cannot hold; quantize it with "
                "Int4QuantizationConfig(block_size=None)")
    return None


def keras_quantized_codes(layer) -> tuple:
    """(integer codes in the kernel's shape, float32 scales broadcastable to it, 1 along the
    input axes) of a layer Keras quantized itself that keras_quantized_refusal accepts:
    codes x scales is the kernel Keras computes with (int4 in one group: the codes minus the
    group's zero point)."""
    if type(layer).__name__ == "EinsumDense" and layer.quantization_mode == "int4":
        return _einsum_int4_codes(layer)
    if type(layer).__name__ == "EinsumDense":  # kernel = codes / kernel_scale, kernel-shaped
        codes = np.asarray(layer._kernel).astype(np.int64)
        keras_scale = np.asarray(layer._adjust_scale_for_dequant(layer.kernel_scale),
                                 np.float64)
        return codes, (1.0 / keras_scale).astype(np.float32)
    (_, _, grouped, grouped_scale), = _dense_groups(layer)
    if grouped is not None:  # int4 / GPTQ in one group per output: (codes - zero) * scale
        return grouped, grouped_scale.reshape(1, -1)
    codes = np.asarray(layer.kernel).astype(np.int64)  # kernel = codes / kernel_scale
    scale = 1.0 / np.asarray(layer.kernel_scale, np.float64)
    return codes, scale.astype(np.float32).reshape(1, -1)


def _gptq_refusal(layer):
    if not getattr(layer, "is_gptq_calibrated", False):
        return "its GPTQ calibration has not run (the layer still computes in float)"
    groups = _dense_groups(layer)
    if groups is None:
        return ("its input groups (g_idx) are not contiguous runs of inputs, which "
                "TFLite's per-channel weights cannot follow; quantize it with group_size=-1")
    codes = np.concatenate([group[2] for group in groups])
    if np.abs(codes).max(initial=0) > 127:
        return ("its codes minus zero points exceed the int8 range (GPTQ asymmetric 8-bit "
                "weights); use weight_bits=4 or symmetric=True")
    return None


def keras_dense_groups(layer):
    """None for a Keras-quantized Dense whose every output has one scale (keras_kernel reads
    it), else its input groups (int4 block_size, GPTQ group_size), each (first input, end,
    codes [inputs, out] minus the group's zero points, float32 scale [out]): the layer is
    the sum of one per-channel product per group."""
    groups = _dense_groups(layer)
    return groups if groups is not None and len(groups) > 1 else None


def _dense_groups(layer):
    """keras_dense_groups' list (one entry for one group; (0, None, None, None) for a Dense
    without zero points: int8, int4 per channel); None when the groups are not contiguous runs
    of inputs. GPTQ stores q [out, in] (4-bit: packed in pairs along the outputs)."""
    from keras import quantizers
    if layer.quantization_mode == "gptq":
        q = layer.quantized_kernel
        if tuple(q.shape)[0] != layer.units:
            q = quantizers.unpack_int4(q, orig_len=layer.units, axis=0, dtype="uint8")
        codes = np.asarray(q).astype(np.int64).T  # [in, out]
        scale = np.asarray(layer.kernel_scale, np.float32).T  # [groups, out]
        zero = np.asarray(layer.kernel_zero).astype(np.int64).T
    elif layer.quantization_mode == "int4" and getattr(layer, "kernel_zero", None) is not None:
        codes = np.asarray(layer.kernel).astype(np.int64)  # unpacked by Keras
        scale = np.asarray(layer.kernel_scale, np.float32)
        zero = np.asarray(layer.kernel_zero).astype(np.int64)
    else:
        return [(0, None, None, None)]
    index = np.asarray(layer.g_idx).astype(np.int64) if len(scale) > 1 else \
        np.zeros(len(codes), np.int64)
    if np.any(np.diff(index) < 0) or (len(index) and index[0] != 0) or \
            np.any(np.diff(index) > 1):
        return None
    starts = np.flatnonzero(np.diff(index, prepend=-1)) if len(index) else np.zeros(0, int)
    ends = list(starts[1:]) + [len(index)]
    return [(int(a), int(e), codes[a:e] - zero[index[a]], scale[index[a]])
            for a, e in zip(starts, ends)]


def _einsum_int4_codes(layer) -> tuple:
    """keras_quantized_codes of an int4 EinsumDense: Keras packs a [reduced, other] view of the
    kernel (reduced axes leading, checked by keras_quantized_refusal) with one scale per
    column, i.e. per output channel (and one zero point in one group)."""
    from keras import quantizers
    shape = tuple(layer.original_kernel_shape)
    codes = np.asarray(quantizers.unpack_int4(layer._kernel, layer._int4_unpacked_column_size,
                                              axis=-1, dtype="int8")).astype(np.int64)
    keras_scale = np.asarray(layer.kernel_scale, np.float64)
    zero = getattr(layer, "kernel_zero", None)
    if zero is None:  # kernel = codes / kernel_scale
        scale = 1.0 / keras_scale
    else:  # one group: (codes - zero) * kernel_scale
        codes = codes - np.asarray(zero).astype(np.int64)[0]
        scale = keras_scale[0]
    reduced = {a % len(shape) for a in layer._kernel_reduced_axes}
    scale_shape = [1 if i in reduced else d for i, d in enumerate(shape)]
    return codes.reshape(shape), scale.astype(np.float32).reshape(scale_shape)


def keras_quantized_table(layer) -> tuple:
    """(int8 codes [rows, dim], float32 scale [rows], int64 zero point [rows]) of an Embedding
    Keras quantized itself that keras_quantized_refusal accepts: row r is
    (codes[r] - zero[r]) * scale[r] (int4 codes unpacked from Keras's two per byte)."""
    from keras import quantizers
    codes = np.asarray(layer._embeddings)
    if layer.quantization_mode == "int4":
        codes = np.asarray(quantizers.unpack_int4(codes, layer.output_dim, axis=-1))
    keras_scale = np.asarray(layer.embeddings_scale, np.float64).reshape(len(codes))
    zero = getattr(layer, "embeddings_zero", None) if layer.quantization_mode == "int4" \
        else None
    if zero is None:  # row = codes / embeddings_scale
        return codes.astype(np.int8), (1.0 / keras_scale).astype(np.float32), \
            np.zeros(len(codes), np.int64)
    return codes.astype(np.int8), keras_scale.astype(np.float32), \
        np.asarray(zero).astype(np.int64).reshape(len(codes))


def keras_kernel(layer) -> tuple:
    """(float kernel, scales or None): a layer's kernel, or for a Keras-quantized one its
    codes times their scales and those scales broadcast to the kernel's shape (the importer
    keeps them: ir.WeightGrid.scale)."""
    if not getattr(layer, "quantization_mode", None):
        return value(layer.kernel), None
    refusal = keras_quantized_refusal(layer)
    if refusal:  # refused before conversion (keras_model.refuse_keras_quantized)
        raise Unsupported(refusal)
    codes, scale = keras_quantized_codes(layer)
    kernel = (codes * scale.astype(np.float64)).astype(np.float32)
    return kernel, np.broadcast_to(scale, codes.shape)


def fixed_grid(kernel_2d: np.ndarray, scales_2d, output_axis: int = 1):
    """The ir.WeightGrid that keeps a Keras-quantized [in, out] kernel's codes (None for a
    float kernel): per output column, 4 bits where every code fits [-7, 7], else 8."""
    if scales_2d is None:
        return None
    from tfquant import ir
    scales = np.asarray(scales_2d, np.float32)
    column = np.take(scales, 0, axis=1 - output_axis)
    if not np.all(scales == np.expand_dims(column, 1 - output_axis)):
        raise Unsupported("its scales differ along the input axes")
    codes = np.rint(kernel_2d.astype(np.float64) / scales)
    bits = 4 if codes.min(initial=0) >= -7 and codes.max(initial=0) <= 7 else 8
    return ir.WeightGrid(bits, True, True, tuple(float(v) for v in column))
