"""Give every op its own constant tensors: a constant read by two ops is quantized once per
use (each op's grid), so each reader gets its own tensor (the data array is shared)."""

from tfquant import ir


def unshare_constants(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    seen = set()
    for op in graph.ops:
        inputs = list(op.inputs)
        for i, name in enumerate(inputs):
            if name and graph.tensors[name].is_const:
                if name in seen:
                    t = graph.tensors[name]
                    inputs[i] = graph.add_tensor(name, t.shape, t.dtype, t.data)
                seen.add(inputs[i])
        if tuple(inputs) != op.inputs:
            graph.update_op(op, inputs=tuple(inputs))
    return graph
