"""Keras frontend: Keras 3 and tf_keras (Keras 2) models to the graph IR.

Walks the functional graph itself (no get_config/from_config round trip), so Sequential,
Functional and models nested inside models (any depth, shared or not) all work. Each Keras layer
becomes one or more IR ops through the converter its op record registers (tfquant.ops); the
layers of tfquant's own QAT models are read by tfquant.frontends.keras_qat. BatchNormalization
becomes a BATCH_NORM pseudo-op and Dropout an IDENTITY pseudo-op that the passes fold or remove.
"""

from __future__ import annotations

import numpy as np

from tfquant import ir, ops, vocabulary
from tfquant.errors import ConversionError, UnreadableModelError, UnsupportedLayerError
from tfquant.frontends import float_fallback, keras_qat
from tfquant.ops import keras_support, weights
from tfquant.ops.keras_support import Unsupported


def _is_model(layer) -> bool:
    return hasattr(layer, "_nodes_by_depth") or hasattr(layer, "_functional")


def _model_inputs(model) -> list:
    try:
        return list(model.inputs or [])
    except (AttributeError, ValueError):  # an unbuilt Sequential has no inputs yet
        return []


def _functional_of(model):
    """The object holding the node graph: Keras 3 Sequential keeps it in `_functional`."""
    functional = getattr(model, "_functional", None) or model
    if not hasattr(functional, "_nodes_by_depth") or not _model_inputs(model):
        raise UnreadableModelError(
            f"model {model.name!r} has no functional graph (a subclassed model, or a model "
            "never built): the Keras frontend cannot read it")
    return functional


def _node_io(node):
    """(layer, flat input KerasTensors, flat output KerasTensors, call kwargs) of a node."""
    if hasattr(node, "operation"):  # Keras 3
        arguments = getattr(node, "arguments", None)
        kwargs = dict(getattr(arguments, "kwargs", None) or {})
        return node.operation, list(node.input_tensors), list(node.output_tensors), kwargs
    import tensorflow as tf  # tf_keras nodes hold nested structures
    return (node.layer, list(node.keras_inputs), tf.nest.flatten(node.outputs),
            dict(getattr(node, "call_kwargs", None) or {}))


def _converters() -> dict:
    return {**ops.keras_converters(), **keras_qat.CONVERTERS, "Activation": _activation}


def converted_layer_classes() -> set:
    """The Keras layer class names the frontend has a converter for (a layer of one of these
    may still be refused for its settings), and the containers it walks through."""
    return set(_converters()) | {"InputLayer", "Functional", "Sequential", "Model"}


class _Builder:
    """Builds the graph; the records' Keras converters call op / const / act."""

    def __init__(self, float_fallback: bool, keep_keras_layers: bool = False,
                 quantized_tensors=None):
        self.graph = ir.Graph()
        self.quantized_tensors = quantized_tensors
        self.float_fallback = float_fallback
        self.keep_keras_layers = keep_keras_layers
        self.unsupported: list = []
        self.float_layers: list = []
        self.call_kwargs: dict = {}
        self._arguments_of_current_node = None
        self._outputs_of_current_node = []
        self.converters = _converters()

    # -- used by the layer converters -----------------------------------------------------------

    def act(self, layer, x, out_shape, activation, name):
        """Emit the op for a layer's activation function; returns the output tensor."""
        kind = keras_support.activation_name(activation)
        if kind == "linear":
            return x
        composite = ops.composite_activations().get(kind)
        if composite is not None:
            return composite(self, layer, x, out_shape, name)
        op_type = ops.activation_ops().get(kind)
        if op_type is None:
            raise Unsupported(f"{type(layer).__name__} activation={kind}")
        return self.op(op_type, [x], out_shape, name, layer)

    def op(self, op_type, inputs, out_shape, name, layer, options=None, weight_grid=None):
        out = self.graph.add_tensor(name, out_shape)
        if options is None:
            options = ops.get(op_type).options()
        self.graph.add_op(op_type, inputs, [out], options, source=(layer.name,),
                          weight_grid=weight_grid)
        return out

    def current_keras_inputs(self) -> list:
        """The Keras tensors the layer being converted is called on."""
        return list(self._inputs_of_current_node)

    def current_keras_outputs(self) -> list:
        """The Keras tensors the layer being converted produces."""
        return list(self._outputs_of_current_node)

    def const(self, name, data, dtype=np.float32):
        return self.graph.add_const(name, data, dtype)

    # -- graph walk -------------------------------------------------------------------------

    def inline(self, model, input_names: list) -> list:
        functional = _functional_of(model)
        names = {}
        for keras_tensor, name in zip(model.inputs, input_names):
            names[id(keras_tensor)] = name
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                layer, inputs, outputs, kwargs = _node_io(node)
                if type(layer).__name__ == "InputLayer":
                    continue
                try:
                    in_names = [names[id(t)] for t in inputs]
                except KeyError:
                    raise UnreadableModelError(
                        f"layer {layer.name!r} reads a tensor from outside its model") \
                        from None
                if _is_model(layer):
                    out_names = self.inline(layer, in_names)
                elif _is_operation(layer):  # keras.ops arithmetic: x * 0.5, x + y
                    self._inputs_of_current_node = inputs
                    self.call_kwargs = kwargs
                    out_names = self.operation(layer, node, names, outputs)
                else:
                    self._inputs_of_current_node = inputs
                    self._arguments_of_current_node = getattr(node, "arguments", None)
                    self.call_kwargs = kwargs
                    out_names = self.layer(layer, in_names, outputs)
                for keras_tensor, name in zip(outputs, out_names):
                    names[id(keras_tensor)] = name
        return [names[id(t)] for t in model.outputs]

    def operation(self, operation, node, names, outputs) -> list:
        """A Keras 3 operation node (not a layer) of the element-wise arithmetic the records
        convert; its constant arguments become constant operands. Anything else is
        unsupported (the model takes the lowered route)."""
        kind = type(operation).__name__
        args = list(getattr(node.arguments, "args", ()))
        if kind not in _OPERATIONS or self.call_kwargs or len(args) != 2:
            return self.unsupported_layer(operation, f"keras.ops.{kind.lower()} "
                                          "(a Keras operation)", outputs)
        in_names = []
        for i, arg in enumerate(args):
            if id(arg) in names:
                in_names.append(names[id(arg)])
            elif isinstance(arg, (int, float, np.number, np.ndarray)):
                in_names.append(self.const(f"{operation.name}/operand{i}",
                                           np.asarray(arg, np.float32)))
            else:
                return self.unsupported_layer(operation, f"keras.ops.{kind.lower()} of "
                                              f"{type(arg).__name__}", outputs)
        constants = [n for n in in_names if self.graph.tensors[n].is_const]
        if constants and (len(constants) == len(in_names) or kind in ("Maximum", "Minimum")
                          or self.keep_keras_layers or self.float_fallback):
            return self.unsupported_layer(operation, f"keras.ops.{kind.lower()} with a "
                                          "constant operand", outputs)
        shape = keras_support.shape(outputs[0])
        return [self.op(_OPERATIONS[kind], in_names, shape, operation.name, operation,
                        ops.get(_OPERATIONS[kind]).options())]

    def unsupported_layer(self, layer, reason, outputs) -> list:
        if self.keep_keras_layers or self.float_fallback:
            raise UnsupportedLayerError(
                [(layer.name, reason)], "quantization-aware training keeps layers float, not "
                "Keras operations: write the arithmetic as a layer (keras.layers.Rescaling, "
                "Add, Multiply, ...)")
        self.unsupported.append((layer.name, reason))
        return [layer.name for _ in outputs]

    def layer(self, layer, in_names, outputs) -> list:
        kind = type(layer).__name__
        converter = self.converters.get(kind)
        first_new_op = len(self.graph.ops)
        try:
            if converter is None:
                raise Unsupported(kind)
            data_format = getattr(layer, "data_format", "channels_last")
            if data_format not in (None, "channels_last"):
                raise Unsupported(f"{kind} data_format={data_format}")
            self._outputs_of_current_node = outputs
            out = converter(self, layer, in_names, keras_support.shape(outputs[0]))
            if self.keep_keras_layers or self.float_fallback:  # QAT models: as QAT left it
                self._check_trainable(self.graph.ops[first_new_op:])
            return out if isinstance(out, list) else [out]
        except Unsupported as reason:
            for op in self.graph.ops[first_new_op:]:  # drop a partial conversion
                self.graph.remove_op(op)
            if self.keep_keras_layers:
                self.float_layers.append((layer.name, str(reason)))
                return self.keras_layer(layer, in_names, outputs)
            if self.float_fallback:
                self.float_layers.append((layer.name, str(reason)))
                return float_fallback.splice_float_layer(self.graph, layer, in_names,
                                                         self._inputs_of_current_node,
                                                         outputs,
                                                         self._arguments_of_current_node)
            self.unsupported.append((layer.name, str(reason)))
            return [in_names[0] if in_names else layer.name for _ in outputs]

    def _check_trainable(self, new_ops):
        """QAT keeps a layer as it is (float) when an op it becomes has no QAT form yet."""
        computed = weights.computed_by_qat_layers(self.graph, new_ops)
        missing = [op.type for op in new_ops if (record := ops.REGISTRY.get(op.type))
                   is not None and not record.pseudo and not record.qat
                   and id(op) not in computed]
        if missing:  # name the weighted op (TRANSPOSE_CONV, not the SHAPE before it)
            main = next((t for t in missing if ops.weight_layout(t) is not None), missing[0])
            raise Unsupported(f"{main} in quantization-aware training")

    def keras_layer(self, layer, in_names, outputs) -> list:
        out_names = [self.graph.add_tensor(layer.name, keras_support.shape(t)) for t in outputs]
        self.graph.add_op(vocabulary.KERAS_LAYER, list(in_names), out_names,
                          vocabulary.LayerOptions(vocabulary.LayerRef(
                              layer, self._arguments_of_current_node)),
                          source=(layer.name,), keep_float=True)
        return out_names


# Keras 3 operation classes (keras.ops / tensor arithmetic in a functional model) -> op type.
_OPERATIONS = {"Add": "ADD", "Subtract": "SUB", "Multiply": "MUL", "Maximum": "MAXIMUM",
               "Minimum": "MINIMUM"}


def _is_operation(layer) -> bool:
    """A Keras 3 operation that is not a layer (keras.src.ops.*: `x * 0.5`, `ops.add`)."""
    return type(layer).__module__.startswith("keras.src.ops")


def _activation(b: _Builder, layer, inputs, out_shape):
    y = b.act(layer, inputs[0], out_shape, layer.activation, layer.name)
    if y == inputs[0]:  # linear: keep the layer's name on the graph as an identity
        return b.op(vocabulary.IDENTITY, inputs, out_shape, layer.name, layer)
    return y


def keras_quantized_layers(model) -> list:
    """The layers of a Keras model that Keras quantized itself (model.quantize)."""
    if not hasattr(model, "_flatten_layers"):
        return []
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if getattr(layer, "quantization_mode", None)]


def refuse_keras_quantized(model, why_not: str = ""):
    """Layers Keras quantized itself (model.quantize) hold integer codes where their kernels
    were. Those keras_support.keras_quantized_refusal accepts (Dense, MultiHeadAttention's
    EinsumDense, Embedding) are read exactly (their codes and scales are kept); any other is
    refused in one line naming it
    (read as float weights it would give a garbage model, and TFLiteConverter cannot lower
    it either), and so is every one when `why_not` says why they cannot be read here."""
    refused = []
    for layer in keras_quantized_layers(model):
        mode = layer.quantization_mode
        reason = why_not or keras_support.keras_quantized_refusal(layer)
        if reason:
            refused.append(f"{layer.name!r} ({type(layer).__name__}, {mode}: {reason})")
    if refused:
        raise ConversionError(
            f"layers quantized by Keras (model.quantize) that tfquant cannot carry into "
            f"TFLite exactly: {', '.join(refused[:3])}{' ...' if len(refused) > 3 else ''}; "
            "convert the float model (tfquant quantizes weights per channel itself, to 8 or "
            "4 bits with Recipe(weight_bits=...))")


def from_keras(model, float_fallback: bool = False, keep_keras_layers: bool = False,
               quantized_tensors: dict | None = None) -> ir.Graph:
    """Build the IR of a Keras 3 or tf_keras model (Sequential, Functional, nested).

    Layers tfquant cannot quantize raise UnsupportedLayerError naming all of them, or, with
    `float_fallback`, become float TFLite ops (kept float by the quantizer), or, with
    `keep_keras_layers` (quantization-aware training), KERAS_LAYER ops holding the layer.
    A QAT model's activation quantizers become identities; given a dict `quantized_tensors`,
    their ranges are not read but {(quantizer name, member): (input, output) tensor} recorded
    (to calibrate them).
    """
    refuse_keras_quantized(model, "quantization-aware training starts from the float model"
                           if keep_keras_layers or float_fallback else "")
    builder = _Builder(float_fallback, keep_keras_layers, quantized_tensors)
    graph = builder.graph
    input_names = []
    _functional_of(model)  # fails clearly on models without inputs
    for keras_tensor in model.inputs:
        history = getattr(keras_tensor, "_keras_history", None)
        layer = getattr(history, "operation", None) or getattr(history, "layer", None)
        name = getattr(layer, "name", None) or keras_tensor.name.split(":")[0] or "input"
        input_names.append(graph.add_tensor(name, keras_support.shape(keras_tensor),
                                            keras_support.dtype(keras_tensor)))
    graph.inputs = input_names
    graph.outputs = builder.inline(model, input_names)
    if builder.unsupported:
        raise UnsupportedLayerError(
            builder.unsupported,
            "replace them with supported layers (docs/supported_layers.md lists them) or "
            "convert with route 'auto' (the default) to lower the whole model with "
            "TFLiteConverter")
    graph.float_layers = builder.float_layers
    # A graph output that is also an input (identity model) cannot be expressed in TFLite.
    graph.validate()
    return graph


def supported_layers() -> tuple:
    """The Keras layer class names the frontend converts."""
    return tuple(sorted(_converters()))
