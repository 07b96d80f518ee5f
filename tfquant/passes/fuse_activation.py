"""Activation fusion: RELU / RELU6 after an op that accepts a fused activation becomes that op's
fused_activation (the clamp then happens in the integer domain on the op's output)."""

import dataclasses

from tfquant import ir, ops
from tfquant.vocabulary import FUSABLE_ACTIVATIONS


def fuse_activation(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    for act in graph.ops_of_type(*FUSABLE_ACTIVATIONS):
        source, result = act.inputs[0], act.outputs[0]
        producer = graph.producer(source)
        rule = ops.quant_rule(producer.type) if producer is not None else None
        if (producer is None or producer.keep_float or rule is None
                or not rule.fused_activation
                or getattr(producer.options, "fused_activation", "NONE") != "NONE"
                or len(graph.consumers(source)) != 1 or source in graph.outputs):
            continue
        graph.replace_op(producer, producer.replace(
            options=dataclasses.replace(producer.options, fused_activation=act.type),
            outputs=(result,),
            source=producer.source + tuple(s for s in act.source if s not in producer.source)))
        graph.remove_op(act)
    graph.prune()
    graph.validate()
    return graph
