"""Selective float fallback: named layers, and the tensors they produce, stay float.

Keeping a damaged tensor float means keeping float both the op that writes it and the ops that
read it (a quantized reader would quantize it again); the quantizer then puts DEQUANTIZE /
QUANTIZE at the island's borders.
"""

from __future__ import annotations

from typing import Iterable

from tfquant import ir
from tfquant.errors import ConversionError
from tfquant.frontends.float_fallback import FLOAT_FALLBACK


def keep_float(graph: ir.Graph, layer_names: Iterable[str]) -> ir.Graph:
    names = list(dict.fromkeys(layer_names))
    if not names:
        return graph
    graph = graph.copy()
    producers = [op for op in graph.ops if any(n in op.source for n in names)]
    found = {n for op in producers for n in op.source}
    missing = [n for n in names if n not in found]
    if missing:
        known = sorted({s for op in graph.ops for s in op.source})
        raise ConversionError(
            f"float_layers names no layer of the model: {', '.join(missing)} (layers: "
            f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''})")
    marked = {id(op) for op in producers}
    for op in producers:
        for tensor in op.outputs:
            marked.update(id(c) for c in graph.consumers(tensor))
    for op in graph.ops:
        if id(op) in marked:
            op.options[FLOAT_FALLBACK] = True
    return graph
