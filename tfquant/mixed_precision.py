"""Mixed precision: named layers of an int8 model run in 16x8 mode (int16 activations).

The selective fallback that keeps accuracy without leaving the integer path: the layers the
debugger names as most damaging compute with int16 activations and int8 weights (TFLite's 16x8
kernels, int64 bias), the rest of the model stays int8. Both halves come from the same float
graph and calibrated ranges (quantize_int8 in int8 and in int16x8 mode); this module splices
the 16x8 version of the named ops into the int8 graph and converts at the borders:
int8 -> int16 through DEQUANTIZE + QUANTIZE (QUANTIZE has no int8 -> int16 kernel on every
runtime), int16 -> int8 with one QUANTIZE (a requantization every runtime has).
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from tfquant import ir, ops
from tfquant.errors import ConversionError

log = logging.getLogger("tfquant")



def _marked_ops(graph: ir.Graph, names: list) -> set:
    """Indices of the ops of the named layers and of the ops reading their outputs (a wide
    tensor helps only if its readers read it wide, as with Recipe.float_layers)."""
    def quantized(op):
        rule = ops.quant_rule(op.type)
        return not op.keep_float and not (rule is not None and rule.type_conversion)

    named = {i for i, op in enumerate(graph.ops)
             if any(n in op.source for n in names) and quantized(op)}
    found = {n for i in named for n in graph.ops[i].source}
    missing = [n for n in names if n not in found]
    if missing:
        known = sorted({s for op in graph.ops if not op.keep_float for s in op.source})
        raise ConversionError(
            f"int16_layers names no quantized layer of the model: {', '.join(missing)} "
            f"(layers: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''})")
    outputs = {name for i in named for name in graph.ops[i].outputs}
    readers = {i for i, op in enumerate(graph.ops)
               if quantized(op) and any(name in outputs for name in op.inputs)}
    return named | readers


def _int16_params(int16: ir.Graph, name: str):
    """The params tensor `name` has in the 16x8 graph (where a float op wrote it, those of the
    QUANTIZE that brings it back to int16)."""
    params = int16.tensors[name].quant
    if params is None:
        params = next(int16.tensors[op.outputs[0]].quant for op in int16.consumers(name)
                      if op.type == "QUANTIZE")
    return params


def splice_int16_layers(int8: ir.Graph, int16: ir.Graph, layer_names: Iterable[str]) -> ir.Graph:
    """The int8 graph with the ops of `layer_names` taken from the int16x8 graph.

    `int8` and `int16` are quantize_int8 results of the same float graph and ranges (same
    tensor names; an op is found in the 16x8 graph by its output). Ops without an int16 kernel
    (float inside 16x8 models) stay int8, with a warning.
    """
    names = list(dict.fromkeys(layer_names))
    if not names:
        return int8
    merged = int8.copy()
    marked = _marked_ops(merged, names)
    twin = {i: int16.producer(merged.ops[i].outputs[0]) for i in marked}
    no_int16 = {i for i in marked if twin[i] is None or twin[i].keep_float
                or twin[i].type != merged.ops[i].type}
    if no_int16:
        log.warning("int16_layers: %s stay int8 (TFLite has no int16 kernel for them)",
                    ", ".join(merged.ops[i].label for i in sorted(no_int16)))
        marked -= no_int16

    # Outputs of the 16x8 ops get new int16 tensors; the int8 names stay for int8 readers.
    wide = {}
    for i in marked:
        op = merged.ops[i]
        outputs = list(op.outputs)
        for k, name in enumerate(op.outputs):
            outputs[k] = merged.add_tensor(name + "/int16", merged.tensors[name].shape,
                                           np.int16, quant=int16.tensors[name].quant)
            wide[name] = outputs[k]
        merged.update_op(op, outputs=tuple(outputs))

    def widened_input(name):
        """An int16 version of int8 tensor `name` (DEQUANTIZE then QUANTIZE), made once."""
        if name not in wide:
            tensor = merged.tensors[name]
            producer = merged.producer(name)
            if (producer is not None and producer.type == "QUANTIZE"
                    and merged.tensors[producer.inputs[0]].dtype == np.float32):
                as_float = producer.inputs[0]  # a model input: quantize it to int16 directly
            else:
                as_float = merged.add_tensor(name + "/dequantized", tensor.shape)
                merged.add_op("DEQUANTIZE", [name], [as_float], source=("int16 island",))
            wide[name] = merged.add_tensor(name + "/int16", tensor.shape, np.int16,
                                           quant=_int16_params(int16, name))
            merged.add_op("QUANTIZE", [as_float], [wide[name]], source=("int16 island",))
        return wide[name]

    produced_wide = list(wide)
    for i in sorted(marked):
        op, op16 = merged.ops[i], twin[i]
        inputs = list(op.inputs)
        for k, name in enumerate(op.inputs):
            if not name:
                continue
            if merged.tensors[name].is_const:
                source = int16.tensors[op16.inputs[k]]
                inputs[k] = merged.add_tensor(name + "/int16", source.shape, source.dtype,
                                              source.data, source.quant)
            else:
                inputs[k] = widened_input(name)
        merged.update_op(op, options=op16.options, keep_float=op16.keep_float,
                         inputs=tuple(inputs))

    # int8 readers of a 16x8 op's output: DEQUANTIZE reads int16 directly, the others (and
    # the model outputs) get the int8 tensor back through one requantizing QUANTIZE.
    for name in produced_wide:
        readers = merged.consumers(name)
        dequantizers = [op for op in readers if op.type == "DEQUANTIZE"]
        merged.replace_uses(name, wide[name], ops=dequantizers)
        if len(dequantizers) < len(readers) or name in merged.outputs:
            merged.add_op("QUANTIZE", [wide[name]], [name], source=("int16 island",))
    merged.toposort()
    merged.prune()
    merged.validate()
    return merged
