"""Named architectures of the model zoo, and training them on MNIST-5k with fixed seeds.

The MNIST configurations are sized like the paper's networks in one respect that matters for
quantized model size: most parameters sit in convolutions with hundreds of weights per output
channel, so per-channel quantization params are a small part of the int8 file (MobileNet-v1 224
is 0.26x of float; these are 0.27x-0.29x). The builders' own defaults are smaller and faster.
"""

from typing import Optional

from tfquant.models import mobilenet_v1, mobilenet_v2, resnet, train

BUILDERS = {
    "mobilenet_v1": mobilenet_v1.build_mobilenet_v1,
    "mobilenet_v2": mobilenet_v2.build_mobilenet_v2,
    "resnet": resnet.build_resnet,
}

# Builder arguments used for MNIST-5k (demo, tests, experiments).
MNIST_CONFIGS = {
    "mobilenet_v1": {"alpha": 1.0, "depth": 8},                         # 0.82 M parameters
    "mobilenet_v2": {"alpha": 1.0, "depth": 14, "head_filters": 1280},  # 0.94 M parameters
    "resnet": {},                                                       # 0.08 M parameters
}
DEFAULT_EPOCHS = 12


def build(name: str, keras_module=None, **kwargs):
    """An untrained model of the named architecture in its MNIST configuration; `kwargs`
    override the configuration (see BUILDERS for the builders' arguments)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(BUILDERS)}")
    return BUILDERS[name](keras_module=keras_module, **{**MNIST_CONFIGS[name], **kwargs})


def trained_model(name: str, dataset, epochs: Optional[int] = None, seed: int = 0,
                  keras_module=None, verbose: int = 0):
    """The named architecture trained on `dataset`: the same weights for the same seed."""
    train.resolve_keras(keras_module).utils.set_random_seed(seed)
    model = build(name, keras_module=keras_module, input_shape=dataset.x_train.shape[1:])
    train.train_classifier(model, dataset, epochs=epochs or DEFAULT_EPOCHS, seed=seed,
                           verbose=verbose)
    return model


def tf_keras_copy(name: str, model, probe):
    """The tf_keras twin of Keras 3 zoo model `model` (same architecture and weights), for the
    peers that need tf_keras (tfmot); checked to compute the same outputs on `probe`."""
    import numpy as np
    import tf_keras

    copy = build(name, keras_module=tf_keras, input_shape=tuple(model.input_shape[1:]))
    copy.set_weights(model.get_weights())
    differs = np.abs(copy.predict(probe, verbose=0) - model.predict(probe, verbose=0)).max()
    if differs > 1e-4:
        raise RuntimeError(f"the tf_keras copy of {name} differs from the Keras 3 model by "
                           f"{differs}")
    return copy

