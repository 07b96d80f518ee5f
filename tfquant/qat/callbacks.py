"""The Keras callback that drives the quantization-aware training schedule."""

from __future__ import annotations

from typing import Optional

import keras

from tfquant.qat.activation_quantizer import ActivationQuantizer
from tfquant.qat.batch_norm_folding import FoldedBatchNorm
from tfquant.qat.constant_operand import ConstantOperand
from tfquant.qat.embedding import QuantizedEmbedding


def quant_layers(model, kinds=(ActivationQuantizer, FoldedBatchNorm, ConstantOperand,
                               QuantizedEmbedding)) -> list:
    """The layers of `model` (nested ones included) that are instances of `kinds`."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, kinds)]


class QuantizationScheduler(keras.callbacks.Callback):
    """Runs the paper's schedule during `model.fit`, in optimizer steps (the step is
    `initial_step` + the optimizer's iteration count, so a run restored by
    keras.callbacks.BackupAndRestore, or a model fitted again, resumes the schedule where it
    was, on every worker alike):

    - quant_delay: float forward pass (fake quantization off) until this step;
    - freeze_bn_delay: from this step on, folded batch norms use and keep their moving
      statistics (paper 3.2.2); None never freezes;
    - freeze_ranges_delay: from this step on, activation ranges stop updating; None never.

    At each epoch end it adds the state and every activation range to the Keras logs
    (so History and TensorBoard record them): `qat/quantizing`, `qat/bn_frozen`,
    `qat/range/<layer>/min|max`.
    """

    def __init__(self, quant_delay: int = 0, freeze_bn_delay: Optional[int] = None,
                 freeze_ranges_delay: Optional[int] = None, initial_step: int = 0):
        super().__init__()
        for name, value in (("quant_delay", quant_delay), ("freeze_bn_delay", freeze_bn_delay),
                            ("freeze_ranges_delay", freeze_ranges_delay)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.quant_delay = quant_delay
        self.freeze_bn_delay = freeze_bn_delay
        self.freeze_ranges_delay = freeze_ranges_delay
        self.initial_step = self.step = initial_step
        self._applied = None  # (model, state) last written to the layers

    def _state(self):
        quantizing = self.step >= self.quant_delay
        bn_frozen = self.freeze_bn_delay is not None and self.step >= self.freeze_bn_delay
        ranges_frozen = (self.freeze_ranges_delay is not None
                         and self.step >= self.freeze_ranges_delay)
        return quantizing, bn_frozen, ranges_frozen

    def apply(self, model):
        """Set every quantization layer of `model` to the schedule's state at `self.step`."""
        quantizing, bn_frozen, ranges_frozen = self._state()
        for layer in quant_layers(model):
            layer.quantize.assign(float(quantizing))
            if isinstance(layer, FoldedBatchNorm):
                layer.frozen.assign(float(bn_frozen))
            elif isinstance(layer, ActivationQuantizer):
                layer.freeze_range.assign(float(ranges_frozen))

    def on_train_begin(self, logs=None):
        self._applied = None

    def _optimizer_step(self) -> Optional[int]:
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        return None if iterations is None else int(keras.ops.convert_to_numpy(iterations))

    def on_train_batch_begin(self, batch, logs=None):
        done = self._optimizer_step()
        if done is not None:
            self.step = self.initial_step + done
        # Writing every layer's flags costs a few milliseconds per step; the state changes at
        # most three times in a run.
        state = (id(self.model), self._state())
        if state != self._applied:
            self.apply(self.model)
            self._applied = state

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        quantizing, bn_frozen, _ = self._state()
        logs["qat/quantizing"] = float(quantizing)
        logs["qat/bn_frozen"] = float(bn_frozen)
        for layer in quant_layers(self.model):
            if isinstance(layer, ActivationQuantizer):
                low, high = layer.applied_range()
                logs[f"qat/range/{layer.name}/min"] = low
                logs[f"qat/range/{layer.name}/max"] = high
