"""A small classifier made of nested models, to exercise converters' model flattening."""

from __future__ import annotations

from types import ModuleType
from typing import Optional, Sequence

from .train import resolve_keras


def build_nested_model(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
                       keras_module: Optional[ModuleType] = None):
    """Build a Functional model that uses two sub-models as layers.

    Outer graph: Rescaling ([0, 1] to [-1, 1]), ZeroPadding2D, the nested Sequential
    "conv_block" (Conv2D + BatchNormalization + ReLU), AveragePooling2D, the nested Functional
    "branches" (a 1x1 Conv2D + ReLU branch and a SeparableConv2D + ReLU branch joined by
    Concatenate), AveragePooling2D, Reshape, Flatten, Dense with relu, Dense and a separate
    softmax Activation. `keras_module` is `keras` (Keras 3, the default) or `tf_keras`.
    """
    k = resolve_keras(keras_module)
    layers = k.layers
    height, width, channels = (int(d) for d in input_shape)

    conv_block = k.Sequential([
        k.Input(shape=(height + 4, width + 4, channels), name="conv_block_input"),
        layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_block_conv"),
        layers.BatchNormalization(momentum=0.9, name="conv_block_bn"),
        layers.ReLU(name="conv_block_relu"),
    ], name="conv_block")

    branch_input = k.Input(shape=((height + 4) // 2, (width + 4) // 2, 8),
                           name="branches_input")
    pointwise = layers.Conv2D(8, 1, padding="same", name="branch_pointwise")(branch_input)
    pointwise = layers.ReLU(name="branch_pointwise_relu")(pointwise)
    separable = layers.SeparableConv2D(8, 3, padding="same",
                                       name="branch_separable")(branch_input)
    separable = layers.ReLU(name="branch_separable_relu")(separable)
    merged = layers.Concatenate(axis=-1, name="branch_concat")([pointwise, separable])
    branches = k.Model(branch_input, merged, name="branches")

    inputs = k.Input(shape=(height, width, channels), name="input")
    x = layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = layers.ZeroPadding2D(2, name="pad")(x)
    x = conv_block(x)
    x = layers.AveragePooling2D(2, name="avg_pool1")(x)
    x = branches(x)
    x = layers.AveragePooling2D(2, padding="same", name="avg_pool2")(x)
    pooled_height, pooled_width, pooled_channels = (int(d) for d in x.shape[1:])
    x = layers.Reshape((pooled_height * pooled_width, pooled_channels), name="reshape")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="relu", name="fc")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", name="softmax")(x)
    return k.Model(inputs, outputs, name="nested")
