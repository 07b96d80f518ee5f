"""Float fallback: a Keras layer tfquant cannot quantize becomes real float TFLite ops.

The layer is cloned (the user's model is not touched), wrapped in a one-layer model, converted
to float TFLite by TFLiteConverter, and the resulting ops are spliced into the IR as opaque ops
that keep their TFLite options. The quantizer leaves them in float with DEQUANTIZE / QUANTIZE
around them.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from tfquant import flatbuffer, ir, vocabulary
from tfquant.errors import ModelLoadError, UnsupportedLayerError
from tfquant.ops import keras_support


def _shape_of(keras_tensor):
    """The shape without the batch, None for unknown dimensions (as keras.Input takes it)."""
    return tuple(None if d < 0 else d for d in keras_support.shape(keras_tensor)[1:])


def _one_layer_model(layer, inputs, arguments=None):
    """A model holding a fresh copy of `layer` (same config and weights), called as the source
    model called it where `arguments` (its Keras 3 node's) say how, else on its inputs."""
    import keras
    is_keras3 = isinstance(layer, keras.layers.Layer)
    if is_keras3:
        K = keras
    else:
        import tf_keras as K
    clone = type(layer).from_config(layer.get_config())
    fresh_inputs = [K.Input(_shape_of(t), name=_name("input", i)) for i, t in enumerate(inputs)]
    if arguments is not None and is_keras3:
        args, kwargs = arguments.fill_in(
            {id(t): fresh for t, fresh in zip(arguments.keras_tensors, fresh_inputs)})
        outputs = clone(*args, **kwargs)
    else:
        outputs = clone(fresh_inputs[0] if len(fresh_inputs) == 1 else fresh_inputs)
    clone.set_weights(layer.get_weights())
    if isinstance(outputs, (list, tuple)):  # named, so that the signature tells them apart
        if is_keras3:
            outputs = {_name("output", i): y for i, y in enumerate(outputs)}
        else:  # tf_keras names signature outputs after the layers that make them
            outputs = [K.layers.Activation("linear", name=_name("output", i))(y)
                       for i, y in enumerate(outputs)]
    return K.Model(fresh_inputs, outputs)


def _name(kind: str, position: int) -> str:
    return f"fallback_{kind}_{position:04d}"


def _positions(model, subgraph, kind: str, count: int, layer) -> list:
    """The tensor index of each input (kind "inputs") or output ("outputs") of the one-layer
    model, by position: TFLiteConverter orders the subgraph's inputs by name and its outputs
    its own way, so positions are read from the signature, where _one_layer_model named
    them."""
    tensors = list(getattr(subgraph, kind))
    expected = [_name(kind[:-1], i) for i in range(count)]
    for signature in model.signatureDefs or []:
        by_name = {flatbuffer.text(entry.name): entry.tensorIndex
                   for entry in getattr(signature, kind) or []}
        if set(expected) <= set(by_name):
            return [by_name[name] for name in expected]
    if len(tensors) == count == 1:
        return tensors
    raise UnsupportedLayerError([(layer.name, type(layer).__name__)],
                                f"TFLiteConverter's lowering does not tell its {kind} apart")


def _convert_float(model) -> bytes:
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the whole SavedModel signature
        return converter.convert()


def splice_float_layer(graph: ir.Graph, layer, in_names: list, inputs, outputs,
                       arguments=None) -> list:
    """Append the float TFLite ops computing `layer` to `graph`; returns output names.
    `arguments`: how the model called the layer (a Keras 3 node's), for layers whose call
    takes several tensors in other ways than one list (attention's query and value)."""
    kind = type(layer).__name__
    try:
        data = _convert_float(_one_layer_model(layer, inputs, arguments))
    except Exception as e:  # TFLiteConverter's own message says which op it could not lower
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedLayerError(
            [(layer.name, kind)], f"it cannot be expressed as float TFLite ops either: "
            f"{first_line}") from None
    try:
        model = flatbuffer.read(data)
    except ModelLoadError as e:
        raise UnsupportedLayerError([(layer.name, kind)], f"its TFLite form is unreadable: {e}")
    if len(model.subgraphs) != 1:
        raise UnsupportedLayerError([(layer.name, kind)], "it needs control flow in TFLite")
    subgraph = model.subgraphs[0]
    names = {}
    for position, index in enumerate(_positions(model, subgraph, "inputs", len(in_names),
                                                layer)):
        names[index] = in_names[position]
    output_indices = _positions(model, subgraph, "outputs", len(outputs), layer)
    for position, index in enumerate(output_indices):
        names[index] = graph.add_tensor(layer.name,
                                        (-1,) + keras_support.shape(outputs[position])[1:])

    def tensor_name(index):
        if index < 0:
            return ""
        if index not in names:
            t = subgraph.tensors[index]
            dtype = flatbuffer.NUMPY_TYPES.get(t.type)
            if dtype is None:
                raise UnsupportedLayerError([(layer.name, kind)],
                                            f"its TFLite form uses tensor type {t.type}")
            shape = list(t.shapeSignature if t.shapeSignature is not None else t.shape)
            buffer = model.buffers[t.buffer].data if t.buffer else None
            base = f"{layer.name}/{t.name.decode() if isinstance(t.name, bytes) else t.name}"
            if buffer is not None and len(buffer):
                values = np.frombuffer(bytes(buffer), dtype).reshape(t.shape)
                names[index] = graph.add_const(base, values, dtype)
            else:
                names[index] = graph.add_tensor(base, shape, dtype)
        return names[index]

    for operator in subgraph.operators:
        code = model.operatorCodes[operator.opcodeIndex]
        if code.customCode or flatbuffer.builtin_name(code) in (None, "CUSTOM"):
            raise UnsupportedLayerError([(layer.name, kind)],
                                        "its TFLite form needs custom or Flex ops")
        options = vocabulary.CarriedOptions(operator.builtinOptionsType,
                                            operator.builtinOptions)
        graph.add_op(flatbuffer.builtin_name(code), [tensor_name(i) for i in operator.inputs],
                     [tensor_name(i) for i in operator.outputs], options, (layer.name,),
                     keep_float=True, source_version=code.version)
    return [names[index] for index in output_indices]
