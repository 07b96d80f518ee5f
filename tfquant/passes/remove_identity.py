"""Remove IDENTITY pseudo-ops (Dropout, linear activations, no-op Rescaling)."""

from tfquant import ir, vocabulary


def remove_identity(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    while graph.ops_of_type(vocabulary.IDENTITY):
        op = graph.ops_of_type(vocabulary.IDENTITY)[0]  # (an earlier one may have changed it)
        source, result = op.inputs[0], op.outputs[0]
        graph.remove_op(op)
        if result in graph.outputs and source in graph.inputs:
            # A graph output must be produced by an op; keep a RESHAPE that copies it.
            shape = graph.add_const(result + "/shape",
                                    list(graph.tensors[result].shape), "int32")
            graph.add_op("RESHAPE", [source, shape], [result], source=op.source)
            continue
        if result in graph.outputs:
            # Keep the graph output's name: rename the producer's output instead.
            producer = graph.producer(source)
            if producer is not None and source not in graph.outputs and \
                    len(graph.consumers(source)) == 0:
                graph.update_op(producer, outputs=tuple(
                    result if n == source else n for n in producer.outputs))
                continue
        graph.replace_uses(result, source)
    graph.toposort()
    graph.prune()
    graph.validate()
    return graph
