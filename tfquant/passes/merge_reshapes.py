"""Merge chains of RESHAPE ops (Flatten then Reshape, Dense on rank > 2 then Flatten, ...):
only the last target shape matters."""

from tfquant import ir


def merge_reshapes(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    for op in graph.ops_of_type("RESHAPE"):
        producer = graph.producer(op.inputs[0])
        if (producer is None or producer.type != "RESHAPE" or producer.keep_float
                or op.keep_float or len(graph.consumers(op.inputs[0])) != 1
                or op.inputs[0] in graph.outputs):
            continue
        graph.replace_op(op, op.replace(
            inputs=(producer.inputs[0],) + op.inputs[1:],
            source=tuple(dict.fromkeys(producer.source + op.source))))
    graph.prune()
    graph.validate()
    return graph
