"""The model boundary of an integer graph: QUANTIZE / DEQUANTIZE ops so that the model takes
and returns float32, or integer (int8 / uint8) inputs and outputs, as the recipe asks."""

import numpy as np

from tfquant import ir
from tfquant.recipe import Recipe
from tfquant.spec import QuantParams

# The integer twin of a float model input / output moves inside under this suffix.
INNER_SUFFIX = "/int8"


def outer_name(name: str) -> str:
    """The model I/O tensor whose integer twin `name` is (`name` itself otherwise)."""
    return name[:-len(INNER_SUFFIX)] if name.endswith(INNER_SUFFIX) else name


def _external(tensor: ir.Tensor, kind: str) -> dict:
    """The type and params the model's own I/O tensor takes (the integer one moves inside)."""
    if kind == "uint8":
        return {"dtype": np.dtype(np.uint8),
                "quant": QuantParams(tensor.quant.scale, tensor.quant.zero_point + 128)}
    return {"dtype": np.dtype(np.float32), "quant": None}


def quantize_io(graph: ir.Graph, recipe: Recipe) -> ir.Graph:
    graph = graph.copy()
    if recipe.inference_input_type != "int8":
        for name in graph.inputs:
            tensor = graph.tensors[name]
            if tensor.quant is None:  # an integer input (token ids, indices): as it is
                continue
            inner = graph.add_tensor(name + INNER_SUFFIX, tensor.shape, tensor.dtype,
                                     quant=tensor.quant)
            graph.replace_uses(name, inner)
            graph.set_tensor(name, **_external(tensor, recipe.inference_input_type))
            graph.insert(0, ir.Op("QUANTIZE", [name], [inner], source=("input",)))
    kind = recipe.inference_output_type
    for name in list(graph.outputs):
        tensor = graph.tensors[name]
        if kind == "int8" or tensor.quant is None:  # float-island or integer outputs: as they are
            continue
        inner = graph.add_tensor(name + INNER_SUFFIX, tensor.shape, tensor.dtype, quant=tensor.quant)
        for op in graph.ops:
            if name in op.outputs or name in op.inputs:
                graph.update_op(op, outputs=tuple(inner if n == name else n for n in op.outputs),
                                inputs=tuple(inner if n == name else n for n in op.inputs))
        graph.set_tensor(name, **_external(tensor, kind))
        graph.add_op("QUANTIZE" if kind == "uint8" else "DEQUANTIZE", [inner], [name],
                     source=("output",))
    return graph
