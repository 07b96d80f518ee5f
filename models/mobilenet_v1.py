"""MobileNet-v1-style classifier (Howard et al. 2017), scaled down for small images."""

from __future__ import annotations

from types import ModuleType
from typing import Optional, Sequence

from .train import resolve_keras

# (pointwise filters at alpha=1, depthwise stride) of MobileNet-v1's 13 separable blocks.
MOBILENET_V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
STEM_FILTERS = 32

DEFAULT_ALPHA = 0.5
DEFAULT_DEPTH = 6
DEFAULT_DROPOUT = 0.1
# Faster than the Keras default (0.99) so the moving statistics track the weights on short runs.
BN_MOMENTUM = 0.9


def _filters(base: int, alpha: float) -> int:
    return max(8, int(round(base * alpha)))


def build_mobilenet_v1(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
                       alpha: float = DEFAULT_ALPHA, depth: int = DEFAULT_DEPTH,
                       dropout: float = DEFAULT_DROPOUT, stem_strides: int = 2,
                       keras_module: Optional[ModuleType] = None):
    """Build a MobileNet-v1-style Functional model that outputs softmax probabilities.

    Stem: 3x3 Conv2D (no bias, stride `stem_strides`) + BatchNormalization + ReLU6. Then the
    first `depth` (1..13) of MobileNet-v1's depthwise-separable blocks, each 3x3
    DepthwiseConv2D + BN + ReLU6 followed by 1x1 Conv2D + BN + ReLU6, with filter counts scaled
    by the width multiplier `alpha`. Head: GlobalAveragePooling2D, Dropout, Dense, and a
    separate softmax Activation. All convolutions use 'same' padding, so any input size works.
    `keras_module` is `keras` (Keras 3, the default) or `tf_keras` (Keras 2).
    """
    if not 1 <= depth <= len(MOBILENET_V1_BLOCKS):
        raise ValueError(f"depth must be in 1..{len(MOBILENET_V1_BLOCKS)}, got {depth}")
    k = resolve_keras(keras_module)
    layers = k.layers

    inputs = k.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(_filters(STEM_FILTERS, alpha), 3, strides=stem_strides, padding="same",
                      use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(max_value=6.0, name="stem_relu")(x)

    for index, (filters, strides) in enumerate(MOBILENET_V1_BLOCKS[:depth], start=1):
        prefix = f"block{index}"
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                   name=f"{prefix}_dw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_dw_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{prefix}_dw_relu")(x)
        x = layers.Conv2D(_filters(filters, alpha), 1, padding="same", use_bias=False,
                          name=f"{prefix}_pw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_pw_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{prefix}_pw_relu")(x)

    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", name="softmax")(x)
    return k.Model(inputs, outputs, name="mobilenet_v1")
