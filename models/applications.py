"""keras.applications networks without downloaded weights, made realistic enough to quantize.

`weights=None` gives random convolutions whose activations shrink or explode with depth under
the default batch-norm statistics (mean 0, variance 1); a few layers then have ranges no int8
kernel can represent. Setting every batch norm's statistics from real images (one training-mode
pass at momentum 0) gives a network whose activations look like a trained one's in scale, which
is what quantization and the delegate's bit-exactness tests need. Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

from .data import load_photo_crops

# Builder name -> the keras.applications module holding its preprocess_input.
PREPROCESSING = {
    "MobileNet": "mobilenet", "MobileNetV2": "mobilenet_v2", "ResNet50": "resnet50",
    "ResNet50V2": "resnet_v2", "DenseNet121": "densenet", "InceptionV3": "inception_v3",
    "Xception": "xception", "VGG16": "vgg16", "MobileNetV3Small": "mobilenet_v3",
    "MobileNetV3Large": "mobilenet_v3", "EfficientNetB0": "efficientnet",
    "EfficientNetV2B0": "efficientnet_v2", "NASNetMobile": "nasnet",
    "ConvNeXtTiny": "convnext",
}


def preprocess(name: str, images: np.ndarray) -> np.ndarray:
    """The application's own input preprocessing of RGB images in [0, 255]."""
    import keras
    module = getattr(keras.applications, PREPROCESSING[name])
    return np.asarray(module.preprocess_input(images.copy()), np.float32)


def build_application(name: str, size: int = 96, classes: int = 10, include_top: bool = True,
                      statistics_images: int = 16, seed: int = 0):
    """keras.applications `name` (weights=None, size x size x 3) with batch-norm statistics set
    from `statistics_images` preprocessed photo crops."""
    import keras
    if name not in PREPROCESSING:
        raise ValueError(f"unknown application {name!r}; choose from {sorted(PREPROCESSING)}")
    keras.utils.set_random_seed(seed)
    builder = getattr(keras.applications, name)
    model = builder(weights=None, input_shape=(size, size, 3), classes=classes,
                    include_top=include_top)
    images = preprocess(name, load_photo_crops(statistics_images, size, seed=seed + 1000))
    batch_norms = [layer for layer in model._flatten_layers(include_self=False)
                   if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer in batch_norms:
        layer.momentum = 0.99
    return model
