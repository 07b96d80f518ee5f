"""Seeded training of the reference classifiers, for Keras 3 and tf_keras (Keras 2) models."""

from __future__ import annotations

from types import ModuleType
from typing import Optional, Union

from .data import Dataset

DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 3e-3
DEFAULT_MAX_SHIFT = 2


def resolve_keras(keras_module: Optional[ModuleType] = None) -> ModuleType:
    """The Keras API to build with: `keras_module` if given (keras or tf_keras), else Keras 3."""
    if keras_module is None:
        import keras

        return keras
    if not hasattr(keras_module, "layers") or not hasattr(keras_module, "Model"):
        raise TypeError(f"expected the keras or tf_keras module, got {keras_module!r}")
    return keras_module


def keras_module_of(model) -> ModuleType:
    """The module (keras or tf_keras) whose Model class `model` is an instance of."""
    import keras

    if isinstance(model, keras.Model):
        return keras
    import tf_keras

    if isinstance(model, tf_keras.Model):
        return tf_keras
    raise TypeError(f"not a Keras 3 or tf_keras model: {type(model).__name__}")


def _training_batches(dataset: Dataset, epochs: int, batch_size: int, max_shift: int,
                      seed: int):
    """A tf.data pipeline of `epochs` reshuffled passes over the training set, each image
    translated by a random offset of up to `max_shift` pixels (zero filled)."""
    import tensorflow as tf

    images = tf.data.Dataset.from_tensor_slices((dataset.x_train, dataset.y_train))
    images = images.shuffle(len(dataset.x_train), seed=seed, reshuffle_each_iteration=True)
    if max_shift > 0:
        height, width, channels = dataset.input_shape
        generator = tf.random.Generator.from_seed(seed)
        paddings = [[max_shift, max_shift], [max_shift, max_shift], [0, 0]]

        def shift(image, label):
            padded = tf.pad(image, paddings)
            crop_seed = generator.make_seeds(2)[0]
            return tf.image.stateless_random_crop(padded, (height, width, channels),
                                                  seed=crop_seed), label

        images = images.map(shift)
    return images.batch(batch_size).repeat(epochs).prefetch(2)


def train_classifier(model, dataset: Dataset, epochs: int = DEFAULT_EPOCHS,
                     batch_size: int = DEFAULT_BATCH_SIZE,
                     learning_rate: float = DEFAULT_LEARNING_RATE, seed: int = 0,
                     max_shift: int = DEFAULT_MAX_SHIFT,
                     verbose: Union[int, str] = 2) -> float:
    """Fit a softmax classifier on `dataset` and return its test accuracy.

    Compiles `model` with Adam (learning rate cosine-decayed to 0 over the run) and sparse
    categorical cross-entropy on probabilities, seeds Python / NumPy / TensorFlow with `seed`
    (shuffling, augmentation and dropout; seed before building the model too for a
    reproducible initialization), and fits for `epochs`, translating each training image by a
    random offset of up to `max_shift` pixels (0 disables augmentation). `verbose` is passed
    to Keras' fit (0 silent, 1 progress bar, 2 one line per epoch).
    """
    k = keras_module_of(model)
    k.utils.set_random_seed(seed)
    steps_per_epoch = -(-len(dataset.x_train) // batch_size)
    schedule = k.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate, decay_steps=max(1, epochs * steps_per_epoch))
    model.compile(optimizer=k.optimizers.Adam(learning_rate=schedule),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=False),
                  metrics=["accuracy"])
    batches = _training_batches(dataset, epochs, batch_size, max_shift, seed)
    model.fit(batches, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
              verbose=verbose)
    _, accuracy = model.evaluate(dataset.x_test, dataset.y_test, batch_size=256, verbose=0)
    return float(accuracy)
