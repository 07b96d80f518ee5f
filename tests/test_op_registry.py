"""The op registry: every record complete, every op a frontend emits has one, and what a
record writes it reads back (options and version)."""

import dataclasses

import keras
import pytest
import tf_keras

import tfquant
from layer_models import every_layer_model, native_layer_models
from tfquant import flatbuffer, ops, vocabulary, writer
from tfquant.frontends.keras_model import from_keras
from tfquant.frontends.tflite_model import from_tflite
from tfquant.models import nested, zoo
from tfquant.ops.record import NotApplicable


@pytest.mark.parametrize("name", sorted(ops.REGISTRY))
def test_every_record_is_complete(name):
    record = ops.REGISTRY[name]
    assert record.name == name
    assert dataclasses.is_dataclass(record.options) and \
        record.options.__dataclass_params__.frozen, "options must be a frozen dataclass"
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        assert value is not None, field.name
        if isinstance(value, NotApplicable):
            assert value.reason.strip(), (name, field.name)
    if record.pseudo:
        assert name in vocabulary.PSEUDO_OPS
        return
    # A real TFLite op: it can be written (or is read as another op) and has its rules.
    assert hasattr(__import__("ai_edge_litert.schema_py_generated", fromlist=["x"])
                   .BuiltinOperator, name)
    if record.write:
        assert callable(record.version) and record.quant, name
    assert record.read or record.write, f"{name} is neither read nor written"
    if record.delegate:
        assert all(isinstance(c, ops.DelegateCase) for c in record.delegate)


def _keras_models():
    yield every_layer_model(keras)
    yield every_layer_model(tf_keras)
    yield nested.build_nested_model()
    for model, _ in native_layer_models(keras).values():
        yield model
    for name in zoo.BUILDERS:
        yield zoo.build(name, input_shape=(28, 28, 1))


def test_every_op_the_keras_frontend_emits_has_a_record():
    emitted = set()
    for model in _keras_models():
        for op in from_keras(model).ops:
            emitted.add(op.type)
    assert emitted <= set(ops.REGISTRY), emitted - set(ops.REGISTRY)
    # ... and every Keras mapping of the registry is exercised by those models.
    converted = set(ops.keras_converters()) - {"SpatialDropout2D", "GaussianNoise", "Softmax"}
    used = {type(layer).__name__ for model in _keras_models()
            for layer in model._flatten_layers(include_self=False, recursive=True)}
    assert converted <= used, converted - used


def _float_models():
    """(case name, float .tflite) of every record's delegate case (float, written by tfquant)."""
    for name, case in sorted(ops.delegate_cases().items()):
        model, _, _ = case.build()
        yield name, tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))


def test_every_op_the_tflite_frontend_emits_has_a_record_and_reads_back_the_same():
    for name, data in _float_models():
        graph = from_tflite(data)
        for op in graph.ops:
            if isinstance(op.options, vocabulary.CarriedOptions):
                assert op.keep_float, (name, op.label)
                continue
            assert op.type in ops.REGISTRY, (name, op.type)
            assert isinstance(op.options, ops.get(op.type).options), (name, op.label)
        # Written again, the model is the same model: ops, options and versions.
        again = writer.write_tflite(graph)
        theirs = [(o.name, o.version, o.options) for o in flatbuffer.operators(data)]
        ours = [(o.name, o.version, o.options) for o in flatbuffer.operators(again)]
        assert [(n, v) for n, v, _ in ours] == [(n, v) for n, v, _ in theirs], name
        for (n, _, a), (_, _, b) in zip(ours, theirs):
            assert (a is None) == (b is None) and (a is None or vars(a) == vars(b)), (name, n)
