"""Write computed params into the graph: each tensor takes its integer type and params, and
constants become their integer codes (params.compute decides; this pass only applies)."""

from tfquant import ir, spec


def apply_params(graph: ir.Graph, tensor_quants: dict) -> ir.Graph:
    """`tensor_quants`: {tensor name: params.TensorQuant}."""
    graph = graph.copy()
    for name, q in tensor_quants.items():
        tensor = graph.tensors[name]
        if not tensor.is_const:
            graph.set_tensor(name, dtype=q.dtype, quant=q.params)
        elif q.spec is None:  # a bias: scale input * weight, 32 / 64-bit codes
            graph.set_tensor(name, data=spec.quantize_bias(tensor.data, q.params, q.dtype),
                             dtype=q.dtype, quant=q.params)
        else:
            codes = spec.quantize(tensor.data, q.params, q.spec)
            graph.set_tensor(name, data=codes.astype(q.dtype), dtype=q.dtype, quant=q.params)
    return graph
