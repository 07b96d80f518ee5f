"""Ops that stay float inside a quantized model (Op.keep_float): named layers (selective float
fallback), and in 16x8 mode the ops TFLite has no int16 kernel for.

Keeping a damaged tensor float means keeping float both the op that writes it and the ops that
read it (a quantized reader would quantize it again); the float-islands pass then puts
DEQUANTIZE / QUANTIZE at the island's borders.
"""

from __future__ import annotations

import logging
from typing import Iterable

from tfquant import ir, ops
from tfquant.errors import ConversionError

log = logging.getLogger("tfquant")


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
            graph.update_op(op, keep_float=True)
    return graph


def keep_float_without_int16_kernel(graph: ir.Graph) -> ir.Graph:
    """16x8 mode: ops TFLite has no int16 kernel for (HARD_SWISH, SQUARED_DIFFERENCE, ...) run
    in float between a DEQUANTIZE and a QUANTIZE instead of failing when the model is run."""
    graph = graph.copy()
    kept = {}
    for op in graph.ops:
        rule = ops.quant_rule(op.type)
        if not op.keep_float and rule is not None and not rule.int16:
            graph.update_op(op, keep_float=True)
            kept.setdefault(op.type, []).append(op.label)
    for op_type, labels in kept.items():
        log.warning("TFLite has no int16 kernel for %s: %d op(s) run in float inside the 16x8 "
                    "model (%s%s)", op_type, len(labels), ", ".join(labels[:3]),
                    " ..." if len(labels) > 3 else "")
    return graph
