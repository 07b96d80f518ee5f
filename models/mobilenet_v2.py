"""MobileNet-v2-style classifier (Sandler et al. 2018), scaled down for small images."""

from __future__ import annotations

from types import ModuleType
from typing import Optional, Sequence

from .train import resolve_keras

# (expansion factor, output channels at alpha=1, repeats, first stride) of MobileNet-v2.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
# The same, one (expansion, channels, stride) entry per inverted residual block (17 blocks).
MOBILENET_V2_BLOCKS = tuple(
    (expansion, channels, stride if repeat == 0 else 1)
    for expansion, channels, repeats, stride in MOBILENET_V2_STAGES
    for repeat in range(repeats)
)
STEM_FILTERS = 32

DEFAULT_ALPHA = 0.5
DEFAULT_DEPTH = 7
DEFAULT_EXPANSION = 6
DEFAULT_HEAD_FILTERS = 128
DEFAULT_DROPOUT = 0.1
# Faster than the Keras default (0.99) so the moving statistics track the weights on short runs.
BN_MOMENTUM = 0.9


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, losing at most 10% (as MobileNet-v2)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def build_mobilenet_v2(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
                       alpha: float = DEFAULT_ALPHA, depth: int = DEFAULT_DEPTH,
                       expansion: int = DEFAULT_EXPANSION,
                       head_filters: Optional[int] = DEFAULT_HEAD_FILTERS,
                       dropout: float = DEFAULT_DROPOUT, stem_strides: int = 2,
                       keras_module: Optional[ModuleType] = None):
    """Build a MobileNet-v2-style Functional model that outputs softmax probabilities.

    Stem: 3x3 Conv2D (no bias, stride `stem_strides`) + BatchNormalization + ReLU6. Then the
    first `depth` (1..17) of MobileNet-v2's inverted residual blocks: 1x1 expand Conv2D + BN +
    ReLU6 (skipped where the paper's expansion factor is 1, otherwise `expansion` times the
    input channels), 3x3 DepthwiseConv2D + BN + ReLU6, 1x1 project Conv2D + BN (linear), and an
    Add with the block input when the stride is 1 and the channel counts match. Channel counts
    are scaled by `alpha` and rounded to multiples of 8. Head: an optional 1x1 Conv2D + BN +
    ReLU6 with `head_filters` channels (None to omit), GlobalAveragePooling2D, Dropout, Dense
    and a separate softmax Activation. 'same' padding throughout, so any input size works.
    `keras_module` is `keras` (Keras 3, the default) or `tf_keras` (Keras 2).
    """
    if not 1 <= depth <= len(MOBILENET_V2_BLOCKS):
        raise ValueError(f"depth must be in 1..{len(MOBILENET_V2_BLOCKS)}, got {depth}")
    k = resolve_keras(keras_module)
    layers = k.layers

    def conv_bn(x, filters, kernel_size, name, strides=1, relu=True):
        x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                          use_bias=False, name=name)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        return layers.ReLU(max_value=6.0, name=f"{name}_relu")(x) if relu else x

    inputs = k.Input(shape=tuple(input_shape), name="input")
    x = conv_bn(inputs, make_divisible(STEM_FILTERS * alpha), 3, "stem_conv",
                strides=stem_strides)
    channels = make_divisible(STEM_FILTERS * alpha)

    for index, (paper_expansion, base_channels, strides) in enumerate(
            MOBILENET_V2_BLOCKS[:depth], start=1):
        prefix = f"block{index}"
        out_channels = make_divisible(base_channels * alpha)
        block_input = x
        if paper_expansion != 1:
            x = conv_bn(x, channels * expansion, 1, f"{prefix}_expand")
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                   name=f"{prefix}_dw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_dw_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"{prefix}_dw_relu")(x)
        x = conv_bn(x, out_channels, 1, f"{prefix}_project", relu=False)
        if strides == 1 and channels == out_channels:
            x = layers.Add(name=f"{prefix}_add")([block_input, x])
        channels = out_channels

    if head_filters:
        x = conv_bn(x, head_filters, 1, "head_conv")
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", name="softmax")(x)
    return k.Model(inputs, outputs, name="mobilenet_v2")
