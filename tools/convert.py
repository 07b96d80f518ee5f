"""tfquant-convert: convert a Keras model file to a TFLite flatbuffer (float, int8, weight-only).

Examples:
  tfquant-convert --model=model.keras --output=model_int8.tflite --calibration_data=mnist_5k
  tfquant-convert --model=model.h5 --output=model.tflite --mode=float
  tfquant-convert --model=saved_model_dir --output=m.tflite --calibration_data=calib.npy \
      --inference_type=int8 --per_channel_dense=false
"""

import os
import sys

from absl import app, flags

from tfquant.tools import _app

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Model to convert: a .keras or .h5 file, a SavedModel "
                    "directory holding a Keras model, or a float .tflite file.")
flags.DEFINE_string("output", None, "Path of the .tflite file to write. Written atomically: "
                    "a failed run leaves no file and never damages an existing one.")
flags.DEFINE_enum("mode", "int8", ["float", "float16", "int8", "int16x8", "weights_only"],
                  "float: float32 model. int8: full integer (int8 weights and activations, "
                  "needs calibration data). weights_only: int8 weights, float activations "
                  "(TFLite dynamic-range kernels).")
flags.DEFINE_boolean("per_channel", True, "Per-channel weight scales for convolutions "
                     "(recommended); false gives one scale per weight tensor.")
flags.DEFINE_enum("per_channel_dense", "auto", ["auto", "true", "false"],
                  "Per-channel weights for fully-connected layers; 'auto' follows "
                  "--per_channel. Use false for consumers that want per-tensor FC "
                  "(microcontrollers, some NPUs).")
flags.DEFINE_string("calibration_data", None,
                    "Representative inputs for --mode=int8: a .npy file (one array, "
                    "samples first), a .npz file (array 'x', or one array per model input), "
                    "or a built-in data set: 'mnist_5k' (28x28x1) or 'digits' (8x8x1).")
flags.DEFINE_integer("num_calibration_batches", 100, "At most this many batches are used for "
                     "calibration (the paper: about 100 suffice).", lower_bound=1)
flags.DEFINE_integer("calibration_batch_size", 32, "Batch size for calibration.",
                     lower_bound=1)
flags.DEFINE_enum("calibration_kernels", "default", ["default", "reference"],
                  "TFLite kernels that run calibration: default (optimized, fast) or "
                  "reference (slower; the same ranges, and so the same output bytes, on every "
                  "CPU).")
flags.DEFINE_enum("calibration_method", "minmax", ["minmax", "ema", "percentile", "mse"],
                  "Activation range estimator: absolute min/max, a moving average of "
                  "per-batch min/max, a percentile of the values, or the range with the "
                  "smallest int8 quantization error.")
flags.DEFINE_float("ema_decay", 0.9, "Decay of the 'ema' range estimator.")
flags.DEFINE_float("percentile", 99.99, "Percentile of the 'percentile' range estimator.")
flags.DEFINE_bool("cross_layer_equalization", False, "Equalize the weight ranges of "
                  "consecutive conv / dense layers before quantizing (helps per-tensor "
                  "weights).")
flags.DEFINE_bool("equalize_through_relu6", False, "With --cross_layer_equalization, also "
                  "equalize across ReLU6 by turning it into ReLU (changes the float model).")
flags.DEFINE_bool("bias_correction", False, "Correct biases for the mean output shift of "
                  "weight quantization, from the calibration data.")
flags.DEFINE_integer("weight_bits", 8, "Bits per weight (2..8).", lower_bound=2,
                     upper_bound=8)
flags.DEFINE_enum("int4_packing", "portable", ["none", "portable", "litert"],
                  "Storage of weights of 4 bits or fewer: TFLite INT4 for CONV_2D (portable), "
                  "also FULLY_CONNECTED (litert: not loadable by tflite-runtime 2.14), or int8 "
                  "containers (none).")
flags.DEFINE_enum("weight_range_method", "minmax", ["minmax", "mse"],
                  "Weight ranges: each channel's max |w|, or the clipping with the smallest "
                  "quantization error.")
flags.DEFINE_enum("inference_type", "float", ["float", "int8", "uint8"],
                  "Type of the int8 model's inputs and outputs: float (QUANTIZE/DEQUANTIZE "
                  "inside the model), int8 or uint8. Overridden per side by "
                  "--inference_input_type / --inference_output_type.")
flags.DEFINE_enum("inference_input_type", None, ["float32", "int8", "uint8"],
                  "Type of the int8 model's inputs (default: --inference_type).")
flags.DEFINE_enum("inference_output_type", None, ["float32", "int8", "uint8"],
                  "Type of the int8 model's outputs (default: --inference_type).")
flags.DEFINE_boolean("float_fallback", False, "Keep layers tfquant cannot quantize in float "
                     "(real float TFLite ops with DEQUANTIZE/QUANTIZE around them) instead of "
                     "failing.")
flags.DEFINE_boolean("overwrite", True, "Replace --output if it exists (only once the new "
                     "model is complete).")
flags.DEFINE_boolean("quiet", False, "Print nothing but errors.")

BUILTIN_DATASETS = ("mnist_5k", "digits")


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
        arrays = [loaded[name] for name in loaded.files]
    if not arrays:
        raise CalibrationDataError(f"calibration data {spec!r} holds no arrays")
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


def _io_type(side_flag):
    if side_flag is not None:
        return side_flag
    return "float32" if FLAGS.inference_type == "float" else FLAGS.inference_type


def main(argv):
    del argv
    import tfquant
    from tfquant.errors import TfquantError

    if not FLAGS.model or not FLAGS.output:
        raise app.UsageError("--model and --output are required")
    per_channel_dense = {"auto": None, "true": True, "false": False}[FLAGS.per_channel_dense]
    try:
        output_dir = os.path.dirname(os.path.abspath(FLAGS.output))
        if not os.path.isdir(output_dir):
            raise TfquantError(f"output directory {output_dir!r} does not exist; create it "
                               "first")
        if os.path.exists(FLAGS.output) and not FLAGS.overwrite:
            raise TfquantError(f"output {FLAGS.output!r} exists and --nooverwrite was given")
        try:
            recipe = tfquant.Recipe(
                mode=FLAGS.mode, per_channel=FLAGS.per_channel,
                per_channel_dense=per_channel_dense,
                inference_input_type=_io_type(FLAGS.inference_input_type),
                inference_output_type=_io_type(FLAGS.inference_output_type),
                calibration_method=FLAGS.calibration_method, ema_decay=FLAGS.ema_decay,
                percentile=FLAGS.percentile, weight_range_method=FLAGS.weight_range_method,
                weight_bits=FLAGS.weight_bits, int4_packing=FLAGS.int4_packing,
                cross_layer_equalization=FLAGS.cross_layer_equalization,
                equalize_through_relu6=FLAGS.equalize_through_relu6,
                bias_correction=FLAGS.bias_correction,
                num_calibration_batches=FLAGS.num_calibration_batches,
                calibration_batch_size=FLAGS.calibration_batch_size,
                calibration_kernels=FLAGS.calibration_kernels,
                float_fallback=FLAGS.float_fallback)
        except ValueError as e:
            raise TfquantError(str(e)) from None
        data = None
        if FLAGS.mode == "int8":
            if not FLAGS.calibration_data:
                raise TfquantError("--mode=int8 needs --calibration_data (a .npy/.npz file or "
                                   f"one of {', '.join(BUILTIN_DATASETS)})")
            data = load_calibration_data(FLAGS.calibration_data)
        model = tfquant.load_keras_model(FLAGS.model)
        result = tfquant.convert_model(model, data, recipe, show_progress=not FLAGS.quiet)
        tfquant.save_atomically(result.model, FLAGS.output, overwrite=FLAGS.overwrite)
    except TfquantError as e:
        print(f"tfquant-convert: error: {e}", file=sys.stderr)
        return 1
    if not FLAGS.quiet:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(result.op_counts().items()))
        print(f"wrote {FLAGS.output}: {len(result.model):,} bytes, mode={FLAGS.mode}, "
              f"{len(result.graph.ops)} ops ({ops}), {result.seconds:.2f} s")
        for name, reason in result.float_graph.float_layers:
            print(f"kept in float: layer {name!r} ({reason})")
    return 0


def run():
    """Console-script entry point (tfquant-convert)."""
    _app.run_flags_main(main, __name__, __doc__)


if __name__ == "__main__":
    run()
