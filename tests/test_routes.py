"""The two routes into the IR (docs/architecture.md, "Two routes in"): models the Keras
frontend cannot read are lowered whole by TFLiteConverter and quantized by the same quantizer;
calibration and the runners take any model that runs (fixed batch, several typed inputs)."""

import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfquant
from tfquant import debugger, runtime
from tfquant.errors import (CalibrationDataError, ConversionError, ModelLoadError,
                            UnsupportedLayerError)
from tfquant.frontends import lowering

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(size=(96, 8, 8, 3)).astype(np.float32)
TOKENS = RNG.integers(0, 10, size=(96, 5)).astype(np.int32)


def _sqnr_on_every_runtime(model_bytes, expected, x, bound):
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(model_bytes, rt).predict(x)
        sqnr = tfquant.spec.sqnr_db(expected, got)
        print(f"{rt}: SQNR {sqnr:.1f} dB")
        assert sqnr > bound, rt


class Scale(keras.layers.Layer):
    """A custom layer the Keras frontend does not know."""

    def call(self, x):
        return tf.nn.relu6(x * 1.5) - 1.0


@pytest.fixture(scope="module")
def custom_layer_model():
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((8, 8, 3))
    y = Scale(name="scale")(L.Conv2D(4, 3, name="conv")(x))
    return keras.Model(x, L.Dense(3, name="logits")(L.Flatten()(y)))


def test_unknown_layer_takes_the_lowered_route(custom_layer_model):
    result = tfquant.convert_model(custom_layer_model, IMAGES, show_progress=False)
    assert result.route.startswith("lowered by TFLiteConverter")
    assert "'scale' (Scale)" in result.route
    summary = result.summary()
    assert "route lowered" in summary and f"{len(result.float_ops())} in float" in summary
    assert not result.float_ops()  # every lowered op has an int8 kernel
    _sqnr_on_every_runtime(result.model, custom_layer_model.predict(IMAGES[:32], verbose=0),
                           IMAGES[:32], 30)


def test_native_route_refuses_and_names_the_layer(custom_layer_model):
    with pytest.raises(UnsupportedLayerError, match=r"'scale' \(Scale\).*route 'auto'"):
        tfquant.convert_model(custom_layer_model, IMAGES, tfquant.Recipe(route="native"))


def test_known_layers_take_the_native_route(small_mobilenet_v1, mnist):
    native = tfquant.convert_model(small_mobilenet_v1, mnist.x_train[:64], show_progress=False)
    assert native.route.startswith("native")
    lowered = tfquant.convert_model(small_mobilenet_v1, mnist.x_train[:64],
                                    tfquant.Recipe(route="lowered"), show_progress=False)
    assert lowered.route.startswith("lowered")
    x = mnist.x_test[:64]
    expected = small_mobilenet_v1.predict(x, verbose=0)
    for result in (native, lowered):
        assert tfquant.spec.sqnr_db(expected, runtime.Runner(result.model).predict(x)) > 20


def test_float_fallback_is_deprecated():
    with pytest.warns(DeprecationWarning, match="float_fallback"):
        tfquant.Recipe(float_fallback=True)
    with pytest.raises(ValueError, match="route"):
        tfquant.Recipe(route="sideways")


def test_lowering_leaves_the_model_untouched(custom_layer_model):
    before = [len(layer._inbound_nodes) for layer in custom_layer_model.layers]
    weights = [w.copy() for w in custom_layer_model.get_weights()]
    tfquant.convert(custom_layer_model, recipe=tfquant.Recipe(mode="float"))
    assert [len(layer._inbound_nodes) for layer in custom_layer_model.layers] == before
    for a, b in zip(weights, custom_layer_model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("K", [keras, tf_keras], ids=["keras3", "tf_keras"])
def test_subclassed_model(K):
    class TwoHeads(K.Model):
        def __init__(self):
            super().__init__()
            self.conv = K.layers.Conv2D(6, 3, activation="relu")
            self.head = K.layers.Dense(4)

        def call(self, x):
            return self.head(tf.reduce_mean(self.conv(x), axis=[1, 2]))

    model = TwoHeads()
    model(IMAGES[:1])
    result = tfquant.convert_model(model, IMAGES, show_progress=False)
    assert "no functional graph" in result.route
    _sqnr_on_every_runtime(result.model, model.predict(IMAGES[:32], verbose=0), IMAGES[:32],
                           30)


def test_subclassed_model_never_called_gets_shapes_from_the_data():
    class Head(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    x = RNG.normal(size=(64, 7)).astype(np.float32)
    result = tfquant.convert_model(Head(), x, show_progress=False)
    assert runtime.Runner(result.model).predict(x[:4]).shape == (4, 3)
    with pytest.raises(ConversionError, match="input shapes"):
        tfquant.convert_model(Head(), recipe=tfquant.Recipe(mode="float"))


@pytest.fixture(scope="module")
def two_input_model():
    """An int32 token input and a float input, declared in an order TFLiteConverter's
    name-sorted signature reverses (inputs 'zeta', 'alpha'; outputs 'z_out', 'a_out')."""
    keras.utils.set_random_seed(1)
    L = keras.layers
    features = keras.Input((6,), name="zeta")
    tokens = keras.Input((5,), dtype="int32", name="alpha")
    embedded = L.GlobalAveragePooling1D()(L.Embedding(10, 6)(tokens))
    joined = L.Concatenate()([features, embedded])
    return keras.Model([features, tokens],
                       [L.Dense(3, name="z_out")(joined), L.Dense(2, name="a_out")(features)])


def test_lowered_keras_model_keeps_its_input_names_and_order(two_input_model):
    """Route two traces a Keras 3 functional model (no SavedModel export): the signature still
    names the inputs as the Keras model does, outputs output_<i>, in the model's order, and
    the quantized model matches the native route's."""
    features = RNG.normal(size=(96, 6)).astype(np.float32)
    lowered = tfquant.convert_model(two_input_model, (features, TOKENS),
                                    tfquant.Recipe(route="lowered"), show_progress=False)
    assert lowered.route.startswith("lowered")
    signature = lowered.graph.signature
    assert signature.inputs == ("zeta", "alpha") and signature.outputs == ("output_0",
                                                                          "output_1")
    expected = two_input_model.predict([features[:32], TOKENS[:32]], verbose=0)
    got = runtime.Runner(lowered.model, "litert").predict({"zeta": features[:32],
                                                           "alpha": TOKENS[:32]})
    for e, g in zip(expected, got):
        assert tfquant.spec.sqnr_db(e, g) > 25


def test_two_inputs_one_int32(two_input_model):
    features = RNG.normal(size=(96, 6)).astype(np.float32)
    result = tfquant.convert_model(two_input_model, (features, TOKENS), show_progress=False)
    graph = result.graph
    assert [graph.tensors[n].dtype for n in graph.inputs] == [np.float32, np.int32]
    assert [graph.tensors[n].shape[1:] for n in graph.outputs] == [(3,), (2,)]
    expected = two_input_model.predict([features[:32], TOKENS[:32]], verbose=0)
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt).predict((features[:32], TOKENS[:32]))
        for e, g in zip(expected, got):
            assert tfquant.spec.sqnr_db(e, g) > 25, rt
    by_name = tfquant.convert_model(two_input_model, {"alpha": TOKENS, "zeta": features},
                                    show_progress=False)
    assert by_name.ranges == result.ranges  # a dict by input name is the same data
    with pytest.raises(CalibrationDataError, match="'zeta' is missing"):
        tfquant.convert_model(two_input_model, {"alpha": TOKENS}, show_progress=False)


def test_saved_model_with_a_signature(tmp_path):
    """A SavedModel that is not a Keras model: its signature is lowered; the input names
    the data by signature name."""
    module = tf.Module()
    module.w = tf.Variable(RNG.normal(size=(6, 4)).astype(np.float32))
    module.b = tf.Variable(RNG.normal(size=(4,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32, name="features")])
    def predict(features):
        return {"scores": tf.nn.relu(features @ module.w + module.b)}

    module.predict = predict
    path = str(tmp_path / "saved")
    tf.saved_model.save(module, path, signatures={"score": predict})
    x = RNG.normal(size=(64, 6)).astype(np.float32)
    result = tfquant.convert_model(path, {"features": x}, show_progress=False)
    assert "SavedModel signature" in result.route
    assert result.graph.signature.key == "score"
    expected = predict(tf.constant(x[:16]))["scores"].numpy()
    _sqnr_on_every_runtime(result.model, expected, x[:16], 30)


def test_saved_model_outputs_keep_their_signature_names_in_name_order(tmp_path):
    """A SavedModel signature with several named outputs: the lowered model's outputs are the
    signature's, sorted by name (as TensorFlow flattens them), and named by the signature; the
    signature runner gives each output under its name."""
    module = tf.Module()
    module.w = tf.Variable(RNG.normal(size=(6, 5)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32, name="x")])
    def heads(x):
        h = tf.nn.relu(x @ module.w)
        return {"zeta": h[:, :2] * 2.0, "alpha": tf.reduce_sum(h, axis=1, keepdims=True)}

    module.heads = heads
    path = str(tmp_path / "saved")
    tf.saved_model.save(module, path, signatures={"serving_default": heads})
    x = RNG.normal(size=(64, 6)).astype(np.float32)
    result = tfquant.convert_model(path, x, show_progress=False)
    signature = result.graph.signature
    assert (signature.key, signature.inputs, signature.outputs) == (
        "serving_default", ("x",), ("alpha", "zeta"))
    assert [result.graph.tensors[n].shape[1:] for n in result.graph.outputs] == [(1,), (2,)]
    expected = {k: v.numpy() for k, v in heads(tf.constant(x[:16])).items()}
    for rt in runtime.RUNTIMES:
        interpreter = runtime.make_interpreter(result.model, rt)
        runner = interpreter.get_signature_runner("serving_default")
        got = runner(x=runtime.encode(x[:16], runner.get_input_details()["x"]))
        for name in ("alpha", "zeta"):
            value = runtime.decode(got[name], runner.get_output_details()[name])
            assert tfquant.spec.sqnr_db(expected[name], value) > 25, (rt, name)


def test_lowering_shortcuts_change_no_byte(monkeypatch):
    """Lowering hands TFLiteConverter its already-frozen function and skips its buffer
    deduplication (two private hooks, docs/architecture.md): the quantized models are the
    bytes of the converter's full path, on a function whose equal constants the
    deduplication merges and on a Keras LSTM."""
    kernel = RNG.normal(size=(6, 64)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32)])
    def twins(x):  # two equal 1.5 KB constants and one read twice
        a = x @ tf.constant(kernel)
        b = tf.tanh(x) @ tf.constant(kernel.copy())
        return tf.concat([a, b, a @ tf.constant(np.eye(64, dtype=np.float32))], axis=1)

    inputs = keras.Input((5, 3))
    lstm = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4, unroll=True)(inputs)))
    cases = ((twins, RNG.normal(size=(32, 6)).astype(np.float32)),
             (lstm, RNG.normal(size=(16, 5, 3)).astype(np.float32)))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [twins.get_concrete_function()])  # the hooks exist in this TensorFlow: they are used
    assert callable(converter._freeze_concrete_function)
    assert callable(converter._optimize_tflite_model)
    fast = [tfquant.convert_model(model, data, show_progress=False) for model, data in cases]
    assert all(r.route.startswith("lowered") for r in fast)
    monkeypatch.setattr(lowering, "_skip_second_freeze", lambda converter, frozen: None)
    monkeypatch.setattr(lowering, "_skip_buffer_deduplication", lambda converter: None)
    full = [tfquant.convert_model(model, data, show_progress=False) for model, data in cases]
    for a, b in zip(fast, full):
        assert a.model == b.model


def test_concrete_function():
    w = tf.constant(RNG.normal(size=(6, 3)).astype(np.float32))
    function = tf.function(lambda x: tf.tanh(x @ w),
                           input_signature=[tf.TensorSpec((None, 6), tf.float32)])
    x = RNG.normal(size=(64, 6)).astype(np.float32)
    result = tfquant.convert_model(function, x, show_progress=False)
    assert "TensorFlow function" in result.route
    _sqnr_on_every_runtime(result.model, function(x[:16]).numpy(), x[:16], 30)


def test_fixed_batch_model_calibrates_one_sample_at_a_time(caplog):
    """A RESHAPE that hard-codes batch 1: batches of 32 do not run; calibration falls back to
    one sample at a time, says so once, and gets the ranges a batch-1 run gets."""
    conv = keras.layers.Conv2D(4, 3)
    conv.build((None, 8, 8, 3))

    @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 3), tf.float32)])
    def fixed(x):
        return tf.reshape(conv(x), [1, 144]) @ tf.ones((144, 5))

    model = lowering.lower_concrete_function(fixed)
    with caplog.at_level(logging.WARNING, logger="tfquant"):
        batched = tfquant.convert_model(model, IMAGES[:16], show_progress=False)
    messages = [r.getMessage() for r in caplog.records if "one sample at a time" in r.message]
    assert len(messages) == 1 and "16 samples in" in messages[0], messages
    single = tfquant.convert_model(model, IMAGES[:16], tfquant.Recipe(calibration_batch_size=1),
                                   show_progress=False)
    assert batched.ranges == single.ranges
    float_runner = runtime.Runner(model)
    for rt in runtime.RUNTIMES:  # the runner falls back too: 8 samples, one by one
        got = runtime.Runner(batched.model, rt).predict(IMAGES[:8])
        assert tfquant.spec.sqnr_db(float_runner.predict(IMAGES[:8]), got) > 30


def test_model_that_does_not_run_on_the_data_is_one_line():
    @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32)])
    def fixed(x):
        return tf.reshape(x, [5, -1]) * 2.0  # runs only on batches of 5k samples

    model = lowering.lower_concrete_function(fixed)
    with pytest.raises(CalibrationDataError, match="does not run on the calibration data"):
        tfquant.convert_model(model, RNG.normal(size=(8, 6)).astype(np.float32),
                              show_progress=False)


def test_bool_and_int32_tensors_in_float_islands():
    """GREATER -> bool -> SELECT_V2 and CAST to int32 -> SUM -> CAST: the non-float tensors
    stay as they are; the float ops around them run in int8 where they can."""
    conv = keras.layers.Conv2D(4, 3)
    conv.build((None, 8, 8, 3))

    @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 3), tf.float32)])
    def gated(x):
        y = conv(x)
        mask = y > 0.1
        count = tf.cast(tf.reduce_sum(tf.cast(mask, tf.int32), axis=[1, 2, 3]), tf.float32)
        return tf.reduce_mean(tf.where(mask, y, 0.1 * y), axis=[1, 2]) + 0.01 * count[:, None]

    model = lowering.lower_concrete_function(gated)
    result = tfquant.convert_model(model, IMAGES, show_progress=False)
    dtypes = {t.dtype for t in result.graph.tensors.values()}
    assert {np.dtype(np.bool_), np.dtype(np.int32), np.dtype(np.int8)} <= dtypes
    assert result.op_counts()["CONV_2D"] == 1
    assert not result.graph.ops[1].keep_float  # the conv after the input QUANTIZE
    _sqnr_on_every_runtime(result.model, gated(IMAGES[:16]).numpy(), IMAGES[:16], 25)


@pytest.mark.parametrize("K", [keras, tf_keras], ids=["keras3", "tf_keras"])
def test_multi_output_custom_layer_keeps_its_output_order(K):
    class SplitShift(K.layers.Layer):
        def call(self, x):
            a, b = tf.split(x, [2, 4], axis=-1)
            return [a * 2.0 - 1.0, b - 3.0]

    inp = K.Input((6,))
    a, b = SplitShift(name="split_shift")(K.layers.Dense(6, name="d")(inp))
    model = K.Model(inp, [K.layers.Dense(3, name="ha")(a), K.layers.Dense(2, name="hb")(b)])
    x = RNG.uniform(size=(4, 6)).astype(np.float32)
    data = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    got = runtime.Runner(data).predict(x)
    for g, expected in zip(got, model.predict(x, verbose=0)):
        np.testing.assert_allclose(g, expected, atol=1e-5)


def test_unknown_custom_op_is_one_line(tmp_path):
    """A .tflite with a custom op (TFLiteConverter with allow_custom_ops): one line naming
    the op."""
    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    def bessel(x):
        return tf.math.bessel_i0e(x) * 2.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [bessel.get_concrete_function()], bessel)
    converter.allow_custom_ops = True
    path = tmp_path / "custom.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(ModelLoadError, match="BesselI0e") as info:
        tfquant.convert_model(str(path), RNG.normal(size=(8, 4)).astype(np.float32),
                              show_progress=False)
    assert "\n" not in str(info.value)


def test_unknown_tensorflow_op_is_one_line():
    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.string)])
    def parse(x):
        return tf.strings.to_number(tf.strings.regex_replace(x, "a", "1"))

    with pytest.raises(ConversionError, match="TFLiteConverter cannot lower") as info:
        tfquant.convert_model(parse, recipe=tfquant.Recipe(mode="float"))
    assert "\n" not in str(info.value)


def test_debugger_on_a_lowered_model(custom_layer_model, two_input_model):
    reports = debugger.compare_layers(custom_layer_model, IMAGES,
                                              inputs=IMAGES[:32])
    assert reports and all(np.isfinite(r.sqnr_db) for r in reports)
    assert {r.op_type for r in reports} >= {"CONV_2D", "FULLY_CONNECTED"}
    worst = debugger.worst_layers(reports, 1)
    kept = tfquant.convert_model(custom_layer_model, IMAGES, tfquant.Recipe(float_layers=worst),
                                 show_progress=False)
    assert kept.float_ops()  # the worst op's name is a valid float_layers entry
    features = RNG.normal(size=(96, 6)).astype(np.float32)
    reports = debugger.compare_layers(two_input_model, (features, TOKENS))
    assert {r.op_type for r in reports} >= {"FULLY_CONNECTED"}


def test_cli_converts_a_saved_model_directory(tmp_path, two_input_model):
    """tfquant-convert on a Keras SavedModel export with an .npz naming both inputs."""
    path = str(tmp_path / "export")
    two_input_model.export(path, verbose=False)
    np.savez(tmp_path / "calib.npz", zeta=RNG.normal(size=(64, 6)).astype(np.float32),
             alpha=TOKENS[:64])
    out = tmp_path / "m.tflite"
    proc = subprocess.run([sys.executable, "-m", "tools.convert", f"--model={path}",
                           f"--output={out}", f"--calibration_data={tmp_path / 'calib.npz'}"],
                          capture_output=True, text=True, cwd=os.path.dirname(__file__) + "/..")
    assert proc.returncode == 0, proc.stderr
    assert "route lowered" in proc.stdout and "in float" in proc.stdout
    assert out.stat().st_size > 0


def test_recurrent_layers_of_unknown_batch_get_a_remedy():
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 3))
    model = keras.Model(x, keras.layers.Dense(2)(keras.layers.LSTM(4)(x)))
    with pytest.raises(ConversionError, match=r"fixed batch size \(keras.Input\(shape, "
                                              r"batch_size=1\)\)") as info:
        tfquant.convert_model(model, RNG.normal(size=(8, 6, 3)).astype(np.float32),
                              show_progress=False)
    assert "\n" not in str(info.value)


def test_fused_lstm_runs_as_a_float_island():
    """tf_keras lowers LSTM to UNIDIRECTIONAL_SEQUENCE_LSTM (Keras 3 to a WHILE loop, which
    the TFLite frontend refuses): it runs in float between the int8 layers."""
    tf_keras.utils.set_random_seed(0)
    x = tf_keras.Input((6, 3), batch_size=1)
    y = tf_keras.layers.Dense(8, activation="relu")(x)
    model = tf_keras.Model(x, tf_keras.layers.Dense(2)(tf_keras.layers.LSTM(4)(y)))
    data = RNG.normal(size=(32, 6, 3)).astype(np.float32)
    result = tfquant.convert_model(model, data, show_progress=False)
    assert {op.type for op in result.float_ops()} == {"UNIDIRECTIONAL_SEQUENCE_LSTM"}
    assert result.op_counts()["FULLY_CONNECTED"] >= 2
    expected = np.concatenate([model.predict(data[i:i + 1], verbose=0) for i in range(16)])
    _sqnr_on_every_runtime(result.model, expected, data[:16], 30)


def test_keras_saved_model_with_an_unknown_layer_is_lowered_from_its_directory(tmp_path,
                                                                                monkeypatch):
    """A tf_keras SavedModel whose recorded layers include one the frontend cannot read is
    lowered from the directory, without loading it into Keras (which would only export it
    again); its layers are named from the SavedModel's metadata."""
    import tf_keras
    tf_keras.utils.set_random_seed(0)

    class Shift(tf_keras.layers.Layer):
        def call(self, x):
            return x - 0.5

    x = tf_keras.Input((8, 8, 3))
    y = Shift(name="shift")(tf_keras.layers.Conv2D(4, 3, name="conv")(x))
    model = tf_keras.Model(x, tf_keras.layers.Dense(3, name="logits")(
        tf_keras.layers.Flatten()(y)))
    path = str(tmp_path / "saved")
    model.save(path, save_format="tf")
    assert ("shift", "Shift") in lowering.saved_keras_layers(path)

    from tfquant.frontends import routes

    def no_keras_load(_):
        raise AssertionError("the SavedModel was loaded into Keras")
    monkeypatch.setattr(routes, "load_model", no_keras_load)
    result = tfquant.convert_model(path, IMAGES, show_progress=False)
    assert result.route.startswith("lowered by TFLiteConverter") and "(Shift)" in result.route
    assert not result.float_ops()
    _sqnr_on_every_runtime(result.model, model.predict(IMAGES[:32], verbose=0), IMAGES[:32],
                           30)

