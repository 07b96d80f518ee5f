"""Fine-tuning a float model with quantization-aware training (paper section 3.2)."""

from __future__ import annotations

import keras
import numpy as np

from tfquant.qat.callbacks import QuantizationScheduler
from tfquant.qat.rewrite import QatRecipe, quantize_model


def epoch_orders(num_samples: int, epochs: int, seed: int | None) -> list:
    """The sample order of each fine-tuning epoch: permutations drawn from numpy's generator
    seeded with `seed`. Keras 3 and tf_keras shuffle with different random streams; taking the
    order from here gives tfquant's fine-tuning and a peer's
    (tfquant.experiments.peers.tfmot_qat) the same batches in the same order for the same
    seed, so their comparison is paired."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(num_samples) for _ in range(epochs)]


def fit_in_order(model, x, y, orders: list, *, batch_size: int, verbose: int = 0,
                 callbacks=None):
    """model.fit over (x, y), one epoch per permutation in `orders` (no shuffling by Keras);
    works for Keras 3 and tf_keras models."""
    x, y = np.asarray(x), np.asarray(y)
    for epoch, order in enumerate(orders):
        model.fit(x[order], y[order], batch_size=batch_size, epochs=epoch + 1,
                  initial_epoch=epoch, shuffle=False, verbose=verbose, callbacks=callbacks)


def fine_tune(model, x, y, recipe: QatRecipe | None = None, *, epochs: int = 3,
              learning_rate: float = 1e-4, batch_size: int = 64,
              freeze_bn_delay: int | None = None, seed: int | None = None, verbose: int = 0,
              loss: str = "sparse_categorical_crossentropy", calibration=None):
    """QAT from a float checkpoint: rewrite `model` with `recipe`, fine-tune on (x, y) with
    Adam and `loss` (quantization on from the first step; batch norms frozen after
    `freeze_bn_delay` steps, never when None; batches in the order of
    epoch_orders(len(x), epochs, seed)). With `calibration` (inputs), the activation ranges
    start from the float model's ranges on it (calibrate_activation_ranges) instead of the
    recipe's initial range. Returns the QAT model, ready for tfquant.convert when its scheme
    is exportable."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    qat_model = quantize_model(model, recipe or QatRecipe())
    if calibration is not None:
        from tfquant.qat.simulation import calibrate_activation_ranges
        calibrate_activation_ranges(qat_model, calibration, show_progress=False)
    qat_model.compile(keras.optimizers.Adam(learning_rate), loss)
    schedule = QuantizationScheduler(quant_delay=0, freeze_bn_delay=freeze_bn_delay)
    fit_in_order(qat_model, x, y, epoch_orders(len(x), epochs, seed), batch_size=batch_size,
                 verbose=verbose, callbacks=[schedule])
    return qat_model
