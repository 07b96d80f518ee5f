"""ResNet-style classifier with basic residual blocks (He et al. 2016), sized for small images."""

from __future__ import annotations

from types import ModuleType
from typing import Optional, Sequence

from .train import resolve_keras

# (filters at alpha=1, stride of the stage's first block) of the three stages.
RESNET_STAGES = ((32, 1), (64, 2), (128, 2))

DEFAULT_ALPHA = 0.5
DEFAULT_BLOCKS_PER_STAGE = (1, 1, 1)
DEFAULT_DROPOUT = 0.1
# Faster than the Keras default (0.99) so the moving statistics track the weights on short runs.
BN_MOMENTUM = 0.9


def build_resnet(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
                 alpha: float = DEFAULT_ALPHA,
                 blocks_per_stage: Sequence[int] = DEFAULT_BLOCKS_PER_STAGE,
                 dropout: float = DEFAULT_DROPOUT, keras_module: Optional[ModuleType] = None):
    """Build a small ResNet-style Functional model that outputs softmax probabilities.

    Stem: 3x3 Conv2D (no bias) + BatchNormalization + ReLU, then 2x2 MaxPooling2D. Then up to
    three stages of 32, 64, 128 filters (times `alpha`), the later two starting with stride 2,
    with `blocks_per_stage[i]` basic blocks each: two 3x3 Conv2D + BN, the first followed by
    ReLU, a 1x1 Conv2D + BN projection shortcut when the shape changes (identity otherwise),
    Add, then ReLU. Head: GlobalAveragePooling2D, Dropout, Dense and a separate softmax
    Activation. 'same' padding throughout, so any input size works. `keras_module` is `keras`
    (Keras 3, the default) or `tf_keras` (Keras 2).
    """
    if not 1 <= len(blocks_per_stage) <= len(RESNET_STAGES) or min(blocks_per_stage) < 1:
        raise ValueError(f"blocks_per_stage must be 1..{len(RESNET_STAGES)} positive counts, "
                         f"got {tuple(blocks_per_stage)}")
    k = resolve_keras(keras_module)
    layers = k.layers

    def conv_bn(x, filters, kernel_size, strides, name):
        x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                          use_bias=False, name=name)(x)
        return layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)

    inputs = k.Input(shape=tuple(input_shape), name="input")
    channels = max(8, int(round(RESNET_STAGES[0][0] * alpha)))
    x = conv_bn(inputs, channels, 3, 1, "stem_conv")
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(pool_size=2, strides=2, padding="same", name="stem_pool")(x)

    for stage, ((base_filters, stage_strides), num_blocks) in enumerate(
            zip(RESNET_STAGES, blocks_per_stage), start=1):
        filters = max(8, int(round(base_filters * alpha)))
        for block in range(1, num_blocks + 1):
            prefix = f"stage{stage}_block{block}"
            strides = stage_strides if block == 1 else 1
            shortcut = x
            if strides != 1 or channels != filters:
                shortcut = conv_bn(x, filters, 1, strides, f"{prefix}_shortcut")
            x = conv_bn(x, filters, 3, strides, f"{prefix}_conv1")
            x = layers.ReLU(name=f"{prefix}_conv1_relu")(x)
            x = conv_bn(x, filters, 3, 1, f"{prefix}_conv2")
            x = layers.Add(name=f"{prefix}_add")([shortcut, x])
            x = layers.ReLU(name=f"{prefix}_relu")(x)
            channels = filters

    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", name="softmax")(x)
    return k.Model(inputs, outputs, name="resnet")
