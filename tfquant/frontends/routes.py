"""Which route a model takes into the IR (docs/architecture.md, "Two routes in"):

- native: the Keras frontend reads the model layer by layer (fast: no TensorFlow conversion;
  the source of quantization-aware training);
- lowered: everything the Keras frontend cannot read - unknown, Lambda or custom layers,
  subclassed models, SavedModels that are not Keras models, concrete functions - is lowered
  whole to float TFLite by TFLiteConverter and read by the TFLite frontend;
- a float .tflite goes straight to the TFLite frontend; an IR graph is used as it is.

Recipe.route forces one ("native" refuses what the Keras frontend cannot read; "lowered"
lowers every Keras model); the default "auto" takes the native route where it can.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from tfquant import calibrate, ir
from tfquant.errors import ModelLoadError, UnreadableModelError, UnsupportedLayerError
from tfquant.flatbuffer import is_tflite, load_bytes
from tfquant.recipe import ROUTES
from tfquant.frontends import lowering
from tfquant.frontends.keras_model import from_keras, refuse_keras_quantized
from tfquant.frontends.tflite_model import from_tflite

QAT_LAYERS = ("ActivationQuantizer", "FoldedBatchNorm")


@dataclasses.dataclass(frozen=True)
class SavedModel:
    """A SavedModel directory lowered through a signature: not a Keras model, or a Keras model
    whose recorded layers include ones the Keras frontend has no converter for
    (`unknown_layers`, (name, class) pairs)."""

    path: str
    signature_key: Optional[str] = None
    unknown_layers: tuple = ()


@dataclasses.dataclass
class Source:
    """A model's IR graph, how it got there, and the representative data to use (a one-shot
    iterator peeked at for input shapes comes back chained)."""

    graph: ir.Graph
    route: str
    data: object = None


def qat_layers(model) -> list:
    """The quantization-aware-training layers of a Keras model (empty for other models)."""
    if not hasattr(model, "_flatten_layers"):
        return []
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if type(layer).__name__ in QAT_LAYERS]


def to_graph(model, data=None, route: str = "auto") -> Source:
    """The IR graph of `model`: an IR graph, float .tflite bytes or path, a .keras / .h5
    path or SavedModel directory, a SavedModel, a concrete function or tf.function, or a
    Keras 3 / tf_keras model (see the module docstring for the routes)."""
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    if isinstance(model, ir.Graph):
        return Source(model, "IR graph", data)
    if is_tflite(model):
        return Source(from_tflite(model), "float .tflite (TFLite frontend)", data)
    model = opened(model, route)
    if isinstance(model, SavedModel):
        reason = str(UnsupportedLayerError(model.unknown_layers)).split(";")[0] \
            if model.unknown_layers else "SavedModel signature"
        lowered = lowering.lower_saved_model(model.path, model.signature_key)
        graph = from_tflite(lowered.model)
        if len(lowered.inputs) == len(graph.inputs) and \
                len(lowered.outputs) == len(graph.outputs):
            graph.signature = ir.Signature(lowered.key, lowered.inputs, lowered.outputs)
        return Source(graph, f"lowered by TFLiteConverter ({reason})", data)
    if hasattr(model, "get_concrete_function") or type(model).__name__ == "ConcreteFunction":
        return Source(from_tflite(lowering.lower_concrete_function(model)),
                      "lowered by TFLiteConverter (TensorFlow function)", data)
    if qat_layers(model):  # trained QAT layers: read natively, float layers kept float
        return Source(from_keras(model, float_fallback=True), "native (QAT model)", data)
    reason = "Recipe(route='lowered')"
    if route != "lowered":
        try:
            return Source(from_keras(model), "native (Keras frontend)", data)
        except (UnsupportedLayerError, UnreadableModelError) as e:
            if route == "native":
                raise
            reason = str(e).split(";")[0]
    refuse_keras_quantized(model, f"only the native route reads Keras-quantized layers, "
                           f"and this model cannot take it ({reason})")
    first = None
    if data is not None:
        first, data = calibrate.peek(data)
    functional = hasattr(model, "_nodes_by_depth") or hasattr(model, "_functional")
    specs = None if functional else lowering.input_specs(model, first)
    graph = from_tflite(lowering.lower_keras(model, specs))
    traced = lowering.flat_signature(model) if functional else None
    if graph.signature is None and traced is not None:
        graph.signature = ir.Signature(inputs=traced[0], outputs=traced[1])
    if functional:
        input_names = [t.name.split(":")[0] for t in model.inputs]
    else:
        input_names = [f"input_{i}" for i in range(len(specs))]
    in_keras_order(graph, input_names, getattr(model, "output_names", None) or [])
    return Source(graph, f"lowered by TFLiteConverter ({reason})", data)


def opened(model, route: str = "auto"):
    """A model path loaded (load_model), except a Keras SavedModel directory whose recorded
    layers include one the Keras frontend has no converter for: a SavedModel naming them, to be
    lowered from the directory (loading it into Keras would only export it again). Anything
    else comes back as it is."""
    if not isinstance(model, (str, os.PathLike)) or is_tflite(model):
        return model
    path = os.fspath(model)
    unknown = _unknown_saved_layers(path) if route != "native" else []
    if unknown:
        return SavedModel(path, unknown_layers=tuple(unknown))
    return load_model(path)


def _unknown_saved_layers(path: str) -> list:
    """(name, class) of the layers of a Keras SavedModel directory that the Keras frontend
    has no converter for, read from its metadata; [] for other paths."""
    if not lowering.is_saved_model(path):
        return []
    from tfquant.frontends.keras_model import converted_layer_classes
    known = converted_layer_classes()
    return [(name, kind) for name, kind in lowering.saved_keras_layers(path)
            if kind not in known]


def in_keras_order(graph: ir.Graph, input_names, output_names):
    """Put a lowered graph's inputs and outputs in the Keras model's order (TFLiteConverter
    orders them by signature name). Signature inputs are named as the model's inputs, outputs
    output_<i> (Keras 3) or as the model's outputs (tf_keras); left as they are otherwise."""
    if graph.signature is None:
        return
    signature = graph.signature
    inputs = dict(zip(signature.inputs, graph.inputs))
    outputs = dict(zip(signature.outputs, graph.outputs))
    if sorted(inputs) == sorted(input_names):
        graph.inputs = [inputs[n] for n in input_names]
        signature = dataclasses.replace(signature, inputs=tuple(input_names))
    for names in ([f"output_{i}" for i in range(len(outputs))], list(output_names)):
        if sorted(outputs) == sorted(names):
            graph.outputs = [outputs[n] for n in names]
            signature = dataclasses.replace(signature, outputs=tuple(names))
            break
    graph.signature = signature


def load_model(path: str):
    """Load a .keras / .h5 file or a SavedModel directory: a Keras model (Keras 3 first, then
    tf_keras), or, for a SavedModel that is not a Keras model, a SavedModel to lower. A
    .tflite file is returned as its flatbuffer bytes, checked by the TFLite frontend."""
    if not os.path.exists(path):
        raise ModelLoadError(f"model file {path!r} does not exist")
    if is_tflite(path):
        data = load_bytes(path)
        from_tflite(data)  # a corrupt file fails here, before any work
        return data
    import keras
    import tf_keras

    import tfquant.qat  # noqa: F401  registers the QAT layers, so saved QAT models load
    if os.path.isdir(path):
        loaders = [("tf_keras", lambda: tf_keras.models.load_model(path, compile=False))]
    elif path.endswith(".keras"):
        loaders = [("keras", lambda: keras.models.load_model(path, compile=False)),
                   ("tf_keras", lambda: tf_keras.models.load_model(path, compile=False))]
    elif path.endswith((".h5", ".hdf5")):
        loaders = [("tf_keras", lambda: tf_keras.models.load_model(path, compile=False)),
                   ("keras", lambda: keras.models.load_model(path, compile=False))]
    else:
        raise ModelLoadError(f"{path!r} is not a .keras, .h5 or .tflite file or a SavedModel "
                             "directory")
    errors = []
    for name, load in loaders:
        try:
            loaded = load()
        except Exception as e:  # each loader's own error is reported below
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            errors.append(f"{name}: {text[:200]}{'...' if len(text) > 200 else ''}")
            continue
        if hasattr(loaded, "_flatten_layers"):
            return loaded
        errors.append(f"{name}: not a Keras model ({type(loaded).__name__})")
    if lowering.is_saved_model(path):  # not Keras: its serving signature, lowered
        return SavedModel(path)
    raise ModelLoadError(f"cannot load {path!r} as a Keras model (corrupt or not Keras?): "
                         + "; ".join(errors))
