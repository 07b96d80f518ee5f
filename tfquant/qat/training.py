"""Fine-tuning a float model with quantization-aware training (paper section 3.2)."""

from __future__ import annotations

import keras

from tfquant.qat.callbacks import QuantizationScheduler
from tfquant.qat.rewrite import QatRecipe, quantize_model


def fine_tune(model, x, y, recipe: QatRecipe | None = None, *, epochs: int = 3,
              learning_rate: float = 1e-4, batch_size: int = 64,
              freeze_bn_delay: int | None = None, seed: int | None = None, verbose: int = 0):
    """QAT from a float checkpoint: rewrite `model` with `recipe`, fine-tune on (x, y) with
    Adam and sparse categorical cross-entropy (quantization on from the first step; batch
    norms frozen after `freeze_bn_delay` steps, never when None). Returns the QAT model, ready
    for tfquant.convert when its scheme is exportable."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    qat_model = quantize_model(model, recipe or QatRecipe())
    qat_model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
    schedule = QuantizationScheduler(quant_delay=0, freeze_bn_delay=freeze_bn_delay)
    qat_model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                  callbacks=[schedule])
    return qat_model
