"""quantize_model: float Keras model -> QAT model; fidelity, fine-tuning, exact export."""

import keras
import numpy as np
import pytest
import tf_keras

import tfquant
from tfquant import runtime
from tfquant.models import mobilenet_v1, mobilenet_v2
from tfquant.qat.activation_quantizer import ActivationQuantizer
from tfquant.qat.batch_norm_folding import FoldedBatchNorm
from tfquant.qat.callbacks import QuantizationScheduler
from tfquant.qat.rewrite import quantize_model


def _layers(model, cls):
    return [l for l in model._flatten_layers(include_self=False) if isinstance(l, cls)]


@pytest.mark.parametrize("builder", [mobilenet_v1.build_mobilenet_v1,
                                     mobilenet_v2.build_mobilenet_v2])
@pytest.mark.parametrize("K", [keras, tf_keras], ids=["keras3", "tf_keras"])
def test_structure_and_fidelity_with_quantization_off(builder, K, mnist):
    K.utils.set_random_seed(0)
    model = builder(keras_module=K)
    x = mnist.x_train[:64]
    qat = quantize_model(model)
    convs = [l for l in model._flatten_layers(include_self=False)
             if type(l).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense")]
    assert len(_layers(qat, FoldedBatchNorm)) == len(convs)
    momenta = {float(l.momentum) for l in model._flatten_layers(include_self=False)
               if type(l).__name__ == "BatchNormalization"}
    assert {l.momentum for l in _layers(qat, FoldedBatchNorm) if l.batch_norm} == momenta
    # quantization off, batch norms frozen: the QAT model is the float model in inference
    QuantizationScheduler(quant_delay=10 ** 9, freeze_bn_delay=0).apply(qat)
    expected = model.predict(x, verbose=0)
    got = qat.predict(x, verbose=0)
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


@pytest.mark.slow
def test_fine_tune_and_export(mnist, small_mobilenet_v1):
    model = small_mobilenet_v1
    keras.utils.set_random_seed(0)
    float_acc = np.mean(np.argmax(model.predict(mnist.x_test, verbose=0), 1) == mnist.y_test)
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy",
                metrics=["accuracy"])
    history = qat.fit(mnist.x_train, mnist.y_train, batch_size=64, epochs=2, verbose=0,
                      callbacks=[QuantizationScheduler(quant_delay=0, freeze_bn_delay=80)])
    assert history.history["qat/bn_frozen"][-1] == 1.0
    exported = tfquant.convert(qat, show_progress=False)
    qat_pred = qat.predict(mnist.x_test, verbose=0)
    int8_pred = runtime.Runner(exported, resolver="reference").predict(mnist.x_test)
    agreement = np.mean(np.argmax(qat_pred, 1) == np.argmax(int8_pred, 1))
    int8_acc = np.mean(np.argmax(int8_pred, 1) == mnist.y_test)
    assert agreement >= 0.995, agreement
    assert int8_acc >= float_acc - 0.01, (int8_acc, float_acc)
    assert len(_layers(qat, ActivationQuantizer)) > 5


def test_float_layers_lists_every_layer_kept_float():
    """Layers of supported classes in configurations TFLite int8 cannot express stay float
    too, and are listed (ReLU with max_value 3); the rest of the model, the Embedding
    included, trains quantized."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, name="conv")(x)
    y = L.ReLU(3.0, name="relu3")(y)
    y = L.Activation("gelu", name="gelu")(y)
    y = L.UpSampling2D(name="up")(y)
    y = L.Conv2DTranspose(4, 2, strides=2, name="deconv")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    tokens = keras.Input((5,), dtype="int32")
    e = L.GlobalAveragePooling1D(name="bag")(L.Embedding(20, 4, name="embedding")(tokens))
    y = L.Concatenate(name="join")([y, e])
    qat = quantize_model(keras.Model([x, tokens], L.Dense(2, name="head")(y)))
    assert sorted(tfquant.qat.float_layers(qat)) == [("relu3", "ReLU")]
    assert [type(layer).__name__ for layer in qat.layers if "embedding" in layer.name] == [
        "QuantizedEmbedding"]
