"""The same nested architecture in Keras 3 and tf_keras (same weights) converts to the same
model: float outputs equal Keras', int8 outputs equal each other."""

import keras
import numpy as np
import pytest
import tf_keras

import tfquant
from tfquant import runtime
from tfquant.models.nested import build_nested_model


def _layers_by_name(model, out=None):
    out = {} if out is None else out
    for layer in model.layers:
        if hasattr(layer, "layers"):
            _layers_by_name(layer, out)
        out[layer.name] = layer
    return out


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    k3 = build_nested_model(keras_module=keras)
    tk = build_nested_model(keras_module=tf_keras)
    target = _layers_by_name(tk)
    rng = np.random.default_rng(0)
    for name, layer in _layers_by_name(k3).items():
        weights = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":  # non-trivial statistics
            weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if i != 1 else
                       rng.normal(0, 0.1, w.shape).astype(np.float32)
                       for i, w in enumerate(weights)]
            layer.set_weights(weights)
        if weights:
            target[name].set_weights(weights)
    return k3, tk


def test_float_export_of_both_matches_keras(models, mnist):
    x = mnist.x_test[:64]
    k3, tk = models
    expected = k3.predict(x, verbose=0)
    np.testing.assert_allclose(tk.predict(x, verbose=0), expected, atol=1e-5)
    for model in models:
        flat = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
        for rt in runtime.RUNTIMES:
            np.testing.assert_allclose(runtime.Runner(flat, rt).predict(x), expected,
                                       atol=1e-4 * (expected.max() - expected.min()))


def test_int8_of_both_is_the_same_model(models, mnist):
    results = [tfquant.convert_model(m, mnist.x_train[:640], show_progress=False)
               for m in models]
    a, b = (r.graph for r in results)
    assert [op.type for op in a.ops] == [op.type for op in b.ops]
    x = mnist.x_test[:200]
    outs = [runtime.Runner(r.model, resolver="reference").predict(x, dequantize=False)
            for r in results]
    np.testing.assert_array_equal(outs[0], outs[1])
    expected = models[0].predict(x, verbose=0)
    got = runtime.Runner(results[0].model).predict(x)
    # untrained: near-uniform probabilities, so compare values, not argmax
    assert tfquant.spec.sqnr_db(expected, got) > 25
