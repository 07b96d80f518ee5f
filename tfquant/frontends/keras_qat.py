"""Readers of the layers of tfquant's own QAT models (tfquant.qat), for the Keras frontend:
a trained QAT model goes back through the same frontend as any Keras model, and these layers
become what the int8 model computes."""

from __future__ import annotations

import numpy as np

from tfquant import ir, ops, vocabulary
from tfquant.errors import TfquantError
from tfquant.ops import keras_support
from tfquant.ops.elementwise import BinaryOptions



def _op_of_kind(kind: str) -> str:
    """The op whose weight layout a FoldedBatchNorm of `kind` trains."""
    return next(name for name, record in ops.REGISTRY.items()
                if record.weights and record.weights.qat_kind == kind)


def _folded_batch_norm(b, layer, inputs, out_shape):
    """A trained QAT conv/dense + BN: the inference fold with the moving statistics (the
    weights the fake quantizer saw; the int8 export puts them on the same grid)."""
    quantize = float(np.asarray(layer.quantize))
    layer.quantize.assign(0.0)
    try:
        kernel = np.array(layer.folded_kernel(), np.float32)
    finally:
        layer.quantize.assign(quantize)
    bias = np.array(layer.folded_bias(), np.float32)
    op_type = _op_of_kind(layer.kind)
    layout = ops.weight_layout(op_type)
    if layout.dense and len(out_shape) != 2:
        raise keras_support.Unsupported("FoldedBatchNorm(dense) on inputs of rank > 2")
    options = layout.options_from_qat_layer(layer, kernel)
    w = b.const(f"{layer.name}/kernel", layout.from_keras(kernel))
    bias_name = b.const(f"{layer.name}/bias", bias)
    op_inputs = layout.op_inputs(b, layer.name, inputs[0], w, bias_name, out_shape)
    out = b.graph.add_tensor(layer.name, out_shape)
    b.graph.add_op(op_type, op_inputs, [out], options, (layer.name,),
                   weight_grid=ir.WeightGrid(layer.weight_bits, layer.weight_symmetric,
                                             layer.weight_per_channel))
    return out


def _constant_operand(b, layer, inputs, out_shape):
    """A QAT elementwise op with a constant (Rescaling, a standalone batch norm): MUL / ADD."""
    c = b.const(f"{layer.name}/constant", np.asarray(layer.get_constant(), np.float32))
    return b.op(layer.op.upper(), [inputs[0], c], out_shape, layer.name, layer, BinaryOptions())


def _quantized_embedding(b, layer, inputs, out_shape):
    """A QAT embedding: GATHER of its trained table (quantized on its own range, as trained)."""
    from tfquant.ops.split_join import GatherOptions
    table = b.const(f"{layer.name}/embeddings", np.asarray(layer.embeddings, np.float32))
    return b.op("GATHER", [table, inputs[0]], out_shape, layer.name, layer, GatherOptions())


def _activation_quantizer(b, layer, inputs, out_shape):
    """Fake quantization is an identity in the exported graph; its learned range becomes the
    range of the tensor it quantizes. With `b.quantized_tensors` (calibrating a QAT model) the
    range may be unset, and the tensors each (quantizer, member) sees are recorded instead."""
    member = int(b.call_kwargs.get("member", 0))
    y = b.op(vocabulary.IDENTITY, inputs[:1], out_shape, layer.name, layer)
    if b.quantized_tensors is not None:
        b.quantized_tensors[(layer.name, member)] = (inputs[0], y)
        return y
    if not layer.is_initialized(member):
        raise TfquantError(f"activation quantizer {layer.name!r} has no range yet: train the "
                           "QAT model (or run it with training=True) before exporting")
    value_range = layer.member_range(member)
    b.graph.qat_ranges[inputs[0]] = value_range
    b.graph.qat_ranges[y] = value_range
    return y


def _op_layer(b, layer, inputs, out_shape):
    """A QAT OpLayer: its op, with its integer constants back among the inputs (a list of
    output names for ops with several outputs)."""
    variable = iter(inputs)
    names = [b.const(f"{layer.name}/input{i}", layer.constants[i], layer.constants[i].dtype)
             if i in layer.constants else next(variable)
             for i in range(layer.operand_count(len(inputs)))]
    outputs = b.current_keras_outputs()
    if len(outputs) == 1:
        return b.op(layer.op_type, names, out_shape, layer.name, layer, layer.typed_options())
    out_names = [b.graph.add_tensor(f"{layer.name}:{i}", keras_support.shape(t))
                 for i, t in enumerate(outputs)]
    b.graph.add_op(layer.op_type, names, out_names, layer.typed_options(), (layer.name,))
    return out_names


CONVERTERS = {
    "FoldedBatchNorm": _folded_batch_norm,
    "ActivationQuantizer": _activation_quantizer,
    "ConstantOperand": _constant_operand,
    "QuantizedEmbedding": _quantized_embedding,
    "OpLayer": _op_layer,
}
