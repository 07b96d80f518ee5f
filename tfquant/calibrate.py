"""Calibration: run the float model on representative data and record every tensor's range.

The float TFLite export of the IR, with every activation tensor declared a model output, gives the
value of every IR tensor (flatbuffer tensor i is IR tensor i), so ranges map 1:1 to the graph
that is then quantized.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Mapping
from typing import Iterable, Iterator, Optional

import numpy as np

from tfquant import ir, writer
from tfquant.errors import CalibrationDataError
from tfquant.progress import Progress

log = logging.getLogger("tfquant")

DEFAULT_NUM_BATCHES = 100
DEFAULT_BATCH_SIZE = 32
ESTIMATORS = ("minmax", "ema", "percentile", "mse")
# "default": TFLite's optimized float kernels (XNNPACK), fast, but their rounding follows the
# CPU's SIMD width, so ranges (and the bytes written) can differ in the last bits between an
# AVX2, an AVX-512 and an aarch64 machine. "reference": TFLite's reference kernels, slower,
# the same ranges on every machine (reproducible builds).
CALIBRATION_KERNELS = ("default", "reference")
# Values kept per tensor for the percentile and MSE estimators: a uniform sample of each
# batch, SAMPLES_PER_TENSOR / (number of batches) values, within the bounds below.
SAMPLES_PER_TENSOR = 1 << 17
SAMPLE_PER_BATCH_MIN, SAMPLE_PER_BATCH_MAX = 1024, 4096


@dataclasses.dataclass
class TensorRange:
    min: float
    max: float
    # Mean of each channel (last axis) over the calibration data, when requested.
    channel_mean: Optional[np.ndarray] = None
    samples: int = 0


class _RangeEstimator:
    """Tracks, in one pass over the calibration batches, what every range estimator needs: the
    extremes ("minmax"), an exponential moving average of per-batch extremes ("ema", the
    paper's estimator for activations) and, when "percentile" or "mse" is asked for, a uniform
    sample of each tensor's values from which those choose the range at the end (finish)."""

    def __init__(self, methods, decay: float, percentile: float = 99.99, seed: int = 0,
                 channel_means: bool = False, batches: int = 100):
        for method in methods:
            if method not in ESTIMATORS:
                raise ValueError(f"unknown range estimator {method!r}; use one of "
                                 f"{ESTIMATORS + ('auto',)}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.methods, self.decay, self.percentile = tuple(methods), decay, percentile
        self.channel_means = channel_means
        self.extremes: dict[str, list] = {}
        self.averages: dict[str, list] = {}
        self.means: dict[str, tuple] = {}
        self.samples: dict[str, list] = {}
        self._rng = np.random.default_rng(seed)
        self.sample_per_batch = min(SAMPLE_PER_BATCH_MAX, max(SAMPLE_PER_BATCH_MIN,
                                                          SAMPLES_PER_TENSOR // max(batches, 1)))

    @property
    def needs_values(self) -> bool:
        return any(m in ("percentile", "mse") for m in self.methods)

    def update(self, name: str, batch_min: float, batch_max: float):
        extremes = self.extremes.get(name)
        if extremes is None:
            self.extremes[name] = [batch_min, batch_max]
            self.averages[name] = [batch_min, batch_max]
            return
        extremes[0], extremes[1] = min(extremes[0], batch_min), max(extremes[1], batch_max)
        average, d = self.averages[name], self.decay
        average[0] = d * average[0] + (1 - d) * batch_min
        average[1] = d * average[1] + (1 - d) * batch_max

    def observe_means(self, name: str, values: np.ndarray):
        """Running per-channel (last axis) mean, weighted by the number of values."""
        if values.ndim == 0:
            return
        rows = values.reshape(-1, values.shape[-1]).astype(np.float64)
        mean = rows.mean(axis=0)
        if name not in self.means:
            self.means[name] = (mean, len(rows))
        else:
            current, count = self.means[name]
            total = count + len(rows)
            self.means[name] = ((current * count + mean * len(rows)) / total, total)

    def observe(self, name: str, values: np.ndarray):
        flat = values.reshape(-1)
        if flat.size > self.sample_per_batch:
            flat = flat[self._rng.integers(0, flat.size, self.sample_per_batch)]
        self.samples.setdefault(name, []).append(np.array(flat, np.float32))

    def finish(self, method: str) -> "Ranges":
        """The ranges of one estimator: the extremes, their moving average, or percentile /
        MSE-optimal clipping of each sample, never wider than the observed extremes. Clipped
        ranges are searched when first read: the quantizer never reads those of outputs with
        params fixed by their op (LOGISTIC, TANH, SOFTMAX)."""
        return Ranges(self.extremes, lambda name: self._range(method, name))

    def _range(self, method: str, name: str) -> TensorRange:
        from tfquant import spec
        low, high = self.extremes[name]
        if method == "ema":
            low, high = self.averages[name]
        elif method in ("percentile", "mse"):
            sample = np.concatenate(self.samples.get(name, [np.zeros(1, np.float32)]))
            if method == "percentile":
                clip = tuple(float(v) for v in np.percentile(
                    sample, (100.0 - self.percentile, self.percentile)))
            else:
                clip = spec.mse_optimal_range(sample, low, high, spec.INT8_ACTIVATION)
            low, high = max(low, clip[0]), min(high, clip[1])
        mean, count = self.means.get(name, (None, 0))
        return TensorRange(low, high, mean, count)


class Ranges(Mapping):
    """Calibrated ranges by tensor name: a read-only mapping whose values are computed on first
    access (then kept)."""

    def __init__(self, names: Iterable[str], compute):
        self._names, self._compute, self._done = list(names), compute, {}
        self._keys = set(self._names)

    def __getitem__(self, name: str) -> TensorRange:
        if name not in self._done:
            if name not in self._keys:
                raise KeyError(name)
            self._done[name] = self._compute(name)
        return self._done[name]

    def __contains__(self, name) -> bool:
        return name in self._keys

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def peek(data) -> tuple:
    """(first batch as a tuple of arrays or None, data to use instead of `data`): a one-shot
    iterator is consumed by the peek and comes back chained to its first item."""
    if isinstance(data, np.ndarray):
        return (data[:1],), data
    if isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values()):
        return tuple(v[:1] for v in data.values()), data
    if isinstance(data, tuple) and data and all(isinstance(d, np.ndarray) for d in data) \
            and len({len(d) for d in data}) == 1:  # one array per input
        return tuple(d[:1] for d in data), data
    if isinstance(data, list) and data and all(isinstance(d, np.ndarray) for d in data):
        return (data[0][:1],), data  # a list of batches of a one-input model
    if hasattr(data, "__next__"):  # a generator or iterator: chain the item back
        try:
            first = next(data)
        except StopIteration:
            return None, iter(())
        return _as_tuple(first), itertools.chain([first], data)
    try:
        first = next(iter(_as_batches(data, 1, None)))
    except (StopIteration, CalibrationDataError):
        return None, data
    return first, data


def _as_tuple(item) -> tuple:
    if isinstance(item, dict):
        item = tuple(item.values())
    return tuple(np.asarray(x) for x in (item if isinstance(item, (list, tuple)) else (item,)))


def _as_batches(data, batch_size: int, input_names) -> Iterator:
    """Yields batches (tuples of arrays, one per model input) from the accepted data forms:
    one array (batched by `batch_size`); a tuple of arrays with the same number of samples (one
    per input, multi-input models; a list too when the model has that many inputs) or a dict
    of them by input name; any other iterable (a list of batches, tf.data.Dataset, generator,
    or a function returning one) yielding batches (arrays, tuples, or dicts by input name)."""
    if isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values()):
        data = _in_input_order(data, input_names)
    if isinstance(data, np.ndarray):
        data = (data,)
    several_inputs = input_names is not None and len(input_names[0]) > 1
    if (isinstance(data, tuple) or (isinstance(data, list) and several_inputs)) and data \
            and (input_names is None or len(data) == len(input_names[0])) \
            and all(isinstance(d, np.ndarray) for d in data) \
            and len({len(d) for d in data}) == 1:
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
            item = _in_input_order(item, input_names)
        yield _as_tuple(item)


def _in_input_order(mapping: dict, input_names) -> tuple:
    """The values of a {input name: array} dict in the model's input order (names as the
    graph or its signature has them); as given when the keys are not input names."""
    if input_names is None:
        return tuple(mapping.values())
    keys = list(mapping)
    for names in input_names:
        if set(names) == set(keys):
            return tuple(mapping[n] for n in names)
    names = input_names[-1]  # the signature's names where the model has them
    missing = [n for n in names if n not in keys]
    raise CalibrationDataError(
        f"calibration data gives inputs {', '.join(map(repr, keys))} but the model's inputs "
        f"are {', '.join(map(repr, names))}: name every input ({missing[0]!r} is "
        "missing)" if missing else "calibration data names inputs the model does not have")


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
        if array.dtype.kind not in "fiub":
            raise CalibrationDataError(
                f"calibration batch {index} for input {name!r} has dtype {array.dtype}; "
                "give numeric arrays")
        array = array.astype(graph.tensors[name].dtype)
        if array.ndim == len(expected) - 1:
            array = array[None]
        if array.ndim != len(expected) or any(
                e >= 0 and e != a for e, a in zip(expected[1:], array.shape[1:])):
            raise CalibrationDataError(
                f"calibration batch {index} for input {name!r} has shape {array.shape}, but "
                f"the model expects ({', '.join('N' if d < 0 else str(d) for d in expected)})")
        if array.shape[0] == 0:
            raise CalibrationDataError(f"calibration batch {index} is empty")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
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


@dataclasses.dataclass
class Calibration:
    """One pass over the calibration data: the ranges of each estimator asked for, and the
    first samples with the float model's outputs on them (for choosing an estimator, see
    tfquant.range_selection)."""

    ranges: dict  # {estimator: {tensor name: TensorRange}}
    inputs: tuple = ()  # arrays, one per model input, of the held samples
    outputs: tuple = ()  # the float model's outputs on them, one array per model output


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
    return calibrate_all(graph, data, (method,), num_batches=num_batches,
                         batch_size=batch_size, ema_decay=ema_decay, percentile=percentile,
                         channel_means=channel_means, kernels=kernels,
                         show_progress=show_progress).ranges[method]


def calibrate_all(graph: ir.Graph, data, methods, *, num_batches: int = DEFAULT_NUM_BATCHES,
                  batch_size: int = DEFAULT_BATCH_SIZE, ema_decay: float = 0.9,
                  percentile: float = 99.99, channel_means: bool = False,
                  kernels: str = "default", held_samples: int = 0,
                  held_values: Optional[int] = None, observers: Optional[dict] = None,
                  show_progress: bool = True) -> Calibration:
    """calibrate() for several estimators at once (one pass over the data), also holding the
    first `held_samples` samples (whole batches, and no more batches once the held outputs
    have `held_values` values) and the float model's outputs on them. `observers`
    {float activation name: [callables]} see each batch's values of their tensor (valid
    only during the call)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if kernels not in CALIBRATION_KERNELS:
        raise ValueError(f"calibration kernels must be one of {CALIBRATION_KERNELS}, got "
                         f"{kernels!r}")
    resolver = OpResolverType.AUTO if kernels == "default" else OpResolverType.BUILTIN_REF

    estimator = _RangeEstimator(methods, ema_decay, percentile, channel_means=channel_means,
                                batches=_expected_batches(data, batch_size, num_batches))
    # Every float activation tensor is a model output, so the interpreter keeps them all while
    # its fast kernels (XNNPACK) and threads stay on; tensor indices are the IR's order.
    names = [n for n in graph.activation_tensors() if graph.tensors[n].dtype.kind == "f"]
    observed = graph.copy()
    observed.outputs = list(dict.fromkeys(graph.outputs + names))
    runner = _Invoker(Interpreter(model_content=writer.write_tflite(observed),
                                  num_threads=os.cpu_count() or 1,
                                  experimental_op_resolver_type=resolver),
                      one_at_a_time=any(graph.tensors[n].shape[:1] == (1,)
                                        for n in graph.inputs))
    index = writer.tensor_index(observed)

    progress = Progress("calibrating", num_batches, enabled=show_progress)
    seen, held_inputs, held_outputs = 0, [], []
    for i, batch in enumerate(itertools.islice(
            _as_batches(data, batch_size, _input_names(graph)), num_batches)):
        batch = _check_batch(batch, graph, i)
        hold = sum(len(b[0]) for b in held_inputs) < held_samples and (
            held_values is None or sum(o.size for outs in held_outputs for o in outs)
            < held_values)
        if hold:
            held_inputs.append(batch)
        for _ in runner.run(batch):
            if hold:
                held_outputs.append([np.array(runner.interpreter.tensor(index[n])())
                                     for n in graph.outputs])
            for name in names:
                _observe(runner.interpreter, index[name], estimator, name, i)
            for name, calls in (observers or {}).items():
                values = runner.interpreter.tensor(index[name])()
                for call in calls:
                    call(values)
                del values
        seen += 1
        progress.update()
    progress.close()
    if seen == 0:
        raise CalibrationDataError(
            "calibration data is empty: give at least one batch of representative inputs")
    runner.report()
    ranges = {m: estimator.finish(m) for m in methods}
    if not held_inputs:
        return Calibration(ranges)
    return Calibration(ranges, tuple(np.concatenate(parts) for parts in zip(*held_inputs)),
                       tuple(np.concatenate(parts) for parts in zip(*held_outputs)))


def _expected_batches(data, batch_size: int, num_batches: int) -> int:
    """How many batches calibration will see: known for arrays and lists, else the cap."""
    arrays = data if isinstance(data, tuple) else (data,) if isinstance(data, np.ndarray) \
        else None
    if arrays and all(isinstance(a, np.ndarray) for a in arrays):
        return min(num_batches, -(-len(arrays[0]) // batch_size))
    return min(num_batches, len(data)) if isinstance(data, list) and data else num_batches


def _input_names(graph: ir.Graph) -> list:
    """The names calibration data may use for the inputs: the graph's, and its signature's."""
    names = [list(graph.inputs)]
    if graph.signature is not None and graph.signature.inputs:
        names.append(list(graph.signature.inputs))
    return names


class _Invoker:
    """Runs calibration batches, one sample at a time where the model does not run with a
    batch: inputs whose batch dimension is fixed to 1, or a model whose first batch of more
    than one sample fails (a RESHAPE that hard-codes the batch). Said once in the log."""

    def __init__(self, interpreter, one_at_a_time: bool):
        self.interpreter = interpreter
        self.details = interpreter.get_input_details()
        self.shapes = None
        self.one_at_a_time = one_at_a_time
        self.reason = "its inputs have batch 1" if one_at_a_time else None
        self.samples, self.seconds = 0, 0.0

    def _invoke(self, arrays):
        shapes = [a.shape for a in arrays]
        if shapes != self.shapes:
            for detail, array in zip(self.details, arrays):
                self.interpreter.resize_tensor_input(detail["index"], array.shape)
            self.interpreter.allocate_tensors()
            self.shapes = shapes
        for detail, array in zip(self.details, arrays):
            self.interpreter.set_tensor(detail["index"], array)
        self.interpreter.reset_all_variables()  # stateless calls (fused LSTM state)
        self.interpreter.invoke()

    def run(self, arrays):
        """Invoke on `arrays` (one per input); yields after each invoke, whose tensors are
        then in the interpreter."""
        size = len(arrays[0])
        if not self.one_at_a_time or size == 1:
            try:
                self._invoke(arrays)
                yield
                return
            except (RuntimeError, ValueError) as e:
                if size == 1:
                    raise CalibrationDataError(
                        f"the float model does not run on the calibration data: "
                        f"{_first_line(e)}") from None
                self.one_at_a_time = True
                self.reason = f"a batch of {size} does not run ({_first_line(e)})"
                self.shapes = None
        start = time.perf_counter()
        for k in range(size):
            try:
                self._invoke([a[k:k + 1] for a in arrays])
            except (RuntimeError, ValueError) as e:
                raise CalibrationDataError(f"the float model does not run on the calibration "
                                           f"data: {_first_line(e)}") from None
            yield
        self.samples += size
        self.seconds += time.perf_counter() - start

    def report(self):
        if self.one_at_a_time:
            log.warning("calibrated one sample at a time because %s: %d samples in %.2f s",
                     self.reason, self.samples, self.seconds)


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
