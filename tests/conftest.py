"""Shared fixtures, session-scoped so that each data set is loaded and each zoo model trained
once per test run. tfquant is imported first: it loads tflite-runtime before TensorFlow so
that all three runtimes work in one process (see tfquant/__init__.py).

Markers (setup.cfg): `slow` (training, compiling, long experiments; `make test-fast` skips
them), `delegate` (the C++ delegate), `peers` (TFLiteConverter / tfmot / AI Edge Quantizer).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import tfquant  # noqa: E402,F401  (must precede tensorflow)

_TRAINED = {}


@pytest.fixture(scope="session")
def mnist():
    """MNIST-5k (4000 train / 1000 test, 28x28x1 in [0, 1])."""
    from tfquant.models import data
    return data.load_mnist_5k()


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits."""
    from tfquant.models import data
    return data.load_digits()


@pytest.fixture(scope="session")
def pretrained():
    """pretrained("mobilenet_v1"): the zoo architecture with the MNIST-5k weights shipped in
    tfquant.models.pretrained (loaded once per run and name; do not train or modify it)."""
    from tfquant.models import pretrained as shipped
    loaded = {}

    def load(name: str, keras_module=None):
        key = (name, getattr(keras_module, "__name__", "keras"))
        if key not in loaded:
            loaded[key] = shipped.load(name, keras_module)
        return loaded[key]
    return load


@pytest.fixture(scope="session")
def small_mobilenet_v1(mnist):
    """build_mobilenet_v1()'s default (small, 75k parameters) trained 4 epochs on MNIST-5k
    (seed 0): the float checkpoint the QAT tests fine-tune (do not train or modify it)."""
    import keras

    from tfquant.models import mobilenet_v1, train
    keras.utils.set_random_seed(0)
    model = mobilenet_v1.build_mobilenet_v1()
    train.train_classifier(model, mnist, epochs=4, verbose=0)
    return model


def trained_zoo_model(name: str, epochs: int = 1, seed: int = 0, keras_module=None):
    """The zoo architecture `name` trained on MNIST-5k: trained once per test run for each
    (name, epochs, seed, Keras). Callers must not train or modify the model they get."""
    from tfquant.models import data, zoo
    key = (name, epochs, seed, getattr(keras_module, "__name__", "keras"))
    if key not in _TRAINED:
        _TRAINED[key] = zoo.trained_model(name, data.load_mnist_5k(), epochs=epochs,
                                          seed=seed, keras_module=keras_module)
    return _TRAINED[key]


@pytest.fixture(scope="session")
def zoo_model():
    """trained_zoo_model as a fixture: zoo_model("mobilenet_v1", epochs=1)."""
    return trained_zoo_model
