"""Keras frontend: every supported layer, Keras 3 and tf_keras, nested models; float export
reproduces the Keras model on all three runtimes."""

import keras
import numpy as np
import pytest
import tf_keras

from layer_models import every_layer_model, native_layer_models
from tfquant import passes, runtime, writer
from tfquant.errors import TfquantError, UnsupportedLayerError
from tfquant.frontends.keras_model import from_keras, supported_layers

KERAS = [pytest.param(keras, id="keras3"), pytest.param(tf_keras, id="tf_keras")]


@pytest.fixture(scope="module", params=KERAS)
def layer_model(request):
    return every_layer_model(request.param)


def _float_graph(model):
    return passes.canonicalize(from_keras(model))


def test_every_supported_layer_is_exercised(layer_model):
    kinds = set()

    def walk(model):
        for layer in model.layers:
            kinds.add(type(layer).__name__)
            if hasattr(layer, "layers"):
                walk(layer)
    walk(layer_model)
    # QAT layers are covered by tests/test_qat_export.py, tests/test_qat_schemes.py and
    # tests/test_qat_new_layers.py (OpLayer, QuantizedEmbedding), the
    # layers of native_layer_models by tests/test_native_layers.py
    kinds |= {type(layer).__name__ for model, _ in native_layer_models(keras).values()
              for layer in model.layers}
    expected = set(supported_layers()) - {"Softmax", "SpatialDropout2D", "GaussianNoise",
                                        "FoldedBatchNorm", "ActivationQuantizer",
                                        "ConstantOperand", "OpLayer", "QuantizedEmbedding"}
    assert expected <= kinds, expected - kinds


def test_graph_structure(layer_model):
    graph = _float_graph(layer_model)
    types = [op.type for op in graph.ops]
    assert "BATCH_NORM" not in types and "IDENTITY" not in types
    # stem conv + BN + ReLU6 became one CONV_2D with a fused RELU6
    stem = next(op for op in graph.ops if "stem" in op.source)
    assert stem.type == "CONV_2D" and stem.options.fused_activation == "RELU6"
    assert set(stem.source) == {"stem", "stem_bn", "stem_relu6"}
    # the BN after a concat cannot fold: MUL + ADD
    lonely = [op.type for op in graph.ops if op.source == ("lonely_bn",)]
    assert lonely == ["MUL", "ADD"]
    # the residual Add absorbed its ReLU
    add = next(op for op in graph.ops if "residual" in op.source)
    assert add.options.fused_activation == "RELU"
    # SeparableConv2D = depthwise + pointwise
    assert [op.type for op in graph.ops if "sep" in op.source] == \
        ["DEPTHWISE_CONV_2D", "CONV_2D"]


@pytest.mark.parametrize("rt", runtime.RUNTIMES)
def test_float_export_matches_keras(layer_model, rt):
    x = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype(np.float32)
    expected = layer_model.predict(x, verbose=0)
    got = runtime.Runner(writer.write_tflite(_float_graph(layer_model)), rt).predict(x)
    scale = expected.max() - expected.min()
    assert np.abs(got - expected).max() <= 1e-4 * scale


@pytest.mark.parametrize("K", [keras, tf_keras], ids=["keras3", "tf_keras"])
def test_sequential_model(K):
    model = K.Sequential([K.Input((6, 6, 2)), K.layers.Conv2D(3, 3), K.layers.Flatten(),
                          K.layers.Dense(4, activation="softmax")])
    graph = _float_graph(model)
    assert [op.type for op in graph.ops] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED",
                                             "SOFTMAX"]
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype(np.float32)
    got = runtime.Runner(writer.write_tflite(graph)).predict(x)
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-6)


def test_shared_submodel_used_twice():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="relu")],
                             name="shared")
    x = keras.Input((4,))
    y = keras.layers.Add()([inner(x), inner(inner(x))])
    model = keras.Model(x, y)
    graph = _float_graph(model)
    assert len(graph.ops_of_type("FULLY_CONNECTED")) == 3
    data = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    got = runtime.Runner(writer.write_tflite(graph)).predict(data)
    np.testing.assert_allclose(got, model.predict(data, verbose=0), atol=1e-5)


def test_unsupported_layers_are_all_named():
    x = keras.Input((8, 8, 3))
    y = keras.layers.UpSampling2D(interpolation="bicubic", name="upsample")(x)
    y = keras.layers.Conv2D(4, 3, name="ok_conv")(y)
    y = keras.layers.LayerNormalization(axis=1, name="layernorm")(y)
    y = keras.layers.Activation("softplus", name="softplus_act")(y)
    with pytest.raises(UnsupportedLayerError) as info:
        from_keras(keras.Model(x, y))
    message = str(info.value)
    for fragment in ("'upsample' (UpSampling2D", "bicubic",
                     "'layernorm' (LayerNormalization", "'softplus_act'", "softplus"):
        assert fragment in message
    assert "ok_conv" not in message
    assert {name for name, _ in info.value.layers} == {"upsample", "layernorm", "softplus_act"}


def test_channels_first_rejected():
    x = keras.Input((3, 8, 8))
    y = keras.layers.MaxPooling2D(data_format="channels_first", name="cf_pool")(x)
    with pytest.raises(UnsupportedLayerError, match="cf_pool"):
        from_keras(keras.Model(x, y))


def test_unbuilt_sequential_is_a_clear_error():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(TfquantError, match="never built"):
        from_keras(model)


def test_keras_operations_with_constants_are_computed_not_dropped():
    """`x * (1/6)`, `3 - x` and `x + y` in a Keras 3 functional model are operations, not
    layers: their constants become operands (they once became identities)."""
    import tfquant
    from tfquant import runtime, spec
    x = keras.Input((4,))
    y = keras.layers.Dense(4, name="dense")(x)
    z = keras.ops.add(3.0 - y * (1 / 6), y)
    model = keras.Model(x, keras.ops.maximum(z, 0.5))  # with a constant: not native
    data = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    with pytest.raises(UnsupportedLayerError, match="maximum with a constant operand"):
        from_keras(model)
    native = keras.Model(x, z)
    graph = from_keras(native)
    assert [op.type for op in graph.ops] == ["FULLY_CONNECTED", "MUL", "SUB", "ADD"]
    for m in (model, native):
        result = tfquant.convert_model(m, data, show_progress=False)
        got = runtime.Runner(result.model).predict(data)
        assert spec.sqnr_db(m.predict(data, verbose=0), got) > 30, result.route
