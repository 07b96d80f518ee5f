"""Per-layer quantization debugger: where does the int8 model lose accuracy?

Runs the float and the int8 TFLite models of one conversion on the same inputs with every
tensor kept, and compares each quantized activation tensor (dequantized) with the float tensor
of the same name: SQNR over the whole tensor and per channel, error statistics and the error
in quantization steps. Errors accumulate through the graph, so the ranking is by the damage an
op adds: how far the median channel SQNR of its output falls below that of its inputs. The
worst ops name the layers to keep float (Recipe.float_layers) - like TFLite's
QuantizationDebugger, for tfquant's own graphs.

  report = tfquant.debugger.compare_layers(model, calibration, inputs=x_test[:256])
  print(tfquant.debugger.format_report(report, top=10))
  tfquant.convert(model, calibration, tfquant.Recipe(float_layers=worst_layers(report, 1)))
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from tfquant import spec, writer
from tfquant.passes import io_boundary
from tfquant.converter import ConversionResult, convert_model
from tfquant.recipe import Recipe


@dataclasses.dataclass
class TensorReport:
    """How one int8 activation tensor differs from its float twin."""

    tensor: str
    layer: str  # the source layer(s) of the op that writes it
    op_type: str
    sqnr_db: float
    channel_sqnr_db: float  # median over the channels (last axis): a channel drowned by
    # another's range shows here, not in sqnr_db
    sqnr_drop_db: float  # how much this op lowers the median channel SQNR of its inputs
    max_abs_error: float
    mean_error: float  # signed: a systematic shift shows here
    rms_error_steps: float  # root-mean-square error in units of the tensor's scale
    sources: tuple = ()  # the op's source layers (Recipe.float_layers takes these names)


def _all_tensors(model_bytes: bytes, batch: list, runtime_name: str):
    """An interpreter holding every tensor of one invoke on `batch` (one array per input)."""
    from tfquant import runtime
    runner = runtime.Runner(model_bytes, runtime_name, "reference", preserve_all_tensors=True)
    runner.run_raw(runner._encode(batch))
    return runner.interpreter


def compare_layers(model, representative_data=None, recipe: Optional[Recipe] = None, *,
                   inputs: Optional[np.ndarray] = None, batch_size: int = 64,
                   runtime: str = "litert", result: Optional[ConversionResult] = None,
                   show_progress: bool = False) -> list:
    """Reports for every int8 activation tensor, the op that adds most damage first.

    Args:
      model / representative_data / recipe: what to convert (as tfquant.convert_model), or
        pass an existing `result` of convert_model instead.
      inputs: the inputs to compare on: an array, or for several inputs a tuple of arrays in
        the model's input order (default: the first 256 calibration samples, when the
        representative data is arrays).
    """
    if result is None:
        result = convert_model(model, representative_data, recipe, show_progress=show_progress)
    if inputs is None:
        inputs = representative_data
        if not isinstance(inputs, (np.ndarray, tuple, list)):
            raise ValueError("pass inputs= (model inputs: an array, or a tuple of arrays) to "
                             "compare on")
    arrays = [np.asarray(a) for a in (inputs if isinstance(inputs, (tuple, list))
                                      else (inputs,))]
    if inputs is representative_data:
        arrays = [a[:256] for a in arrays]
    graph, float_graph = result.graph, result.float_graph
    if len(arrays) != len(graph.inputs):
        raise ValueError(f"{len(arrays)} input arrays for a model with {len(graph.inputs)} "
                         "inputs")
    float_bytes = writer.write_tflite(float_graph)
    int8_index, float_index = writer.tensor_index(graph), writer.tensor_index(float_graph)
    producers = {out: op for op in graph.ops for out in op.outputs}
    twin = {n: io_boundary.outer_name(n) for n in graph.tensors}
    names = [n for n, t in graph.tensors.items()
             if t.quant is not None and not t.is_const and t.dtype == np.int8
             and twin[n] in float_graph.tensors and n in producers]
    totals = {n: np.zeros(5) for n in names}  # signal, noise, max|e|, sum e, count
    channels = {n: [0.0, 0.0] for n in names}  # per-channel signal, noise
    for start in range(0, len(arrays[0]), batch_size):
        batch = [a[start:start + batch_size] for a in arrays]
        reference = _all_tensors(float_bytes, batch, runtime)
        quantized = _all_tensors(result.model, batch, runtime)
        for name in names:
            want = reference.get_tensor(float_index[twin[name]]).astype(np.float64)
            t = graph.tensors[name]
            got = spec.dequantize(quantized.get_tensor(int8_index[name]), t.quant)
            error = got.astype(np.float64) - want
            acc = totals[name]
            acc[0] += np.sum(want ** 2)
            acc[1] += np.sum(error ** 2)
            acc[2] = max(acc[2], float(np.abs(error).max(initial=0.0)))
            acc[3] += error.sum()
            acc[4] += error.size
            last = want.shape[-1] if want.ndim else 1
            channels[name][0] += np.sum(want.reshape(-1, last) ** 2, axis=0)
            channels[name][1] += np.sum(error.reshape(-1, last) ** 2, axis=0)
    reports = []
    for name in names:
        signal, noise, largest, total, count = totals[name]
        op = producers[name]
        scale = float(graph.tensors[name].quant.scale[0])
        reports.append(TensorReport(
            tensor=name, layer="/".join(op.source) or name, op_type=op.type,
            sqnr_db=spec.sqnr_db_of_energies(signal, noise),
            channel_sqnr_db=float(np.median([
                spec.sqnr_db_of_energies(a, b) for a, b in
                zip(np.atleast_1d(channels[name][0]), np.atleast_1d(channels[name][1]))])),
            sqnr_drop_db=0.0, max_abs_error=float(largest),
            mean_error=float(total / max(count, 1)),
            rms_error_steps=float(np.sqrt(noise / max(count, 1)) / scale),
            sources=tuple(op.source) or (name,)))
    by_tensor = {r.tensor: r for r in reports}
    for r in reports:
        inputs = [by_tensor[n].channel_sqnr_db for n in producers[r.tensor].inputs
                  if n in by_tensor]
        before = min([_SQNR_CAP] + inputs)
        r.sqnr_drop_db = max(0.0, before - min(r.channel_sqnr_db, _SQNR_CAP))
    reports.sort(key=lambda r: (-r.sqnr_drop_db, r.channel_sqnr_db))
    return reports


# SQNR of inputs the report does not cover (the model input), and the cap of any SQNR in the
# drop computation (an exact tensor has infinite SQNR).
_SQNR_CAP = 60.0


def worst_layers(reports: Sequence[TensorReport], count: int) -> list:
    """The source layers of the `count` worst tensors (first source layer of each op)."""
    layers = []
    for r in reports:
        first = r.sources[0] if r.sources else r.layer.split("/")[0]
        if first not in layers:
            layers.append(first)
        if len(layers) == count:
            break
    return layers


FALLBACKS = ("float", "int16")


@dataclasses.dataclass
class FallbackStep:
    """One conversion tried by select_fallback."""

    layers: list
    score: float
    size: int


def select_fallback(model, representative_data, recipe: Optional[Recipe] = None, *,
                    inputs: np.ndarray, target: float, fallback: str = "float",
                    score: Optional[Callable[[np.ndarray], float]] = None,
                    max_layers: int = 8, runtime: str = "litert",
                    reports: Optional[Sequence[TensorReport]] = None) -> list:
    """Keep the worst layers float (or at 16 bits) until the model reaches `target`.

    Ranks the layers with compare_layers (or the given `reports`), then converts with the worst
    1, 2, ... layers in Recipe.float_layers (fallback="float") or Recipe.int16_layers
    (fallback="int16") until `score(outputs on inputs)` reaches `target`: by default the output
    SQNR in dB against the float model; pass e.g. an accuracy function to target accuracy.
    Returns the FallbackStep of every conversion tried, the last one meeting the target (the
    first, with no layer, included); raises ConversionError when `max_layers` do not reach it.
    """
    from tfquant import runtime as runtimes
    from tfquant.errors import ConversionError

    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    recipe = recipe or Recipe()
    if score is None:
        expected = np.asarray(model.predict(inputs, verbose=0))

        def score(outputs):
            return spec.sqnr_db(expected, outputs)

    if reports is None:
        reports = compare_layers(model, representative_data, recipe, inputs=inputs[:256],
                                 runtime=runtime)
    ranking = worst_layers(reports, max_layers)
    steps, ranges = [], None
    for count in range(len(ranking) + 1):
        layers = ranking[:count]
        field = "float_layers" if fallback == "float" else "int16_layers"
        tried = dataclasses.replace(recipe, **{field: tuple(layers)})
        result = convert_model(model, representative_data, tried, calibrated_ranges=ranges,
                               show_progress=False)
        ranges, data = result.ranges, result.model  # calibrated once, by the first conversion
        outputs = runtimes.Runner(data, runtime, "reference").predict(inputs)
        steps.append(FallbackStep(list(layers), float(score(outputs)), len(data)))
        if steps[-1].score >= target:
            return steps
    raise ConversionError(
        f"keeping the {len(ranking)} worst layers {fallback} reaches a score of "
        f"{steps[-1].score:.2f}, below the target {target}: raise max_layers, lower the "
        "target, or change the recipe (per-channel weights, better calibration)")


def format_report(reports: Sequence[TensorReport], top: Optional[int] = None) -> str:
    lines = ["| rank | layer | op | SQNR drop dB | median channel SQNR dB | SQNR dB | "
             "max abs error | mean error | RMS error (steps) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rank, r in enumerate(reports[:top] if top else reports, start=1):
        lines.append(f"| {rank} | {r.layer} | {r.op_type} | {r.sqnr_drop_db:.1f} | "
                     f"{r.channel_sqnr_db:.1f} | {r.sqnr_db:.1f} | {r.max_abs_error:.4g} | "
                     f"{r.mean_error:+.3g} | {r.rms_error_steps:.2f} |")
    return "\n".join(lines)


def plot_sqnr(reports: Sequence[TensorReport], path: str, title: str = "per-layer SQNR"):
    """A PNG bar chart of each tensor's median channel SQNR, in the report's order."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfquant.experiments.reports import save_png
    ordered = list(reports)
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(ordered) + 1)))
    values = [min(r.channel_sqnr_db, 80.0) for r in ordered]
    ax.barh([f"{r.layer} ({r.op_type})" for r in ordered], values,
            color=["tab:red" if v < 20 else "tab:blue" for v in values])
    ax.invert_yaxis()
    ax.set_xlabel("median channel SQNR of the int8 tensor vs float (dB; red < 20 dB)")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    save_png(fig, path)
