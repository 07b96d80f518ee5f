"""Post-training quantization in simulation: the QAT graph without training.

TFLite can store only some of the paper's schemes (int8 weights must be symmetric; activations
are 8 or 16 bits). `simulate_ptq` evaluates any scheme of the paper's grid — asymmetric or
per-layer weights, 4-bit weights or activations, weight-only or activation-only quantization —
as a Keras model with fake quantization: batch norms folded with their moving statistics (the
inference fold), weights quantized from their own min / max, activation ranges calibrated as
the min / max over the calibration data of the float model (what tfquant's PTQ does).

  simulated = tfquant.qat.simulate_ptq(float_model, tfquant.qat.QatRecipe(weight_bits=4),
                                       calibration_images)
  simulated.predict(x)
"""

from __future__ import annotations

import numpy as np

from tfquant import errors
from tfquant.qat.activation_quantizer import ActivationQuantizer
from tfquant.qat.batch_norm_folding import FoldedBatchNorm
from tfquant.qat.callbacks import quant_layers
from tfquant.qat.constant_operand import ConstantOperand
from tfquant.qat.embedding import QuantizedEmbedding
from tfquant.qat.rewrite import QatRecipe, quantize_model


def calibrate_activation_ranges(qat_model, calibration, batch_size: int = 256,
                                show_progress: bool = True) -> dict:
    """Sets every ActivationQuantizer of `qat_model` to the min / max over `calibration` (an
    array, or a list / tuple of arrays for a model with several inputs) of the tensor it
    quantizes in the float version of the model (fake quantization off, batch
    norms folded with their moving statistics), calibrated by tfquant's own calibrator on that
    graph, and freezes the ranges. Returns {quantizer name: (min, max)}, or for quantizers
    shared by several tensors a list with one (min, max) per member (None where a member was
    not seen)."""
    from tfquant import calibrate, passes
    from tfquant.frontends.keras_model import from_keras

    several = isinstance(calibration, (list, tuple))  # one array per model input
    arrays = [np.asarray(a) for a in (calibration if several else [calibration])]
    arrays = [a if a.dtype.kind in "iub" else a.astype(np.float32) for a in arrays]
    if any(a.size == 0 for a in arrays) or len({len(a) for a in arrays}) != 1:
        raise errors.CalibrationDataError("the calibration data is empty or its inputs have "
                                          "different sample counts: pass at least one sample "
                                          "per input")
    if not all(np.all(np.isfinite(a)) for a in arrays if a.dtype.kind == "f"):
        raise errors.CalibrationDataError("the calibration data contains NaN or infinity: "
                                          "clean or drop those samples")
    calibration = tuple(arrays) if several else arrays[0]
    seen = {}
    graph = passes.canonicalize(from_keras(qat_model, float_fallback=True,
                                           quantized_tensors=seen))
    ranges = calibrate.calibrate(graph, calibration, batch_size=batch_size,
                                 num_batches=-(-len(arrays[0]) // batch_size),
                                 show_progress=show_progress)
    found = {}
    for q in quant_layers(qat_model, ActivationQuantizer):
        member_ranges = []
        for member in range(q.members):
            names = seen.get((q.name, member), ())
            observed = next((ranges[n] for n in names if n in ranges), None)
            member_ranges.append(None if observed is None else (observed.min, observed.max))
        if any(member_ranges):
            found[q.name] = member_ranges[0] if q.members == 1 else member_ranges
    set_activation_ranges(qat_model, found)
    return found


def set_activation_ranges(qat_model, ranges: dict) -> None:
    """Sets and freezes the ActivationQuantizer ranges of `qat_model` from {name: (min, max)}
    ({name: [(min, max) or None per member]} for shared quantizers), as
    calibrate_activation_ranges returns them for a model of the same graph."""
    for q in quant_layers(qat_model, ActivationQuantizer):
        if q.name not in ranges:
            continue
        value = ranges[q.name]
        member_ranges = [value] if q.members == 1 else list(value)
        for member, observed in enumerate(member_ranges):
            if observed is not None:
                q.set_member_range(member, *observed)
        q.freeze_range.assign(1.0)


def simulate_ptq(model, recipe: QatRecipe | None = None, calibration=None, *,
                 quantize_weights: bool = True, quantize_activations: bool = True,
                 activation_ranges: dict | None = None, show_progress: bool = True):
    """The float Keras `model` quantized after training, as a fake-quantized Keras model.

    Args:
      model: a trained float Keras model (Keras 3 or tf_keras).
      recipe: the weight / activation quantizers (bits, symmetric, per-channel).
      calibration: float samples for the activation ranges (required unless
        quantize_activations is False or activation_ranges is given).
      quantize_weights / quantize_activations: False keeps that side float (the paper's
        "activations only" and "weight-only" columns).
      activation_ranges: {quantizer name: (min, max)} from an earlier
        calibrate_activation_ranges of the same model, instead of calibrating again (the float
        model's ranges do not depend on the weight scheme or the bit width).
    """
    if quantize_activations and calibration is None and activation_ranges is None:
        raise errors.CalibrationDataError("simulating quantized activations needs calibration "
                                          "data (or quantize_activations=False)")
    simulated = quantize_model(model, recipe or QatRecipe())
    for layer in quant_layers(simulated, FoldedBatchNorm):
        layer.frozen.assign(1.0)  # the inference fold, as the converter folds
    if quantize_activations and activation_ranges is not None:
        set_activation_ranges(simulated, activation_ranges)
    elif quantize_activations:
        calibrate_activation_ranges(simulated, calibration, show_progress=show_progress)
    for layer in quant_layers(simulated, (FoldedBatchNorm, ConstantOperand, QuantizedEmbedding)):
        layer.quantize.assign(float(quantize_weights))
    for layer in quant_layers(simulated, ActivationQuantizer):
        layer.quantize.assign(float(quantize_activations))
    return simulated
