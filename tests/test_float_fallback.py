"""Float fallback: unsupported layers become real float TFLite ops, isolated by
DEQUANTIZE / QUANTIZE, and the model still computes the Keras result on every runtime."""

import keras
import numpy as np
import pytest
import tf_keras

import tfquant
from tfquant import runtime
from tfquant.errors import UnsupportedLayerError


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    y = L.UpSampling2D(name="up")(y)
    y = L.Conv2D(4, 3, padding="same", name="c2")(y)
    y = L.LayerNormalization(name="ln")(y)
    side = L.Conv2D(4, 1, name="c3")(L.UpSampling2D(name="up2")(x))
    y = L.Concatenate(name="cat")([y, side])
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = L.Dense(5, activation="gelu", name="dense_gelu")(y)
    return keras.Model(x, y)


DATA = np.random.default_rng(0).uniform(size=(64, 8, 8, 3)).astype(np.float32)


def test_without_fallback_every_layer_is_named(model):
    with pytest.raises(UnsupportedLayerError) as info:
        tfquant.convert(model, DATA)
    assert sorted(n for n, _ in info.value.layers) == ["dense_gelu", "ln", "up", "up2"]
    assert "float fallback" in str(info.value)


def test_fallback_int8_model(model):
    result = tfquant.convert_model(model, DATA, tfquant.Recipe(float_fallback=True),
                                   show_progress=False)
    assert sorted(n for n, _ in result.float_graph.float_layers) == \
        ["dense_gelu", "ln", "up", "up2"]
    graph = result.graph
    # quantized ops stay int8; fallback ops are float and isolated by (DE)QUANTIZE
    for op in graph.ops:
        dtypes = {graph.tensors[n].dtype for n in op.outputs}
        if op.keep_float:
            assert np.dtype(np.int8) not in dtypes, op.label
        elif op.type not in ("DEQUANTIZE",):
            assert dtypes == {np.dtype(np.int8)}, op.label
    conv = [op for op in graph.ops if op.type == "CONV_2D" and not op.keep_float]
    assert len(conv) == 3
    x = DATA[:16]
    expected = model.predict(x, verbose=0)
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt, "reference").predict(x)
        assert tfquant.spec.sqnr_db(expected, got) > 30, rt


def test_fallback_float_model_is_exact(model):
    data = tfquant.convert(model, recipe=tfquant.Recipe(mode="float", float_fallback=True))
    x = DATA[:16]
    np.testing.assert_allclose(runtime.Runner(data).predict(x), model.predict(x, verbose=0),
                               atol=1e-5)


def test_fallback_does_not_touch_the_model(model):
    before = [len(layer._inbound_nodes) for layer in model.layers]
    tfquant.convert(model, recipe=tfquant.Recipe(mode="float", float_fallback=True))
    assert [len(layer._inbound_nodes) for layer in model.layers] == before


def test_multi_input_layer_keeps_its_operand_order():
    """TFLiteConverter orders a one-layer model's inputs by their names and its outputs its own
    way; the fallback maps them by signature, so a non-commutative layer (Subtract) computes
    a - b however many models Keras has named before (here the names cross 9 -> 10)."""
    L = keras.layers
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 6)).astype(np.float32)
    for _ in range(12):
        inp = keras.Input((6,))
        a = L.Dense(6)(inp)
        b = L.Dense(6, activation="relu")(inp)
        model = keras.Model(inp, L.Subtract()([a, b]))
        data = tfquant.convert(model, recipe=tfquant.Recipe(mode="float", float_fallback=True))
        expected = model.predict(x, verbose=0)
        np.testing.assert_allclose(runtime.Runner(data).predict(x), expected, atol=1e-5)


@pytest.mark.parametrize("K", [keras, tf_keras], ids=["keras3", "tf_keras"])
def test_multi_output_layer_keeps_its_output_order(K):
    """A layer tfquant cannot read with two outputs of different shapes: each reaches the
    right consumer (the lowering's outputs are matched by name, not by position)."""
    import tensorflow as tf

    class SplitShift(K.layers.Layer):
        def call(self, x):
            a, b = tf.split(x, [2, 4], axis=-1)
            return [a * 2.0 - 1.0, b - 3.0]

    inp = K.Input((6,))
    a, b = SplitShift(name="split_shift")(K.layers.Dense(6, name="d")(inp))
    model = K.Model(inp, [K.layers.Dense(3, name="ha")(a), K.layers.Dense(3, name="hb")(b)])
    x = np.random.default_rng(2).uniform(size=(4, 6)).astype(np.float32)
    data = tfquant.convert(model, recipe=tfquant.Recipe(mode="float", float_fallback=True))
    interpreter = runtime.make_interpreter(data)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    got = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    for g, expected in zip(got, model.predict(x, verbose=0)):
        np.testing.assert_allclose(g, expected, atol=1e-5)
