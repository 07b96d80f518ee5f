"""Route two into the IR: a model the Keras frontend cannot read (unknown, Lambda or custom
layers, subclassed models, SavedModels, concrete functions) is lowered whole to float TFLite by
TFLiteConverter and read by the TFLite frontend, so that one quantizer serves every model.

TFLiteConverter lowers with TFLite builtin ops only (no Flex ops: tfquant's runtimes do not
have them); what it cannot lower is reported in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
from typing import Optional, Sequence

import numpy as np

from tfquant.errors import ConversionError, ModelLoadError


def is_saved_model(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(
        os.path.join(os.fspath(path), "saved_model.pb"))


def _convert(converter, what: str) -> bytes:
    import tensorflow as tf
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # The TFLite frontend drops the converter's metadata; writing it costs an unpack and
    # repack of the whole flatbuffer (0.2 s on basic-pitch).
    converter.exclude_conversion_metadata = True
    _skip_buffer_deduplication(converter)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints whole signatures
            return bytes(converter.convert())
    except Exception as e:  # TFLiteConverter's message says which op it could not lower
        text = str(e).strip()
        if "tensor list ops" in text.lower():  # recurrent layers with an unknown batch size
            raise ConversionError(
                f"TFLiteConverter cannot lower {what} to TFLite builtin ops: its recurrent "
                "layers (LSTM, GRU, RNN) loop over a tensor list of unknown batch size; give "
                "the model a fixed batch size (keras.Input(shape, batch_size=1))") from None
        lines = [line.strip() for line in text.splitlines() if "error:" in line]
        cause = (lines[0] if lines else text.splitlines()[0] if text else
                 type(e).__name__)
        cause = cause.split("error:", 1)[-1].strip()[:300]
        raise ConversionError(f"TFLiteConverter cannot lower {what} to TFLite builtin ops: "
                              f"{cause}") from None


def _skip_buffer_deduplication(converter) -> None:
    """TFLiteConverter's last step unpacks the whole flatbuffer into Python objects to merge
    equal constant buffers (0.1 s of 0.2 s on the Conv1D+LSTM of docs/coverage.md); the
    TFLite frontend reads every constant into its own IR tensor and the writer merges equal
    ones itself, so a float lowering skips it. A private hook of TF 2.21's converter
    (tests/test_routes.py checks the quantized bytes are unchanged); without it the
    converter deduplicates as usual."""
    optimize = getattr(converter, "_optimize_tflite_model", None)
    if not callable(optimize):
        return

    def float_model_as_converted(model, quant_mode, *args, **kwargs):
        if quant_mode.is_integer_quantization() or getattr(
                converter, "_sparsify_model", lambda: False)():
            return optimize(model, quant_mode, *args, **kwargs)
        return model

    converter._optimize_tflite_model = float_model_as_converted


def input_specs(model, first_batch=None) -> Optional[list]:
    """(shape with None batch, dtype) of each input of a Keras model: from its Input layers,
    else the first representative batch (calibrate.peek), else its build shapes; None if none
    of these says."""
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if inputs:
        from tfquant.ops import keras_support
        return [((None,) + tuple(None if d < 0 else d for d in keras_support.shape(t)[1:]),
                 keras_support.dtype(t)) for t in inputs]
    if first_batch is not None:
        return [((None,) + tuple(np.shape(a)[1:]), np.asarray(a).dtype if
                 np.asarray(a).dtype.kind in "iub" else np.dtype(np.float32))
                for a in first_batch]
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        shape = tuple(next(iter(shapes.values())))
        return [((None,) + tuple(shape[1:]), np.dtype(np.float32))]
    return None


def lower_keras(model, specs: Optional[Sequence] = None) -> bytes:
    """A Keras 3 or tf_keras model (functional, sequential or subclassed) as float TFLite.
    Subclassed models need `specs` (see input_specs): their call is traced at those shapes."""
    import tensorflow as tf
    name = f"Keras model {getattr(model, 'name', '')!r}"
    functional = hasattr(model, "_nodes_by_depth") or hasattr(model, "_functional")
    if functional and specs is None:
        flat = _flat_keras3_signature(model)
        if flat is None:
            return _convert(tf.lite.TFLiteConverter.from_keras_model(model), name)

        @tf.function(input_signature=flat)
        def serve_flat(*inputs):  # the function TFLiteConverter's Keras export would trace
            outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
            return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

        return lower_concrete_function(serve_flat, name=name)
    if specs is None:
        raise ConversionError(f"{name} has no defined inputs: call it on data once, or pass "
                              "representative data, so that tfquant knows its input shapes")
    signature = [tf.TensorSpec(shape, tf.as_dtype(dtype), name=f"input_{i}")
                 for i, (shape, dtype) in enumerate(specs)]

    @tf.function(input_signature=signature)
    def serve(*inputs):
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    return lower_concrete_function(serve, name=name)


def _flat_keras3_signature(model) -> Optional[list]:
    """TensorSpecs of a Keras 3 functional model's inputs (named as from_keras_model names
    them), if its inputs and outputs are flat lists or single tensors; else None.

    Tracing the model's call directly lowers the same graph as from_keras_model without its
    SavedModel export to disk (0.3 s of 1.0 s on the Conv1D+LSTM of docs/coverage.md); the
    lowered model then has no signature, which the router restores (flat_signature)."""
    import tensorflow as tf
    try:
        import keras
        if not isinstance(model, keras.Model):
            return None
        structure = model._inputs_struct
        outputs = model.outputs
    except (ImportError, AttributeError, ValueError):
        return None
    if isinstance(structure, dict) or (isinstance(structure, (list, tuple)) and any(
            isinstance(s, (list, tuple, dict)) for s in structure)):
        return None
    if isinstance(getattr(model, "_outputs_struct", None), dict):
        return None
    try:
        return [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype), name=t.name)
                for t in model.inputs] if outputs else None
    except (TypeError, ValueError):
        return None


def flat_signature(model) -> Optional[tuple]:
    """(input names, output names) of the signature from_keras_model gives a Keras 3
    functional model that lower_keras lowered by tracing (None for other models)."""
    flat = _flat_keras3_signature(model)
    if flat is None:
        return None
    return tuple(spec.name for spec in flat), tuple(f"output_{i}"
                                                    for i in range(len(model.outputs)))


@dataclasses.dataclass(frozen=True)
class LoweredSignature:
    """A SavedModel signature lowered to float TFLite: the model, the signature's key and its
    input and output names in the model's tensor order (sorted by name, as TensorFlow
    flattens a signature's keyword arguments and outputs)."""

    model: bytes
    key: str
    inputs: tuple
    outputs: tuple


def lower_saved_model(path: str, signature_key: Optional[str] = None) -> LoweredSignature:
    """A SavedModel directory (Keras or not) as float TFLite, through its serving signature
    (or `signature_key`).

    The SavedModel is loaded once and its signature lowered as a concrete function:
    TFLiteConverter.from_saved_model loads it twice (the second time for debug info only),
    1.0 s of its 2.0 s on basic-pitch. The lowered ops are the same."""
    import tensorflow as tf
    if not is_saved_model(path):
        raise ModelLoadError(f"{path!r} is not a SavedModel directory (no saved_model.pb)")
    where = os.fspath(path)
    try:
        loaded = tf.saved_model.load(where)
    except Exception as e:  # a corrupt or incompatible SavedModel
        raise ModelLoadError(f"cannot read SavedModel {where!r}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}"
                             ) from None
    signatures = dict(getattr(loaded, "signatures", None) or {})
    if not signatures:
        raise ModelLoadError(f"SavedModel {where!r} has no signatures: save it with "
                             "tf.saved_model.save(module, path, signatures=...)")
    key = signature_key or ("serving_default" if "serving_default" in signatures
                            else next(iter(signatures)))
    if key not in signatures:
        raise ModelLoadError(f"SavedModel {where!r} has no signature {key!r}; it has "
                             f"{sorted(signatures)}")
    function = signatures[key]
    model = lower_concrete_function(function, name=f"SavedModel {where!r}")
    keywords = function.structured_input_signature[1]
    inputs = tuple(sorted(keywords)) if isinstance(keywords, dict) else ()
    named = function.structured_outputs
    outputs = tuple(sorted(named)) if isinstance(named, dict) else ()
    return LoweredSignature(model, key, inputs, outputs)


def lower_concrete_function(function, name: Optional[str] = None) -> bytes:
    """A tf.function's concrete function (or a tf.function with an input signature) as float
    TFLite. Its variables are frozen to constants first: Keras 3 variables are not trackable
    by TFLiteConverter, which would otherwise leave them as resource tensors."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    if hasattr(function, "get_concrete_function"):
        function = function.get_concrete_function()
    name = name or f"function {getattr(function, 'name', '')!r}"
    try:
        frozen = convert_variables_to_constants_v2(function)
    except Exception as e:  # e.g. variables created inside the function
        raise ConversionError(f"cannot freeze the variables of {name}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}"
                              ) from None
    logger = logging.getLogger("absl")  # "provide trackable_obj": not needed once frozen
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        _skip_second_freeze(converter, frozen)
        return _convert(converter, name)
    finally:
        logger.setLevel(level)


def _skip_second_freeze(converter, frozen) -> None:
    """TFLiteConverter freezes its concrete function again, though `frozen` has no variables
    left (0.2-0.3 s of 0.8 s on the Conv1D+LSTM of docs/coverage.md): hand it over as it is,
    as that freeze would return it. A private hook of TF 2.21's converter
    (tests/test_routes.py checks the bytes are unchanged); without it the converter freezes
    as usual."""
    if not callable(getattr(converter, "_freeze_concrete_function", None)):
        return
    import tensorflow as tf

    def already_frozen():
        inputs = [t for t in frozen.inputs if t.dtype != tf.resource]
        return frozen.graph.as_graph_def(), inputs, frozen.outputs, frozen

    converter._freeze_concrete_function = already_frozen


_NOT_LAYERS = ("_tf_keras_network", "_tf_keras_model", "_tf_keras_sequential",
               "_tf_keras_input_layer", "_tf_keras_metric")


def saved_keras_layers(path: str) -> list:
    """(name, class name) of the Keras layers a SavedModel directory records (its
    keras_metadata.pb, else the object graph's metadata), without loading it; [] for a
    SavedModel that records none. Models, input layers and metrics are left out."""
    import json

    from tensorflow.core.protobuf import saved_model_pb2
    entries = []
    metadata_file = os.path.join(path, "keras_metadata.pb")
    try:
        if os.path.isfile(metadata_file):
            from tensorflow.python.keras.protobuf import saved_metadata_pb2
            saved = saved_metadata_pb2.SavedMetadata()
            with open(metadata_file, "rb") as f:
                saved.ParseFromString(f.read())
            entries = [(node.identifier, node.metadata) for node in saved.nodes]
        else:
            saved = saved_model_pb2.SavedModel()
            with open(os.path.join(path, "saved_model.pb"), "rb") as f:
                saved.ParseFromString(f.read())
            entries = [(node.user_object.identifier, node.user_object.metadata)
                       for graph in saved.meta_graphs[:1]
                       for node in graph.object_graph_def.nodes
                       if node.WhichOneof("kind") == "user_object"]
    except Exception:  # noqa: BLE001  unreadable here: the Keras loader will say why
        return []
    layers = []
    for identifier, text in entries:
        if not identifier.startswith("_tf_keras_") or identifier in _NOT_LAYERS or not text:
            continue
        try:
            metadata = json.loads(text)
        except ValueError:
            continue
        if isinstance(metadata, dict) and metadata.get("class_name"):
            layers.append((str(metadata.get("name", "")), str(metadata["class_name"])))
    return layers
