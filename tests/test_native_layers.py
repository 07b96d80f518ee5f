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
FLOOR_DB = {"layer_normalization": 25.0, "elu": 28.0}
DEFAULT_FLOOR_DB = 30.0


@pytest.mark.parametrize("flavour,name", [(f, n) for f in MODELS for n in sorted(MODELS[f])])
def test_native_layer_on_every_runtime(flavour, name):
    model, x = MODELS[flavour][name]
    result = tfquant.convert_model(model, x, tfquant.Recipe(route="native"),
                                   show_progress=False)
    assert result.route.startswith("native")
    assert not result.float_ops(), result.float_ops()
    expected = np.asarray(model.predict(x[:32], verbose=0))
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt).predict(x[:32])
        sqnr = spec.sqnr_db(expected, got)
        print(f"{flavour:8s} {name:28s} {rt:15s} {sqnr:6.1f} dB")
        assert sqnr >= FLOOR_DB.get(name, DEFAULT_FLOOR_DB), (name, rt, sqnr)
