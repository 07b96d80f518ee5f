"""16x8 mode: int16 symmetric activations, int8 weights, int64 biases (TFLite's
EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8), against TFLiteConverter's own."""

import contextlib
import io

import numpy as np
import pytest
import tensorflow as tf

import tfquant
from tfquant import flatbuffer, runtime, spec


def _tflite_converter_16x8(model, calibration):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[i:i + 32]]
                                                for i in range(0, len(calibration), 32))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _op_versions(model_bytes):
    return {name: max(v) for name, v in flatbuffer.op_versions(model_bytes).items()}


@pytest.mark.peers
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet"])
@pytest.mark.slow
def test_int16x8_matches_tflite_converter(name, mnist, pretrained):
    model = pretrained(name)
    calibration, test = mnist.x_train[:512], mnist.x_test[:256]
    expected = model.predict(test, verbose=0)
    result = tfquant.convert_model(model, calibration, tfquant.Recipe(mode="int16x8"),
                                   show_progress=False)
    int8 = tfquant.convert(model, calibration, show_progress=False)
    theirs = _tflite_converter_16x8(model, calibration)

    activations = [t for t in result.graph.tensors.values() if t.quant is not None
                   and not t.is_const]
    assert activations and all(t.dtype == np.int16 and not np.any(t.quant.zero_point)
                               for t in activations)
    biases = [result.graph.tensors[op.inputs[2]] for op in result.graph.ops
              if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert biases and all(b.dtype == np.int64 for b in biases)
    # TFLiteConverter declares the int8 versions for int16 ops (CONV_2D 3, ADD 2, ...);
    # tfquant declares the int16 versions of the op-version table (CONV_2D 4, ADD 3, ...),
    # never lower, and every runtime below accepts them.
    ours_versions, their_versions = _op_versions(result.model), _op_versions(theirs)
    assert all(ours_versions[k] >= v for k, v in their_versions.items() if k in ours_versions)

    for runtime_name in runtime.available_runtimes():
        ours = spec.sqnr_db(expected, runtime.Runner(result.model, runtime_name,
                                                     "reference").predict(test))
        reference = spec.sqnr_db(expected, runtime.Runner(theirs, runtime_name,
                                                          "reference").predict(test))
        eight = spec.sqnr_db(expected, runtime.Runner(int8, runtime_name,
                                                      "reference").predict(test))
        print(f"{name} {runtime_name}: SQNR 16x8 tfquant {ours:.1f} dB, TFLiteConverter "
              f"{reference:.1f} dB, int8 {eight:.1f} dB")
        assert ours >= reference - 0.5
        assert ours > eight + 3.0


def test_op_without_int16_kernel_runs_float_inside_the_16x8_model(caplog):
    """TFLite has no int16 HARD_SWISH (its kernels refuse INT16 when invoked, on every runtime):
    in 16x8 mode it runs in float between DEQUANTIZE and QUANTIZE, with a warning, instead of
    producing a model that fails at run time."""
    import keras
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="hard_swish", name="conv")(x)
    model = keras.Model(x, keras.layers.Conv2D(4, 1)(y))
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(64, 8, 8, 3)).astype(np.float32)
    test = rng.normal(size=(16, 8, 8, 3)).astype(np.float32)
    expected = model.predict(test, verbose=0)
    with caplog.at_level("WARNING", logger="tfquant"):
        result = tfquant.convert_model(model, calibration, tfquant.Recipe(mode="int16x8"),
                                       show_progress=False)
    assert "no int16 kernel for HARD_SWISH" in caplog.text
    (hard_swish,) = [op for op in result.graph.ops if op.type == "HARD_SWISH"]
    assert result.graph.tensors[hard_swish.inputs[0]].dtype == np.float32
    assert result.graph.tensors[hard_swish.outputs[0]].dtype == np.float32
    convs = [op for op in result.graph.ops if op.type == "CONV_2D"]
    assert all(result.graph.tensors[op.inputs[0]].dtype == np.int16 for op in convs)
    int8 = tfquant.convert(model, calibration, show_progress=False)
    for runtime_name in runtime.available_runtimes():
        ours = spec.sqnr_db(expected, runtime.Runner(result.model, runtime_name,
                                                     "reference").predict(test))
        eight = spec.sqnr_db(expected, runtime.Runner(int8, runtime_name,
                                                      "reference").predict(test))
        assert ours > eight + 10, (runtime_name, ours, eight)
