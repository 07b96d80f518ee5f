"""QAT of the layers beyond the CNN set: Normalization, silu / hard_swish / gelu, grouped
Conv2D, squeeze-excite Multiply, Conv2DTranspose with its batch norm folded, bilinear
UpSampling2D, Subtract, Cropping2D, Conv1D,
LayerNormalization, MultiHeadAttention (cross), GlobalAveragePooling1D, a two-input model,
Embedding.
Each is rendered from the converter's IR (ops without a Keras layer of their own as OpLayers)
and the int8 export computes what the QAT model simulates (agreement of the argmax of the
logits, SQNR of the int8 model against the QAT model's own output)."""

import keras
import numpy as np
import pytest

import tfquant
from tfquant import qat, runtime, spec
from tfquant.qat.op_layer import OpLayer

L = keras.layers


def _image_model():
    x = keras.Input((28, 28, 1), name="image")
    y = L.Normalization(mean=0.13, variance=0.09, name="norm")(x)
    y = L.Conv2D(16, 3, padding="same", activation="silu", name="stem")(y)
    y = L.Conv2D(16, 3, padding="same", groups=4, name="grouped")(y)
    y = L.BatchNormalization(name="grouped_bn")(y)
    y = L.Activation("hard_swish", name="hswish")(y)
    s = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(y)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
    y = L.Multiply(name="se_scale")([y, s])
    y = L.MaxPooling2D(name="pool")(y)
    y = L.Conv2DTranspose(16, 3, strides=2, padding="same", name="deconv")(y)
    y = L.BatchNormalization(name="deconv_bn")(y)
    y = L.MaxPooling2D(name="pool2")(y)
    y = L.UpSampling2D(interpolation="bilinear", name="up")(y)
    y = L.Subtract(name="sub")([y, L.Conv2D(16, 1, name="side")(y)])
    y = L.Cropping2D(1, name="crop")(y)
    y = L.Conv2D(8, 3, activation="gelu", name="head_conv")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, L.Dense(10, name="logits")(y))


def _image_data(mnist, count, seed):
    """MNIST-5k digits (train images for seed 0, test images otherwise) and their labels."""
    images, labels = (mnist.x_train, mnist.y_train) if seed == 0 else (mnist.x_test,
                                                                        mnist.y_test)
    return images[:count], labels[:count]


def _sequence_model():
    x = keras.Input((12, 6), name="sequence")
    context = keras.Input((5, 8), name="context")
    y = L.Conv1D(16, 3, padding="same", activation="gelu", name="conv1d")(x)
    y = L.LayerNormalization(name="ln1")(y)
    attended = L.MultiHeadAttention(2, 8, name="cross_attention")(y, context)
    y = L.Add(name="residual")([y, attended])
    y = L.LayerNormalization(name="ln2")(y)
    y = L.Dense(16, activation="gelu", name="mlp")(y)
    y = L.GlobalAveragePooling1D(name="gap")(y)
    return keras.Model([x, context], L.Dense(4, name="logits")(y))


def _sequence_data(mnist, count, seed):
    """Random sequences labelled by the signs of two input means (4 classes)."""
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(count, 12, 6)).astype(np.float32),
         rng.normal(size=(count, 5, 8)).astype(np.float32)]
    return x, ((x[0][:, :, 0].mean(1) > 0) + 2 * (x[1][:, :, 0].mean(1) > 0)).astype(np.int32)


def _token_model():
    tokens = keras.Input((24,), dtype="int32", name="tokens")
    y = L.Embedding(64, 16, name="embedding")(tokens)
    y = L.GlobalAveragePooling1D(name="bag")(y)
    y = L.Dense(32, activation="relu", name="hidden")(y)
    return keras.Model(tokens, L.Dense(4, name="logits")(y))


def _token_data(mnist, count, seed):
    """Uniform tokens, a quarter replaced by tokens of the 8-token block of the class."""
    from tfquant.experiments.coverage_models import synthetic_tokens
    return synthetic_tokens(count, seed + 10)


CASES = {"image": (_image_model, _image_data, 35.0),
         "sequence": (_sequence_model, _sequence_data, 30.0),
         "tokens": (_token_model, _token_data, 35.0)}


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, mnist):
    """The QAT model, calibrated and trained a few epochs (so that its logits are not the
    near-ties of random weights), and its test data."""
    build, data, min_sqnr = CASES[request.param]
    keras.utils.set_random_seed(0)
    qat_model = qat.quantize_model(build())
    x, y = data(mnist, 1024, 0)
    qat.calibrate_activation_ranges(qat_model, x, show_progress=False)
    qat_model.compile(keras.optimizers.Adam(3e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    history = qat_model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                            callbacks=[qat.QuantizationScheduler(freeze_bn_delay=32)])
    losses = history.history["loss"]  # gradients flow through OpLayers and the quantizers
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    return request.param, qat_model, data(mnist, 300, 1)[0], min_sqnr


def test_every_new_layer_trains_quantized(exported):
    name, qat_model, _, _ = exported
    assert qat.float_layers(qat_model) == []
    op_types = {layer.op_type for layer in qat_model.layers if isinstance(layer, OpLayer)}
    expected = {"image": {"RESIZE_BILINEAR", "SUB", "SLICE", "GELU", "SPLIT"},
                "sequence": {"SQUARED_DIFFERENCE", "RSQRT", "SUB", "BATCH_MATMUL",
                             "TRANSPOSE", "GELU", "MEAN"},
                "tokens": {"MEAN"}}[name]
    assert expected <= op_types, op_types
    if name == "tokens":  # the table trains on its int8 grid; nothing re-quantizes the rows
        embedding = qat_model.get_layer("embedding")
        assert isinstance(embedding, qat.QuantizedEmbedding)
        assert not [n for n in embedding._outbound_nodes
                    if isinstance(n.operation, qat.ActivationQuantizer)]
    if name == "image":  # the transposed convolution trains with its batch norm folded
        deconv = qat_model.get_layer("deconv_bn")
        assert isinstance(deconv, qat.FoldedBatchNorm) and deconv.kind == "conv2d_transpose"
        assert deconv.batch_norm


def test_int8_export_computes_what_qat_simulates(exported, tmp_path):
    name, qat_model, x, min_sqnr = exported
    simulated = qat_model.predict(x, verbose=0)
    model = tfquant.convert(qat_model)
    got = runtime.Runner(model, "litert").predict(x)
    agree = np.argmax(simulated, -1) == np.argmax(got, -1)
    sqnr = spec.sqnr_db(simulated, got)
    print(f"{name}: int8 vs QAT model SQNR {sqnr:.1f} dB, top-1 agreement {agree.mean():.3f}")
    assert agree.mean() >= 0.99 and sqnr >= min_sqnr, (agree.mean(), sqnr)
    # Disagreements are near ties: the QAT model's two candidates are within 5% of its
    # logits' spread of each other.
    rows = np.flatnonzero(~agree)
    margins = (simulated[rows, np.argmax(simulated[rows], -1)]
               - simulated[rows, np.argmax(got[rows], -1)])
    assert np.all(margins <= 0.05 * np.ptp(simulated)), margins
    if name == "tokens":  # the exported table is the trained table's fake quantization
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_content=model)
        table = next(d for d in interpreter.get_tensor_details()
                     if tuple(d["shape"]) == (64, 16) and d["dtype"] == np.int8)
        scale, zero_point = table["quantization"]
        codes = interpreter.get_tensor(table["index"]).astype(np.float32)
        trained = np.asarray(qat_model.get_layer("embedding").quantized_table())
        np.testing.assert_allclose((codes - zero_point) * scale, trained, rtol=0,
                                   atol=1e-6 * np.abs(trained).max())
    # A saved and reloaded QAT model (OpLayers included) exports the same bytes.
    path = str(tmp_path / f"{name}.keras")
    qat_model.save(path)
    assert tfquant.convert(keras.models.load_model(path)) == model


def test_float_layer_called_with_several_arguments():
    """A layer QAT keeps float is called as the model called it (query and value of a causal
    attention, which tfquant does not convert), not on a list of its inputs."""
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 8))
    memory = keras.Input((4, 8))
    y = L.MultiHeadAttention(2, 4, name="causal")(x, memory, use_causal_mask=True)
    model = keras.Model([x, memory], L.Dense(3, name="head")(y))
    qat_model = qat.quantize_model(model)
    assert qat.float_layers(qat_model) == [("causal", "MultiHeadAttention")]
    rng = np.random.default_rng(3)
    data = [rng.normal(size=(64, 6, 8)).astype(np.float32),
            rng.normal(size=(64, 4, 8)).astype(np.float32)]
    qat.calibrate_activation_ranges(qat_model, data, show_progress=False)
    simulated, reference = qat_model.predict(data, verbose=0), model.predict(data, verbose=0)
    # Only the inputs and the head are fake-quantized around the float attention.
    assert simulated.shape == (64, 6, 3) and spec.sqnr_db(reference, simulated) >= 25.0
