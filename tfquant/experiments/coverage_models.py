"""The fixed list of models tfquant-coverage converts (tools/coverage.py), with their data.

Each entry has a name, a kind and a builder. "random" models are keras.applications networks
with random weights (weights=None; batch-norm statistics set from photo crops, as in
tfquant.models.applications); "trained" models are mtcnn's three face-detection nets, the
basic-pitch note transcription model (its float .tflite and its SavedModel), the MNIST-5k zoo
models shipped with tfquant, and a layer zoo trained here on first use (ViT-tiny,
Conv1D + LSTM, U-Net, Embedding classifier; weights cached under ~/.cache/tfquant/coverage or
$TFQUANT_COVERAGE_CACHE).

A builder `build(draws, test_sets, size, log)` returns a Case: the model (a Keras model, float
.tflite bytes or a SavedModel directory), `draws` calibration draws (each a list of batches: a
different random subset of one calibration pool), `test_sets` test inputs disjoint from the
calibration pool and from each other, and their labels for classifiers. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

# keras.applications builder -> the module holding its preprocess_input.
# Smallest input side each application accepts (32 for the others).
MIN_SIZE = {"InceptionV3": 75, "Xception": 71}
MTCNN = {"mtcnn_pnet": ("PNet", "pnet", 48), "mtcnn_rnet": ("RNet", "rnet", 24),
         "mtcnn_onet": ("ONet", "onet", 48)}
ZOO = ("mobilenet_v1", "mobilenet_v2", "resnet")
LAYER_ZOO = ("vit_tiny", "conv1d_lstm", "unet_denoiser", "embedding_classifier")
SEED = 0


@dataclasses.dataclass
class Case:
    """A model and its data (see the module docstring)."""

    model: object
    calibration: list  # draws, each a list of batches
    tests: list  # test input arrays, one per test set
    labels: Optional[list] = None  # label arrays, one per test set (classifiers)


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "random" or "trained"
    build: Callable  # (draws, test_sets, size, log) -> Case


def calibration_draws(pool: np.ndarray, draws: int, count: int, batch_size: int) -> list:
    """`draws` different random subsets of `count` samples of `pool`, each cut into batches."""
    result = []
    for d in range(draws):
        chosen = pool[np.sort(np.random.default_rng(SEED + 100 + d).choice(
            len(pool), min(count, len(pool)), replace=False))]
        result.append([chosen[i:i + batch_size] for i in range(0, len(chosen), batch_size)])
    return result


def split(x: np.ndarray, parts: int, size: int) -> list:
    """`parts` disjoint consecutive slices of `size` samples (fewer if x is short)."""
    size = min(size, len(x) // parts)
    return [x[i * size:(i + 1) * size] for i in range(parts)]


# -- keras.applications (random weights) --------------------------------------------------------

def _applications() -> tuple:
    from tfquant.models import applications
    return tuple(applications.PREPROCESSING)


def application(name: str, size: int, statistics_images: int = 16):
    """keras.applications `name` (weights=None, 10 classes) at `size` (raised to the smallest
    size it accepts), batch-norm statistics from preprocessed photo crops."""
    from tfquant.models import applications
    return applications.build_application(name, max(size, MIN_SIZE.get(name, 32)), classes=10,
                                          statistics_images=statistics_images, seed=SEED)


def _application_case(name):
    def build(draws, test_sets, size, log):
        from tfquant.models import applications
        from tfquant.models.data import load_photo_crops
        model = application(name, size)
        side = model.input_shape[1]
        log(f"{name}: {side}x{side}, {model.count_params():,} parameters")
        pool = applications.preprocess(name, load_photo_crops(64, side, seed=1))
        tests = applications.preprocess(name, load_photo_crops(16 * test_sets, side, seed=2))
        return Case(model, calibration_draws(pool, draws, 32, 8), split(tests, test_sets, 16))
    return build


# -- mtcnn (trained face detection) -------------------------------------------------------------

def _mtcnn_case(name):
    class_name, weights, side = MTCNN[name]

    def build(draws, test_sets, size, log):
        import importlib

        from mtcnn.utils.tensorflow import load_weights

        from tfquant.models.data import load_photo_crops
        module = importlib.import_module(f"mtcnn.network.{weights}")
        model = getattr(module, class_name)()
        model.build()
        model.set_weights(load_weights(f"{weights}.lz4"))

        def normalized(count, seed):  # mtcnn's own normalization of RGB in [0, 255]
            return (load_photo_crops(count, side, seed=seed) - 127.5) / 128.0

        pool, tests = normalized(64, 1), normalized(32 * test_sets, 2)
        model(pool[:1])
        return Case(model, calibration_draws(pool, draws, 32, 8), split(tests, test_sets, 32))
    return build


# -- basic-pitch (trained note transcription) ---------------------------------------------------

def basic_pitch_paths() -> tuple:
    """(float .tflite path, SavedModel directory) of basic-pitch's ICASSP 2022 model."""
    import importlib.util
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None:
        raise ImportError("basic-pitch is not installed")
    base = os.path.join(os.path.dirname(spec.origin), "saved_models", "icassp_2022")
    return os.path.join(base, "nmp.tflite"), os.path.join(base, "nmp")


def harmonic_tones(count: int, samples: int, seed: int, rate: int = 22050) -> np.ndarray:
    """`count` clips (count, samples, 1): 1-3 notes each, f0 uniform in 100-800 Hz with
    5 decaying harmonics, random phases, onsets and peak level, plus faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    clips = np.zeros((count, samples), np.float64)
    for clip in clips:
        for _ in range(rng.integers(1, 4)):
            f0, onset = rng.uniform(100, 800), rng.uniform(0, 0.6 * t[-1])
            envelope = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(0.5, 3)), 0.0)
            for h in range(1, 6):
                clip += envelope * rng.uniform(0.5, 1) / h * np.sin(
                    2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
        clip += rng.normal(0, 0.005, samples)
        clip *= rng.uniform(0.2, 0.9) / np.abs(clip).max()
    return clips[..., None].astype(np.float32)


def _basic_pitch_case(saved_model: bool):
    def build(draws, test_sets, size, log):
        from ai_edge_litert.interpreter import Interpreter
        tflite_path, saved_model_dir = basic_pitch_paths()
        with open(tflite_path, "rb") as f:
            data = f.read()
        samples = int(Interpreter(model_content=data).get_input_details()[0]["shape"][1])
        log(f"basic-pitch: {samples} samples at 22050 Hz per clip")
        pool, tests = harmonic_tones(16, samples, 1), harmonic_tones(4 * test_sets, samples, 2)
        return Case(saved_model_dir if saved_model else data,
                    calibration_draws(pool, draws, 8, 2), split(tests, test_sets, 4))
    return build


# -- MNIST-5k zoo (shipped weights) -------------------------------------------------------------

def _mnist_split(test_sets):
    from tfquant.models.data import load_mnist_5k
    mnist = load_mnist_5k()
    per_set = len(mnist.x_test) // test_sets
    return mnist, split(mnist.x_test, test_sets, per_set), split(mnist.y_test, test_sets,
                                                                  per_set)


def _zoo_case(name):
    def build(draws, test_sets, size, log):
        from tfquant.models import pretrained
        mnist, tests, labels = _mnist_split(test_sets)
        return Case(pretrained.load(name), calibration_draws(mnist.x_train, draws, 128, 32),
                    tests, labels)
    return build


# -- layer zoo (trained here, cached) -----------------------------------------------------------

def cache_dir() -> str:
    return os.environ.get("TFQUANT_COVERAGE_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "tfquant", "coverage"))


def trained(name, build_model, x, y, loss, epochs, log):
    """build_model() with weights trained on (x, y) for `epochs` (seed 0), cached by name,
    loss and epochs (and used only if the shapes still fit)."""
    import keras
    keras.utils.set_random_seed(SEED)
    model = build_model()
    path = os.path.join(cache_dir(), f"{name}-{loss}-{epochs}.npz")
    if os.path.exists(path):
        with np.load(path) as stored:
            values = [stored[f"w{i:03d}"] for i in range(len(stored.files))]
        if [v.shape for v in values] == [w.shape for w in model.get_weights()]:
            log(f"{name}: trained weights from {path}")
            model.set_weights(values)
            return model
    log(f"{name}: training for {epochs} epochs (seed {SEED}) ...")
    model.compile(keras.optimizers.Adam(1e-3), loss)
    progress = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log(
        f"{name}: epoch {epoch + 1}/{epochs}, loss {logs['loss']:.4f}"))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=[progress], shuffle=True)
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp.npz"
    np.savez(tmp, **{f"w{i:03d}": w for i, w in enumerate(model.get_weights())})
    os.replace(tmp, path)
    return model


def vit_tiny():
    """ViT-tiny for 28x28x1: 4x4 patches (Conv2D, stride 4) -> 49 tokens of 32, two pre-norm
    encoder blocks (LayerNormalization, 2-head MultiHeadAttention, gelu MLP), no position
    embedding: the Flatten + Dense head sees the token positions (about 0.91 top-1)."""
    import keras
    L = keras.layers
    x = inputs = keras.Input((28, 28, 1))
    x = L.Reshape((49, 32))(L.Conv2D(32, 4, strides=4)(x))
    for _ in range(2):
        h = L.LayerNormalization()(x)
        x = L.Add()([x, L.MultiHeadAttention(num_heads=2, key_dim=16)(h, h)])
        h = L.Dense(64, activation="gelu")(L.LayerNormalization()(x))
        x = L.Add()([x, L.Dense(32)(h)])
    x = L.Flatten()(L.LayerNormalization()(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(x), name="vit_tiny")


def conv1d_lstm():
    """Sequence classifier: Conv1D, MaxPooling1D, LSTM(32), Dense softmax over 4 classes.
    The LSTM is unrolled: Keras 3's LSTM loop with a dynamic batch does not lower to TFLite
    builtins (TensorListReserve needs a static element shape) for any converter."""
    import keras
    L = keras.layers
    inputs = keras.Input((64, 2))
    x = L.MaxPooling1D(2)(L.Conv1D(16, 5, activation="relu")(inputs))
    return keras.Model(inputs, L.Dense(4, activation="softmax")(L.LSTM(32, unroll=True)(x)),
                       name="conv1d_lstm")


def unet_denoiser():
    """Small U-Net for 28x28x1: two downsamplings, UpSampling2D and Conv2DTranspose with skip
    concatenations, sigmoid output."""
    import keras
    L = keras.layers
    inputs = keras.Input((28, 28, 1))
    d1 = L.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    d2 = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(d1))
    b = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(d2))
    u2 = L.Concatenate()([L.UpSampling2D()(b), d2])
    u2 = L.Conv2D(16, 3, padding="same", activation="relu")(u2)
    u1 = L.Concatenate()([L.Conv2DTranspose(16, 3, strides=2, padding="same")(u2), d1])
    u1 = L.Conv2D(16, 3, padding="same", activation="relu")(u1)
    return keras.Model(inputs, L.Conv2D(1, 1, activation="sigmoid")(u1), name="unet_denoiser")


def embedding_classifier(vocabulary: int = 64, length: int = 24):
    """Token classifier: Embedding(64, 16), mean pooling, Dense relu, Dense softmax (4)."""
    import keras
    L = keras.layers
    inputs = keras.Input((length,), dtype="int32")
    x = L.GlobalAveragePooling1D()(L.Embedding(vocabulary, 16)(inputs))
    x = L.Dense(32, activation="relu")(x)
    return keras.Model(inputs, L.Dense(4, activation="softmax")(x), name="embedding_classifier")


def synthetic_sequences(count: int, seed: int) -> tuple:
    """(x (count, 64, 2), y): class c is a noisy sinusoid of (c + 1) * 2 cycles per 64 steps
    (random phase and amplitude) in channel 0 and its square in channel 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, count)
    t = np.arange(64) / 64
    wave = rng.uniform(0.5, 2, (count, 1)) * np.sin(
        2 * np.pi * (y[:, None] + 1) * 2 * t + rng.uniform(0, 2 * np.pi, (count, 1)))
    wave += rng.normal(0, 0.4, wave.shape)
    return np.stack([wave, wave ** 2], -1).astype(np.float32), y


def synthetic_tokens(count: int, seed: int, vocabulary: int = 64, length: int = 24) -> tuple:
    """(token ids (count, length) int32, y): uniform tokens, a quarter of them replaced by
    tokens from the 8-token block of class y."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, count)
    x = rng.integers(0, vocabulary, (count, length))
    mask = rng.random((count, length)) < 0.25
    block = y[:, None] * 8 + rng.integers(0, 8, (count, length))
    return np.where(mask, block, x).astype(np.int32), y


def _noisy(images, seed):
    noise = np.random.default_rng(seed).normal(0, 0.3, images.shape)
    return np.clip(images + noise, 0, 1).astype(np.float32)


def _layer_zoo_case(name):
    def build(draws, test_sets, size, log):
        if name in ("vit_tiny", "unet_denoiser"):
            mnist, tests, labels = _mnist_split(test_sets)
            if name == "vit_tiny":
                model = trained(name, vit_tiny, mnist.x_train, mnist.y_train,
                                 "sparse_categorical_crossentropy", 5, log)
                pool = mnist.x_train
            else:
                pool = _noisy(mnist.x_train, 1)
                model = trained(name, unet_denoiser, pool, mnist.x_train,
                                 "binary_crossentropy", 3, log)
                tests, labels = [_noisy(t, 2 + i) for i, t in enumerate(tests)], None
            return Case(model, calibration_draws(pool, draws, 128, 32), tests, labels)
        make_data, build_model = {"conv1d_lstm": (synthetic_sequences, conv1d_lstm),
                                  "embedding_classifier": (synthetic_tokens,
                                                           embedding_classifier)}[name]
        x, y = make_data(3000, 1)
        model = trained(name, build_model, x, y, "sparse_categorical_crossentropy", 5, log)
        x_test, y_test = make_data(200 * test_sets, 2)
        return Case(model, calibration_draws(x, draws, 128, 32), split(x_test, test_sets, 200),
                    split(y_test, test_sets, 200))
    return build


def layer_zoo_models() -> list:
    """The layer-zoo entries (trained on first use, then loaded from the cache)."""
    return [Entry(name, "trained", _layer_zoo_case(name)) for name in LAYER_ZOO]


def models() -> list:
    """Every entry, in report order."""
    return ([Entry(name, "random", _application_case(name)) for name in _applications()]
            + [Entry(name, "trained", _mtcnn_case(name)) for name in MTCNN]
            + [Entry("basic_pitch_tflite", "trained", _basic_pitch_case(False)),
               Entry("basic_pitch_saved_model", "trained", _basic_pitch_case(True))]
            + [Entry(f"mnist_{name}", "trained", _zoo_case(name)) for name in ZOO]
            + layer_zoo_models())


NAMES = tuple(entry.name for entry in models())
