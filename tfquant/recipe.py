"""The quantization recipe: what to quantize and how, as data."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

MODES = ("float", "float16", "int8", "int16x8", "weights_only")
IO_TYPES = ("float32", "int8", "uint8")
ROUTES = ("auto", "native", "lowered")
CALIBRATION_METHODS = ("auto", "minmax", "ema", "percentile", "mse")
WEIGHT_RANGE_METHODS = ("minmax", "mse")
WEIGHT_ROUNDINGS = ("nearest", "gptq", "adaround")
# int4_packing settings, each packing the weights of more ops than the one before (which ops
# need which setting is in the op records' weight layouts).
INT4_PACKINGS = ("none", "portable", "litert")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is converted.

    Attributes:
      mode: "float" (float32 export), "int8" (full integer: int8 weights and activations),
        "int16x8" (int16 symmetric activations, int8 weights, int64 bias: TFLite's 16x8
        mode), "weights_only" (int8 weights, float activations: dynamic-range kernels) or
        "float16" (float16 weights behind DEQUANTIZE, float32 compute).
      per_channel: per-channel weights for convolutions (the paper's recommendation). False
        gives one scale per weight tensor.
      per_channel_dense: per-channel weights for FULLY_CONNECTED; None follows `per_channel`.
        Older consumers (microcontrollers, some NPUs) want per-tensor FC.
      inference_input_type / inference_output_type: the model's I/O type in int8 mode: float32
        (QUANTIZE / DEQUANTIZE ops inside the model), int8 or uint8.
      calibration_method: activation range estimator: "auto" (int8: each of the others,
        keeping the one whose quantized model is closest to the float model on the first
        calibration samples; int16x8 and int16_layers: minmax; see tfquant.range_selection), "minmax"
        (extremes, as TFLiteConverter), "ema" (moving average of batch extremes), "percentile"
        (clip at the `percentile`) or "mse" (the clipping range with the smallest int8
        quantization error).
      ema_decay: decay of the "ema" estimator.
      percentile: upper percentile of the "percentile" estimator (the lower one is 100 - p).
      weight_range_method: "minmax" (each channel's max |w|) or "mse" (the per-channel clipping
        with the smallest quantization error).
      weight_bits: 2..8 bits per weight (symmetric, narrow range) in int8 / int16x8 mode.
      weight_rounding: how weights take their codes: "nearest" (round to nearest on the grid
        `weight_range_method` chose), or chosen from the calibration data so that each
        conv / depthwise / dense output stays closest to the float layer's, on whichever of
        the max-|w| and MSE grids reconstructs it better (int8 / int16x8 modes;
        tfquant.passes.weight_rounding): "gptq" (error compensation, Frantar et al.
        2022: fast) or "adaround" (learned rounding, Nagel et al. 2020: slower, often
        slightly better). Worth it below 8 bits; see docs/low_bit.md.
      rounding_iterations: Adam steps of each "adaround" reconstruction.
      int4_packing: how weights of 4 bits or fewer are stored: "portable" packs CONV_2D
        weights as TFLite INT4 (accepted by ai-edge-litert 2.3, tflite-runtime 2.14 and
        tf.lite), "litert" also FULLY_CONNECTED (not loadable by tflite-runtime 2.14), "none"
        keeps int8 containers. DEPTHWISE_CONV_2D always keeps int8 containers (XNNPACK-era
        kernels disagree with the reference on INT4 depthwise weights).
      num_calibration_batches: at most this many representative batches are used.
      calibration_batch_size: batch size used when representative data is one big array.
      calibration_kernels: "default" runs calibration on TFLite's optimized float kernels;
        "reference" on its reference kernels: slower, but the same ranges, and so the same
        .tflite bytes, on every CPU (the optimized kernels round differently on AVX2,
        AVX-512 and NEON machines).
      cross_layer_equalization: equalize the weight ranges of consecutive conv / dense layers
        (Nagel et al. 2019) before quantizing; helps per-tensor weights most.
      equalize_through_relu6: also equalize across ReLU6 by turning it into ReLU (AIMET's
        choice; changes the float model, so measure it).
      bias_correction: correct each conv / dense bias for the mean output shift its weight
        quantization causes, E[(W_q - W) x], from the calibration data's channel means.
      float_layers: names of layers to keep float in int8 mode (with the ops reading their
        outputs), e.g. the worst layers tfquant.debugger finds.
      int16_layers: names of layers to run in 16x8 mode (int16 activations, int8 weights)
        inside an int8 model: the integer-only alternative to float_layers.
      route: how a Keras model reaches tfquant's IR (docs/architecture.md, "Two routes
        in"): "auto" reads it layer by layer where the Keras frontend knows every layer and
        otherwise lowers the whole model with TFLiteConverter; "native" refuses models with
        unknown layers; "lowered" always lowers.
      float_fallback: deprecated, no effect: the "auto" route converts models with layers the
        Keras frontend cannot read (ops without an int8 kernel stay float in either route).
    """

    mode: str = "int8"
    per_channel: bool = True
    per_channel_dense: Optional[bool] = None
    inference_input_type: str = "float32"
    inference_output_type: str = "float32"
    calibration_method: str = "auto"
    ema_decay: float = 0.9
    percentile: float = 99.99
    weight_range_method: str = "minmax"
    weight_bits: int = 8
    weight_rounding: str = "nearest"
    rounding_iterations: int = 1000
    int4_packing: str = "portable"
    num_calibration_batches: int = 100
    calibration_batch_size: int = 32
    calibration_kernels: str = "default"
    cross_layer_equalization: bool = False
    equalize_through_relu6: bool = False
    bias_correction: bool = False
    float_layers: tuple = ()
    int16_layers: tuple = ()
    route: str = "auto"
    float_fallback: bool = False

    def __post_init__(self):
        if self.float_fallback:
            warnings.warn("Recipe.float_fallback is deprecated and has no effect: the default "
                          "route='auto' converts models with layers the Keras frontend cannot "
                          "read", DeprecationWarning, stacklevel=3)
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {self.route!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for field in ("inference_input_type", "inference_output_type"):
            if getattr(self, field) not in IO_TYPES:
                raise ValueError(f"{field} must be one of {IO_TYPES}, got "
                                 f"{getattr(self, field)!r}")
        if self.mode != "int8" and (self.inference_input_type != "float32"
                                    or self.inference_output_type != "float32"):
            raise ValueError("integer model inputs/outputs need mode='int8'")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration_method must be one of {CALIBRATION_METHODS}, got "
                             f"{self.calibration_method!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.weight_range_method not in WEIGHT_RANGE_METHODS:
            raise ValueError(f"weight_range_method must be one of {WEIGHT_RANGE_METHODS}, got "
                             f"{self.weight_range_method!r}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise ValueError(f"weight_rounding must be one of {WEIGHT_ROUNDINGS}, got "
                             f"{self.weight_rounding!r}")
        if self.weight_rounding != "nearest" and self.mode not in ("int8", "int16x8"):
            raise ValueError(f"weight_rounding={self.weight_rounding!r} chooses weight codes "
                             "from calibration data: it needs mode 'int8' or 'int16x8', not "
                             f"{self.mode!r}")
        if self.rounding_iterations < 0:
            raise ValueError("rounding_iterations must be at least 0")
        if not 2 <= self.weight_bits <= 8:
            raise ValueError(f"weight_bits must be in 2..8, got {self.weight_bits}")
        if self.int4_packing not in INT4_PACKINGS:
            raise ValueError(f"int4_packing must be one of {INT4_PACKINGS}, got "
                             f"{self.int4_packing!r}")
        for field in ("float_layers", "int16_layers"):
            names = getattr(self, field)
            object.__setattr__(self, field, (names,) if isinstance(names, str) else tuple(names))
        if self.int16_layers and self.mode != "int8":
            raise ValueError("int16_layers mixes 16x8 layers into an int8 model: it needs "
                             f"mode='int8', not {self.mode!r}")
        if self.int16_layers and (self.inference_input_type != "float32"
                                  or self.inference_output_type != "float32"):
            raise ValueError("int16_layers needs float32 model inputs and outputs")
        both = sorted(set(self.float_layers) & set(self.int16_layers))
        if both:
            raise ValueError(f"layers cannot be both float and int16: {', '.join(both)}")
        if self.num_calibration_batches < 1:
            raise ValueError("num_calibration_batches must be at least 1")
        if self.calibration_kernels not in ("default", "reference"):
            raise ValueError("calibration_kernels must be 'default' or 'reference', got "
                             f"{self.calibration_kernels!r}")
        if self.calibration_batch_size < 1:
            raise ValueError("calibration_batch_size must be at least 1")

    def packs_int4(self, needed: str) -> bool:
        """Whether this recipe's int4_packing covers an op that needs setting `needed`."""
        return INT4_PACKINGS.index(self.int4_packing) >= INT4_PACKINGS.index(needed)

    @property
    def dense_per_channel(self) -> bool:
        return self.per_channel if self.per_channel_dense is None else self.per_channel_dense

    @property
    def needs_calibration(self) -> bool:
        return self.mode in ("int8", "int16x8")
