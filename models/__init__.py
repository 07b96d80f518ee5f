"""Reference models and data for tfquant: small MobileNet / ResNet classifiers, a nested-model
fixture, offline MNIST-5k and 8x8-digits data sets, and a seeded training loop. Every builder
takes `keras_module` (the `keras` or `tf_keras` module) and builds the same architecture in
both."""

from .data import Dataset, load_digits, load_mnist_5k
from .mobilenet_v1 import build_mobilenet_v1
from .mobilenet_v2 import build_mobilenet_v2
from .nested import build_nested_model
from .resnet import build_resnet
from .train import DEFAULT_EPOCHS, keras_module_of, resolve_keras, train_classifier

__all__ = [
    "DEFAULT_EPOCHS",
    "Dataset",
    "build_mobilenet_v1",
    "build_mobilenet_v2",
    "build_nested_model",
    "build_resnet",
    "keras_module_of",
    "load_digits",
    "load_mnist_5k",
    "resolve_keras",
    "train_classifier",
]
