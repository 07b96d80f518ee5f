"""Zoo models trained offline on MNIST-5k, shipped as weight files (models/weights/).

Training the MNIST configurations takes minutes per model on a laptop CPU; tests, the demo and
the experiment tools that need "a trained model" load these instead, and get the same weights
on every machine (training rounds differently on AVX2, AVX-512 and aarch64 CPUs). Kernels are
stored in float16 (half the size; the model is then the trained model with its kernels rounded
to float16, which is what it is evaluated as), everything else in float32.

Regenerate (and print the accuracies) with:  python -m tfquant.models.pretrained
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from . import zoo

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
EPOCHS = zoo.DEFAULT_EPOCHS
SEED = 0
# Arrays with at least this many values (the kernels) are stored as float16.
_HALF_FROM = 1024


def _paths(name: str) -> tuple:
    base = os.path.join(WEIGHTS_DIR, f"{name}_mnist5k")
    return base + ".npz", base + ".json"


def info(name: str) -> dict:
    """How the shipped weights of `name` were made (epochs, seed, accuracy, versions)."""
    with open(_paths(name)[1]) as f:
        return json.load(f)


def load(name: str, keras_module=None):
    """The zoo architecture `name` (MNIST configuration, 28x28x1) with its shipped MNIST-5k
    weights, built with Keras 3 (default) or tf_keras."""
    weights_path, _ = _paths(name)
    if not os.path.exists(weights_path):
        raise FileNotFoundError(f"no shipped weights for {name!r} ({weights_path}); "
                                "regenerate them with python -m tfquant.models.pretrained")
    model = zoo.build(name, keras_module=keras_module, input_shape=(28, 28, 1))
    with np.load(weights_path) as stored:
        values = [stored[f"w{i:03d}"].astype(np.float32) for i in range(len(stored.files))]
    expected = [tuple(w.shape) for w in model.get_weights()]
    if [v.shape for v in values] != expected:
        raise ValueError(f"the shipped weights of {name!r} do not fit the current "
                         "architecture; regenerate them with python -m tfquant.models.pretrained")
    model.set_weights(values)
    return model


def trained(name: str, dataset=None, epochs: Optional[int] = None, keras_module=None,
            log=None):
    """The zoo model `name` trained on MNIST-5k: the shipped weights when `epochs` is None,
    else trained here for `epochs` (seed 0; minutes per model)."""
    if epochs is None:
        return load(name, keras_module)
    if log is not None:
        log(f"training {name} on MNIST-5k for {epochs} epoch(s) ...")
    if dataset is None:
        from .data import load_mnist_5k
        dataset = load_mnist_5k()
    return zoo.trained_model(name, dataset, epochs=epochs, seed=SEED,
                             keras_module=keras_module)


def save(name: str, model, accuracy: float, epochs: int, seed: int):
    """Store `model`'s weights (kernels as float16) and how they were made."""
    import keras
    import tensorflow as tf
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    weights_path, info_path = _paths(name)
    arrays = {f"w{i:03d}": (w.astype(np.float16) if w.size >= _HALF_FROM else w)
              for i, w in enumerate(model.get_weights())}
    np.savez_compressed(weights_path, **arrays)
    with open(info_path, "w") as f:
        json.dump({"architecture": name, "config": zoo.MNIST_CONFIGS[name], "epochs": epochs,
                   "seed": seed, "test_accuracy_float32": round(float(accuracy), 4),
                   "tensorflow": tf.__version__, "keras": keras.__version__}, f, indent=1)
        f.write("\n")


def main(names: Optional[list] = None):
    """Train every zoo architecture on MNIST-5k and store the weights (minutes per model)."""
    from .data import load_mnist_5k
    dataset = load_mnist_5k()
    for name in names or sorted(zoo.BUILDERS):
        print(f"training {name} for {EPOCHS} epochs ...", flush=True)
        model = zoo.trained_model(name, dataset, epochs=EPOCHS, seed=SEED, verbose=2)
        accuracy = np.mean(np.argmax(model.predict(dataset.x_test, verbose=0), 1)
                           == dataset.y_test)
        save(name, model, accuracy, EPOCHS, SEED)
        reloaded = load(name)
        half = np.mean(np.argmax(reloaded.predict(dataset.x_test, verbose=0), 1)
                       == dataset.y_test)
        print(f"{name}: test accuracy {accuracy:.4f} (float32), {half:.4f} as shipped "
              "(float16 kernels)", flush=True)


if __name__ == "__main__":
    import sys
    import tfquant  # noqa: F401  (tflite-runtime before tensorflow)
    main(sys.argv[1:] or None)
