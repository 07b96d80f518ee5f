"""Float islands inside a quantized graph: ops that stay float (Op.keep_float) read and write
float. Their integer inputs get a DEQUANTIZE, their outputs go back to float32, and outputs
read by quantized ops get a QUANTIZE to the params computed for that tensor."""

import numpy as np

from tfquant import ir

_INTEGER_ACTIVATIONS = (np.dtype(np.int8), np.dtype(np.int16))


def isolate_float_ops(graph: ir.Graph) -> ir.Graph:
    graph = graph.copy()
    float_ops = [op for op in graph.ops if op.keep_float]
    integer_params = {}
    for op in float_ops:
        for name in op.outputs:
            tensor = graph.tensors[name]
            if tensor.dtype in _INTEGER_ACTIVATIONS:
                integer_params[name] = (tensor.quant, tensor.dtype)
                graph.set_tensor(name, dtype=np.dtype(np.float32), quant=None)
    dequantized = {}
    for op in float_ops:
        inputs = list(op.inputs)
        for i, name in enumerate(inputs):
            tensor = graph.tensors[name] if name else None
            if tensor is None or tensor.is_const or tensor.dtype not in _INTEGER_ACTIVATIONS:
                continue
            if name not in dequantized:
                twin = graph.add_tensor(name + "/dequantized", tensor.shape)
                graph.add_op("DEQUANTIZE", [name], [twin], source=op.source)
                dequantized[name] = twin
            inputs[i] = dequantized[name]
        if tuple(inputs) != op.inputs:
            graph.update_op(op, inputs=tuple(inputs))
    for name, (params, dtype) in integer_params.items():
        quantized_readers = [c for c in graph.consumers(name) if not c.keep_float]
        if quantized_readers:
            twin = graph.add_tensor(name + "/quantized", graph.tensors[name].shape, dtype,
                                    quant=params)
            graph.add_op("QUANTIZE", [name], [twin], source=graph.producer(name).source)
            graph.replace_uses(name, twin, ops=quantized_readers)
    graph.toposort()
    return graph
