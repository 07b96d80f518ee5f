"""Mixed precision (Recipe.int16_layers): named layers of an int8 model run in 16x8 mode; the
model runs the same on every runtime and gains precision where the layers are wide."""

import keras
import numpy as np
import pytest

import tfquant
from tfquant import runtime, spec
from tfquant.errors import ConversionError


@pytest.fixture(scope="module")
def model_and_data():
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(y)
    z = L.Conv2D(8, 1, name="c2")(y)
    y = L.Add(name="add")([y, z])
    y = L.GlobalAveragePooling2D(name="gap")(y)
    model = keras.Model(x, L.Dense(5, name="logits")(y))
    data = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 3)).astype(np.float32)
    return model, data


def _outputs(data_bytes, x):
    return [runtime.Runner(data_bytes, name, "reference").predict(x)
            for name in runtime.available_runtimes()]


def _check_runtimes_agree(outputs):
    """litert and tf.lite compute 16x8 kernels bit-identically; tflite-runtime 2.14's int16
    kernels round differently in places (its pure 16x8 models differ from litert's too), so it
    is held to a few output steps."""
    names = runtime.available_runtimes()
    first = outputs[0]
    for name, other in zip(names[1:], outputs[1:]):
        if name == "tflite_runtime":
            assert spec.sqnr_db(first, other) > 40.0, name
        else:
            np.testing.assert_array_equal(first, other, err_msg=name)


@pytest.mark.parametrize("layers", [("c1",), ("dw",), ("c2",), ("add",), ("logits",),
                                    ("c1", "dw", "c2", "add", "gap", "logits")])
def test_int16_layers_run_on_every_runtime_and_add_precision(model_and_data, layers):
    model, data = model_and_data
    expected = model.predict(data, verbose=0)
    # The int8 model on the ranges the mixed model uses ("auto" keeps minmax for it).
    int8 = tfquant.convert(model, data, tfquant.Recipe(calibration_method="minmax"),
                           show_progress=False)
    result = tfquant.convert_model(model, data, tfquant.Recipe(int16_layers=layers),
                                   show_progress=False)
    wide = [op for op in result.graph.ops if op.type not in ("QUANTIZE", "DEQUANTIZE")
            and result.graph.tensors[op.outputs[0]].dtype == np.int16]
    assert {s for op in wide for s in op.source} >= set(layers)
    outputs = _outputs(result.model, data)
    _check_runtimes_agree(outputs)
    int8_sqnr = spec.sqnr_db(expected, _outputs(int8, data)[0])
    assert spec.sqnr_db(expected, outputs[0]) > int8_sqnr - 0.5


def test_all_layers_int16_is_the_16x8_model(model_and_data):
    model, data = model_and_data
    everything = ("c1", "dw", "c2", "add", "gap", "logits")
    mixed = tfquant.convert_model(model, data, tfquant.Recipe(int16_layers=everything),
                                  show_progress=False)
    assert {op.type for op in mixed.graph.ops} >= {"CONV_2D", "ADD", "MEAN"}
    assert all(mixed.graph.tensors[name].dtype in (np.int16, np.float32)
               for op in mixed.graph.ops for name in op.outputs)
    wide = tfquant.convert(model, data, tfquant.Recipe(mode="int16x8"), show_progress=False)
    for got, expected in zip(_outputs(mixed.model, data), _outputs(wide, data)):
        np.testing.assert_array_equal(got, expected)


def test_bad_int16_layers_are_clear_errors(model_and_data):
    model, data = model_and_data
    with pytest.raises(ConversionError, match="no_such_layer"):
        tfquant.convert(model, data, tfquant.Recipe(int16_layers=("no_such_layer",)),
                        show_progress=False)
    with pytest.raises(ValueError, match="needs mode='int8'"):
        tfquant.Recipe(mode="int16x8", int16_layers=("c1",))
    with pytest.raises(ValueError, match="float32 model inputs"):
        tfquant.Recipe(int16_layers=("c1",), inference_input_type="int8")
    with pytest.raises(ValueError, match="both float and int16: c1"):
        tfquant.Recipe(int16_layers=("c1",), float_layers=("c1",))


def test_ops_without_an_int16_kernel_stay_int8_among_int16_layers(caplog):
    """int16_layers naming a hard_swish layer (no int16 kernel in TFLite): the layer stays
    int8 with a warning, its neighbours run at 16 bits, and the model runs on every runtime."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(8, 3, padding="same", name="c1")(x)
    y = L.Activation("hard_swish", name="hs")(y)
    y = L.Conv2D(4, 3, padding="same", name="c2")(y)
    model = keras.Model(x, L.GlobalAveragePooling2D(name="gap")(y))
    data = np.random.default_rng(0).uniform(-1, 1, (32, 8, 8, 3)).astype(np.float32)
    with caplog.at_level("WARNING", logger="tfquant"):
        result = tfquant.convert_model(model, data, tfquant.Recipe(int16_layers=("c1", "hs")),
                                       show_progress=False)
    assert "stay int8" in caplog.text and "HARD_SWISH" in caplog.text
    types = {op.type: result.graph.tensors[op.outputs[0]].dtype for op in result.graph.ops}
    assert types["HARD_SWISH"] == np.int8 and types["CONV_2D"] in (np.int8, np.int16)
    c1 = next(op for op in result.graph.ops if op.source[:1] == ("c1",))
    assert result.graph.tensors[c1.outputs[0]].dtype == np.int16
    expected = model.predict(data[:8], verbose=0)
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt, "reference").predict(data[:8])
        assert spec.sqnr_db(expected, got) > 20, rt
