"""Requantize fixed-params outputs where same-scale ops read them: a SOFTMAX / LOGISTIC / TANH
output keeps the params its kernel fixes, and the same-scale ops that hold it on another grid
(a concatenation with other branches) read it through an int8 -> int8 QUANTIZE to that grid."""

from tfquant import ir, params


def requantize_fixed_outputs(graph: ir.Graph, requantize: dict) -> ir.Graph:
    """`requantize`: {tensor: QuantParams of its group} (params.Params.requantize)."""
    if not requantize:
        return graph
    graph = graph.copy()
    for name, group_params in requantize.items():
        readers = [op for op in graph.consumers(name) if name in params.tied_inputs(graph, op)]
        if not readers:
            continue
        tensor = graph.tensors[name]
        twin = graph.add_tensor(name + "/requantized", tensor.shape, tensor.dtype,
                                quant=group_params)
        graph.add_op("QUANTIZE", [name], [twin], source=graph.producer(name).source)
        graph.replace_uses(name, twin, ops=readers)
    graph.toposort()
    return graph
