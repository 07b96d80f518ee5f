"""tfquant-convert: convert a Keras model file to a TFLite flatbuffer (float, int8, weight-only).

Examples:
  tfquant-convert --model=model.keras --output=model_int8.tflite --calibration_data=mnist_5k
  tfquant-convert --model=model.h5 --output=model.tflite --mode=float
  tfquant-convert --model=saved_model_dir --output=m.tflite --calibration_data=calib.npy \
      --inference_type=int8 --per_channel_dense=false
"""

import dataclasses
import os
import sys
from typing import Optional

from tfquant.tools import _app
from tfquant.tools._app import option

BUILTIN_DATASETS = ("mnist_5k", "digits")


@dataclasses.dataclass(frozen=True)
class Config:
    model: Optional[str] = option(None, "Model to convert: a .keras or .h5 file, a SavedModel "
                                  "directory holding a Keras model, or a float .tflite file.")
    output: Optional[str] = option(None, "Path of the .tflite file to write. Written "
                                   "atomically: a failed run leaves no file and never damages "
                                   "an existing one.")
    mode: str = option("int8", "float: float32 model. int8: full integer (int8 weights and "
                       "activations, needs calibration data). weights_only: int8 weights, float "
                       "activations (TFLite dynamic-range kernels).",
                       choices=("float", "float16", "int8", "int16x8", "weights_only"))
    per_channel: bool = option(True, "Per-channel weight scales for convolutions "
                               "(recommended); false gives one scale per weight tensor.")
    per_channel_dense: str = option("auto", "Per-channel weights for fully-connected layers; "
                                    "'auto' follows --per_channel. Use false for consumers "
                                    "that want per-tensor FC (microcontrollers, some NPUs).",
                                    choices=("auto", "true", "false"))
    calibration_data: Optional[str] = option(
        None, "Representative inputs for --mode=int8: a .npy file (one array, samples first), "
        "a .npz file (array 'x', or one array per model input: named as the inputs, or "
        "np.savez order), or a built-in data set: "
        "'mnist_5k' (28x28x1) or 'digits' (8x8x1).")
    num_calibration_batches: int = option(100, "At most this many batches are used for "
                                          "calibration (the paper: about 100 suffice).",
                                          lower=1)
    calibration_batch_size: int = option(32, "Batch size for calibration.", lower=1)
    calibration_kernels: str = option("default", "TFLite kernels that run calibration: default "
                                      "(optimized, fast) or reference (slower; the same "
                                      "ranges, and so the same output bytes, on every CPU).",
                                      choices=("default", "reference"))
    calibration_method: str = option("auto", "Activation range estimator: auto (each of the "
                                     "others, keeping the one whose int8 model is closest to "
                                     "the float model on the first calibration samples; "
                                     "minmax for int16x8), absolute min/max, a moving average "
                                     "of per-batch min/max, a percentile of the values, or "
                                     "the range with the smallest int8 quantization error "
                                     "(docs/calibration.md).",
                                     choices=("auto", "minmax", "ema", "percentile", "mse"))
    ema_decay: float = option(0.9, "Decay of the 'ema' range estimator.")
    percentile: float = option(99.99, "Percentile of the 'percentile' range estimator.")
    cross_layer_equalization: bool = option(False, "Equalize the weight ranges of consecutive "
                                            "conv / dense layers before quantizing (helps "
                                            "per-tensor weights).")
    equalize_through_relu6: bool = option(False, "With --cross_layer_equalization, also "
                                          "equalize across ReLU6 by turning it into ReLU "
                                          "(changes the float model).")
    bias_correction: bool = option(False, "Correct biases for the mean output shift of weight "
                                   "quantization, from the calibration data.")
    weight_bits: int = option(8, "Bits per weight (2..8).", lower=2, upper=8)
    int4_packing: str = option("portable", "Storage of weights of 4 bits or fewer: TFLite INT4 "
                               "for CONV_2D (portable), also FULLY_CONNECTED (litert: not "
                               "loadable by tflite-runtime 2.14), or int8 containers (none).",
                               choices=("none", "portable", "litert"))
    weight_range_method: str = option("minmax", "Weight ranges: each channel's max |w|, or the "
                                      "clipping with the smallest quantization error.",
                                      choices=("minmax", "mse"))
    weight_rounding: str = option("nearest", "Weight codes: round to nearest, or chosen from the "
                                  "calibration data to keep each conv / dense output "
                                  "closest to the float layer's: GPTQ-style error "
                                  "compensation (fast) or AdaRound-style learned rounding "
                                  "(slower); int8 / int16x8 modes, for low-bit weights "
                                  "(docs/low_bit.md).", choices=("nearest", "gptq", "adaround"))
    rounding_iterations: int = option(1000, "Adam steps of each --weight_rounding=adaround "
                                      "layer.", lower=0)
    inference_type: str = option("float", "Type of the int8 model's inputs and outputs: float "
                                 "(QUANTIZE/DEQUANTIZE inside the model), int8 or uint8. "
                                 "Overridden per side by --inference_input_type / "
                                 "--inference_output_type.", choices=("float", "int8", "uint8"))
    inference_input_type: Optional[str] = option(None, "Type of the int8 model's inputs "
                                                 "(default: --inference_type).",
                                                 choices=("float32", "int8", "uint8"))
    inference_output_type: Optional[str] = option(None, "Type of the int8 model's outputs "
                                                  "(default: --inference_type).",
                                                  choices=("float32", "int8", "uint8"))
    route: str = option("auto", "How a Keras model reaches tfquant: layer by layer where "
                        "tfquant knows every layer, else lowered whole by TFLiteConverter "
                        "(auto); only layer by layer (native); always lowered (lowered).",
                        choices=("auto", "native", "lowered"))
    float_fallback: bool = option(False, "Deprecated, no effect: --route=auto converts models "
                                  "with layers tfquant cannot read natively.")
    overwrite: bool = option(True, "Replace --output if it exists (only once the new model is "
                             "complete).")
    quiet: bool = option(False, "Print nothing but errors.")

    def __post_init__(self):
        _app.validate(self)
        if not self.model or not self.output:
            raise ValueError("--model and --output are required")



def load_calibration_data(spec: str):
    """The representative data named by --calibration_data."""
    import numpy as np

    from tfquant.errors import CalibrationDataError
    if spec in BUILTIN_DATASETS:
        from tfquant.models import data
        dataset = data.load_mnist_5k() if spec == "mnist_5k" else data.load_digits()
        return dataset.x_train
    if not os.path.exists(spec):
        raise CalibrationDataError(
            f"calibration data {spec!r} does not exist; give a .npy/.npz file or one of "
            f"{', '.join(BUILTIN_DATASETS)}")
    try:
        loaded = np.load(spec, allow_pickle=False)
    except Exception as e:
        raise CalibrationDataError(f"cannot read calibration data {spec!r}: {e}") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if "x" in loaded.files:
            return loaded["x"]
        arrays = {name: loaded[name] for name in loaded.files}
    if not arrays:
        raise CalibrationDataError(f"calibration data {spec!r} holds no arrays")
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if all(name.startswith("arr_") for name in arrays):  # np.savez(a, b): in input order
        return tuple(arrays[f"arr_{i}"] for i in range(len(arrays)))
    return arrays  # by input name


def _model_and_data(config):
    """The model (loaded unless it is lowered from its directory) and the calibration data
    its mode needs. A QAT model exports its learned ranges: it needs no --calibration_data,
    and one given is ignored (said on stderr), since calibrating would replace the ranges
    training learned. Any other model needs it for --mode=int8 / int16x8."""
    from tfquant.errors import TfquantError
    from tfquant.frontends import routes
    if config.mode not in ("int8", "int16x8"):
        return config.model, None
    if not config.calibration_data and _saved_as_qat(config.model) is False:
        model = None  # said before TensorFlow loads
    else:
        model = routes.opened(config.model, config.route)
    if model is not None and routes.qat_layers(model):
        if config.calibration_data and not config.quiet:
            print("tfquant-convert: --calibration_data ignored: a quantization-aware trained "
                  "model exports the ranges it learned", file=sys.stderr)
        return model, None
    if not config.calibration_data:
        raise TfquantError(f"--mode={config.mode} needs --calibration_data (a .npy/.npz file "
                           f"or one of {', '.join(BUILTIN_DATASETS)}) for a model that was not "
                           "trained with quantization-aware training")
    return model, load_calibration_data(config.calibration_data)


def _saved_as_qat(path: str):
    """Whether a model file holds tfquant QAT layers, read from its saved config without
    TensorFlow: True / False for .keras and .tflite files, None (unknown) for others."""
    import zipfile
    if path.endswith(".tflite"):
        return False
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode("utf-8", "replace")
    except (KeyError, OSError, zipfile.BadZipFile):
        return None
    from tfquant.frontends.routes import QAT_LAYERS
    return any(f'"tfquant>{name}"' in config for name in QAT_LAYERS)


def _io_type(config, side):
    if side is not None:
        return side
    return "float32" if config.inference_type == "float" else config.inference_type


def main(config: Config) -> int:
    """Convert config.model to config.output; 0, or 1 after a one-line error on stderr."""
    import tfquant
    from tfquant.errors import TfquantError

    per_channel_dense = {"auto": None, "true": True, "false": False}[config.per_channel_dense]
    try:
        output_dir = os.path.dirname(os.path.abspath(config.output))
        if not os.path.isdir(output_dir):
            raise TfquantError(f"output directory {output_dir!r} does not exist; create it "
                               "first")
        if os.path.exists(config.output) and not config.overwrite:
            raise TfquantError(f"output {config.output!r} exists and --nooverwrite was given")
        try:
            recipe = tfquant.Recipe(
                mode=config.mode, per_channel=config.per_channel,
                per_channel_dense=per_channel_dense,
                inference_input_type=_io_type(config, config.inference_input_type),
                inference_output_type=_io_type(config, config.inference_output_type),
                calibration_method=config.calibration_method, ema_decay=config.ema_decay,
                percentile=config.percentile, weight_range_method=config.weight_range_method,
                weight_bits=config.weight_bits, int4_packing=config.int4_packing,
                weight_rounding=config.weight_rounding,
                rounding_iterations=config.rounding_iterations,
                cross_layer_equalization=config.cross_layer_equalization,
                equalize_through_relu6=config.equalize_through_relu6,
                bias_correction=config.bias_correction,
                num_calibration_batches=config.num_calibration_batches,
                calibration_batch_size=config.calibration_batch_size,
                calibration_kernels=config.calibration_kernels, route=config.route)
        except ValueError as e:
            raise TfquantError(str(e)) from None
        if config.float_fallback and not config.quiet:
            print("tfquant-convert: --float_fallback is deprecated and has no effect "
                  "(--route=auto converts models with layers tfquant cannot read natively)",
                  file=sys.stderr)
        model, data = _model_and_data(config)
        result = tfquant.convert_model(model, data, recipe, show_progress=not config.quiet)
        tfquant.save_atomically(result.model, config.output, overwrite=config.overwrite)
    except TfquantError as e:
        print(f"tfquant-convert: error: {e}", file=sys.stderr)
        return 1
    if not config.quiet:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(result.op_counts().items()))
        print(f"wrote {config.output}: mode={config.mode}, {result.summary()}")
        print(f"ops: {ops}")
        for name, reason in result.float_graph.float_layers:
            print(f"kept in float: layer {name!r} ({reason})")
    return 0


def run():
    """Console-script entry point (tfquant-convert). Every error, the Config's included, is
    one line `tfquant-convert: error: ...` and exit code 1."""
    _app.run(Config, main, __doc__, name="tfquant-convert", error_exit_code=1)


if __name__ == "__main__":
    run()
