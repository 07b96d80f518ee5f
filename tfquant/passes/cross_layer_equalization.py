"""Cross-layer equalization (Nagel et al. 2019, "Data-free quantization"; what AIMET does to fix
per-layer PTQ of MobileNets without training).

For two linear ops in a row, A -> [ReLU] -> [PAD] -> B, where A's output channel i feeds only
B's input channel i, the function is unchanged when A's channel i is divided by s_i and B's
input channel i is multiplied by s_i (ReLU and zero padding commute with positive scaling).
Choosing s_i = sqrt(r1_i / r2_i), with r1 the range of A's output channel and r2 the range of
B's input channel, makes both ranges sqrt(r1_i r2_i): channels whose folded batch norm made them
tiny no longer waste a per-layer (per-tensor) weight grid. Runs on the canonical float graph
(batch norms already folded), repeating over all pairs until the scales settle.

ReLU6 clamps at 6, which scaling would move; such pairs are equalized only with
`relu6_to_relu=True`, which replaces the clamp by a plain ReLU (as AIMET does) - a change of the
float model that the caller should measure.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfquant import ir, ops

log = logging.getLogger("tfquant")

_MIN_RANGE = 1e-12


def _pairs(graph: ir.Graph, relu6_to_relu: bool) -> list:
    """(A, B) pairs that can be equalized."""
    pairs = []
    for a in graph.ops:
        if ops.weight_layout(a.type) is None or a.keep_float or a.fixed_weights or \
                ops.weight_layout(a.type).data_input != 0:
            continue
        if getattr(a.options, "depth_multiplier", 1) != 1:
            continue
        activation = a.options.fused_activation
        if activation not in ("NONE", "RELU") and not (activation == "RELU6" and relu6_to_relu):
            continue
        tensor = a.outputs[0]
        consumers = graph.consumers(tensor)
        if len(consumers) != 1 or tensor in graph.outputs:
            continue
        b = consumers[0]
        if ops.REGISTRY.get(b.type) is not None and \
                ops.REGISTRY[b.type].commutes_with_channel_scaling:
            padded = b.outputs[0]
            if len(graph.consumers(padded)) != 1 or padded in graph.outputs:
                continue
            b = graph.consumers(padded)[0]
        b_layout = ops.weight_layout(b.type)
        if b_layout is None or b.keep_float or b.fixed_weights or b_layout.data_input != 0:
            continue
        if getattr(b.options, "depth_multiplier", 1) != 1:
            continue
        if b_layout.dense and len(graph.tensors[tensor].shape) != 2:
            continue
        pairs.append((a, b))
    return pairs


def cross_layer_equalization(graph: ir.Graph, iterations: int = 20,
                             relu6_to_relu: bool = False) -> ir.Graph:
    graph = graph.copy()
    pairs = _pairs(graph, relu6_to_relu)
    first_ops = {id(a) for a, _ in pairs}
    # Private copies of the constants this pass rewrites (they may be shared); an op in two
    # pairs (B of one, A of the next) gets one copy.
    current = {}
    for op in {id(o): o for pair in pairs for o in pair}.values():
        inputs = list(op.inputs)
        for i in (1, 2):
            t = graph.tensors[op.inputs[i]]
            inputs[i] = graph.add_const(t.name + "/equalized", t.data)
        options = op.options
        if id(op) in first_ops and options.fused_activation == "RELU6":
            options = dataclasses.replace(options, fused_activation="RELU")
        current[id(op)] = graph.replace_op(op, op.replace(inputs=tuple(inputs),
                                                          options=options))
    pairs = [(current[id(a)], current[id(b)]) for a, b in pairs]
    for _ in range(iterations):
        largest_change = 0.0
        for a, b in pairs:
            la, lb = ops.weight_layout(a.type), ops.weight_layout(b.type)
            wa, ba = graph.tensors[a.inputs[1]], graph.tensors[a.inputs[2]]
            wb = graph.tensors[b.inputs[1]]
            r1 = la.output_channel_range(wa.data.astype(np.float64))
            r2 = lb.input_channel_range(wb.data.astype(np.float64))
            live = (r1 > _MIN_RANGE) & (r2 > _MIN_RANGE)
            s = np.ones_like(r1)
            s[live] = np.sqrt(r1[live] / r2[live])
            graph.set_tensor(wa.name, data=la.scale_output_channels(wa.data, 1.0 / s).astype(
                np.float32))
            graph.set_tensor(ba.name, data=(ba.data / s).astype(np.float32))
            graph.set_tensor(wb.name, data=lb.scale_input_channels(wb.data, s).astype(
                np.float32))
            largest_change = max(largest_change, float(np.abs(np.log(s)).max(initial=0.0)))
        if largest_change < 1e-6:
            break
    if pairs:
        log.info("cross-layer equalization: %d layer pairs", len(pairs))
    graph.prune()  # the original constants, replaced by the equalized copies
    graph.validate()
    return graph
