"""Models Keras quantized itself (model.quantize): Dense layers in int8, or int4 per channel or
in one group per output, the EinsumDense projections of MultiHeadAttention (int8, int4) and
Embedding tables (int8, int4: per-row scales and zero points) keep Keras's integer codes and
scales in the TFLite model; every other Keras-quantized layer is refused in one line (their
kernels hold integer codes that would otherwise be read as float weights)."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras.quantizers import Int4QuantizationConfig

import tfquant
import tfquant.qat
from tfquant import runtime
from tfquant.errors import ConversionError
from tfquant.ops.keras_support import keras_quantized_codes

X = np.random.default_rng(0).normal(size=(256, 16)).astype(np.float32)
RNG = np.random.default_rng(1)  # shapes only: values do not matter where it is used


def _model(features: int = 16, seed: int = 1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(hidden))


QUANTIZE = {"int8": dict(mode="int8"),
            "int4_per_channel": dict(config=Int4QuantizationConfig(block_size=None)),
            "int4_one_group": dict(mode="int4")}  # default block_size 128 > 16 inputs


@pytest.mark.parametrize("kind", list(QUANTIZE))
def test_keras_quantized_dense_keeps_its_codes_and_scales(kind):
    """The flatbuffer's weights are Keras's codes (int4 one-group: codes minus the group's
    zero point, in an int8 container) with Keras's scales; the int8 model reproduces the
    Keras-quantized model's outputs on three runtimes within two output steps (Keras
    quantizes each input row on the fly, the TFLite model with calibrated ranges)."""
    model = _model()
    model.quantize(**QUANTIZE[kind])
    expected = model.predict(X, verbose=0)
    result = tfquant.convert_model(model, X, show_progress=False)
    assert result.route.startswith("native")
    graph = result.graph
    layers = (model.get_layer("hidden"), model.get_layer("logits"))
    fcs = [op for op in graph.ops if op.type == "FULLY_CONNECTED"]
    assert len(fcs) == 2
    for op, layer in zip(fcs, layers):
        codes, scale = keras_quantized_codes(layer)
        weights = graph.tensors[op.inputs[1]]
        assert weights.dtype == np.int8
        np.testing.assert_array_equal(weights.data.T.astype(np.int64), codes)
        np.testing.assert_array_equal(weights.quant.scale, scale.reshape(-1))
    output = graph.tensors[graph.outputs[0]]
    step = float(output.quant.scale[0]) if output.quant is not None else float(
        graph.tensors[graph.producer(graph.outputs[0]).inputs[0]].quant.scale[0])
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt).predict(X)
        worst = float(np.max(np.abs(got - expected)) / step)
        sqnr = tfquant.spec.sqnr_db(expected, got)
        print(f"{kind} {rt}: SQNR vs Keras's own {sqnr:.1f} dB, worst {worst:.2f} steps")
        assert worst <= 2.0 and sqnr > 30, (rt, worst, sqnr)


def test_keras_quantized_dense_weights_only():
    """Weight-only conversion: hybrid FULLY_CONNECTED takes one weight scale per tensor
    (tflite-runtime 2.14 ignores per-channel ones), so Keras's codes are requantized per
    tensor; the model still follows Keras's int8 outputs."""
    model = _model()
    model.quantize("int8")
    expected = model.predict(X, verbose=0)
    result = tfquant.convert_model(model, X, tfquant.Recipe(mode="weights_only"),
                                   show_progress=False)
    for rt in runtime.RUNTIMES:
        sqnr = tfquant.spec.sqnr_db(expected, runtime.Runner(result.model, rt).predict(X))
        print(f"weights only {rt}: {sqnr:.1f} dB")
        assert sqnr > 25, rt


def test_keras_int4_dense_in_groups_keeps_each_group_s_codes():
    """int4 with block_size=64 on 160 inputs: three groups per output, each with its own
    scales and zero points. One FULLY_CONNECTED per group (over a SPLIT_V of the input) keeps
    each group's codes minus its zero points with its scales; ADDs sum them."""
    from tfquant.ops.keras_support import keras_dense_groups
    model = _model(features=160)
    model.quantize(config=Int4QuantizationConfig(block_size=64))
    x = RNG.normal(size=(256, 160)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    result = tfquant.convert_model(model, x, show_progress=False)
    groups = keras_dense_groups(model.get_layer("hidden"))
    assert [(a, e) for a, e, _, _ in groups] == [(0, 64), (64, 128), (128, 160)]
    constants = _flatbuffer_constants(result.model)
    for _, _, codes, scale in groups:
        assert any(v.shape == codes.T.shape and np.array_equal(v, codes.T)
                   and np.array_equal(scales, scale) for v, scales, _ in constants.values())
    assert sum(op.type == "FULLY_CONNECTED" for op in result.graph.ops) == 4
    for rt in runtime.RUNTIMES:
        sqnr = tfquant.spec.sqnr_db(expected, runtime.Runner(result.model, rt).predict(x))
        print(f"int4 Dense in 3 groups {rt}: SQNR vs Keras's own {sqnr:.1f} dB")
        assert sqnr > 30, rt


def test_keras_quantized_layers_without_a_tflite_form_are_refused_in_one_line(tmp_path):
    """int4 attention projections in several groups per output, an EinsumDense, quantization-
    aware training of a quantized model, the lowered route (TFLiteConverter cannot lower
    integer kernels) and a float8 model from the CLI: one line naming the layers (no output
    file)."""
    keras.utils.set_random_seed(3)
    tokens = keras.Input((6, 16))
    grouped = keras.Model(tokens, keras.layers.MultiHeadAttention(4, 64, name="attention")(
        tokens, tokens))
    grouped.quantize("int4")  # the output projection reads 4 x 64 = 256 inputs: 2 groups
    with pytest.raises(ConversionError, match="\\(EinsumDense, int4: its int4 kernel has 2 "
                       "groups per output") as info:
        tfquant.convert_model(grouped, RNG.normal(size=(32, 6, 16)).astype(np.float32),
                              show_progress=False)
    assert "\n" not in str(info.value)
    inputs = keras.Input((5, 8))
    einsum = keras.Model(inputs, keras.layers.EinsumDense("abc,cd->abd", (5, 4),
                                                          name="proj")(inputs))
    einsum.quantize("int8")
    with pytest.raises(ConversionError, match="'proj' \\(EinsumDense, int8"):
        tfquant.convert_model(einsum, RNG.normal(size=(8, 5, 8)).astype(np.float32),
                              show_progress=False)
    model = _model()
    model.quantize("int8")
    with pytest.raises(ConversionError, match="quantization-aware training starts from the "
                       "float model"):
        tfquant.qat.quantize_model(model)
    with pytest.raises(ConversionError, match="only the native route reads"):
        tfquant.convert_model(model, X, tfquant.Recipe(route="lowered"), show_progress=False)
    float8 = _model()
    float8.quantize("float8")  # (Keras cannot reload its own int4 attention from .keras)
    path = str(tmp_path / "float8.keras")
    float8.save(path)
    done = subprocess.run([sys.executable, "-m", "tfquant.tools.convert", f"--model={path}",
                           f"--output={tmp_path / 'out.tflite'}", "--mode=float"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "quantized by Keras" in done.stderr, done.stderr[-500:]
    assert "Traceback" not in done.stderr and not (tmp_path / "out.tflite").exists()


def test_cli_converts_a_keras_int8_model(tmp_path):
    model = _model()
    model.quantize("int8")
    path = str(tmp_path / "int8.keras")
    model.save(path)
    np.save(tmp_path / "calibration.npy", X)
    output = tmp_path / "out.tflite"
    done = subprocess.run([sys.executable, "-m", "tfquant.tools.convert", f"--model={path}",
                           f"--output={output}",
                           f"--calibration_data={tmp_path / 'calibration.npy'}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    expected = model.predict(X, verbose=0)
    got = runtime.Runner(output.read_bytes(), "litert").predict(X)
    assert tfquant.spec.sqnr_db(expected, got) > 30


def test_cli_converts_a_saved_keras_int4_token_classifier(tmp_path):
    """model.quantize("int4") with its Embedding, saved as .keras, through tfquant-convert:
    the file holds Keras's table codes."""
    from tfquant.experiments import coverage_models
    from tfquant.ops.keras_support import keras_quantized_table
    keras.utils.set_random_seed(12)
    model = coverage_models.embedding_classifier()
    model.quantize("int4")
    path = str(tmp_path / "tokens.keras")
    model.save(path)
    tokens, _ = coverage_models.synthetic_tokens(128, 5)
    np.save(tmp_path / "tokens.npy", tokens)
    output = tmp_path / "tokens.tflite"
    done = subprocess.run([sys.executable, "-m", "tfquant.tools.convert", f"--model={path}",
                           f"--output={output}", f"--calibration_data={tmp_path / 'tokens.npy'}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    table = next(v for n, v in _flatbuffer_constants(output.read_bytes()).items()
                 if n.endswith("embeddings_codes"))
    embedding = next(layer for layer in model.layers if type(layer).__name__ == "Embedding")
    np.testing.assert_array_equal(table[0], keras_quantized_table(embedding)[0])
    sqnr = tfquant.spec.sqnr_db(model.predict(tokens, verbose=0),
                                runtime.Runner(output.read_bytes()).predict(tokens))
    assert sqnr > 30, sqnr


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_keras_quantized_attention_keeps_every_projection_s_codes(mode):
    """A transformer block quantized by Keras (model.quantize("int8")): the query / key /
    value / output EinsumDense projections of MultiHeadAttention and the Dense layers keep
    Keras's codes (the query's scales carry the 1/sqrt(key_dim) factor); the int8 model
    follows Keras's int8 outputs on three runtimes."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((6, 8))
    y = keras.layers.Dense(8, name="embed")(inputs)
    y = keras.layers.MultiHeadAttention(2, 4, name="attention")(y, y)
    y = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(y))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(y))
    x = np.random.default_rng(6).normal(size=(256, 6, 8)).astype(np.float32)
    model.quantize(mode)
    expected = model.predict(x, verbose=0)
    result = tfquant.convert_model(model, x, show_progress=False)
    graph = result.graph
    attention = model.get_layer("attention")
    projections = [model.get_layer("embed"), attention._query_dense, attention._key_dense,
                   attention._value_dense, attention._output_dense, model.get_layer("logits")]
    fcs = [op for op in graph.ops if op.type == "FULLY_CONNECTED"]
    assert len(fcs) == len(projections) and all(op.fixed_weights for op in fcs)
    for op, layer in zip(fcs, projections):
        codes, _ = keras_quantized_codes(layer)
        flat = codes.reshape(codes.shape[0], -1) if layer is not attention._output_dense \
            else codes.reshape(-1, codes.shape[-1])
        stored = graph.tensors[op.inputs[1]].data.T.astype(np.int64)
        np.testing.assert_array_equal(stored, flat, err_msg=layer.name)
    for rt in runtime.RUNTIMES:
        # TF 2.21's optimized int8 BATCH_MATMUL loses most of the signal (tf.lite only, also
        # in TFLiteConverter's models: tests/test_native_layers.py): its reference kernels.
        kernels = "reference" if rt == "tf" else "default"
        got = runtime.Runner(result.model, rt, kernels).predict(x)
        sqnr = tfquant.spec.sqnr_db(expected, got)
        print(f"attention {rt} ({kernels}): SQNR vs Keras's own {mode} {sqnr:.1f} dB")
        assert sqnr > 25, rt


def _flatbuffer_constants(model: bytes) -> dict:
    """{tensor name: (values, scales, zero points)} of the file's int8 constant tensors, read
    back by the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=model)
    found = {}
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.int8:
            continue
        try:
            values = interpreter.get_tensor(detail["index"])
        except ValueError:  # not a constant (no data before invoke)
            continue
        quant = detail["quantization_parameters"]
        found[detail["name"]] = (values, quant["scales"], quant["zero_points"])
    return found


@pytest.mark.parametrize("mode", ["int8", "int4", "int4_per_row"])
@pytest.mark.parametrize("architecture", ["embedding_classifier", "vit_tiny"])
def test_keras_quantized_token_classifier_and_vit_keep_keras_s_weights(architecture, mode):
    """A token classifier (Embedding, Dense) and the ViT-tiny (Dense, MultiHeadAttention's
    EinsumDense) after Keras's model.quantize: every Keras-quantized weight array appears
    unchanged among the file's int8 constants (the Embedding with its per-row scales and
    zero points), and the converted model follows Keras's quantized model on every runtime."""
    from tfquant.experiments import coverage_models
    from tfquant.ops.keras_support import keras_dense_groups, keras_quantized_table
    keras.utils.set_random_seed(7)
    model = getattr(coverage_models, architecture)()
    rng = np.random.default_rng(8)
    if architecture == "embedding_classifier":
        x = rng.integers(0, 64, (256, 24)).astype(np.int32)
    else:
        x = rng.uniform(0, 1, (128, 28, 28, 1)).astype(np.float32)
    if mode == "int4_per_row":
        model.quantize(config=Int4QuantizationConfig(block_size=None))
    else:
        model.quantize(mode)
    expected = model.predict(x, verbose=0)
    result = tfquant.convert_model(model, x, show_progress=False)
    constants = _flatbuffer_constants(result.model)
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if getattr(layer, "quantization_mode", None)]
    assert layers
    for layer in layers:
        if type(layer).__name__ == "Embedding":
            codes, scale, zero = keras_quantized_table(layer)
            matches = [name for name, (values, scales, zeros) in constants.items()
                       if values.shape == codes.shape and np.array_equal(values, codes)
                       and np.array_equal(scales, scale) and np.array_equal(zeros, zero)]
        elif type(layer).__name__ == "Dense" and keras_dense_groups(layer):
            # int4 in Keras's default blocks of 128 inputs (the ViT's head reads 1568): every
            # group's codes, one FULLY_CONNECTED each
            matches = [layer.name] if all(
                any(np.array_equal(values, codes.T) for values, _, _ in constants.values())
                for _, _, codes, _ in keras_dense_groups(layer)) else []
        else:
            codes, _ = keras_quantized_codes(layer)
            views = (codes.reshape(codes.shape[0], -1).T, codes.reshape(-1, codes.shape[-1]).T)
            matches = [name for name, (values, _, _) in constants.items()
                       if any(values.shape == v.shape and np.array_equal(values, v)
                              for v in views)]
        assert matches, f"{layer.name}: Keras's {mode} weights are not in the file"
    for rt in runtime.RUNTIMES:
        kernels = "reference" if rt == "tf" else "default"  # see the attention test
        got = runtime.Runner(result.model, rt, kernels).predict(x)
        sqnr = tfquant.spec.sqnr_db(expected, got)
        print(f"{architecture} {mode} {rt}: SQNR vs Keras's own {sqnr:.1f} dB, "
              f"{len(layers)} quantized layers")
        assert sqnr > 25, rt
    if architecture == "embedding_classifier":  # weight-only kernels, as the user may ask
        hybrid = tfquant.convert_model(model, recipe=tfquant.Recipe(mode="weights_only"),
                                       show_progress=False)
        table = next(v for n, v in _flatbuffer_constants(hybrid.model).items()
                     if n.endswith("embeddings_codes"))
        np.testing.assert_array_equal(table[0], keras_quantized_table(layers[0])[0])
        sqnr = tfquant.spec.sqnr_db(expected, runtime.Runner(hybrid.model).predict(x))
        print(f"{architecture} {mode} weights only: SQNR vs Keras's own {sqnr:.1f} dB")
        assert sqnr > 30


def test_keras_gptq_dense_keeps_its_codes():
    """Keras 3's own GPTQ (model.quantize("gptq"), asymmetric) on a token classifier: the file
    holds Keras's codes minus its zero points, per output channel with Keras's scales, in one
    group per output or in several (one FULLY_CONNECTED per group), and follows Keras's GPTQ
    model (also with activation order, whose groups Keras keeps in input order)."""
    from keras.quantizers import GPTQConfig

    from tfquant.experiments import coverage_models, peers
    keras.utils.set_random_seed(10)
    model = coverage_models.embedding_classifier()
    tokens, _ = coverage_models.synthetic_tokens(256, 4)
    quantized = peers.keras_gptq(model, tokens[:128], bits=4)
    assert peers.keras_gptq(_model(), tokens[:8]) is None  # no Embedding: does not apply
    expected = quantized.predict(tokens, verbose=0)
    result = tfquant.convert_model(quantized, tokens[:128], show_progress=False)
    constants = _flatbuffer_constants(result.model)
    dense = [layer for layer in quantized.layers if getattr(layer, "quantization_mode", None)]
    assert [layer.quantization_mode for layer in dense] == ["gptq", "gptq"]
    for layer in dense:
        codes, scale = keras_quantized_codes(layer)
        zero = np.asarray(layer.kernel_zero).astype(np.int64)[:, 0]
        q = codes + zero[None, :]  # Keras's stored codes, 0..15
        assert q.min() >= 0 and q.max() <= 15
        assert any(values.shape == codes.T.shape and np.array_equal(values, codes.T)
                   and np.array_equal(scales, scale.reshape(-1))
                   for values, scales, _ in constants.values()), layer.name
    for rt in runtime.RUNTIMES:
        sqnr = tfquant.spec.sqnr_db(expected, runtime.Runner(result.model, rt).predict(tokens))
        print(f"Keras GPTQ token classifier {rt}: SQNR vs Keras's own {sqnr:.1f} dB")
        assert sqnr > 30, rt
    from tfquant.ops.keras_support import keras_dense_groups

    class Identity:
        @staticmethod
        def tokenize(sample):
            return sample

    def gptq(**config):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        layers = copy.layers[1:]
        copy.quantize("gptq", config=GPTQConfig(
            dataset=list(tokens[:64]), tokenizer=Identity(), num_samples=64,
            sequence_length=24, quantization_layer_structure={
                "pre_block_layers": [layers[0]],
                "sequential_blocks": [keras.Sequential(layers[1:])]}, **config))
        return copy

    for order in (False, True):  # 16 and 32 inputs in groups of 8: 2 and 4 groups
        grouped = gptq(group_size=8, activation_order=order)
        result = tfquant.convert_model(grouped, tokens[:64], show_progress=False)
        constants = _flatbuffer_constants(result.model)
        for layer in (grouped.layers[-2], grouped.layers[-1]):
            assert len(keras_dense_groups(layer)) == layer.kernel_shape[0] // 8
            for _, _, codes, scale in keras_dense_groups(layer):
                assert any(np.array_equal(v, codes.T) and np.array_equal(scales, scale)
                           for v, scales, _ in constants.values()), layer.name
        sqnr = tfquant.spec.sqnr_db(grouped.predict(tokens, verbose=0),
                                    runtime.Runner(result.model).predict(tokens))
        print(f"Keras GPTQ in groups of 8 (activation order {order}): SQNR vs Keras's own "
              f"{sqnr:.1f} dB")
        assert sqnr > 30
