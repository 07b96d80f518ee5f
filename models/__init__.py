"""Reference models and data for tfquant: small MobileNet / ResNet classifiers, a nested-model
fixture, keras.applications networks with data-derived batch-norm statistics, offline MNIST-5k,
8x8-digits and photo-crop data, and a seeded training loop. Every builder
takes `keras_module` (the `keras` or `tf_keras` module) and builds the same architecture in
both."""

from .applications import build_application
from .data import Dataset, load_digits, load_mnist_5k, load_photo_crops
from .mobilenet_v1 import build_mobilenet_v1
from .mobilenet_v2 import build_mobilenet_v2
from .nested import build_nested_model
from .resnet import build_resnet
from .train import DEFAULT_EPOCHS, keras_module_of, resolve_keras, train_classifier

__all__ = [
    "DEFAULT_EPOCHS",
    "build_application",
    "Dataset",
    "build_mobilenet_v1",
    "build_mobilenet_v2",
    "build_nested_model",
    "build_resnet",
    "keras_module_of",
    "load_digits",
    "load_mnist_5k",
    "load_photo_crops",
    "resolve_keras",
    "train_classifier",
]
