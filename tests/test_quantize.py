"""Full-integer and weight-only quantization: what the flatbuffer holds, and that every runtime
computes the same thing."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

import tfquant
from layer_models import every_layer_model
from tfquant import flatbuffer, runtime

CALIBRATION = np.random.default_rng(0).uniform(size=(64, 16, 16, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return every_layer_model(keras)


@pytest.fixture(scope="module")
def int8_result(model):
    return tfquant.convert_model(model, CALIBRATION, tfquant.Recipe(), show_progress=False)


def _flatbuffer(data):
    m = flatbuffer.read(data)
    sg = m.subgraphs[0]
    return m, sg


def _ops(data):
    m, sg = _flatbuffer(data)
    for op in sg.operators:
        code = m.operatorCodes[op.opcodeIndex]
        yield (flatbuffer.builtin_name(code), op,
               [sg.tensors[i] if i >= 0 else None for i in op.inputs],
               [sg.tensors[i] for i in op.outputs])


def test_int8_flatbuffer_follows_the_spec(int8_result):
    seen = set()
    for name, op, inputs, outputs in _ops(int8_result.model):
        seen.add(name)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            x, w, b = inputs
            assert w.type == schema.TensorType.INT8
            axis = 3 if name == "DEPTHWISE_CONV_2D" else 0
            channels = w.shape[axis]
            q = w.quantization
            assert len(q.scale) == channels and q.quantizedDimension == axis
            assert list(q.zeroPoint) == [0] * channels
            assert b.type == schema.TensorType.INT32
            np.testing.assert_allclose(
                b.quantization.scale, np.float32(x.quantization.scale[0] * np.asarray(q.scale,
                                                                              np.float64)),
                rtol=1e-6)
        if name not in ("QUANTIZE", "DEQUANTIZE"):
            for t in outputs:
                assert t.type == schema.TensorType.INT8, (name, t.name)
                assert len(t.quantization.scale) == 1
        if name in ("SOFTMAX", "LOGISTIC"):
            assert outputs[0].quantization.scale[0] == pytest.approx(1 / 256)
            assert outputs[0].quantization.zeroPoint[0] == -128
        if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "PAD", "CONCATENATION"):
            acts = [t for t in inputs if t is not None and t.type == schema.TensorType.INT8]
            for t in acts if name == "CONCATENATION" else acts[:1]:
                assert t.quantization.scale[0] == outputs[0].quantization.scale[0]
                assert t.quantization.zeroPoint[0] == outputs[0].quantization.zeroPoint[0]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONCATENATION", "SOFTMAX",
            "QUANTIZE", "DEQUANTIZE"} <= seen


def test_weight_codes_are_narrow_range(int8_result):
    m, sg = _flatbuffer(int8_result.model)
    for name, op, inputs, outputs in _ops(int8_result.model):
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = np.frombuffer(bytes(m.buffers[inputs[1].buffer].data), np.int8)
            assert w.min() >= -127 and np.abs(w).max() == 127


def test_int8_accuracy_against_float(model, int8_result):
    x = np.random.default_rng(3).uniform(size=(200, 16, 16, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    got = runtime.Runner(int8_result.model).predict(x)
    assert np.mean(np.argmax(got, 1) == np.argmax(expected, 1)) >= 0.9
    assert tfquant.spec.sqnr_db(expected, got) > 20


def test_same_outputs_on_every_runtime_under_reference_kernels(int8_result):
    x = np.random.default_rng(4).uniform(size=(32, 16, 16, 3)).astype(np.float32)
    outputs = {rt: runtime.Runner(int8_result.model, rt, "reference").predict(
        x, dequantize=False) for rt in runtime.RUNTIMES}
    np.testing.assert_array_equal(outputs["litert"], outputs["tf"])
    # tflite-runtime 2.14's reference FULLY_CONNECTED requantizes in fixed point instead of
    # double: at most one output step apart (notes/tflite-int8.md section 2).
    step = 1.0 / 256
    assert np.abs(outputs["tflite_runtime"] - outputs["litert"]).max() <= step + 1e-7


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_integer_io(model, io):
    recipe = tfquant.Recipe(inference_input_type=io, inference_output_type=io)
    result = tfquant.convert_model(model, CALIBRATION, recipe, show_progress=False)
    m, sg = _flatbuffer(result.model)
    dtype = getattr(schema.TensorType, io.upper())
    assert sg.tensors[sg.inputs[0]].type == dtype and sg.tensors[sg.outputs[0]].type == dtype
    float_io = tfquant.convert_model(model, CALIBRATION, show_progress=False).model
    x = np.random.default_rng(5).uniform(size=(16, 16, 16, 3)).astype(np.float32)
    # Runner quantizes float inputs with the model's own params, so results must agree with
    # the float-I/O model to within one input step of rounding difference.
    a = runtime.Runner(result.model, resolver="reference").predict(x)
    b = runtime.Runner(float_io, resolver="reference").predict(x)
    assert np.mean(np.argmax(a, 1) == np.argmax(b, 1)) >= 0.9
    assert np.abs(a - b).max() <= 0.05


def test_per_tensor_weights_on_request(model):
    recipe = tfquant.Recipe(per_channel=False)
    result = tfquant.convert_model(model, CALIBRATION, recipe, show_progress=False)
    for name, op, inputs, outputs in _ops(result.model):
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert len(inputs[1].quantization.scale) == 1
    x = np.random.default_rng(3).uniform(size=(64, 16, 16, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt, "reference").predict(x)
        assert tfquant.spec.sqnr_db(expected, got) > 15, rt


def test_dense_per_tensor_switch(model):
    recipe = tfquant.Recipe(per_channel_dense=False)
    result = tfquant.convert_model(model, CALIBRATION, recipe, show_progress=False)
    for name, op, inputs, outputs in _ops(result.model):
        if name == "FULLY_CONNECTED":
            assert len(inputs[1].quantization.scale) == 1
        if name == "CONV_2D":
            assert len(inputs[1].quantization.scale) > 1


def test_weights_only(model):
    result = tfquant.convert_model(model, None, tfquant.Recipe(mode="weights_only"))
    for name, op, inputs, outputs in _ops(result.model):
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert inputs[1].type == schema.TensorType.INT8
            assert inputs[0].type == schema.TensorType.FLOAT32
    float_model = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    weight_bytes = sum(t.data.nbytes for n, t in result.float_graph.tensors.items()
                       if n in {op.inputs[1] for op in result.float_graph.ops
                                if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                               "FULLY_CONNECTED")})
    # int8 weights save 3/4 of the float32 weight bytes, less 16-byte buffer alignment
    assert len(float_model) - len(result.model) >= 0.6 * weight_bytes
    x = np.random.default_rng(6).uniform(size=(32, 16, 16, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt).predict(x)
        assert tfquant.spec.sqnr_db(expected, got) > 20, rt


def _single_op_model(kind):
    L = keras.layers
    keras.utils.set_random_seed(0)
    shape = (16,) if kind == "dense" else (8, 8, 4)
    x = keras.Input(shape)
    layer = {"dense": L.Dense(8), "conv": L.Conv2D(8, 3),
             "depthwise": L.DepthwiseConv2D(3, depth_multiplier=2)}[kind]
    return keras.Model(x, layer(x))


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("kind", ["dense", "conv", "depthwise"])
def test_weights_only_each_op_on_every_runtime(kind, per_channel):
    # Hybrid kernels differ between runtimes (per-channel FC on tflite-runtime 2.14,
    # per-tensor depthwise everywhere): every op must compute the float result on each.
    model = _single_op_model(kind)
    recipe = tfquant.Recipe(mode="weights_only", per_channel=per_channel)
    data = tfquant.convert(model, recipe=recipe)
    x = np.random.default_rng(1).normal(size=(4,) + model.input_shape[1:]).astype(np.float32)
    expected = model.predict(x, verbose=0)
    for rt in runtime.RUNTIMES:
        for resolver in ("default", "reference"):
            got = runtime.Runner(data, rt, resolver).predict(x)
            assert tfquant.spec.sqnr_db(expected, got) > 35, (rt, resolver)


SOFTMAX_GUARD_SCRIPT = """
import numpy as np, keras, tfquant
from tfquant import runtime
x = keras.Input((4,))
logits = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer="zeros")(x)
model = keras.Model(x, keras.layers.Activation("softmax")(logits))
data = tfquant.convert(model, np.ones((8, 4), np.float32), show_progress=False)
out = runtime.Runner(data, resolver="reference").predict(np.ones((2, 4), np.float32))
assert np.allclose(out, 1 / 3, atol=2 / 256), out
print("OK")
"""


def test_softmax_guard_prevents_reference_kernel_abort():
    # All-zero logits give a zero range; unguarded, TFLite's reference softmax aborts the
    # process in allocate_tensors. Run it in a child process so a regression fails, not kills.
    proc = subprocess.run([sys.executable, "-c", SOFTMAX_GUARD_SCRIPT], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK" in proc.stdout


def _op_versions(model_bytes):
    return flatbuffer.op_versions(model_bytes)


@pytest.mark.parametrize("mode", ["float", "int8", "weights_only"])
def test_op_versions_match_tflite_converter(model, mode):
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        converter.representative_dataset = lambda: ([CALIBRATION[i:i + 8]] for i in range(0, 64, 8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if mode == "weights_only":
        converter._experimental_disable_per_channel = True  # 2.14-compatible hybrid FC
    theirs = _op_versions(converter.convert())
    ours = _op_versions(tfquant.convert(model, CALIBRATION, tfquant.Recipe(mode=mode),
                                        show_progress=False))
    for op, versions in ours.items():
        if op in theirs and not (mode == "weights_only" and op in ("CONV_2D",
                                                                      "DEPTHWISE_CONV_2D")):
            assert versions <= theirs[op], (op, versions, theirs[op])


def test_degenerate_weights_and_huge_bias():
    # channel 0: all-zero weights with a bias; channel 1: tiny weights, bias that would
    # overflow int32 at scale input*weight; channel 2: ordinary.
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    dense = keras.layers.Dense(3)
    model = keras.Model(x, dense(x))
    kernel = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    kernel[:, 0] = 0.0
    kernel[:, 1] = 1e-6
    dense.set_weights([kernel, np.array([0.5, 1e4, -0.25], np.float32)])
    data = np.random.default_rng(1).uniform(-1, 1, size=(64, 6)).astype(np.float32)
    result = tfquant.convert_model(model, data, show_progress=False)
    bias = next(t for t in result.graph.tensors.values() if t.dtype == np.int32 and t.is_const)
    assert np.abs(bias.data.astype(np.int64)).max() < 2 ** 31 - 1
    expected = model.predict(data, verbose=0)
    got = runtime.Runner(result.model, resolver="reference").predict(data)
    step = (expected.max() - expected.min()) / 255  # one output quantization step
    assert np.abs(got - expected).max() <= 2 * step
    assert np.all(np.isfinite(got))


def test_tiny_relu6_ranges_are_widened_so_the_runtimes_accept_the_model(caplog):
    # A layer the calibration data hardly excites (here: weights ~1e-12) gets an output scale
    # so small that 6 / scale overflows int32; every runtime then refuses the model at
    # allocation ("no_integer_overflow_from_quantization"). The converter widens the range.
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.RandomNormal(
        stddev=1e-12), name="quiet")(x)
    y = keras.layers.ReLU(6.0, name="quiet_relu6")(y)
    model = keras.Model(x, keras.layers.Conv2D(4, 3)(y))
    data = np.random.default_rng(0).random((16, 8, 8, 3)).astype(np.float32)
    with caplog.at_level("WARNING", logger="tfquant"):
        result = tfquant.convert_model(model, data, show_progress=False)
    assert "too small for TFLite's int8 activation clamp" in caplog.text
    conv = next(op for op in result.graph.ops
                if getattr(op.options, "fused_activation", None) == "RELU6")
    assert result.graph.tensors[conv.outputs[0]].quant.scale[0] >= 6.0 / 2 ** 31
    for name in runtime.available_runtimes():
        out = runtime.Runner(result.model, name, "reference").predict(data[:2])
        assert out.shape == (2, 4, 4, 4) and np.all(np.isfinite(out))
