"""The quantization recipe: what to quantize and how, as data."""

from __future__ import annotations

import dataclasses
from typing import Optional

MODES = ("float", "int8", "weights_only")
IO_TYPES = ("float32", "int8", "uint8")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is converted.

    Attributes:
      mode: "float" (float32 export), "int8" (full integer: int8 weights and activations) or
        "weights_only" (int8 weights, float activations: TFLite's dynamic-range kernels).
      per_channel: per-channel weights for convolutions (the paper's recommendation). False
        gives one scale per weight tensor.
      per_channel_dense: per-channel weights for FULLY_CONNECTED; None follows `per_channel`.
        Older consumers (microcontrollers, some NPUs) want per-tensor FC.
      inference_input_type / inference_output_type: the model's I/O type in int8 mode: float32
        (QUANTIZE / DEQUANTIZE ops inside the model), int8 or uint8.
      calibration_method: "minmax" or "ema" range estimator for activations.
      ema_decay: decay of the "ema" estimator.
      num_calibration_batches: at most this many representative batches are used.
      calibration_batch_size: batch size used when representative data is one big array.
      float_fallback: layers tfquant cannot quantize stay float (real float TFLite ops with
        DEQUANTIZE / QUANTIZE around them) instead of failing the conversion.
    """

    mode: str = "int8"
    per_channel: bool = True
    per_channel_dense: Optional[bool] = None
    inference_input_type: str = "float32"
    inference_output_type: str = "float32"
    calibration_method: str = "minmax"
    ema_decay: float = 0.9
    num_calibration_batches: int = 100
    calibration_batch_size: int = 32
    float_fallback: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for field in ("inference_input_type", "inference_output_type"):
            if getattr(self, field) not in IO_TYPES:
                raise ValueError(f"{field} must be one of {IO_TYPES}, got "
                                 f"{getattr(self, field)!r}")
        if self.mode != "int8" and (self.inference_input_type != "float32"
                                    or self.inference_output_type != "float32"):
            raise ValueError("integer model inputs/outputs need mode='int8'")
        if self.num_calibration_batches < 1:
            raise ValueError("num_calibration_batches must be at least 1")
        if self.calibration_batch_size < 1:
            raise ValueError("calibration_batch_size must be at least 1")

    @property
    def dense_per_channel(self) -> bool:
        return self.per_channel if self.per_channel_dense is None else self.per_channel_dense

    @property
    def needs_calibration(self) -> bool:
        return self.mode == "int8"
