"""Batch-norm folding: BATCH_NORM after CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED is folded
into the weights and bias (paper 3.2.2, inference fold: W' = gamma W / sigma,
b' = beta + gamma (b - mu) / sigma). A BATCH_NORM with nothing to fold into becomes MUL + ADD.
"""

import numpy as np

from tfquant import ir, ops, vocabulary
from tfquant.ops.elementwise import BinaryOptions


def _fold_into(graph: ir.Graph, producer: ir.Op, scale, offset) -> ir.Op:
    layout = ops.weight_layout(producer.type)
    weights = graph.tensors[producer.inputs[layout.weight_input]]
    bias = graph.tensors[producer.inputs[layout.bias_input]]
    w = layout.scale_output_channels(weights.data.astype(np.float64), scale)
    inputs = list(producer.inputs)
    # Fresh tensors: the same constant may be shared by another op.
    inputs[layout.weight_input] = graph.add_const(weights.name + "/folded",
                                                  w.astype(np.float32))
    inputs[layout.bias_input] = graph.add_const(
        bias.name + "/folded", (bias.data * scale + offset).astype(np.float32))
    return producer.replace(inputs=tuple(inputs))


def _add_mul_add(graph: ir.Graph, bn: ir.Op, scale, offset):
    """Standalone BN: y = x * scale + offset, broadcast over the channel (last) axis."""
    source, result = bn.inputs[0], bn.outputs[0]
    mul_out = graph.add_tensor(result + "/mul", graph.tensors[result].shape)
    scale_name = graph.add_const(result + "/scale", scale.astype(np.float32))
    offset_name = graph.add_const(result + "/offset", offset.astype(np.float32))
    graph.add_op("MUL", [source, scale_name], [mul_out], BinaryOptions(), source=bn.source)
    graph.add_op("ADD", [mul_out, offset_name], [result], BinaryOptions(), source=bn.source)


def lower_batch_norm(graph: ir.Graph) -> ir.Graph:
    """Every BATCH_NORM becomes MUL + ADD with its inference affine (nothing is folded)."""
    graph = graph.copy()
    for bn in graph.ops_of_type(vocabulary.BATCH_NORM):
        scale, offset = bn.options.affine()
        graph.remove_op(bn)
        _add_mul_add(graph, bn, scale, offset)
    graph.toposort()
    graph.validate()
    return graph


def fold_batch_norm(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    for bn in graph.ops_of_type(vocabulary.BATCH_NORM):
        scale, offset = bn.options.affine()
        source, result = bn.inputs[0], bn.outputs[0]
        producer = graph.producer(source)
        foldable = (producer is not None and ops.weight_layout(producer.type) is not None
                    and not producer.keep_float and not producer.fixed_weights
                    and getattr(producer.options, "fused_activation", "NONE") == "NONE"
                    and len(graph.consumers(source)) == 1 and source not in graph.outputs)
        graph.remove_op(bn)
        if foldable:
            folded = _fold_into(graph, producer, scale, offset)
            graph.replace_op(producer, folded.replace(outputs=(result,),
                                                      source=producer.source + bn.source))
            continue
        _add_mul_add(graph, bn, scale, offset)
    graph.toposort()
    graph.prune()
    graph.validate()
    return graph
