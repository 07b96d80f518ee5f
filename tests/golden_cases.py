"""The conversions whose exact bytes are pinned by test_golden_bytes.py (and recorded by
`python tests/golden_cases.py`).

Every input is deterministic on any x86 or aarch64 machine: weights come from numpy's seeded
generator (uniform draws: integer arithmetic and one multiply, no libm), calibration runs on
TFLite's reference kernels (Recipe(calibration_kernels="reference")), and the data is MNIST-5k
or seeded uniform noise. Two kinds of input come from TensorFlow's own float arithmetic, whose
last bits may depend on the CPU: the float .tflite files TFLiteConverter writes and the folded
weights of a QAT model. For those cases the recording also holds a fingerprint of that input;
on a machine where the fingerprint differs the case is skipped with the reason, never failed.

Only the public API is used here, so that the same cases run before and after any internal
change: a difference in the bytes is a behaviour change (or needs a listed explanation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from typing import Callable, Optional

import numpy as np

GOLDEN_FILE = os.path.join(os.path.dirname(__file__), "golden", "hashes.json")
CALIBRATION_SAMPLES = 64


def sha256(data: bytes) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def seed_weights(model, seed: int):
    """Give every float variable of `model` a seeded value of a sensible scale for its role
    (He-uniform kernels, batch-norm statistics near 1 and 0). Returns the model."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        dtype = np.dtype(getattr(variable.dtype, "name", None) or str(variable.dtype))
        if dtype.kind != "f":
            continue
        name = variable.name.split("/")[-1].split(":")[0]
        shape = tuple(int(d) for d in variable.shape)
        if name in ("moving_variance", "gamma", "variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif "kernel" in name and len(shape) >= 2:
            if name == "depthwise_kernel" or (len(shape) == 4 and shape[-1] == 1 and
                                              "depthwise" in variable.name):
                fan_in = int(np.prod(shape[:2]))
            else:
                fan_in = int(np.prod(shape[:-1]))
            bound = np.sqrt(6.0 / max(fan_in, 1))
            value = rng.uniform(-bound, bound, shape)
        else:
            value = rng.uniform(-0.2, 0.2, shape)
        variable.assign(value.astype(dtype))
    return model


def fresh_session():
    """Reset Keras' global name counters (Keras 3 and tf_keras): a source's layer and tensor
    names must not depend on how many models the process built before it."""
    import keras
    import tf_keras
    keras.backend.clear_session()
    tf_keras.backend.clear_session()


def mnist_calibration():
    from tfquant.models import data
    return data.load_mnist_5k().x_train[:CALIBRATION_SAMPLES]


def noise(shape, seed: int = 0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (CALIBRATION_SAMPLES,) + tuple(shape)
                                               ).astype(np.float32)


@dataclasses.dataclass
class Source:
    """A model to convert, its calibration data and (for inputs made by TensorFlow's float
    arithmetic) the fingerprint of what TensorFlow computed."""

    model: object
    calibration: np.ndarray
    fingerprint: Optional[str] = None


# -- sources ----------------------------------------------------------------------------------

def _zoo(name):
    def build():
        import keras
        from tfquant.models import zoo
        keras.utils.set_random_seed(0)
        model = seed_weights(zoo.build(name, input_shape=(28, 28, 1)), seed=1)
        return Source(model, mnist_calibration())
    return build


def _every_layer(module_name):
    def build():
        import importlib
        sys.path.insert(0, os.path.dirname(__file__))
        from layer_models import every_layer_model
        K = importlib.import_module(module_name)
        model = seed_weights(every_layer_model(K), seed=2)
        return Source(model, noise((16, 16, 3), 3) * 0.5 + 0.5)
    return build


def _nested():
    import tf_keras
    from tfquant.models import nested
    model = seed_weights(nested.build_nested_model(keras_module=tf_keras), seed=4)
    return Source(model, mnist_calibration())


def _application(name, size, **kwargs):
    def build():
        import keras
        keras.utils.set_random_seed(0)
        builder = getattr(keras.applications, name)
        model = builder(weights=None, input_shape=(size, size, 3), classes=10, **kwargs)
        return Source(seed_weights(model, seed=5), noise((size, size, 3), 6))
    return build


def _converter_tflite(name, size, **kwargs):
    """keras.applications `name` as a float .tflite written by TFLiteConverter."""
    def build():
        import contextlib
        import io
        import tensorflow as tf
        keras_source = _application(name, size, **kwargs)()
        fresh_session()  # the converter's names count models too
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_source.model)
        with contextlib.redirect_stdout(io.StringIO()):
            data = converter.convert()
        return Source(bytes(data), keras_source.calibration, fingerprint=sha256(data))
    return build


def _sparse_fp16_tflite():
    sys.path.insert(0, os.path.dirname(__file__))
    import tflite_builders
    data, _ = tflite_builders.fp16_sparse_model(seed=0, block=1)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (CALIBRATION_SAMPLES, 4)).astype(np.float32)
    return Source(data, x)


def _tfquant_float_tflite():
    """The Keras every-layer model as float .tflite written by tfquant, read back."""
    import tfquant
    source = _every_layer("keras")()
    data = tfquant.convert(source.model, recipe=tfquant.Recipe(mode="float"))
    return Source(data, source.calibration)


def _custom_layer():
    """A Keras model with a custom layer the Keras frontend cannot read: the lowered route
    (TFLiteConverter lowers it whole; the fingerprint is that lowering)."""
    import contextlib
    import io
    import keras
    import tensorflow as tf
    L = keras.layers

    class CenterAndGate(L.Layer):
        def build(self, shape):
            self.gain = self.add_weight(shape=(shape[-1],), initializer="ones", name="gain")

        def call(self, x):
            centered = x - keras.ops.mean(x, axis=-1, keepdims=True)
            return centered * self.gain + keras.ops.abs(x)

    keras.utils.set_random_seed(0)
    x = keras.Input((12, 12, 3), name="image")
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="a")(x)
    y = CenterAndGate(name="center_and_gate")(a)
    y = L.Conv2D(4, 1, name="c")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    model = seed_weights(keras.Model(x, L.Dense(5, name="logits")(y)), seed=8)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):
        lowered = converter.convert()
    return Source(model, noise((12, 12, 3), 9), fingerprint=sha256(lowered))


def _qat(name, **qat_kwargs):
    """The QAT model of a zoo network (untrained) with seeded activation ranges. Its folded
    weights are computed by TensorFlow: they are the fingerprint."""
    def build():
        import tfquant.qat
        from tfquant.qat.simulation import set_activation_ranges
        source = _zoo(name)()
        qat = tfquant.qat.quantize_model(source.model, tfquant.qat.QatRecipe(**qat_kwargs))
        rng = np.random.default_rng(10)
        quantizers = [layer for layer in qat._flatten_layers(include_self=False, recursive=True)
                      if type(layer).__name__ == "ActivationQuantizer"]
        set_activation_ranges(qat, {q.name: (-float(rng.uniform(0.5, 8)),
                                             float(rng.uniform(0.5, 8))) for q in quantizers})
        digest = hashlib.sha256()
        for layer in qat._flatten_layers(include_self=False, recursive=True):
            if type(layer).__name__ == "FoldedBatchNorm":
                for value in (layer.folded_kernel(), layer.folded_bias()):
                    digest.update(np.ascontiguousarray(np.asarray(value, np.float32)).tobytes())
        return Source(qat, source.calibration, fingerprint=digest.hexdigest())
    return build


SOURCES: dict[str, Callable[[], Source]] = {
    "mobilenet_v1": _zoo("mobilenet_v1"),
    "mobilenet_v2": _zoo("mobilenet_v2"),
    "resnet": _zoo("resnet"),
    "every_layer_keras": _every_layer("keras"),
    "every_layer_tf_keras": _every_layer("tf_keras"),
    "nested_tf_keras": _nested,
    "app_MobileNet": _application("MobileNet", 64, alpha=0.25),
    "app_MobileNetV2": _application("MobileNetV2", 64, alpha=0.35),
    "app_ResNet50": _application("ResNet50", 32),
    "tflite_MobileNetV2": _converter_tflite("MobileNetV2", 64, alpha=0.35),
    "tflite_MobileNetV3Small": _converter_tflite("MobileNetV3Small", 64, alpha=0.75,
                                                 include_preprocessing=False),
    "tflite_sparse_fp16": _sparse_fp16_tflite,
    "tflite_tfquant_float": _tfquant_float_tflite,
    "lowered_custom_layer": _custom_layer,
    "qat_mobilenet_v1": _qat("mobilenet_v1"),
    "qat_mobilenet_v2_4bit_per_layer": _qat("mobilenet_v2", weight_bits=4,
                                            weight_per_channel=False),
}

# -- recipes ----------------------------------------------------------------------------------

_BASE = {"calibration_kernels": "reference", "num_calibration_batches": 4,
         "calibration_batch_size": 16}
RECIPES = {
    "float": {"mode": "float"},
    "int8": {},
    "int8_per_tensor": {"per_channel": False},
    "int8_per_tensor_dense": {"per_channel_dense": False},
    "int8_io": {"inference_input_type": "int8", "inference_output_type": "int8"},
    "uint8_io": {"inference_input_type": "uint8", "inference_output_type": "uint8"},
    "int16x8": {"mode": "int16x8"},
    "weights_only": {"mode": "weights_only"},
    "weights_only_per_tensor": {"mode": "weights_only", "per_channel": False},
    "float16": {"mode": "float16"},
    "int4": {"weight_bits": 4},
    "int4_litert": {"weight_bits": 4, "int4_packing": "litert"},
    "int4_containers": {"weight_bits": 4, "int4_packing": "none"},
    "cle_bias_correction": {"per_channel": False, "cross_layer_equalization": True,
                            "bias_correction": True},
    "cle_relu6": {"per_channel": False, "cross_layer_equalization": True,
                  "equalize_through_relu6": True},
    "mse": {"calibration_method": "mse", "weight_range_method": "mse"},
    "percentile": {"calibration_method": "percentile", "percentile": 99.9},
    "ema": {"calibration_method": "ema"},
}

_FULL = ["float", "int8", "int8_per_tensor", "int8_per_tensor_dense", "int8_io", "uint8_io",
         "int16x8", "weights_only", "weights_only_per_tensor", "float16", "int4", "int4_litert",
         "int4_containers", "cle_bias_correction", "cle_relu6", "mse", "percentile", "ema"]
_MAIN = ["float", "int8", "int8_per_tensor", "int16x8", "weights_only", "float16", "int4",
         "cle_bias_correction"]

_MINMAX = {"calibration_method": "minmax"}

# (source, recipe name, extra recipe fields)
CASES = (
    [("mobilenet_v1", r, {}) for r in _FULL]
    + [("mobilenet_v2", r, {}) for r in _FULL]
    + [("resnet", r, {}) for r in _FULL]
    + [("mobilenet_v1", "float_layers", {"float_layers": ("block3_pw",)}),
       ("mobilenet_v1", "int16_layers", {"int16_layers": ("block3_pw",)}),
       ("resnet", "float_layers", {"float_layers": ("stage2_block1_add",)}),
       ("resnet", "int16_layers", {"int16_layers": ("stage2_block1_add",)})]
    + [("every_layer_keras", r, {}) for r in _FULL]
    + [("every_layer_tf_keras", r, {}) for r in _MAIN]
    + [("nested_tf_keras", r, {}) for r in _MAIN]
    + [("app_MobileNet", r, {}) for r in _MAIN]
    + [("app_MobileNetV2", r, {}) for r in _MAIN]
    + [("app_ResNet50", r, {}) for r in ("float", "int8", "weights_only")]
    # Recorded on the machine whose TFLiteConverter float file they fingerprint, before
    # "auto" calibration: pinned to the then-default estimator so that they stay checkable.
    + [("tflite_MobileNetV2", r, _MINMAX) for r in _MAIN]
    + [("tflite_MobileNetV3Small", r, _MINMAX) for r in _MAIN]
    + [("tflite_sparse_fp16", r, {}) for r in _MAIN]
    + [("tflite_tfquant_float", r, {}) for r in _MAIN]
    + [("lowered_custom_layer", r, {})
       for r in ("float", "int8", "int16x8", "weights_only", "float16")]
    + [("qat_mobilenet_v1", "qat_export", {}),
       ("qat_mobilenet_v2_4bit_per_layer", "qat_export", {})]
)


def case_name(source: str, recipe: str) -> str:
    return f"{source}/{recipe}"


def convert(source: Source, recipe_name: str, extra: dict) -> bytes:
    import tfquant
    if recipe_name == "qat_export":  # learned ranges, no calibration data
        return tfquant.convert(source.model, show_progress=False)
    recipe = tfquant.Recipe(**{**_BASE, **RECIPES.get(recipe_name, {}), **extra})
    data = source.calibration if recipe.needs_calibration else None
    return tfquant.convert(source.model, data, recipe, show_progress=False)


def cases_by_source() -> dict:
    grouped = {}
    for source, recipe, extra in CASES:
        grouped.setdefault(source, []).append((recipe, extra))
    return grouped


def build_source(name: str) -> Source:
    fresh_session()
    return SOURCES[name]()


def record(path: str = GOLDEN_FILE, only: Optional[list] = None):
    """Convert every case (or those of the sources `only`) with the code as it is and write
    the hashes; cases no longer listed are dropped."""
    import platform
    result = {"machine": platform.processor() or platform.machine(), "cases": {}}
    if only and os.path.exists(path):
        with open(path) as f:
            kept = json.load(f)["cases"]
        listed = {case_name(s, r) for s, r, _ in CASES}
        result["cases"] = {k: v for k, v in kept.items()
                           if k in listed and k.split("/")[0] not in only}
    for source_name, recipes in cases_by_source().items():
        if only and source_name not in only:
            continue
        source = build_source(source_name)
        for recipe_name, extra in recipes:
            data = convert(source, recipe_name, extra)
            result["cases"][case_name(source_name, recipe_name)] = {
                "fingerprint": source.fingerprint, "sha256": sha256(data),
                "bytes": len(data)}
            print(f"{case_name(source_name, recipe_name):48s} {len(data):>10,d} "
                  f"{sha256(data)[:16]}", flush=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    result["cases"] = dict(sorted(result["cases"].items()))
    with open(path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    # python tests/golden_cases.py [--only=source1,source2]: re-record all or those sources
    import tfquant  # noqa: F401  (tflite-runtime before tensorflow)
    only = [a.split("=", 1)[1].split(",") for a in sys.argv[1:] if a.startswith("--only=")]
    record(GOLDEN_FILE, only[0] if only else None)
