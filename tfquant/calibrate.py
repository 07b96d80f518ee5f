"""Calibration: run the float model on representative data and record every tensor's range.

The float TFLite export of the IR, with every activation tensor declared a model output, gives the
value of every IR tensor (flatbuffer tensor i is IR tensor i), so ranges map 1:1 to the graph
that is then quantized.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Iterable, Iterator, Optional

import numpy as np

from tfquant import ir, writer
from tfquant.errors import CalibrationDataError
from tfquant.progress import Progress

DEFAULT_NUM_BATCHES = 100
DEFAULT_BATCH_SIZE = 32
ESTIMATORS = ("minmax", "ema", "percentile", "mse")
# "default": TFLite's optimized float kernels (XNNPACK), fast, but their rounding follows the
# CPU's SIMD width, so ranges (and the bytes written) can differ in the last bits between an
# AVX2, an AVX-512 and an aarch64 machine. "reference": TFLite's reference kernels, slower,
# the same ranges on every machine (reproducible builds).
CALIBRATION_KERNELS = ("default", "reference")
# Values kept per tensor and batch for the percentile and MSE estimators (a uniform sample).
SAMPLE_PER_BATCH = 4096


@dataclasses.dataclass
class TensorRange:
    min: float
    max: float
    # Mean of each channel (last axis) over the calibration data, when requested.
    channel_mean: Optional[np.ndarray] = None
    samples: int = 0


class _RangeEstimator:
    """Tracks min/max over batches: absolute extremes ("minmax") or an exponential moving
    average of per-batch extremes ("ema", the paper's estimator for activations). The
    "percentile" and "mse" estimators also keep a uniform sample of each tensor's values and
    choose the range from it at the end (see finish)."""

    def __init__(self, method: str, decay: float, percentile: float = 99.99, seed: int = 0,
                 channel_means: bool = False):
        if method not in ESTIMATORS:
            raise ValueError(f"unknown range estimator {method!r}; use one of {ESTIMATORS}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.method, self.decay, self.percentile = method, decay, percentile
        self.channel_means = channel_means
        self.ranges: dict[str, TensorRange] = {}
        self.samples: dict[str, list] = {}
        self._rng = np.random.default_rng(seed)

    @property
    def needs_values(self) -> bool:
        return self.method in ("percentile", "mse")

    def update(self, name: str, batch_min: float, batch_max: float):
        current = self.ranges.get(name)
        if current is None:
            self.ranges[name] = TensorRange(batch_min, batch_max)
        elif self.method == "ema":
            current.min = self.decay * current.min + (1 - self.decay) * batch_min
            current.max = self.decay * current.max + (1 - self.decay) * batch_max
        else:
            current.min = min(current.min, batch_min)
            current.max = max(current.max, batch_max)

    def observe_means(self, name: str, values: np.ndarray):
        """Running per-channel (last axis) mean, weighted by the number of values."""
        current = self.ranges[name]
        if values.ndim == 0:
            return
        rows = values.reshape(-1, values.shape[-1]).astype(np.float64)
        mean = rows.mean(axis=0)
        if current.channel_mean is None:
            current.channel_mean, current.samples = mean, len(rows)
        else:
            total = current.samples + len(rows)
            current.channel_mean = (current.channel_mean * current.samples
                                    + mean * len(rows)) / total
            current.samples = total

    def observe(self, name: str, values: np.ndarray):
        flat = values.reshape(-1)
        if flat.size > SAMPLE_PER_BATCH:
            flat = flat[self._rng.integers(0, flat.size, SAMPLE_PER_BATCH)]
        self.samples.setdefault(name, []).append(np.array(flat, np.float32))

    def finish(self) -> dict:
        """The final ranges: percentile clipping or the MSE-optimal clipping of each sample,
        never wider than the observed extremes."""
        if not self.needs_values:
            return self.ranges
        from tfquant import spec
        for name, current in self.ranges.items():
            sample = np.concatenate(self.samples.get(name, [np.zeros(1, np.float32)]))
            if self.method == "percentile":
                low = float(np.percentile(sample, 100.0 - self.percentile))
                high = float(np.percentile(sample, self.percentile))
            else:
                low, high = spec.mse_optimal_range(sample, current.min, current.max,
                                                   spec.INT8_ACTIVATION)
            current.min, current.max = max(current.min, low), min(current.max, high)
        return self.ranges


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


def _observe(interpreter, tensor_index: int, estimator: "_RangeEstimator", name: str,
             batch: int):
    """Feed one tensor's values after invoke to the estimator. Reads through a view that dies
    with this frame: the interpreter refuses to invoke while one is alive."""
    values = interpreter.tensor(tensor_index)()
    if values.size == 0:
        return
    extremes = float(values.min()), float(values.max())
    if not all(np.isfinite(extremes)):
        raise CalibrationDataError(
            f"tensor {name!r} became NaN or inf on calibration batch {batch}: the float "
            "model overflows on this data")
    estimator.update(name, *extremes)
    if estimator.needs_values:
        estimator.observe(name, values)
    if estimator.channel_means:
        estimator.observe_means(name, values)


def calibrate(graph: ir.Graph, data, *, num_batches: int = DEFAULT_NUM_BATCHES,
              batch_size: int = DEFAULT_BATCH_SIZE, method: str = "minmax",
              ema_decay: float = 0.9, percentile: float = 99.99, channel_means: bool = False,
              kernels: str = "default", show_progress: bool = True) -> dict:
    """Ranges {tensor name: TensorRange} of every activation tensor of a float graph.

    Args:
      graph: a float IR graph (after the canonical passes).
      data: numpy array (batched by `batch_size`), tuple of arrays (one per input),
        tf.data.Dataset, iterable or generator function yielding batches (an (x, y) pair's
        labels are ignored).
      num_batches: at most this many batches are used (the paper: about 100 suffice).
      method: "minmax" (extremes over all batches), "ema" (moving average of batch extremes),
        "percentile" (the `percentile` and 100 - `percentile` percentiles of the values) or
        "mse" (the clipping range that minimizes the int8 quantization error of the values).
      channel_means: also record each tensor's per-channel mean (for bias correction).
      kernels: "default" (optimized, fast) or "reference" (the same ranges on every CPU).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if kernels not in CALIBRATION_KERNELS:
        raise ValueError(f"calibration kernels must be one of {CALIBRATION_KERNELS}, got "
                         f"{kernels!r}")
    resolver = OpResolverType.AUTO if kernels == "default" else OpResolverType.BUILTIN_REF

    estimator = _RangeEstimator(method, ema_decay, percentile, channel_means=channel_means)
    names = graph.activation_tensors()
    # Every activation tensor is a model output, so the interpreter keeps them all while its
    # fast kernels (XNNPACK) and threads stay on; tensor indices are the IR's order.
    observed = graph.copy()
    observed.outputs = list(dict.fromkeys(graph.outputs + names))
    interpreter = Interpreter(model_content=writer.write_tflite(observed),
                              num_threads=os.cpu_count() or 1,
                              experimental_op_resolver_type=resolver)
    index = writer.tensor_index(observed)
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
            _observe(interpreter, index[name], estimator, name, i)
        seen += 1
        progress.update()
    progress.close()
    if seen == 0:
        raise CalibrationDataError(
            "calibration data is empty: give at least one batch of representative inputs")
    return estimator.finish()
