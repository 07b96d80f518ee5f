"""A Keras callback that measures, while a QAT model trains, the int8 TFLite model it would
export: every `every` epochs the model is exported in memory (its learned ranges, no
calibration), run on the validation data with ai-edge-litert, and `int8/<metric>` plus
`int8/agreement` (top-1 agreement of the int8 model with the QAT Keras model) are added to the
epoch's logs, so History, keras.callbacks.TensorBoard and CSVLogger record them. Put it
before those callbacks in the list: Keras hands the same logs to each callback in order."""

from __future__ import annotations

import time
from typing import Optional

import keras
import numpy as np


def top1_accuracy(labels: np.ndarray, outputs: np.ndarray) -> float:
    """Top-1 accuracy against integer labels or one-hot rows."""
    labels = np.asarray(labels)
    if labels.ndim == outputs.ndim and labels.shape[-1] == outputs.shape[-1] \
            and outputs.shape[-1] > 1:
        labels = np.argmax(labels, -1)
    return float(np.mean(np.argmax(outputs, -1) == labels.reshape(-1)))


def mean_squared_error(targets: np.ndarray, outputs: np.ndarray) -> float:
    return float(np.mean((np.asarray(targets, np.float64).reshape(outputs.shape)
                          - outputs) ** 2))


METRICS = {"accuracy": top1_accuracy, "mse": mean_squared_error}


class Int8Metrics(keras.callbacks.Callback):
    """Adds int8 metrics of the exported model to the logs every `every` epochs.

    Args:
      validation_data: (inputs, targets); inputs as the model takes them.
      metrics: names in METRICS, or {name: fn(targets, outputs) -> float}.
      every: evaluate every this many epochs (and after the last epoch of each fit).
      runtime: "litert" (ai-edge-litert), "tflite_runtime" or "tf".
      log_dir: where to write, at each evaluation, a TensorBoard histogram of every folded
        layer's weight quantization error (`int8/weight_error/<layer>`); None writes none.

    `last_model` keeps the bytes last evaluated, `history` one dict per evaluation.
    """

    def __init__(self, validation_data, metrics=("accuracy",), every: int = 1,
                 runtime: str = "litert", log_dir: Optional[str] = None):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be (inputs, targets)")
        if isinstance(metrics, dict):
            self.metrics = dict(metrics)
        else:
            unknown = [m for m in metrics if m not in METRICS]
            if unknown:
                raise ValueError(f"unknown int8 metric(s) {unknown}; use {sorted(METRICS)} or "
                                 "pass {name: fn(targets, outputs)}")
            self.metrics = {m: METRICS[m] for m in metrics}
        self.inputs, self.targets = validation_data
        self.every, self.runtime, self.log_dir = every, runtime, log_dir
        self._writer = None
        self.last_model: Optional[bytes] = None
        self.history: list = []
        self._epochs: Optional[int] = None

    def on_train_begin(self, logs=None):
        self._epochs = (self.params or {}).get("epochs")

    def on_epoch_end(self, epoch, logs=None):
        last = self._epochs is not None and epoch + 1 == self._epochs
        if logs is None or ((epoch + 1) % self.every and not last):
            return
        results = self.evaluate()
        logs.update(results)
        self.history.append({"epoch": epoch, **results})
        if self.log_dir:
            self.write_weight_errors(epoch)

    def write_weight_errors(self, step: int):
        """Histograms of each folded layer's weight quantization error, to log_dir."""
        import tensorflow as tf

        from tfquant.qat.batch_norm_folding import FoldedBatchNorm
        from tfquant.qat.callbacks import quant_layers
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        try:
            with self._writer.as_default(step=step):
                for layer in quant_layers(self.model, (FoldedBatchNorm,)):
                    tf.summary.histogram(f"int8/weight_error/{layer.name}",
                                         layer.weight_quantization_error())
        except tf.errors.OpError as e:
            raise RuntimeError(f"cannot write weight histograms to {self.log_dir!r}: "
                               f"{e.message}") from None
        except Exception as e:  # tf.summary needs the tensorboard package
            if type(e).__name__ != "TBNotInstalledError":
                raise
            raise RuntimeError("Int8Metrics(log_dir=...) writes histograms with TensorBoard, "
                               "which is not installed: pip install tensorboard") from None
        self._writer.flush()

    def evaluate(self) -> dict:
        """Export the model now and measure it: {"int8/<metric>": value, "int8/agreement": a,
        "int8/export_seconds": s}."""
        import tfquant
        from tfquant import runtime
        start = time.perf_counter()
        self.last_model = tfquant.convert(self.model, show_progress=False)
        seconds = time.perf_counter() - start
        got = runtime.Runner(self.last_model, self.runtime).predict(self.inputs)
        got = np.asarray(got[0] if isinstance(got, list) else got)
        reference = self.model.predict(self.inputs, verbose=0)
        reference = np.asarray(reference[0] if isinstance(reference, list) else reference)
        results = {f"int8/{name}": fn(self.targets, got) for name, fn in self.metrics.items()}
        results["int8/agreement"] = float(np.mean(np.argmax(got, -1)
                                                  == np.argmax(reference, -1)))
        results["int8/export_seconds"] = seconds
        return results
