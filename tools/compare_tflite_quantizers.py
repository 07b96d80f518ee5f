"""tfquant-compare-tflite: quantize the same float .tflite with tfquant and with AI Edge Quantizer
(static int8 recipe, `ai-edge-quantizer`), on the same calibration data, and print per-output
SQNR against the float model and conversion time side by side (markdown on stdout, progress on
stderr). TFLiteConverter's own int8 PTQ of the Keras model is shown as a third column.

The float models are keras.applications networks (weights=None, batch-norm statistics from
photos; tfquant.models.applications) converted by TFLiteConverter, with fp32 weights and
re-saved with fp16 weights; calibration and test images are disjoint photo crops.

These networks have random weights, so their output SQNR moves by a few dB with any small
change of the quantized parameters (another calibration draw, fp16-rounded weights).
`--calibration_seeds=1,11,21,31,41` quantizes with several calibration draws (every quantizer
sees the same draw) and prints a second table: each quantizer's mean and spread over the draws
and the paired difference tfquant - TFLiteConverter, the seed noise that the comparison of
one draw is subject to. The first table is the first seed's.

Example:
  tfquant-compare-tflite --applications=MobileNetV2,ResNet50 --size=96 --weights=fp32,fp16
"""

import contextlib
import dataclasses
import io
import time

from tfquant.experiments import reports
from tfquant.tools import _app
from tfquant.tools._app import option

APPLICATIONS = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "ResNet50")


@dataclasses.dataclass(frozen=True)
class Config:
    applications: tuple = option(APPLICATIONS, "keras.applications networks to compare.",
                                 choices=APPLICATIONS)
    size: int = option(96, "Input height and width.", lower=32)
    weights: tuple = option(("fp32", "fp16"), "Float .tflite variants: fp32 and/or fp16 weights "
                            "(TFLiteConverter with supported_types=[tf.float16]).",
                            choices=("fp32", "fp16"))
    num_calibration: int = option(64, "Calibration images (photo crops).", lower=1)
    batch_size: int = option(16, "Calibration batch size.", lower=1)
    num_test: int = option(32, "Test images for the SQNR (disjoint from calibration).", lower=1)
    calibration_seeds: tuple[int, ...] = option((1,), "Seeds of the calibration photo-crop "
                                                "draws; with more than one, a table of the "
                                                "mean and spread over the draws follows.")
    tflite_converter: bool = option(True, "Also run TFLiteConverter's int8 PTQ of the Keras "
                                    "model.")

    def __post_init__(self):
        _app.validate(self)
        if not self.calibration_seeds:
            raise ValueError("--calibration_seeds needs at least one seed")


def float_tflite(model, float16: bool = False) -> bytes:
    """TFLiteConverter's float model of a Keras model (fp16 weights behind DEQUANTIZE if
    `float16`)."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def run_outputs(model: bytes, inputs, rt: str = "litert", resolver: str = "reference") -> list:
    """Every output of a model (float, dequantized if integer) for a batch per input."""
    import numpy as np

    from tfquant import runtime
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    interpreter = runtime.make_interpreter(model, rt, resolver)
    details = sorted(interpreter.get_input_details(), key=lambda d: d["index"])
    for detail, x in zip(details, inputs):
        interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    for detail, x in zip(details, inputs):
        interpreter.set_tensor(detail["index"], runtime.encode(x, detail))
    interpreter.invoke()
    return [np.asarray(runtime.decode(interpreter.get_tensor(out["index"]), out), np.float32)
            for out in interpreter.get_output_details()]


def quantize_with_ai_edge_quantizer(float_model: bytes, batches: list) -> bytes:
    """AI Edge Quantizer's static int8 recipe (int8 weights and activations, a moving average
    (0.95) of each batch's min / max) on a single-input float .tflite, calibrated on
    `batches`."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    signatures = Interpreter(model_content=float_model).get_signature_list()
    key, signature = next(iter(signatures.items()))
    (input_name,) = signature["inputs"]
    quantizer_ = quantizer.Quantizer(bytearray(float_model), recipe.static_wi8_ai8())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        calibration = quantizer_.calibrate({key: [{input_name: b} for b in batches]},
                                           num_threads=1)
        result = quantizer_.quantize(calibration, enable_progress_bar=False,
                                     enable_progress_report=False)
    return bytes(result.quantized_model)


def tfquant_recipe(num_batches: int):
    """The recipe tfquant quantizes with here (and in tests/test_tflite_frontend_applications.py):
    per-channel int8 weights and TFLiteConverter's min/max calibration (not tfquant's default
    "auto", which chooses among estimators: this compares the quantizers on equal ranges) on
    every batch."""
    import tfquant
    return tfquant.Recipe(num_calibration_batches=num_batches, calibration_method="minmax")


def quantize_with_tfquant(float_model: bytes, batches: list) -> bytes:
    import tfquant
    return tfquant.convert(float_model, batches, tfquant_recipe(len(batches)),
                           show_progress=False)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def compare_application(name: str, size: int, weights: list, num_calibration: int,
                        batch_size: int, num_test: int, tflite_converter: bool = True,
                        calibration_seeds: tuple = (1,)) -> list:
    """Rows {model, weights, seed, sqnr: {quantizer: [per output]}, seconds: {quantizer: s},
    errors: {quantizer: reason it failed}}, one per weights variant and calibration seed."""
    import numpy as np

    from tfquant import spec
    from tfquant.models import applications, data

    _app.log(f"{name}: building ({size}x{size}) ...")
    model = applications.build_application(name, size)
    test = applications.preprocess(name, data.load_photo_crops(num_test, size, seed=2))
    reference = [np.asarray(model.predict(test, verbose=0))]

    def sqnr(quantized):
        return [spec.sqnr_db(r, y) for r, y in zip(reference, run_outputs(quantized, test))]

    sources = {}
    for variant in weights:
        _app.log(f"{name} {variant}: float .tflite ...")
        sources[variant] = float_tflite(model, float16=variant == "fp16")
    rows = []
    for seed in calibration_seeds:
        rows += _compare_draw(name, model, sources, sqnr, seed, num_calibration, size,
                              batch_size, tflite_converter)
    return rows


def _compare_draw(name, model, sources, sqnr, seed, num_calibration, size, batch_size,
                  tflite_converter) -> list:
    from tfquant.experiments import peers
    from tfquant.models import applications, data
    calibration = applications.preprocess(name, data.load_photo_crops(num_calibration, size,
                                                                      seed=seed))
    batches = [calibration[i:i + batch_size] for i in range(0, num_calibration, batch_size)]
    peer = None
    if tflite_converter:
        _app.log(f"{name} (calibration seed {seed}): TFLiteConverter int8 PTQ of the Keras "
                 "model ...")
        peer = _timed(lambda: peers.convert_with_tflite_converter(model, batches))
    rows = []
    for variant, source in sources.items():
        _app.log(f"{name} {variant} (calibration seed {seed}): tfquant ...")
        ours, ours_s = _timed(lambda: quantize_with_tfquant(source, batches))
        _app.log(f"{name} {variant} (calibration seed {seed}): AI Edge Quantizer ...")
        row = {"model": name, "weights": variant, "seed": seed,
               "sqnr": {"tfquant": sqnr(ours)}, "seconds": {"tfquant": ours_s}, "errors": {}}
        try:
            theirs, theirs_s = _timed(lambda: quantize_with_ai_edge_quantizer(source, batches))
            row["sqnr"]["ai_edge_quantizer"] = sqnr(theirs)
            row["seconds"]["ai_edge_quantizer"] = theirs_s
        except Exception as e:  # noqa: BLE001  the peer's failure is a result to report
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
            _app.log(f"{name} {variant}: AI Edge Quantizer failed: {reason}")
            row["errors"]["ai_edge_quantizer"] = reason
        if peer is not None:
            row["sqnr"]["tflite_converter"] = sqnr(peer[0])
            row["seconds"]["tflite_converter"] = peer[1]
        rows.append(row)
    return rows


def difference(row: dict, key: str = "tflite_converter"):
    """Per-output SQNR tfquant - `key` in dB (None if `key` did not run)."""
    theirs = row["sqnr"].get(key)
    if theirs is None:
        return None
    return [a - b for a, b in zip(row["sqnr"]["tfquant"], theirs)]


def format_table(rows: list) -> str:
    """Markdown table of compare_application rows ('-' where TFLiteConverter was skipped)."""
    def db(r, key):
        values = r["sqnr"].get(key)
        if values is None:
            error = r.get("errors", {}).get(key)
            return f"fails ({error[:60]})" if error else "-"
        return ", ".join(f"{v:.2f}" for v in values)

    def seconds(r, key):
        value = r["seconds"].get(key)
        return "-" if value is None else f"{value:.1f}"

    keys = ("tfquant", "ai_edge_quantizer", "tflite_converter")
    table = []
    for r in rows:
        diff = difference(r)
        table.append([r["model"], r["weights"], *(db(r, k) for k in keys),
                      *(seconds(r, k) for k in keys),
                      "-" if diff is None else ", ".join(f"{d:+.2f}" for d in diff)])
    return reports.markdown_table(
        ["model", "weights", "SQNR dB tfquant", "SQNR dB AI Edge Quantizer",
         "SQNR dB TFLiteConverter (Keras)", "s tfquant", "s AI Edge Quantizer",
         "s TFLiteConverter", "tfquant - TFLiteConverter dB"], table)


def format_seed_table(rows: list) -> str:
    """Markdown table over calibration draws: per model and weights, each quantizer's mean and
    standard deviation of the (first output's) SQNR, and the paired difference tfquant -
    TFLiteConverter (mean, standard deviation, minimum)."""
    def stats(values):
        if not values:
            return "-"
        s = reports.spread(values)
        return f"{s.mean:.2f} +- {s.std if s.n > 1 else 0:.2f}"

    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["weights"]), []).append(r)
    keys = ("tfquant", "ai_edge_quantizer", "tflite_converter")
    table = []
    for (model, weights), group in groups.items():
        per_key = [stats([r["sqnr"][k][0] for r in group if k in r["sqnr"]]) for k in keys]
        diffs = [difference(r)[0] for r in group if difference(r) is not None]
        table.append([model, weights, len(group), *per_key, stats(diffs),
                      f"{min(diffs):+.2f}" if diffs else "-"])
    return reports.markdown_table(
        ["model", "weights", "draws", "SQNR dB tfquant", "SQNR dB AI Edge Quantizer",
         "SQNR dB TFLiteConverter (Keras)", "tfquant - TFLiteConverter dB", "min difference dB"],
        table)


def main(config: Config) -> int:
    """Print the comparison table(s)."""
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    seeds = list(config.calibration_seeds)
    rows = []
    for name in config.applications:
        rows += compare_application(name, config.size, list(config.weights),
                                    config.num_calibration, config.batch_size, config.num_test,
                                    config.tflite_converter, seeds)
    print(f"tfquant recipe: {tfquant_recipe(-(-config.num_calibration // config.batch_size))}\n")
    print(f"Per-output SQNR vs the float Keras model on {config.num_test} photo crops "
          f"({config.size}x{config.size}), litert reference kernels; {config.num_calibration} "
          f"calibration crops in batches of {config.batch_size}, the same for every quantizer. "
          "Conversion time includes calibration (TFLiteConverter's: from the Keras model). "
          f"Calibration seed {seeds[0]}.\n")
    print(format_table([r for r in rows if r["seed"] == seeds[0]]))
    if len(seeds) > 1:
        print(f"\nOver {len(seeds)} calibration draws (seeds {', '.join(map(str, seeds))}): "
              "mean +- standard deviation of the first output's SQNR, and of the paired "
              "difference on the same draw.\n")
        print(format_seed_table(rows))
    return 0


def run():
    """Console-script entry point (tfquant-compare-tflite)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
