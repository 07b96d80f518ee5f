"""The DSP delegate on whole models: the MNIST zoo architectures tfquant emits and
keras.applications MobileNet, MobileNetV2 and ResNet50 (weights=None, 96x96, calibrated on
image-like data), converted by tfquant. On every runtime the delegate claims every node and
every output element equals the reference kernels'."""

import keras
import numpy as np
import pytest

import tfquant
from test_delegate_ops import RUNTIMES, check_exact
from tfquant.models import data, zoo

_models = {}


def image_like(n, size, channels, seed):
    """Smooth random images in [-1, 1] (low-frequency noise, upsampled), like preprocessed
    photos rather than white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, (n, size // 8 + 1, size // 8 + 1, channels))
    images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :size, :size]
    images = images + rng.normal(0, 0.1, images.shape)
    return np.clip(images, -1, 1).astype(np.float32)


def zoo_model(name):
    """The architecture trained for one epoch on MNIST-5k (an untrained one can have layers
    whose int8 params the reference kernels themselves reject)."""
    if name not in _models:
        mnist = data.load_mnist_5k()
        model = zoo.trained_model(name, mnist, epochs=1)
        _models[name] = (tfquant.convert(model, mnist.x_train[:512], show_progress=False),
                         mnist.x_test[:16])
    return _models[name]


def application_model(name, include_top=True):
    key = (name, include_top)
    if key not in _models:
        keras.utils.set_random_seed(0)
        builder = getattr(keras.applications, name)
        model = builder(weights=None, input_shape=(96, 96, 3), classes=10,
                        include_top=include_top)
        calibration = image_like(16, 96, 3, 0)
        # Batch-norm statistics from the data (one training-mode pass with momentum 0), so the
        # random network keeps live activations instead of collapsing some layers to zero.
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.0
        model(calibration, training=True)
        _models[key] = (tfquant.convert(model, calibration, show_progress=False),
                        image_like(2, 96, 3, 1))
    return _models[key]


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "resnet"])
@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_zoo_model_bit_exact(name, runtime_name, capfd):
    model, x = zoo_model(name)
    elements, claimed, total = check_exact(model, x, capfd, runtime_name)
    print(f"{name} on {runtime_name}: {elements} elements equal, claimed {claimed}/{total}")


@pytest.mark.parametrize("name", ["MobileNet", "MobileNetV2", "ResNet50"])
@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_keras_application_bit_exact(name, runtime_name, capfd):
    # The classifier (softmax output) and the headless network (its last feature map, so that
    # thousands of elements are compared rather than ten per image).
    for include_top in (True, False):
        model, x = application_model(name, include_top)
        elements, claimed, total = check_exact(model, x, capfd, runtime_name)
        print(f"{name}{'' if include_top else ' (no top)'} on {runtime_name}: {elements} "
              f"elements equal, claimed {claimed}/{total}")
