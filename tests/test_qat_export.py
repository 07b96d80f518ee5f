"""Export of a trained QAT model: the learned ranges and folded weights give the int8 model
directly (no calibration data), and it computes what training simulated."""

import functools

import keras
import numpy as np
import pytest

import tfquant
from tfquant import runtime
from tfquant.errors import ConversionError, TfquantError
from tfquant.qat.activation_quantizer import ActivationQuantizer
from tfquant.qat.batch_norm_folding import FoldedBatchNorm as FoldedBatchNormLayer
from tfquant.qat.callbacks import QuantizationScheduler


def _qat_model(with_head_quantizers=True):
    keras.utils.set_random_seed(0)
    L = keras.layers
    # Trained from scratch in a few epochs here, so the moving statistics need a short memory.
    FoldedBatchNorm = functools.partial(FoldedBatchNormLayer, momentum=0.9)
    x = keras.Input((28, 28, 1), name="image")
    y = ActivationQuantizer(name="input_q")(x)
    y = FoldedBatchNorm("conv2d", 16, kernel_size=(3, 3), strides=(2, 2), padding="same",
                        name="stem")(y)
    y = L.ReLU(6.0, name="stem_relu")(y)
    y = ActivationQuantizer(name="stem_q")(y)
    y = FoldedBatchNorm("depthwise_conv2d", 1, kernel_size=(3, 3), strides=(2, 2),
                        padding="same", name="dw")(y)
    y = L.ReLU(6.0, name="dw_relu")(y)
    y = ActivationQuantizer(name="dw_q")(y)
    y = FoldedBatchNorm("conv2d", 64, name="pw")(y)
    y = L.ReLU(6.0, name="pw_relu")(y)
    y = ActivationQuantizer(name="pw_q")(y)
    y = FoldedBatchNorm("depthwise_conv2d", 1, kernel_size=(3, 3), padding="same",
                        name="dw2")(y)
    y = L.ReLU(6.0, name="dw2_relu")(y)
    y = ActivationQuantizer(name="dw2_q")(y)
    y = FoldedBatchNorm("conv2d", 64, name="pw2")(y)
    y = L.ReLU(6.0, name="pw2_relu")(y)
    y = ActivationQuantizer(name="pw2_q")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    if with_head_quantizers:
        y = ActivationQuantizer(name="gap_q")(y)
    y = FoldedBatchNorm("dense", 10, name="logits")(y)
    if with_head_quantizers:
        y = ActivationQuantizer(name="logits_q")(y)
    y = L.Activation("softmax", name="probs")(y)
    model = keras.Model(x, y)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def trained(mnist):
    model = _qat_model()
    # 4 epochs of 63 steps: float for 60 steps, then quantized; BN frozen for the last 52.
    model.fit(mnist.x_train, mnist.y_train, batch_size=64, epochs=4, verbose=0,
              callbacks=[QuantizationScheduler(quant_delay=60, freeze_bn_delay=200)])
    return model


@pytest.mark.slow
def test_export_without_calibration_matches_the_qat_model(trained, mnist):
    result = tfquant.convert_model(trained, None, tfquant.Recipe(), show_progress=False)
    assert result.ranges  # the learned ranges, not a calibration
    x = mnist.x_test
    qat = trained.predict(x, verbose=0)
    int8 = runtime.Runner(result.model, resolver="reference").predict(x)
    agree = np.argmax(qat, 1) == np.argmax(int8, 1)
    assert np.mean(np.abs(qat - int8)) <= 1 / 256  # mean difference within one output step
    # The integer kernels round where the float simulation does not, a few output steps at most
    # (measured up to 3.3 / 256 where the two disagree), so they may pick another class only
    # where the QAT model's top two are that close: 99.5% agreement on an AVX-512 machine, 99.3%
    # on an AVX2-only one (the same training rounds differently), every miss a near-tie.
    top2 = np.sort(qat, 1)[:, -2:]
    near_tie = top2[:, 1] - top2[:, 0] <= 4 / 256
    assert np.all(near_tie[~agree]), (top2[:, 1] - top2[:, 0])[~agree] * 256
    assert agree.mean() >= 0.99, agree.mean()
    # A short from-scratch run; the model must have learned (not a sea of ties) for the
    # agreement above to mean something. Accuracy targets belong to fine-tuning from float.
    accuracy = np.mean(np.argmax(int8, 1) == mnist.y_test)
    assert accuracy >= 0.6, accuracy


@pytest.mark.slow
def test_graph_of_the_export(trained):
    graph = tfquant.convert_model(trained, None, show_progress=False).graph
    types = [op.type for op in graph.ops]
    assert types == ["QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
                     "DEPTHWISE_CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX",
                     "DEQUANTIZE"]
    assert all(getattr(op.options, "fused_activation", None) == "RELU6"
               for op in graph.ops[1:6])


def test_missing_quantizer_is_a_clear_error(mnist):
    model = _qat_model(with_head_quantizers=False)
    model(mnist.x_train[:128], training=True)  # one training-mode pass sets every range
    with pytest.raises(ConversionError, match="ActivationQuantizer"):
        tfquant.convert(model)


def test_untrained_quantizer_is_a_clear_error():
    with pytest.raises(TfquantError, match="no range yet"):
        tfquant.convert(_qat_model())
