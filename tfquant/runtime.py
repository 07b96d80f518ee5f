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

from tfquant import spec

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
    """Runs a single-input model on batches, converting float inputs to and from the model's
    integer I/O types (int8 / uint8) with the model's own quantization params."""

    def __init__(self, model, runtime: str = "litert", resolver: str = "default",
                 num_threads: int = 1, delegates: Sequence = ()):
        self.interpreter = make_interpreter(model, runtime, resolver, num_threads,
                                            delegates=delegates)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = None

    def _prepare(self, batch_shape):
        if self._batch != batch_shape:
            self.interpreter.resize_tensor_input(self.input["index"], batch_shape)
            self.interpreter.allocate_tensors()
            self._batch = batch_shape

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return encode(x, self.input)

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """One invoke on an already-encoded batch; returns the raw output tensor."""
        self._prepare(x.shape)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def predict(self, x: np.ndarray, batch_size: int = 256, dequantize: bool = True):
        """Outputs for float inputs `x` (quantized for the model if its input is integer)."""
        outputs = []
        for start in range(0, len(x), batch_size):
            raw = self.run_raw(self._encode(np.asarray(x[start:start + batch_size])))
            outputs.append(decode(raw.copy(), self.output) if dequantize else raw.copy())
        return np.concatenate(outputs)


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
    x = runner._encode(np.asarray(sample))
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
