"""BATCH_MATMUL (products of two activations) and Keras MultiHeadAttention, self and cross.

MultiHeadAttention becomes the int8 graph TFLite runs: per head group a FULLY_CONNECTED
projection of query, key and value (the 1/sqrt(key_dim) query scaling folded into the query
weights), RESHAPE to heads and TRANSPOSE to [batch, heads, steps, dim], BATCH_MATMUL scores,
SOFTMAX (its fixed output params), BATCH_MATMUL with the values, TRANSPOSE back and the output
FULLY_CONNECTED. Masks, attention scores as an output and other attention axes are not
converted (the model takes the lowered route).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QatCompute, QuantRule


@dataclasses.dataclass(frozen=True)
class BatchMatMulOptions:
    adj_x: bool = False
    adj_y: bool = False
    asymmetric_quantize_inputs: bool = False


# -- Keras ------------------------------------------------------------------------------------

_I32 = np.int32
_HEADS_FIRST = (0, 2, 1, 3)


def _einsum_weights(dense, heads_last: bool):
    """(kernel, bias, scales) of an EinsumDense as 2-D [in, out], 1-D [out] and 2-D (a
    Keras-quantized kernel's scales, else None) arrays."""
    kernel, scales = ks.keras_kernel(dense)
    bias = getattr(dense, "bias", None)
    if heads_last:  # [in, heads, dim] -> [in, heads * dim]
        flat = (kernel.shape[0], -1)
    else:  # [heads, dim, out] -> [heads * dim, out]
        flat = (-1, kernel.shape[-1])
    kernel = kernel.reshape(flat)
    scales = None if scales is None else np.reshape(scales, flat)
    bias = ks.value(bias).reshape(-1) if bias is not None else np.zeros(kernel.shape[1],
                                                                         np.float32)
    return kernel, bias, scales


def _dense_2d(b, layer, x, kernel, bias, name, scales=None):
    from tfquant.ops.fully_connected import DENSE_WEIGHTS, FullyConnectedOptions
    w = b.const(f"{name}/kernel", DENSE_WEIGHTS.from_keras(kernel))
    bias_name = b.const(f"{name}/bias", bias)
    return b.op("FULLY_CONNECTED", [x, w, bias_name], (-1, kernel.shape[1]), name, layer,
                FullyConnectedOptions(), weight_grid=ks.fixed_grid(kernel, scales))


def _reshape(b, layer, x, shape, name):
    return b.op("RESHAPE", [x, b.const(f"{name}/shape", np.array(shape, _I32), _I32)],
                tuple(shape), name, layer)


def _transpose(b, layer, x, shape, name):
    return b.op("TRANSPOSE", [x, b.const(f"{name}/perm", np.array(_HEADS_FIRST, _I32), _I32)],
                tuple(shape), name, layer)


def _heads(b, layer, x, dense, steps, name, scale=1.0):
    """[batch, steps, features] -> [batch, heads, steps, dim] through the projection."""
    kernel, bias, scales = _einsum_weights(dense, heads_last=True)
    heads, dim = tuple(dense.kernel.shape)[1:]
    features = b.graph.tensors[x].shape[-1]
    flat = _reshape(b, layer, x, (-1, features), f"{name}/flatten")
    projected = _dense_2d(b, layer, flat, kernel * np.float32(scale),
                          bias * np.float32(scale), name,
                          None if scales is None else scales * np.float32(scale))
    split = _reshape(b, layer, projected, (-1, steps, heads, dim), f"{name}/heads")
    return _transpose(b, layer, split, (-1, heads, steps, dim), f"{name}/heads_first")


def _multi_head_attention(b, layer, inputs, out_shape):
    kwargs = {k: v for k, v in b.call_kwargs.items() if k not in ("training", "key")}
    used = [k for k, v in kwargs.items() if v is not None and v is not False]
    if used:
        raise ks.Unsupported(f"MultiHeadAttention called with {', '.join(sorted(used))}")
    if any(getattr(t, "_keras_mask", None) is not None for t in b.current_keras_inputs()):
        raise ks.Unsupported("MultiHeadAttention of masked inputs")
    if tuple(layer._attention_axes) != (1,) or len(out_shape) != 3:
        raise ks.Unsupported("MultiHeadAttention over other axes than the sequence")
    if len(inputs) not in (2, 3):
        raise ks.Unsupported(f"MultiHeadAttention with {len(inputs)} input tensors")
    query, value = inputs[0], inputs[1]
    key = inputs[2] if len(inputs) == 3 else value
    steps = b.graph.tensors[query].shape[1]
    sources = b.graph.tensors[value].shape[1]
    if steps < 0 or sources < 0:
        raise ks.Unsupported("MultiHeadAttention on sequences of unknown length")
    name = layer.name
    key_dim = int(layer._key_dim)
    q = _heads(b, layer, query, layer._query_dense, steps, f"{name}/query",
               scale=1.0 / np.sqrt(float(key_dim)))
    k = _heads(b, layer, key, layer._key_dense, sources, f"{name}/key")
    v = _heads(b, layer, value, layer._value_dense, sources, f"{name}/value")
    heads = b.graph.tensors[q].shape[1]
    value_dim = b.graph.tensors[v].shape[-1]
    scores = b.op("BATCH_MATMUL", [q, k], (-1, heads, steps, sources), f"{name}/scores",
                  layer, BatchMatMulOptions(adj_y=True))
    from tfquant.ops.activations import SoftmaxOptions
    probs = b.op("SOFTMAX", [scores], (-1, heads, steps, sources), f"{name}/softmax", layer,
                 SoftmaxOptions(1.0))
    context = b.op("BATCH_MATMUL", [probs, v], (-1, heads, steps, value_dim),
                   f"{name}/context", layer, BatchMatMulOptions())
    context = _transpose(b, layer, context, (-1, steps, heads, value_dim),
                         f"{name}/steps_first")
    flat = _reshape(b, layer, context, (-1, heads * value_dim), f"{name}/merge_heads")
    kernel, bias, scales = _einsum_weights(layer._output_dense, heads_last=False)
    out = _dense_2d(b, layer, flat, kernel, bias, f"{name}/output", scales)
    return _reshape(b, layer, out, out_shape, name)


# -- TFLite -----------------------------------------------------------------------------------

def _read_batch_matmul(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.BatchMatMulOptionsT, label)
    ts.inputs_count(inputs, 2, label)
    tensors = [imp.graph.tensors[n] for n in inputs]
    if all(t.is_const for t in tensors):
        raise ts.KeepFloat("both operands are constant")
    if any(t.dtype != np.float32 for t in tensors):
        raise ts.KeepFloat("non-float operands")
    return "BATCH_MATMUL", list(inputs), BatchMatMulOptions(
        bool(o.adjX), bool(o.adjY), bool(o.asymmetricQuantizeInputs))


def _write_batch_matmul(options):
    o = schema.BatchMatMulOptionsT()
    o.adjX, o.adjY = bool(options.adj_x), bool(options.adj_y)
    o.asymmetricQuantizeInputs = bool(options.asymmetric_quantize_inputs)
    return schema.BuiltinOptions.BatchMatMulOptions, o


def _batch_matmul_model():
    return delegate_models.after_conv_graph("batch_matmul", "BATCH_MATMUL",
                                            BatchMatMulOptions(adj_y=True), out_shape=(6, 5, 5),
                                            second_input=True)


# Both operands int8 asymmetric with their own params, output its own (TF 2.21's
# TFLiteConverter, measured); a constant operand symmetric. No int16 kernel on tflite-runtime
# 2.14.
BATCH_MATMUL = OpRecord(
    name="BATCH_MATMUL", options=BatchMatMulOptions, write=_write_batch_matmul,
    read=_read_batch_matmul, version=common.version_by_type,
    quant=QuantRule(int16=False, symmetric_const_operands=True),
    weights=NotApplicable("its operands are activations (a constant one is an operand)"),
    keras={"MultiHeadAttention": _multi_head_attention},
    qat=QatCompute(lambda tf, operands, options: tf.linalg.matmul(
        operands[0], operands[1], adjoint_a=options.adj_x, adjoint_b=options.adj_y)),
    delegate=(DelegateCase("batch_matmul_on_cpu", _batch_matmul_model, claimed=False),))

RECORDS = (BATCH_MATMUL,)
