"""float16 weights: half-size constants behind DEQUANTIZE, float32 compute, on every runtime."""

import keras
import numpy as np

import tfquant
from tfquant import runtime, spec
from layer_models import every_layer_model


def test_float16_weights_halve_the_file_and_keep_the_outputs():
    model = every_layer_model(keras)
    x = np.random.default_rng(0).uniform(0, 1, (8,) + tuple(model.input_shape[1:]))
    x = x.astype(np.float32)
    expected = model.predict(x, verbose=0)
    float32 = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    result = tfquant.convert_model(model, recipe=tfquant.Recipe(mode="float16"))
    halves = [t for t in result.graph.tensors.values() if t.dtype == np.float16]
    assert halves and all(t.is_const for t in halves)
    assert not [t for t in result.graph.tensors.values() if t.is_const and
                t.dtype == np.float32]
    assert result.op_counts()["DEQUANTIZE"] == len(halves)
    weight_bytes = sum(t.data.nbytes for t in halves)
    # fp32 -> fp16 saves weight_bytes, minus the extra tensors and ops (large on a tiny model)
    assert len(result.model) < len(float32) - 0.6 * weight_bytes
    for name in runtime.available_runtimes():
        got = runtime.Runner(result.model, name, "reference").predict(x)
        assert spec.sqnr_db(expected, got) > 50.0, name
