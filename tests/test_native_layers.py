"""Every layer family the Keras frontend converts beyond the CNN layers (issue 17, point 2)
converts natively (route "native"), runs on every runtime, and stays close to the float
model: output SQNR printed and bounded."""

import keras
import numpy as np
import pytest
import tf_keras

import tfquant
from layer_models import native_layer_models
from tfquant import runtime, spec

MODELS = {"keras": native_layer_models(keras), "tf_keras": native_layer_models(tf_keras)}
# The SQNR floor: random weights, 64 calibration samples, 8-bit activations.
FLOOR_DB = {"layer_normalization": 25.0, "elu": 28.0, "multi_head_attention_self": 27.0,
            "multi_head_attention_cross": 27.0}
DEFAULT_FLOOR_DB = 30.0


@pytest.mark.parametrize("flavour,name", [(f, n) for f in MODELS for n in sorted(MODELS[f])])
def test_native_layer_on_every_runtime(flavour, name):
    model, x = MODELS[flavour][name]
    result = tfquant.convert_model(model, x, tfquant.Recipe(route="native"),
                                   show_progress=False)
    assert result.route.startswith("native")
    assert not result.float_ops(), result.float_ops()
    head = tuple(a[:32] for a in x) if isinstance(x, tuple) else x[:32]
    expected = np.asarray(model.predict(list(head) if isinstance(x, tuple) else head,
                                        verbose=0))
    for rt in runtime.RUNTIMES:
        # TF 2.21's optimized int8 BATCH_MATMUL kernel loses most of the signal (also in
        # TFLiteConverter's models, tests/test_lowered_ops.py): tf.lite is held to the bound
        # on its reference kernels there.
        kernels = "reference" if rt == "tf" and result.op_counts().get("BATCH_MATMUL") \
            else "default"
        got = runtime.Runner(result.model, rt, kernels).predict(head)
        sqnr = spec.sqnr_db(expected, got)
        print(f"{flavour:8s} {name:28s} {rt:15s} {kernels:9s} {sqnr:6.1f} dB")
        assert sqnr >= FLOOR_DB.get(name, DEFAULT_FLOOR_DB), (name, rt, sqnr)


def test_conv2d_transpose_fixed_batch_has_a_constant_output_shape():
    keras.utils.set_random_seed(7)
    inp = keras.Input((6, 6, 3), batch_size=1)
    y = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(y))
    x = np.random.default_rng(7).uniform(-1, 1, (16, 6, 6, 3)).astype(np.float32)
    result = tfquant.convert_model(model, x, show_progress=False)
    assert result.route.startswith("native")
    assert "SHAPE" not in result.op_counts() and result.op_counts()["TRANSPOSE_CONV"] == 1
    got = runtime.Runner(result.model, "litert").predict(x)
    sqnr = spec.sqnr_db(model.predict(x, batch_size=1, verbose=0), got)
    print(f"fixed-batch Conv2DTranspose {sqnr:.1f} dB")
    assert sqnr >= DEFAULT_FLOOR_DB
