"""End to end on real data: MobileNet-v1/v2-style models trained on MNIST-5k (the shipped
weights of tfquant.models.pretrained: 12 epochs), quantized by tfquant, checked against the
float Keras model and against TFLiteConverter's int8 model."""

import numpy as np
import pytest

import tfquant
from tfquant import flatbuffer, runtime
from tfquant.experiments import peers

pytestmark = [pytest.mark.slow]



@pytest.fixture(scope="module", params=["mobilenet_v1", "mobilenet_v2"])
def trained(request, mnist, pretrained):
    model = pretrained(request.param)
    float_acc = float(np.mean(np.argmax(model.predict(mnist.x_test, verbose=0), 1)
                              == mnist.y_test))
    return request.param, model, float_acc


def test_int8_accuracy_and_size(trained, mnist):
    name, model, float_acc = trained
    assert float_acc >= 0.95, f"{name} did not train ({float_acc})"
    int8 = tfquant.convert(model, mnist.x_train, show_progress=False)
    float32 = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    int8_acc = runtime.accuracy(int8, mnist.x_test, mnist.y_test)
    assert int8_acc >= float_acc - 0.005, (name, float_acc, int8_acc)
    assert len(int8) <= 0.3 * len(float32), (len(int8), len(float32))
    # float export reproduces Keras on every runtime
    keras_out = model.predict(mnist.x_test[:200], verbose=0)
    for rt in runtime.RUNTIMES:
        out = runtime.Runner(float32, rt).predict(mnist.x_test[:200])
        assert np.abs(out - keras_out).max() <= 1e-4 * (keras_out.max() - keras_out.min()), rt


def test_int8_same_on_every_runtime(trained, mnist):
    name, model, _ = trained
    int8 = tfquant.convert(model, mnist.x_train, show_progress=False)
    x = mnist.x_test[:300]
    out = {rt: runtime.Runner(int8, rt, "reference").predict(x, dequantize=False)
           for rt in runtime.RUNTIMES}
    np.testing.assert_array_equal(out["litert"], out["tf"])
    # tflite-runtime 2.14's reference FULLY_CONNECTED rounds in fixed point: one step at most
    assert np.abs(out["tflite_runtime"] - out["litert"]).max() <= 1 / 256 + 1e-7


@pytest.mark.peers
def test_peer_tflite_converter(trained, mnist):
    name, model, float_acc = trained
    r = peers.compare(model, mnist.x_train, mnist.x_test, mnist.y_test,
                                   num_batches=100, batch_size=32, runs=20,
                                   log=lambda m: None)
    assert r["agreement_between"] >= 0.99, r["agreement_between"]
    # At least as accurate as TFLiteConverter, up to the test set's noise: the paired
    # per-image difference (tfquant - TFLiteConverter) is not below zero by two standard errors.
    paired = r["correct"]["tfquant"].astype(float) - r["correct"]["tflite_converter"]
    standard_error = paired.std(ddof=1) / np.sqrt(paired.size)
    assert paired.mean() + 2 * standard_error >= 0, (paired.mean(), standard_error)
    # Same op versions as TFLiteConverter for every op both models contain.
    ours, theirs = _op_versions(r["model"]), _op_versions(r["peer_model"])
    for op in set(ours) & set(theirs):
        assert ours[op] == theirs[op], (op, ours[op], theirs[op])


def _op_versions(model_bytes):
    return flatbuffer.op_versions(model_bytes)
