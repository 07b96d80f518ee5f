"""Peer converters, run side by side with tfquant on the same model and calibration data.

TFLiteConverter (TF 2.21) is the reference for full-integer PTQ; `compare` converts with both,
then measures accuracy, agreement, conversion wall time, file size and latency in one run.
"""

import contextlib
import io
import time

def calibration_batches(x, num_batches: int, batch_size: int) -> list:
    """The calibration batches both converters see (cycling through x if it is short)."""
    import numpy as np
    batches = []
    for i in range(num_batches):
        idx = np.arange(i * batch_size, (i + 1) * batch_size) % len(x)
        batches.append(x[idx].astype(np.float32))
    return batches


TFLITE_CONVERTER_MODES = ("int8", "int16x8", "weights_only")


def convert_with_tflite_converter(model, batches, mode: str = "int8") -> bytes:
    """TFLiteConverter's PTQ of a Keras model from calibration `batches` (a list of arrays):
    "int8" (full integer, float I/O), "int16x8" (int16 activations, int8 weights) or
    "weights_only" (dynamic range; no batches needed)."""
    import tensorflow as tf

    if mode not in TFLITE_CONVERTER_MODES:
        raise ValueError(f"mode must be one of {TFLITE_CONVERTER_MODES}, got {mode!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode != "weights_only":
        converter.representative_dataset = lambda: ([b] for b in batches)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the whole SavedModel signature
        return converter.convert()


def tflite_converter_ptq(model, calibration, mode: str = "int8", batch_size: int = 32) -> bytes:
    """convert_with_tflite_converter with one calibration array cut into batches."""
    batches = [calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)]
    return convert_with_tflite_converter(model, batches, mode)


def convert_with_tfquant(model, batches) -> bytes:
    import tfquant
    recipe = tfquant.Recipe(num_calibration_batches=len(batches))
    return tfquant.convert(model, batches, recipe, show_progress=False)


def _timed(fn, repeats):
    import numpy as np
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


def compare(model, x_calibration, x_test, y_test, *, num_batches=100, batch_size=32, runs=100,
            repeats=1, log=print) -> dict:
    """Convert `model` with both converters and measure them side by side."""
    import numpy as np

    from tfquant import runtime

    batches = calibration_batches(x_calibration, num_batches, batch_size)
    float_pred = np.argmax(model.predict(x_test, verbose=0), axis=-1)
    log(f"  converting with tfquant ({repeats}x) ...")
    ours, ours_s = _timed(lambda: convert_with_tfquant(model, batches), repeats)
    log(f"  converting with TFLiteConverter ({repeats}x) ...")
    theirs, theirs_s = _timed(lambda: convert_with_tflite_converter(model, batches), repeats)
    ours_pred = np.argmax(runtime.Runner(ours).predict(x_test), axis=-1)
    theirs_pred = np.argmax(runtime.Runner(theirs).predict(x_test), axis=-1)
    log("  timing both on ai-edge-litert ...")
    sample = x_test[:1]
    ours_ms = runtime.median_latency_ms(ours, sample, runs=runs)[0]
    theirs_ms = runtime.median_latency_ms(theirs, sample, runs=runs)[0]
    return {
        "float_accuracy": float(np.mean(float_pred == y_test)),
        "tfquant": {"accuracy": float(np.mean(ours_pred == y_test)),
                    "agreement_with_float": float(np.mean(ours_pred == float_pred)),
                    "seconds": ours_s, "bytes": len(ours), "latency_ms": ours_ms},
        "tflite_converter": {"accuracy": float(np.mean(theirs_pred == y_test)),
                             "agreement_with_float": float(np.mean(theirs_pred == float_pred)),
                             "seconds": theirs_s, "bytes": len(theirs),
                             "latency_ms": theirs_ms},
        "agreement_between": float(np.mean(ours_pred == theirs_pred)),
        "model": ours, "peer_model": theirs,
        "correct": {"tfquant": ours_pred == y_test, "tflite_converter": theirs_pred == y_test},
    }


def format_table(rows: dict) -> str:
    """Markdown table of compare() results, one row per model and converter."""
    lines = ["| model | converter | accuracy | agree w/ float | agree tfquant/TFLite | "
             "convert s | speed-up | size KB | latency ms (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        speedup = r["tflite_converter"]["seconds"] / r["tfquant"]["seconds"]
        lines.append(f"| {name} | float (Keras) | {r['float_accuracy']:.4f} | | | | | | |")
        for key, label, ratio in (("tfquant", "tfquant", speedup),
                                  ("tflite_converter", "TFLiteConverter", 1.0)):
            c = r[key]
            lines.append(
                f"| {name} | {label} | {c['accuracy']:.4f} | {c['agreement_with_float']:.4f} | "
                f"{r['agreement_between']:.4f} | {c['seconds']:.2f} | {ratio:.1f}x | "
                f"{c['bytes'] / 1024:.1f} | {c['latency_ms']:.3f} |")
    return "\n".join(lines)


def tfmot_qat(model_tf_keras, x_train, y_train, *, epochs: int, learning_rate: float,
              batch_size: int = 64, seed: int | None = None,
              loss: str = "sparse_categorical_crossentropy") -> tuple:
    """tfmot's quantization-aware training of a tf_keras model, exported by TFLiteConverter.
    The batches come in the order of tfquant.qat.epoch_orders(len(x_train), epochs, seed),
    the order tfquant.qat.fine_tune uses for the same seed.

    Returns (int8 flatbuffer bytes, the trained tfmot model).
    """
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from tfquant.qat.training import epoch_orders, fit_in_order

    if seed is not None:
        tf_keras.utils.set_random_seed(seed)
    qat_model = tfmot.quantization.keras.quantize_model(model_tf_keras)
    qat_model.compile(tf_keras.optimizers.Adam(learning_rate), loss)
    fit_in_order(qat_model, x_train, y_train, epoch_orders(len(x_train), epochs, seed),
                 batch_size=batch_size)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert(), qat_model


def depthwise_weight_scales(tflite_model: bytes) -> list:
    """Number of weight scales of each DEPTHWISE_CONV_2D (1 = per-tensor) and whether
    a per-channel quantization runs along the channel axis (3) of the [1, kh, kw, c] filter."""
    from tfquant import flatbuffer, ops
    layout = ops.weight_layout("DEPTHWISE_CONV_2D")
    found = []
    for op in flatbuffer.operators(tflite_model):
        if op.name != "DEPTHWISE_CONV_2D":
            continue
        weights = op.inputs[layout.weight_input]
        scales = weights.scale.size
        found.append((scales, None if scales <= 1 else
                      weights.quantized_dimension == layout.output_axis))
    return found


def keras_gptq(model, tokens, bits: int = 4):
    """A copy of a token model (Embedding first, then a chain of layers) after Keras 3's own
    GPTQ (model.quantize("gptq"), one group per output, asymmetric: Keras's defaults but
    group_size=-1, the form TFLite's per-channel weights hold), calibrated on `tokens`
    [samples, length]; None for models Keras's GPTQ does not apply to (it reads token ids
    through an Embedding: image and signal models)."""
    import keras
    from keras.quantizers import GPTQConfig
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    chain = all(len(layer._inbound_nodes) == 1 for layer in layers)
    if not layers or type(layers[0]).__name__ != "Embedding" or not chain:
        return None
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = [layer for layer in copy.layers if type(layer).__name__ != "InputLayer"]

    class _Identity:  # the token ids are given already tokenized
        @staticmethod
        def tokenize(sample):
            return sample

    config = GPTQConfig(
        dataset=list(tokens), tokenizer=_Identity(), weight_bits=bits,
        num_samples=len(tokens), sequence_length=tokens.shape[1], group_size=-1,
        quantization_layer_structure={"pre_block_layers": [layers[0]],
                                      "sequential_blocks": [keras.Sequential(layers[1:])]})
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bar
        copy.quantize("gptq", config=config)
    return copy
