"""Activation fusion: RELU / RELU6 after an op that accepts a fused activation becomes that op's
fused_activation (the clamp then happens in the integer domain on the op's output)."""

from tfquant import ir
from tfquant.op_constraints import FUSABLE_ACTIVATIONS, OP_CONSTRAINTS


def fuse_activation(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    for act in graph.ops_of_type(*FUSABLE_ACTIVATIONS):
        source, result = act.inputs[0], act.outputs[0]
        producer = graph.producer(source)
        if (producer is None or producer.stays_float or producer.type not in OP_CONSTRAINTS
                or not OP_CONSTRAINTS[producer.type].fused_activation
                or producer.options.get("fused_activation", "NONE") != "NONE"
                or len(graph.consumers(source)) != 1 or source in graph.outputs):
            continue
        producer.options["fused_activation"] = act.type
        producer.outputs = [result]
        producer.source = producer.source + tuple(s for s in act.source
                                                  if s not in producer.source)
        graph.remove_op(act)
    graph.prune()
    graph.validate()
    return graph
