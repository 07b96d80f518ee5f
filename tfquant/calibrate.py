"""Calibration: run the float model on representative data and record every tensor's range.

The float TFLite export of the IR, with every activation tensor declared a model output, gives the
value of every IR tensor (flatbuffer tensor i is IR tensor i), so ranges map 1:1 to the graph
that is then quantized.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Iterable, Iterator

import numpy as np

from tfquant import ir, writer
from tfquant.errors import CalibrationDataError
from tfquant.progress import Progress

DEFAULT_NUM_BATCHES = 100
DEFAULT_BATCH_SIZE = 32
ESTIMATORS = ("minmax", "ema")


@dataclasses.dataclass
class TensorRange:
    min: float
    max: float


class _RangeEstimator:
    """Tracks min/max over batches: absolute extremes ("minmax") or an exponential moving
    average of per-batch extremes ("ema", the paper's estimator for activations)."""

    def __init__(self, method: str, decay: float):
        if method not in ESTIMATORS:
            raise ValueError(f"unknown range estimator {method!r}; use one of {ESTIMATORS}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.method, self.decay = method, decay
        self.ranges: dict[str, TensorRange] = {}

    def update(self, name: str, batch_min: float, batch_max: float):
        current = self.ranges.get(name)
        if current is None:
            self.ranges[name] = TensorRange(batch_min, batch_max)
        elif self.method == "minmax":
            current.min = min(current.min, batch_min)
            current.max = max(current.max, batch_max)
        else:
            current.min = self.decay * current.min + (1 - self.decay) * batch_min
            current.max = self.decay * current.max + (1 - self.decay) * batch_max


def _as_batches(data, batch_size: int, num_inputs: int) -> Iterator:
    """Yields batches (tuples of arrays, one per model input) from the accepted data forms:
    one array (batched by `batch_size`); a tuple/list of `num_inputs` arrays with the same
    number of samples (one per input, multi-input models); any other iterable (a list of
    batches, tf.data.Dataset, generator, or a function returning one) yielding batches."""
    if isinstance(data, np.ndarray):
        data = (data,)
    if (isinstance(data, (list, tuple)) and len(data) == num_inputs
            and all(isinstance(d, np.ndarray) for d in data)
            and len({len(d) for d in data}) == 1):
        for start in range(0, len(data[0]), batch_size):
            yield tuple(d[start:start + batch_size] for d in data)
        return
    if hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset
        data = data.as_numpy_iterator()
    elif callable(data):  # a generator function, as TFLiteConverter's representative_dataset
        data = data()
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
        raise CalibrationDataError(
            f"calibration data of type {type(data).__name__} is not supported; pass a numpy "
            "array, a tuple of arrays (one per input), a tf.data.Dataset or a generator")
    for item in data:
        if isinstance(item, dict):
            item = tuple(item.values())
        yield tuple(np.asarray(x) for x in (item if isinstance(item, (list, tuple)) else (item,)))


def _check_batch(batch: tuple, graph: ir.Graph, index: int) -> tuple:
    inputs = graph.inputs
    if len(batch) > len(inputs):
        batch = batch[:len(inputs)]  # (x, y) pairs from a labelled dataset: keep x
    if len(batch) != len(inputs):
        raise CalibrationDataError(
            f"calibration batch {index} has {len(batch)} array(s) but the model has "
            f"{len(inputs)} input(s): give one array per input")
    checked = []
    for array, name in zip(batch, inputs):
        expected = graph.tensors[name].shape
        array = np.asarray(array)
        if array.dtype.kind not in "fiu":
            raise CalibrationDataError(
                f"calibration batch {index} for input {name!r} has dtype {array.dtype}; "
                "give numeric arrays")
        array = array.astype(np.float32)
        if array.ndim == len(expected) - 1:
            array = array[None]
        if array.ndim != len(expected) or any(
                e >= 0 and e != a for e, a in zip(expected[1:], array.shape[1:])):
            raise CalibrationDataError(
                f"calibration batch {index} for input {name!r} has shape {array.shape}, but "
                f"the model expects ({', '.join('N' if d < 0 else str(d) for d in expected)})")
        if array.shape[0] == 0:
            raise CalibrationDataError(f"calibration batch {index} is empty")
        if not np.all(np.isfinite(array)):
            bad = "NaN" if np.isnan(array).any() else "inf"
            raise CalibrationDataError(
                f"calibration batch {index} for input {name!r} contains {bad} values; clean "
                "the representative data before calibrating")
        checked.append(array)
    return tuple(checked)


def _extremes(interpreter, tensor_index: int):
    """(min, max) of a tensor after invoke, or None if it is empty. Reads through a view that
    dies with this frame: the interpreter refuses to invoke while one is alive."""
    values = interpreter.tensor(tensor_index)()
    if values.size == 0:
        return None
    return float(values.min()), float(values.max())


def calibrate(graph: ir.Graph, data, *, num_batches: int = DEFAULT_NUM_BATCHES,
              batch_size: int = DEFAULT_BATCH_SIZE, method: str = "minmax",
              ema_decay: float = 0.9, show_progress: bool = True) -> dict:
    """Ranges {tensor name: TensorRange} of every activation tensor of a float graph.

    Args:
      graph: a float IR graph (after the canonical passes).
      data: numpy array (batched by `batch_size`), tuple of arrays (one per input),
        tf.data.Dataset, iterable or generator function yielding batches (an (x, y) pair's
        labels are ignored).
      num_batches: at most this many batches are used (the paper: about 100 suffice).
      method: "minmax" (extremes over all batches) or "ema" (moving average of batch extremes).
    """
    from ai_edge_litert.interpreter import Interpreter

    estimator = _RangeEstimator(method, ema_decay)
    names = graph.activation_tensors()
    # Every activation tensor is a model output, so the interpreter keeps them all while its
    # fast kernels (XNNPACK) and threads stay on; tensor indices are the IR's order.
    observed = graph.copy()
    observed.outputs = list(dict.fromkeys(graph.outputs + names))
    interpreter = Interpreter(model_content=writer.write_tflite(observed),
                              num_threads=os.cpu_count() or 1)
    index = writer.tensor_index(observed)
    names = [n for n in graph.activation_tensors()]
    input_details = interpreter.get_input_details()
    current_shapes = [None] * len(input_details)

    progress = Progress("calibrating", num_batches, enabled=show_progress)
    seen = 0
    for i, batch in enumerate(itertools.islice(
            _as_batches(data, batch_size, len(graph.inputs)), num_batches)):
        batch = _check_batch(batch, graph, i)
        if any(a.shape != s for a, s in zip(batch, current_shapes)):
            for detail, array in zip(input_details, batch):
                interpreter.resize_tensor_input(detail["index"], array.shape)
            interpreter.allocate_tensors()
            current_shapes = [a.shape for a in batch]
        for detail, array in zip(input_details, batch):
            interpreter.set_tensor(detail["index"], array)
        interpreter.invoke()
        for name in names:
            extremes = _extremes(interpreter, index[name])
            if extremes is None:
                continue
            if not all(np.isfinite(extremes)):
                raise CalibrationDataError(
                    f"tensor {name!r} became NaN or inf on calibration batch {i}: the float "
                    "model overflows on this data")
            estimator.update(name, *extremes)
        seen += 1
        progress.update()
    progress.close()
    if seen == 0:
        raise CalibrationDataError(
            "calibration data is empty: give at least one batch of representative inputs")
    return estimator.ranges
