"""The models of tfquant-qat-families: one per layer family that QAT gained beyond CNNs, each
small, trained here on MNIST-5k or synthetic sequences (cached like the coverage layer zoo),
and buildable in Keras 3 and in tf_keras (for tfmot's QAT, which runs on tf_keras only).

- vit_tiny: patch embedding, LayerNormalization, MultiHeadAttention, gelu MLP (MNIST-5k).
- conv1d_gru: Conv1D and a GRU (synthetic sinusoid classes); QAT keeps the GRU float.
- unet_denoiser: Conv2DTranspose, UpSampling2D, skip concatenations (denoising MNIST-5k).
- efficientnet_se: MBConv blocks (expansion, depthwise, squeeze-excite Multiply, silu,
  batch norms) on MNIST-5k.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from tfquant.experiments import coverage_models

FAMILIES = ("vit_tiny", "conv1d_gru", "unet_denoiser", "efficientnet_se")


@dataclasses.dataclass
class Family:
    name: str
    build: Callable  # build(K) -> model, K the keras or tf_keras module
    train: tuple  # (x, y) the float model and QAT train on
    test: tuple  # (x, y) evaluated
    loss: str
    epochs: int  # float training
    metric: str  # "top-1" (classifiers) or "SQNR dB" (the denoiser, against clean images)

    def score(self, predicted, expected) -> float:
        """The family's metric of `predicted` outputs against the test targets."""
        if self.metric == "top-1":
            return float(np.mean(np.argmax(predicted, -1) == expected))
        from tfquant import spec
        return spec.sqnr_db(expected, predicted)


def vit_tiny(K):
    L = K.layers
    x = inputs = K.Input((28, 28, 1))
    x = L.Reshape((49, 32))(L.Conv2D(32, 4, strides=4)(x))
    for _ in range(2):
        h = L.LayerNormalization()(x)
        x = L.Add()([x, L.MultiHeadAttention(num_heads=2, key_dim=16)(h, h)])
        h = L.Dense(64, activation="gelu")(L.LayerNormalization()(x))
        x = L.Add()([x, L.Dense(32)(h)])
    x = L.Flatten()(L.LayerNormalization()(x))
    return K.Model(inputs, L.Dense(10, activation="softmax")(x), name="vit_tiny")


def conv1d_gru(K):
    L = K.layers
    inputs = K.Input((64, 2))
    x = L.MaxPooling1D(2)(L.Conv1D(16, 5, activation="relu")(inputs))
    return K.Model(inputs, L.Dense(4, activation="softmax")(L.GRU(32, unroll=True)(x)),
                   name="conv1d_gru")


def unet_denoiser(K):
    L = K.layers
    inputs = K.Input((28, 28, 1))
    d1 = L.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    d2 = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(d1))
    b = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(d2))
    u2 = L.Concatenate()([L.UpSampling2D()(b), d2])
    u2 = L.Conv2D(16, 3, padding="same", activation="relu")(u2)
    u1 = L.Concatenate()([L.Conv2DTranspose(16, 3, strides=2, padding="same")(u2), d1])
    u1 = L.Conv2D(16, 3, padding="same", activation="relu")(u1)
    return K.Model(inputs, L.Conv2D(1, 1, activation="sigmoid")(u1), name="unet_denoiser")


def efficientnet_se(K):
    """Stem, three MBConv blocks (1x1 expansion, 3x3 depthwise, squeeze-excite, 1x1
    projection, residual where shapes allow), head: about 30k weights. Batch norms with
    momentum 0.9: a few hundred training steps must be enough for their moving statistics."""
    L = K.layers

    def batch_norm():
        return L.BatchNormalization(momentum=0.9)

    def mbconv(x, filters, stride, expand=4):
        channels = x.shape[-1]
        h = L.Activation("silu")(batch_norm()(L.Conv2D(channels * expand, 1,
                                                                 use_bias=False)(x)))
        h = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(h)
        h = L.Activation("silu")(batch_norm()(h))
        s = L.GlobalAveragePooling2D(keepdims=True)(h)
        s = L.Conv2D(max(channels // 4, 4), 1, activation="silu")(s)
        s = L.Conv2D(channels * expand, 1, activation="sigmoid")(s)
        h = L.Multiply()([h, s])
        h = batch_norm()(L.Conv2D(filters, 1, use_bias=False)(h))
        return L.Add()([x, h]) if stride == 1 and channels == filters else h

    inputs = K.Input((28, 28, 1))
    x = L.Activation("silu")(batch_norm()(
        L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)))
    x = mbconv(x, 16, 1)
    x = mbconv(x, 24, 2)
    x = mbconv(x, 24, 1)
    x = L.GlobalAveragePooling2D()(x)
    return K.Model(inputs, L.Dense(10, activation="softmax")(x), name="efficientnet_se")


def family(name: str, log=print) -> tuple:
    """(Family, float Keras 3 model trained with seed 0, cached)."""
    from tfquant.models.data import load_mnist_5k
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; use one of {FAMILIES}")
    build = {"vit_tiny": vit_tiny, "conv1d_gru": conv1d_gru, "unet_denoiser": unet_denoiser,
             "efficientnet_se": efficientnet_se}[name]
    if name == "conv1d_gru":
        f = Family(name, build, coverage_models.synthetic_sequences(3000, 1),
                   coverage_models.synthetic_sequences(1000, 2),
                   "sparse_categorical_crossentropy", 5, "top-1")
    else:
        mnist = load_mnist_5k()
        if name == "unet_denoiser":
            f = Family(name, build, (_noisy(mnist.x_train, 1), mnist.x_train),
                       (_noisy(mnist.x_test, 2), mnist.x_test), "binary_crossentropy", 3,
                       "SQNR dB")
        else:
            f = Family(name, build, (mnist.x_train, mnist.y_train),
                       (mnist.x_test, mnist.y_test), "sparse_categorical_crossentropy", 5,
                       "top-1")
    import keras
    model = coverage_models.trained(f"qat_family_{name}", lambda: build(keras), *f.train,
                                    f.loss, f.epochs, log)
    return f, model


def _noisy(images, seed):
    noise = np.random.default_rng(seed).normal(0, 0.3, images.shape)
    return np.clip(images + noise, 0, 1).astype(np.float32)


def tf_keras_copy(f: Family, model) -> tuple:
    """(tf_keras model with the same weights, None) or (None, the reason it cannot be made)."""
    try:
        import tf_keras
        copy = f.build(tf_keras)
        copy.set_weights(model.get_weights())
        return copy, None
    except Exception as e:  # noqa: BLE001  the reason is a result
        return None, first_line(e)


def first_line(error: BaseException, limit: Optional[int] = 200) -> str:
    text = str(error).strip()
    line = next((s.strip() for s in text.splitlines() if s.strip()), type(error).__name__)
    return line[:limit]
