"""Named architectures of the model zoo, and training them on MNIST-5k with fixed seeds."""

from typing import Optional

from tfquant.models import mobilenet_v1, mobilenet_v2, resnet, train

BUILDERS = {
    "mobilenet_v1": mobilenet_v1.build_mobilenet_v1,
    "mobilenet_v2": mobilenet_v2.build_mobilenet_v2,
    "resnet": resnet.build_resnet,
}


def build(name: str, keras_module=None, **kwargs):
    """An untrained model of the named architecture (see BUILDERS)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(BUILDERS)}")
    return BUILDERS[name](keras_module=keras_module, **kwargs)


def trained_model(name: str, dataset, epochs: Optional[int] = None, seed: int = 0,
                  keras_module=None, verbose: int = 0):
    """The named architecture trained on `dataset` (deterministic for a given seed)."""
    model = build(name, keras_module=keras_module, input_shape=dataset.x_train.shape[1:])
    kwargs = {} if epochs is None else {"epochs": epochs}
    train.train_classifier(model, dataset, seed=seed, verbose=verbose, **kwargs)
    return model
