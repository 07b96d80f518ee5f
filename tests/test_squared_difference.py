"""SQUARED_DIFFERENCE, added as one record of the op registry (tfquant/ops/elementwise.py) and
nothing else: a float .tflite holding it (written by TFLiteConverter) quantizes to int8 with
TFLiteConverter's op version and runs on every runtime; in 16x8 it runs in float (no runtime
has an int16 kernel, and TFLiteConverter's 16x8 model of it fails at invoke). The delegate
leaves it to the CPU (its record's delegate case, in test_delegate_ops)."""

import contextlib
import io

import numpy as np
import pytest
import tensorflow as tf

import tfquant
from tfquant import flatbuffer, runtime, spec


class _Distance(tf.Module):
    """(x W + b - x)^2: a learned projection's squared distance to its input."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.w = tf.constant(rng.uniform(-0.5, 0.5, (8, 8)).astype(np.float32))
        self.b = tf.constant(rng.uniform(-0.2, 0.2, 8).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    def __call__(self, x):
        return tf.math.squared_difference(tf.matmul(x, self.w) + self.b, x)


def _peer(module, mode=None, data=None):
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module)
    if mode is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([data[i:i + 1]] for i in range(len(data)))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


@pytest.fixture(scope="module")
def models():
    module = _Distance()
    rng = np.random.default_rng(1)
    calibration = rng.uniform(-1, 1, (256, 8)).astype(np.float32)
    test = rng.uniform(-1, 1, (200, 8)).astype(np.float32)
    return module, _peer(module), calibration, test, module(test).numpy()


def _op(model_bytes, name="SQUARED_DIFFERENCE"):
    return next(op for op in flatbuffer.operators(model_bytes) if op.name == name)


def test_int8_squared_difference_like_tflite_converter_on_every_runtime(models):
    module, float_tflite, calibration, test, expected = models
    ours = tfquant.convert(float_tflite, calibration, show_progress=False)
    theirs = _peer(module, "int8", calibration)
    op = _op(ours)
    assert all(t.type == 9 for t in op.inputs + op.outputs)  # INT8: quantized, not float
    assert op.version == _op(theirs).version
    outputs = {rt: runtime.Runner(ours, rt, "reference").predict(test)
               for rt in runtime.RUNTIMES}
    for rt, got in outputs.items():
        assert spec.sqnr_db(expected, got) > 20, rt
    np.testing.assert_array_equal(outputs["litert"], outputs["tf"])
    peer = runtime.Runner(theirs, resolver="reference").predict(test)
    assert spec.sqnr_db(expected, outputs["litert"]) > spec.sqnr_db(expected, peer) - 1.0


def test_int16x8_runs_it_in_float_where_the_peer_fails(models):
    module, float_tflite, calibration, test, expected = models
    ours = tfquant.convert(float_tflite, calibration, tfquant.Recipe(mode="int16x8"),
                           show_progress=False)
    op = _op(ours)
    assert all(t.type == 0 for t in op.inputs + op.outputs)  # FLOAT32 island
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(ours, rt, "reference").predict(test)
        assert spec.sqnr_db(expected, got) > 40, rt
    theirs = _peer(module, "int16x8", calibration)
    with pytest.raises(RuntimeError, match="SquaredDifference"):
        runtime.Runner(theirs, resolver="reference").predict(test)
