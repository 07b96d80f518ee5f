"""Batch-norm folding: BATCH_NORM after CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED is folded
into the weights and bias (paper 3.2.2, inference fold: W' = gamma W / sigma,
b' = beta + gamma (b - mu) / sigma). A BATCH_NORM with nothing to fold into becomes MUL + ADD.
"""

import numpy as np

from tfquant import ir

_FOLDABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def batch_norm_affine(options: dict):
    """(scale, offset) with BN(x) = x * scale + offset, from gamma, beta, mean, variance."""
    scale = options["gamma"] / np.sqrt(options["variance"].astype(np.float64)
                                       + options["epsilon"])
    offset = options["beta"] - options["mean"] * scale
    return scale, offset


def _fold_into(graph: ir.Graph, producer: ir.Op, scale, offset):
    weights = graph.tensors[producer.inputs[1]]
    bias = graph.tensors[producer.inputs[2]]
    w = weights.data.astype(np.float64)
    if producer.type == "DEPTHWISE_CONV_2D":
        w = w * scale.reshape(1, 1, 1, -1)
    else:  # CONV_2D [out, kh, kw, in] and FULLY_CONNECTED [out, in]: axis 0
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    # Fresh tensors: the same constant may be shared by another op.
    producer.inputs[1] = graph.add_const(weights.name + "/folded", w.astype(np.float32))
    producer.inputs[2] = graph.add_const(
        bias.name + "/folded", (bias.data * scale + offset).astype(np.float32))


def _add_mul_add(graph: ir.Graph, bn: ir.Op, scale, offset):
    """Standalone BN: y = x * scale + offset, broadcast over the channel (last) axis."""
    source, result = bn.inputs[0], bn.outputs[0]
    mul_out = graph.add_tensor(result + "/mul", graph.tensors[result].shape)
    scale_name = graph.add_const(result + "/scale", scale.astype(np.float32))
    offset_name = graph.add_const(result + "/offset", offset.astype(np.float32))
    graph.add_op("MUL", [source, scale_name], [mul_out], source=bn.source)
    graph.add_op("ADD", [mul_out, offset_name], [result], source=bn.source)


def lower_batch_norm(graph: ir.Graph) -> ir.Graph:
    """Every BATCH_NORM becomes MUL + ADD with its inference affine (nothing is folded)."""
    graph = graph.copy()
    for bn in graph.ops_of_type("BATCH_NORM"):
        scale, offset = batch_norm_affine(bn.options)
        graph.remove_op(bn)
        _add_mul_add(graph, bn, scale, offset)
    graph.toposort()
    graph.validate()
    return graph


def fold_batch_norm(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    for bn in graph.ops_of_type("BATCH_NORM"):
        scale, offset = batch_norm_affine(bn.options)
        source, result = bn.inputs[0], bn.outputs[0]
        producer = graph.producer(source)
        foldable = (producer is not None and producer.type in _FOLDABLE
                    and not producer.stays_float
                    and producer.options.get("fused_activation", "NONE") == "NONE"
                    and len(graph.consumers(source)) == 1 and source not in graph.outputs)
        graph.remove_op(bn)
        if foldable:
            _fold_into(graph, producer, scale, offset)
            producer.outputs = [result]
            producer.source = producer.source + bn.source
            continue
        _add_mul_add(graph, bn, scale, offset)
    graph.toposort()
    graph.prune()
    graph.validate()
    return graph
