"""Run .tflite models on a chosen runtime and kernel set, and evaluate them.

Runtimes: "litert" (ai-edge-litert, the maintained interpreter), "tflite_runtime" (the classic
on-device package, 2.14) and "tf" (tf.lite, deprecated in TF 2.21). Resolvers: "default"
(optimized kernels + XNNPACK), "no_xnnpack" (optimized kernels only) and "reference" (TFLite's
reference kernels, the golden reference for bit-exactness).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from tfquant import flatbuffer, spec

RUNTIMES = ("litert", "tflite_runtime", "tf")
RESOLVERS = ("default", "no_xnnpack", "reference")


def _interpreter_module(runtime: str):
    if runtime == "litert":
        from ai_edge_litert import interpreter
        return interpreter.Interpreter, interpreter.OpResolverType, interpreter.load_delegate
    if runtime == "tflite_runtime":
        import sys
        if "tflite_runtime.interpreter" not in sys.modules and "tensorflow" in sys.modules:
            raise RuntimeError(
                "tflite_runtime cannot be loaded after tensorflow in one process (they clash "
                "on shared symbols); import tfquant (or tflite_runtime) before tensorflow")
        from tflite_runtime import interpreter
        return interpreter.Interpreter, interpreter.OpResolverType, interpreter.load_delegate
    if runtime == "tf":
        import tensorflow as tf
        return (tf.lite.Interpreter, tf.lite.experimental.OpResolverType,
                tf.lite.experimental.load_delegate)
    raise ValueError(f"unknown runtime {runtime!r}; use one of {RUNTIMES}")


def encode(x: np.ndarray, detail: dict) -> np.ndarray:
    """A batch in the type of an interpreter input (`detail` from get_input_details): as is for
    float inputs and for integer inputs without quantization params (token ids, indices);
    quantized with the input's params otherwise, rounding half away from zero as TFLite's
    QUANTIZE does."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind not in "iu" or scale == 0:
        return np.asarray(x).astype(dtype)
    return spec.quantize(x, spec.QuantParams.per_tensor(scale, zero_point),
                         spec.integer_spec(dtype))


def decode(y: np.ndarray, detail: dict) -> np.ndarray:
    """An interpreter output as float: dequantized with its params when it is quantized
    (other outputs as they are)."""
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind not in "iu" or scale == 0:
        return y
    return spec.dequantize(y, spec.QuantParams.per_tensor(scale, zero_point))


def make_interpreter(model, runtime: str = "litert", resolver: str = "default",
                     num_threads: int = 1, preserve_all_tensors: bool = False,
                     delegates: Sequence = ()):
    """An interpreter for `model` (bytes or a path) on the given runtime and kernels."""
    interpreter_class, resolver_type, _ = _interpreter_module(runtime)
    resolvers = {"default": resolver_type.AUTO,
                 "no_xnnpack": resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                 "reference": resolver_type.BUILTIN_REF}
    if resolver not in resolvers:
        raise ValueError(f"unknown resolver {resolver!r}; use one of {RESOLVERS}")
    kwargs = {"model_content": model} if isinstance(model, (bytes, bytearray)) else \
        {"model_path": str(model)}
    return interpreter_class(**kwargs, num_threads=num_threads,
                             experimental_op_resolver_type=resolvers[resolver],
                             experimental_preserve_all_tensors=preserve_all_tensors,
                             experimental_delegates=list(delegates) or None)


class Runner:
    """Runs a model on batches, converting float inputs to and from the model's integer I/O
    types (int8 / uint8) with the model's own quantization params. Models with several inputs
    take a tuple (in the model's input order) or a dict by input name; models whose batch
    dimension cannot be resized (batch fixed to 1, a RESHAPE that hard-codes it) run one
    sample at a time."""

    def __init__(self, model, runtime: str = "litert", resolver: str = "default",
                 num_threads: int = 1, delegates: Sequence = (),
                 preserve_all_tensors: bool = False):
        self.interpreter = make_interpreter(model, runtime, resolver, num_threads,
                                            preserve_all_tensors, delegates)
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self.input, self.output = self.inputs[0], self.outputs[0]
        self._shapes = None
        self._one_at_a_time = any(list(d["shape_signature"][:1]) == [1] for d in self.inputs)
        self._stateful = flatbuffer.has_variable_tensors(model)

    def _prepare(self, shapes):
        if self._shapes != shapes:
            for detail, shape in zip(self.inputs, shapes):
                self.interpreter.resize_tensor_input(detail["index"], shape)
            self.interpreter.allocate_tensors()
            self._shapes = shapes

    def _encode(self, x) -> list:
        return [encode(a, d) for a, d in zip(self._as_inputs(x), self.inputs)]

    def _as_inputs(self, x) -> list:
        if isinstance(x, dict):
            names = [d["name"] for d in self.inputs]
            signature = self.interpreter.get_signature_list() or {}
            for key, entry in signature.items():
                if set(entry["inputs"]) == set(x):  # the signature's names
                    runner = self.interpreter.get_signature_runner(key)
                    by_index = {runner.get_input_details()[n]["index"]: n for n in x}
                    return [np.asarray(x[by_index[d["index"]]]) for d in self.inputs]
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"inputs named {sorted(x)}, but the model's are {names}")
            return [np.asarray(x[n]) for n in names]
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{len(arrays)} input arrays for a model with {len(self.inputs)} "
                             "inputs")
        return [np.asarray(a) for a in arrays]

    def run_raw(self, x):
        """One invoke on an already-encoded batch (an array, or a list with one per input);
        returns the raw output tensor, or a list of them for several outputs."""
        arrays = x if isinstance(x, list) else [x]
        self._prepare([a.shape for a in arrays])
        for detail, array in zip(self.inputs, arrays):
            self.interpreter.set_tensor(detail["index"], array)
        if self._stateful:  # each invoke is one stateless call, as Keras runs the model: a
            self.interpreter.reset_all_variables()  # fused LSTM's state would carry over
        self.interpreter.invoke()
        out = [self.interpreter.get_tensor(d["index"]).copy() for d in self.outputs]
        return out[0] if len(out) == 1 else out

    def _run_batch(self, arrays) -> list:
        size = len(arrays[0])
        if not self._one_at_a_time or size == 1:
            try:
                out = self.run_raw(arrays)
                return out if isinstance(out, list) else [out]
            except (RuntimeError, ValueError):
                if size == 1:
                    raise
                self._one_at_a_time, self._shapes = True, None
        parts = [self._run_batch([a[k:k + 1] for a in arrays]) for k in range(size)]
        return [np.concatenate(p) for p in zip(*parts)]

    def predict(self, x, batch_size: int = 256, dequantize: bool = True):
        """Outputs for float inputs `x` (quantized for the model if its input is integer): an
        array, or a list in the model's output order for several outputs."""
        arrays = self._as_inputs(x)
        chunks = []
        for start in range(0, len(arrays[0]), batch_size):
            encoded = [encode(a[start:start + batch_size], d)
                       for a, d in zip(arrays, self.inputs)]
            raw = self._run_batch(encoded)
            chunks.append([decode(r, d) if dequantize else r
                           for r, d in zip(raw, self.outputs)])
        out = [np.concatenate(parts) for parts in zip(*chunks)]
        return out[0] if len(out) == 1 else out


def accuracy(model, x: np.ndarray, y: np.ndarray, runtime: str = "litert",
             resolver: str = "default") -> float:
    """Top-1 accuracy of a classifier .tflite on (x, y)."""
    predictions = Runner(model, runtime, resolver).predict(x)
    return float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(y)))


def median_latency_ms(model, sample: np.ndarray, runtime: str = "litert",
                      resolver: str = "default", num_threads: int = 1, warmup: int = 5,
                      runs: int = 50, delegates: Sequence = ()) -> tuple:
    """(median, 10th percentile, 90th percentile) latency in ms of one invoke on `sample`."""
    runner = Runner(model, runtime, resolver, num_threads, delegates)
    x = runner._encode(sample)
    for _ in range(warmup):
        runner.run_raw(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.run_raw(x)
        times.append((time.perf_counter() - start) * 1e3)
    return (float(np.median(times)), float(np.percentile(times, 10)),
            float(np.percentile(times, 90)))


def available_runtimes() -> list:
    """Runtimes importable in this environment."""
    found = []
    for runtime in RUNTIMES:
        try:
            _interpreter_module(runtime)
            found.append(runtime)
        except ImportError:
            pass
    return found


def load_delegate(path: str, options: Optional[dict] = None, runtime: str = "litert"):
    """Load an external delegate library for the given runtime."""
    return _interpreter_module(runtime)[2](path, options or {})
