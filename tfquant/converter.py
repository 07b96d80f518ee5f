"""The converter: Keras model (or model file) -> TFLite flatbuffer, following a Recipe."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Optional

import numpy as np

from tfquant import calibrate as calibration
from tfquant import ir, mixed_precision, passes, quantize, range_selection, writer
from tfquant.errors import CalibrationDataError, TfquantError
from tfquant.frontends import routes
from tfquant.passes import weight_rounding
from tfquant.recipe import Recipe


@dataclasses.dataclass
class ConversionResult:
    """A converted model and what went into it."""

    model: bytes
    graph: ir.Graph  # the graph that was serialized (quantized for int8 / weights_only)
    float_graph: ir.Graph  # the canonical float graph (after BN folding and fusion)
    ranges: dict  # calibrated activation ranges (int8 mode), by tensor name
    seconds: float
    route: str = ""  # how the model reached the IR (tfquant.frontends.routes)
    calibration: str = ""  # the range estimator used, and why ("auto": every candidate's score)

    def op_counts(self) -> dict:
        counts = {}
        for op in self.graph.ops:
            counts[op.type] = counts.get(op.type, 0) + 1
        return counts

    def float_ops(self) -> list:
        """The ops that compute on float tensors inside the quantized model (not QUANTIZE /
        DEQUANTIZE; integer shape arithmetic carried through as it is does not count)."""
        return [op for op in self.graph.ops if op.keep_float and any(
            self.graph.tensors[n].dtype in _FLOATS for n in op.inputs + op.outputs if n)]

    def summary(self) -> str:
        """One line: size, route, op count and how many ops run in float."""
        ranges = f", ranges {self.calibration.split(' (')[0]}" if self.calibration else ""
        return (f"{len(self.model):,} bytes, route {self.route}, {len(self.graph.ops)} ops, "
                f"{len(self.float_ops())} in float{ranges}, {self.seconds:.2f} s")


_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


def convert_model(model, representative_data=None, recipe: Optional[Recipe] = None, *,
                  calibrated_ranges: Optional[dict] = None,
                  show_progress: bool = True) -> ConversionResult:
    """Convert a model to TFLite.

    Args:
      model: a Keras 3 or tf_keras model (any kind: sequential, functional, nested,
        subclassed), a .keras / .h5 path or SavedModel directory, a TensorFlow function, a
        float TFLite model (bytes or a .tflite path), or an IR graph. Models the Keras
        frontend cannot read are lowered whole by TFLiteConverter (Recipe.route;
        ConversionResult.route says which route ran).
      representative_data: calibration inputs for int8 / int16x8 modes (numpy array, tuple
        of arrays or dict by input name, tf.data.Dataset or generator); ignored by the other
        modes.
      recipe: what to produce; defaults to full int8 with per-channel weights.
      calibrated_ranges: activation ranges from an earlier conversion of the same model with
        the same calibration settings (ConversionResult.ranges): int8 / int16x8 modes skip
        calibration (to try recipes that differ only in float / int16 layers).
    """
    recipe = recipe or Recipe()
    start = time.perf_counter()
    model = routes.opened(model, recipe.route)
    qat = routes.qat_layers(model)
    if qat and recipe.mode in ("int8", "int16x8"):
        _check_qat_activation_bits(qat, 16 if recipe.mode == "int16x8" else 8)
    source = routes.to_graph(model, representative_data, recipe.route)
    graph, representative_data = source.graph, source.data
    float_graph = passes.canonicalize(graph)
    if recipe.cross_layer_equalization and recipe.mode != "float":
        float_graph = passes.cross_layer_equalization(
            float_graph, relu6_to_relu=recipe.equalize_through_relu6)
    if recipe.float_layers and recipe.mode in ("int8", "int16x8"):
        float_graph = passes.keep_float(float_graph, recipe.float_layers)
    ranges = {}
    if recipe.mode == "float":
        out_graph = float_graph
    elif recipe.mode == "weights_only":
        out_graph = quantize.quantize_weights_only(float_graph, recipe)
    elif recipe.mode == "float16":
        out_graph = quantize.quantize_float16(float_graph)
    elif recipe.weight_rounding != "nearest" and representative_data is None:
        raise CalibrationDataError(
            f"weight_rounding={recipe.weight_rounding!r} chooses weight codes from calibration "
            "data: pass representative_data (about 100 batches of real inputs)")
    elif calibrated_ranges is not None:
        if recipe.weight_rounding != "nearest":
            raise ValueError(f"weight_rounding={recipe.weight_rounding!r} needs the "
                             "calibration pass that calibrated_ranges skips: pass "
                             "representative_data without calibrated_ranges")
        ranges = calibrated_ranges
        out_graph = _quantize_integer(float_graph, ranges, recipe)
    elif float_graph.qat_ranges and representative_data is None:
        # A trained QAT model: its learned ranges, no calibration (paper 3.2).
        ranges = {name: calibration.TensorRange(*r)
                  for name, r in float_graph.qat_ranges.items()}
        out_graph = _quantize_integer(float_graph, ranges, recipe)
    else:
        if representative_data is None:
            raise CalibrationDataError(
                "int8 conversion needs representative data to calibrate activation ranges; "
                "pass representative_data (about 100 batches of real inputs)")
        return _calibrate_and_quantize(float_graph, representative_data, recipe, start,
                                       source.route, show_progress)
    data = writer.write_tflite(out_graph)
    return ConversionResult(data, out_graph, float_graph, ranges, time.perf_counter() - start,
                            source.route)


def _calibrate_and_quantize(float_graph, data, recipe: Recipe, start: float, route: str,
                            show_progress: bool) -> ConversionResult:
    method = recipe.calibration_method
    if method == "auto" and (recipe.mode == "int16x8" or recipe.int16_layers):
        method = "minmax"  # 16-bit steps leave little to trade against clipping
    auto = method == "auto"
    targets = weight_rounding.rounding_targets(float_graph, recipe) \
        if recipe.weight_rounding != "nearest" else {}
    calibrated = calibration.calibrate_all(
        float_graph, data, range_selection.CANDIDATES if auto else (method,),
        num_batches=recipe.num_calibration_batches, batch_size=recipe.calibration_batch_size,
        ema_decay=recipe.ema_decay, percentile=recipe.percentile,
        channel_means=recipe.bias_correction, kernels=recipe.calibration_kernels,
        held_samples=range_selection.HELD_SAMPLES if auto else 0,
        held_values=range_selection.HELD_OUTPUT_VALUES if auto else None,
        observers=weight_rounding.observers(float_graph, targets), show_progress=show_progress)
    # The rounded weights are quantized as they are; the result keeps the float model.
    rounded_graph = weight_rounding.round_weights(float_graph, targets, recipe, show_progress) \
        if targets else float_graph

    def quantize_with(ranges):
        graph = _quantize_integer(rounded_graph, ranges, recipe)
        return graph, writer.write_tflite(graph)

    if auto:
        out_graph, data, choice = range_selection.choose(calibrated, quantize_with,
                                                         recipe.calibration_kernels)
        method, note = choice.method, choice.describe()
    else:
        (out_graph, data), note = quantize_with(calibrated.ranges[method]), method
    return ConversionResult(data, out_graph, float_graph, calibrated.ranges[method],
                            time.perf_counter() - start, route, note)


def _quantize_integer(float_graph, ranges, recipe: Recipe):
    """int8 / int16x8 quantization; Recipe.int16_layers take their ops from a 16x8 pass (with
    8-bit per-channel weights: the fallback layers get the most precise integer form)."""
    out_graph = quantize.quantize_int8(float_graph, ranges, recipe)
    if recipe.int16_layers:
        wide = quantize.quantize_int8(
            float_graph, ranges, dataclasses.replace(
                recipe, mode="int16x8", int16_layers=(), weight_bits=8, per_channel=True,
                per_channel_dense=None))
        out_graph = mixed_precision.splice_int16_layers(out_graph, wide, recipe.int16_layers)
    return out_graph


def _check_qat_activation_bits(qat_layers, bits: int):
    other = [f"{layer.name} ({layer.bits} bits)" for layer in qat_layers
             if type(layer).__name__ == "ActivationQuantizer" and layer.bits != bits]
    if other:
        mode = "int8" if bits == 8 else "int16x8"
        raise TfquantError(
            f"{mode} export needs {bits}-bit activations, but these QAT quantizers simulate "
            f"other widths: {', '.join(other[:5])}{' ...' if len(other) > 5 else ''}; export "
            "8-bit activations as int8 and 16-bit ones as int16x8 (other widths are "
            "simulation only)")


def convert(model, representative_data=None, recipe: Optional[Recipe] = None, *,
            show_progress: bool = True) -> bytes:
    """Convert a Keras model to TFLite flatbuffer bytes (see convert_model)."""
    return convert_model(model, representative_data, recipe,
                         show_progress=show_progress).model


def load_keras_model(path: str):
    """Load a .keras / .h5 file or a SavedModel directory (routes.load_model): a Keras model
    (Keras 3 first, then tf_keras), a SavedModel that is not Keras (lowered when converted),
    or for a .tflite file its checked flatbuffer bytes."""
    return routes.load_model(path)


def save_atomically(data: bytes, path: str, overwrite: bool = True):
    """Write `data` to `path` through a temporary file and a rename: a failure never leaves a
    partial file and never damages an existing one."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise TfquantError(f"output directory {directory!r} does not exist; create it first")
    if os.path.exists(path) and not overwrite:
        raise TfquantError(f"output {path!r} exists; pass overwrite to replace it")
    fd, tmp = tempfile.mkstemp(prefix=".tfquant-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
