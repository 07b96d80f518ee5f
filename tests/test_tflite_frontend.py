"""The TFLite frontend: float .tflite models (tfquant's own float export, TFLiteConverter's
output with many op types, fp16 weights behind DEQUANTIZE, sparse weights behind DENSIFY) into
the IR and through the same quantization pipeline as Keras models."""

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

import tfquant
from tflite_builders import fp16_sparse_model, read_ops, reference_output
from tfquant import flatbuffer, runtime, spec
from tfquant.frontends.tflite_model import from_tflite
from tfquant.models import zoo
from tfquant.tools.compare_tflite_quantizers import float_tflite

# -- the MNIST-5k zoo: exported float by tfquant, re-imported, quantized ------------------------


@pytest.mark.parametrize("name", sorted(zoo.BUILDERS))
def test_zoo_model_reimported_from_tflite_quantizes_to_the_same_bytes(mnist, pretrained, name):
    model = pretrained(name)
    float_model = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    calibration = mnist.x_train[:640]
    for recipe in (tfquant.Recipe(), tfquant.Recipe(per_channel_dense=False,
                                                    inference_input_type="int8"),
                   tfquant.Recipe(mode="int16x8"), tfquant.Recipe(mode="weights_only"),
                   tfquant.Recipe(mode="float16"), tfquant.Recipe(mode="float")):
        from_keras = tfquant.convert(model, calibration, recipe, show_progress=False)
        from_tflite_bytes = tfquant.convert(float_model, calibration, recipe,
                                            show_progress=False)
        assert from_keras == from_tflite_bytes, (name, recipe)
    int8 = tfquant.convert(float_model, calibration, show_progress=False)
    accuracy = runtime.accuracy(int8, mnist.x_test, mnist.y_test, resolver="reference")
    print(f"\n{name}: int8 from .tflite = int8 from Keras (same bytes), accuracy {accuracy:.4f}")


# -- fp16 weights behind DEQUANTIZE, sparse weights behind DENSIFY, signature, metadata --------

@pytest.mark.parametrize("block", [1, 2], ids=["csr", "block_sparse"])
def test_fp16_and_sparse_weights_are_folded(block):
    model, weights = fp16_sparse_model(block=block)
    graph = from_tflite(model)
    assert [op.type for op in graph.ops] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    np.testing.assert_array_equal(graph.tensors[graph.ops[1].inputs[1]].data, weights["w2"])
    np.testing.assert_array_equal(graph.tensors[graph.ops[0].inputs[1]].data, weights["w1"])
    x = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    expected = reference_output(weights, x)
    float32 = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    np.testing.assert_allclose(runtime.Runner(float32).predict(x), expected, atol=1e-5)
    calibration = np.random.default_rng(2).normal(size=(256, 4)).astype(np.float32)
    int8 = tfquant.convert(model, calibration, show_progress=False)
    for rt in runtime.available_runtimes():
        assert spec.sqnr_db(expected, runtime.Runner(int8, rt, "reference").predict(x)) > 25
    # the signature (key and names) and the metadata survive
    interpreter = runtime.make_interpreter(int8)
    assert interpreter.get_signature_list() == {
        "classify": {"inputs": ["features"], "outputs": ["scores"]}}
    scores = interpreter.get_signature_runner("classify")(features=x[:1])["scores"]
    assert scores.shape == (1, 4)
    assert from_tflite(float32).metadata == {"labels": b"a\nb\nc\nd\n"}
    written = flatbuffer.read(int8)
    assert [(m.name, bytes(written.buffers[m.buffer].data)) for m in written.metadata] == \
        [(b"labels", b"a\nb\nc\nd\n")]
    with pytest.raises(tfquant.ModelLoadError, match="already quantized"):
        from_tflite(int8)


# -- many op types, several inputs and outputs, dynamic batch (TFLiteConverter's output) --------

def _many_ops_model():
    import keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    a = keras.Input((16, 16, 3), name="image")
    b = keras.Input((16, 16, 3), name="mask")
    x = L.Conv2D(8, 3, padding="same", activation="relu")(a)
    y = L.Conv2D(8, 3, padding="same")(b)
    y = L.PReLU(shared_axes=[1, 2])(y)
    s = L.Subtract()([x, y])
    m = L.Multiply()([x, s])
    c = L.Concatenate()([m, x])
    p = L.ZeroPadding2D(1)(c)
    pooled = L.MaxPooling2D()(p)
    averaged = L.AveragePooling2D(2)(p)
    d = L.DepthwiseConv2D(3, padding="same", activation="relu6")(pooled)
    d = L.LeakyReLU(0.2)(d)
    d = L.Activation("hard_swish")(L.Conv2D(16, 1)(d))
    d = L.Add()([d, L.Activation("tanh")(averaged)])
    d = L.Multiply()([d, L.Activation("sigmoid")(L.Lambda(keras.ops.square)(averaged))])
    u = L.UpSampling2D(interpolation="bilinear")(d)
    u = L.Resizing(28, 28, interpolation="nearest")(L.Cropping2D(((2, 2), (2, 2)))(u))
    u = L.Permute((2, 1, 3))(u)
    probs = L.Dense(10, activation="softmax", name="probs")(L.GlobalAveragePooling2D()(u))
    r = L.Reshape((9 * 9 * 4,))(L.Conv2D(4, 1)(averaged))
    embedding = L.Dense(6, name="embedding")(r)
    return keras.Model([a, b], [probs, embedding])


DATA_MOVEMENT_OPS = ("TRANSPOSE", "STRIDED_SLICE", "SLICE", "RESIZE_BILINEAR",
                     "RESIZE_NEAREST_NEIGHBOR")


def _data_movement_model():
    import keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    x = keras.Input((12, 12, 3))
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.Permute((2, 1, 3))(y)                         # TRANSPOSE
    y = L.Cropping2D(((1, 1), (2, 0)))(y)               # STRIDED_SLICE
    y = L.UpSampling2D(interpolation="bilinear")(y)     # RESIZE_BILINEAR
    y = L.Resizing(16, 16, interpolation="nearest")(y)  # RESIZE_NEAREST_NEIGHBOR
    y = L.Lambda(lambda t: keras.ops.slice(t, (0, 1, 2, 0), (-1, 14, 13, 8)))(y)  # SLICE
    y = L.Conv2D(8, 3, padding="same")(y)
    return keras.Model(x, L.Dense(5, activation="softmax")(L.GlobalAveragePooling2D()(y)))


def test_data_movement_ops_quantize_with_their_input_params():
    """TRANSPOSE, STRIDED_SLICE, SLICE and RESIZE_* from a .tflite run in int8 (and int16)
    with their input's params, as TFLiteConverter's own PTQ of the Keras model writes them
    (same op versions), and match its SQNR."""
    from tfquant.experiments import peers
    model = _data_movement_model()
    source = float_tflite(model)
    rng = np.random.default_rng(0)
    batches = [rng.uniform(size=(16, 12, 12, 3)).astype(np.float32) for _ in range(4)]
    test = [rng.uniform(size=(32, 12, 12, 3)).astype(np.float32)]
    expected = _run(source, test)[0]
    peer = peers.convert_with_tflite_converter(model, batches)
    peer_ops = {name: (version, inputs[0], outputs[0])
                for name, version, inputs, outputs in read_ops(peer)}
    sqnr = {}
    for mode, dtype in (("int8", schema.TensorType.INT8), ("int16x8", schema.TensorType.INT16)):
        result = tfquant.convert_model(source, batches, tfquant.Recipe(mode=mode),
                                       show_progress=False)
        assert not result.float_graph.float_layers, result.float_graph.float_layers
        ours = {name: (version, inputs[0], outputs[0])
                for name, version, inputs, outputs in read_ops(result.model)}
        for name in DATA_MOVEMENT_OPS:
            _, (_, in_type, in_scale, in_zp), (_, out_type, out_scale, out_zp) = ours[name]
            assert in_type == out_type == dtype and (in_scale, in_zp) == (out_scale, out_zp)
            if mode == "int8":
                assert ours[name][0] == peer_ops[name][0], (name, ours[name], peer_ops[name])
        for rt in runtime.available_runtimes():
            got = _run(result.model, test, rt, "reference")[0]
            sqnr[mode, rt] = spec.sqnr_db(expected, got)
    theirs = spec.sqnr_db(expected, _run(peer, test, "litert", "reference")[0])
    print(f"\nSQNR dB tfquant {sqnr}, TFLiteConverter int8 {theirs:.2f}")
    for rt in runtime.available_runtimes():
        assert sqnr["int8", rt] >= theirs - 0.5, (sqnr, theirs)
        assert sqnr["int16x8", rt] >= sqnr["int8", rt] + 10, sqnr


def test_prelu_quantizes_like_tflite_converter():
    """PRELU from a .tflite runs in int8 with int8 symmetric alpha, as TFLiteConverter writes
    it (the same SQNR), and in float inside a 16x8 model (TFLite has no int16 PRELU)."""
    import keras
    from tfquant.experiments import peers
    L = keras.layers
    keras.utils.set_random_seed(0)
    x = keras.Input((12, 12, 3))
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.PReLU(shared_axes=[1, 2],
                alpha_initializer=keras.initializers.RandomUniform(0.0, 0.5))(y)
    y = L.Conv2D(8, 3, padding="same")(y)
    y = L.PReLU(alpha_initializer=keras.initializers.RandomUniform(-0.2, 0.5))(y)
    model = keras.Model(x, L.Dense(5)(L.GlobalAveragePooling2D()(y)))
    source = float_tflite(model)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(16, 12, 12, 3)).astype(np.float32) for _ in range(4)]
    test = rng.normal(size=(32, 12, 12, 3)).astype(np.float32)
    expected = model.predict(test, verbose=0)
    peer = peers.convert_with_tflite_converter(model, batches)
    theirs = spec.sqnr_db(expected, runtime.Runner(peer, "litert", "reference").predict(test))
    int8 = tfquant.convert(source, batches, show_progress=False)
    prelu_inputs = [inputs for name, _, inputs, _ in read_ops(int8) if name == "PRELU"]
    assert len(prelu_inputs) == 2
    for (_, x_type, _, _), (_, alpha_type, _, alpha_zero_point) in prelu_inputs:
        assert x_type == alpha_type == schema.TensorType.INT8 and alpha_zero_point == 0
    wide = tfquant.convert(source, batches, tfquant.Recipe(mode="int16x8"),
                           show_progress=False)
    assert all(inputs[0][1] == schema.TensorType.FLOAT32
               for name, _, inputs, _ in read_ops(wide) if name == "PRELU")
    for rt in runtime.available_runtimes():
        ours = spec.sqnr_db(expected, runtime.Runner(int8, rt, "reference").predict(test))
        ours_wide = spec.sqnr_db(expected, runtime.Runner(wide, rt, "reference").predict(test))
        assert ours >= theirs - 0.1, (rt, ours, theirs)
        assert ours_wide > ours + 5, (rt, ours_wide, ours)


def _run(model, inputs, rt="litert", resolver="default"):
    interpreter = runtime.make_interpreter(model, rt, resolver)
    details = sorted(interpreter.get_input_details(), key=lambda d: d["index"])
    for detail, x in zip(details, inputs):
        interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    for detail, x in zip(details, inputs):
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


@pytest.fixture(scope="module")
def many_ops():
    model = _many_ops_model()
    return model, float_tflite(model)


def test_many_op_types_import_and_report_float_ops(many_ops):
    _, source = many_ops
    graph = from_tflite(source)
    types = {op.type for op in graph.ops if not op.keep_float}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SUB", "MUL", "ADD",
            "CONCATENATION", "PAD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "LEAKY_RELU", "TANH",
            "LOGISTIC", "HARD_SWISH", "MEAN", "SOFTMAX", "RESHAPE", "TRANSPOSE",
            "STRIDED_SLICE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "PRELU"} <= types, types
    float_types = {op.type for op in graph.ops if op.keep_float}
    assert float_types == {"SQUARE"}
    assert {label.split(" ")[0] for label, _ in graph.float_layers} == float_types
    assert len(graph.inputs) == 2 and len(graph.outputs) == 2
    assert all(graph.tensors[n].shape[0] == -1 for n in graph.inputs + graph.outputs)


def test_many_op_types_float_and_int8(many_ops):
    _, source = many_ops
    rng = np.random.default_rng(0)
    calibration = (rng.uniform(size=(64, 16, 16, 3)).astype(np.float32),
                   rng.uniform(size=(64, 16, 16, 3)).astype(np.float32))
    test = [rng.uniform(size=(8, 16, 16, 3)).astype(np.float32) for _ in range(2)]
    expected = _run(source, test)
    float32 = tfquant.convert(source, recipe=tfquant.Recipe(mode="float"))
    for got, want in zip(_run(float32, test), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    result = tfquant.convert_model(source, calibration, tfquant.Recipe(calibration_batch_size=16),
                                   show_progress=False)
    assert result.float_graph.float_layers
    for rt in runtime.available_runtimes():
        outputs = _run(result.model, test, rt, "reference")
        for got, want in zip(outputs, expected):
            assert spec.sqnr_db(want, got) > 15, rt
    weights_only = tfquant.convert(source, recipe=tfquant.Recipe(mode="weights_only"))
    for got, want in zip(_run(weights_only, test), expected):
        assert spec.sqnr_db(want, got) > 20
    # signature names of the source model survive quantization
    assert runtime.make_interpreter(result.model).get_signature_list() == \
        runtime.make_interpreter(source).get_signature_list()
