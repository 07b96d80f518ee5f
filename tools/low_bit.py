"""tfquant-low-bit: 4-bit and 3-bit weights (int8 activations) with round-to-nearest (max |w|
and MSE clipping), GPTQ-style and AdaRound-style rounding (Recipe.weight_rounding) and 4-bit
quantization-aware training, side by side on trained models: output SQNR against the float
model, top-1 for classifiers, file size and conversion time; a markdown report and a PNG.

Each post-training method converts every model once per calibration draw (a different random
subset of the model's calibration pool) with minmax activation ranges, so that rows differ only
in their weights; SQNR is pooled over draws x disjoint test sets (mean ± standard error) on
ai-edge-litert. QAT fine-tunes the MNIST classifiers (--qat_models) from their float weights
with 4-bit per-channel weights, once (seed 0), and exports with its learned ranges.

Criterion (per model and bit width): the better data-driven rounding's pooled SQNR > round-to-
nearest with MSE clipping's, and, where QAT ran, it closes at least half of the gap between
round-to-nearest (the better of its two ranges) and QAT.

Example:
  tfquant-low-bit --models=mnist_resnet,mtcnn_rnet --bits=4 --calibration_draws=3
"""

import dataclasses
import time

from tfquant.experiments import coverage_models
from tfquant.tools import _app
from tfquant.tools._app import option

METHODS = {
    "nearest": ("nearest, max-abs", {}),
    "nearest_mse": ("nearest, MSE clip", {"weight_range_method": "mse"}),
    "gptq": ("GPTQ-style", {"weight_rounding": "gptq"}),
    "adaround": ("AdaRound-style", {"weight_rounding": "adaround"}),
}
DATA_DRIVEN = ("gptq", "adaround")
KERAS_GPTQ = "Keras GPTQ"
MODELS = (tuple(f"mnist_{n}" for n in coverage_models.ZOO) + coverage_models.LAYER_ZOO
          + tuple(coverage_models.MTCNN) + ("basic_pitch_saved_model",))
QAT_MODELS = tuple(f"mnist_{n}" for n in coverage_models.ZOO) + ("vit_tiny",)


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple = option(MODELS, "Models (tfquant.experiments.coverage_models names).",
                           choices=coverage_models.NAMES)
    bits: tuple[int, ...] = option((4, 3), "Weight bit widths.", choices=(2, 3, 4, 5, 6, 7, 8))
    calibration_draws: int = option(3, "Calibration draws per model.", lower=1)
    test_sets: int = option(3, "Disjoint test sets per model.", lower=1)
    qat_models: tuple = option(QAT_MODELS, "Models that also get 4-bit QAT (MNIST "
                               "classifiers only; empty: none).", choices=QAT_MODELS)
    qat_epochs: int = option(2, "QAT fine-tuning epochs.", lower=1)
    output: str = option("docs/low_bit.md", "Markdown report to write.")
    plot: str = option("docs/low_bit.png", "PNG of the SQNR per model and method.")

    def __post_init__(self):
        _app.validate(self)
        if not self.models or not self.bits:
            raise ValueError("--models and --bits need at least one value")


def _measure(runner_model, case, reference, labels_out: list) -> list:
    import numpy as np

    from tfquant import runtime
    from tfquant.tools.coverage import as_list, matched_sqnr
    runner = runtime.Runner(runner_model, "litert")
    values = []
    for i, x in enumerate(case.tests):
        value, first = matched_sqnr(reference[i], as_list(runner.predict(x)))
        values.append(value)
        if case.labels is not None:
            labels_out.append(np.argmax(first, -1) == case.labels[i])
    return values


def _post_training(case, reference, bits: int, method: str, log) -> dict:
    import tfquant
    result = {"sqnr": [], "correct": [], "seconds": [], "bytes": None, "error": None}
    for d, batches in enumerate(case.calibration):
        try:
            start = time.perf_counter()
            converted = tfquant.convert_model(case.model, batches, tfquant.Recipe(
                weight_bits=bits, calibration_method="minmax", **METHODS[method][1]),
                show_progress=False)
            result["seconds"].append(time.perf_counter() - start)
            result["bytes"] = len(converted.model)
            result["sqnr"] += _measure(converted.model, case, reference, result["correct"])
        except Exception as e:  # noqa: BLE001  a failure is a result
            from tfquant.tools.coverage import one_line
            result["error"] = one_line(e)
            break
        log(f"  {bits}-bit {METHODS[method][0]}, draw {d + 1}: "
            f"{result['sqnr'][-1]:.2f} dB, {result['seconds'][-1]:.1f} s")
    return result


def _keras_gptq(case, reference, bits: int, log) -> dict:
    """Keras 3's own GPTQ on each calibration draw, converted by tfquant with Keras's codes
    (None where Keras's GPTQ does not apply: it reads token ids through an Embedding)."""
    import numpy as np

    import tfquant
    from tfquant.experiments import peers
    if not hasattr(case.model, "layers"):
        return None
    result = {"sqnr": [], "correct": [], "seconds": [], "bytes": None, "error": None}
    for d, batches in enumerate(case.calibration):
        start = time.perf_counter()
        quantized = peers.keras_gptq(case.model, np.concatenate(batches), bits)
        if quantized is None:
            return None
        converted = tfquant.convert_model(quantized, batches, tfquant.Recipe(
            calibration_method="minmax"), show_progress=False)
        result["seconds"].append(time.perf_counter() - start)
        result["bytes"] = len(converted.model)
        result["sqnr"] += _measure(converted.model, case, reference, result["correct"])
        log(f"  {bits}-bit {KERAS_GPTQ}, draw {d + 1}: {result['sqnr'][-1]:.2f} dB, "
            f"{result['seconds'][-1]:.1f} s")
    return result


def _qat(case, reference, name: str, epochs: int, log) -> dict:
    import tfquant
    from tfquant import qat
    from tfquant.models.data import load_mnist_5k
    mnist = load_mnist_5k()
    start = time.perf_counter()
    qat_model = qat.fine_tune(case.model, mnist.x_train, mnist.y_train,
                              qat.QatRecipe(weight_bits=4), epochs=epochs, seed=0,
                              calibration=mnist.x_train[:512])
    converted = tfquant.convert_model(qat_model, show_progress=False)
    result = {"sqnr": [], "correct": [], "seconds": [time.perf_counter() - start],
              "bytes": len(converted.model), "error": None}
    result["sqnr"] = _measure(converted.model, case, reference, result["correct"])
    log(f"  4-bit QAT ({epochs} epochs): {sum(result['sqnr']) / len(result['sqnr']):.2f} dB, "
        f"{result['seconds'][0]:.0f} s")
    return result


def evaluate(name: str, config: Config) -> dict:
    """{name, error, float_top1, results: {(bits, method): {...}}} of one model."""
    import numpy as np

    from tfquant.tools.coverage import float_outputs, one_line
    entry = {e.name: e for e in coverage_models.models()}[name]
    row = {"name": name, "error": None, "float_top1": None, "results": {}}
    try:
        case = entry.build(config.calibration_draws, config.test_sets, 64, _app.log)
        reference = [float_outputs(case.model, x) for x in case.tests]
    except Exception as e:  # noqa: BLE001  a model that cannot be built is a result
        row["error"] = one_line(e)
        return row
    if case.labels is not None:
        row["float_top1"] = float(np.mean(np.concatenate(
            [np.argmax(r[0], -1) == y for r, y in zip(reference, case.labels)])))
    for bits in config.bits:
        for method in METHODS:
            row["results"][bits, method] = _post_training(case, reference, bits, method,
                                                          _app.log)
        try:
            keras_result = _keras_gptq(case, reference, bits, _app.log)
        except Exception as e:  # noqa: BLE001  a failure is a result
            keras_result = {"sqnr": [], "error": one_line(e)}
        if keras_result is not None:
            row["results"][bits, "keras_gptq"] = keras_result
    if name in config.qat_models and 4 in config.bits:
        try:
            row["results"][4, "qat"] = _qat(case, reference, name, config.qat_epochs, _app.log)
        except Exception as e:  # noqa: BLE001
            row["results"][4, "qat"] = {"sqnr": [], "error": one_line(e)}
    return row


def pooled(result) -> float:
    import numpy as np
    return float(np.mean(result["sqnr"])) if result and result.get("sqnr") else float("nan")


def criterion(row: dict, bits: int) -> str:
    """Whether the better data-driven rounding beats MSE-clipped nearest (and closes half the
    gap to QAT where it ran), with the figures that say so."""
    results = row["results"]
    best = max(DATA_DRIVEN, key=lambda m: pooled(results.get((bits, m))))
    ours, mse = pooled(results.get((bits, best))), pooled(results.get((bits, "nearest_mse")))
    if ours != ours or mse != mse:
        return "not measured"
    met = ours > mse
    text = f"{METHODS[best][0]} {ours - mse:+.2f} dB over MSE-clipped nearest"
    trained = pooled(results.get((bits, "qat")))
    if trained == trained:
        nearest = max(mse, pooled(results.get((bits, "nearest"))))
        gap = trained - nearest
        closed = (ours - nearest) / gap if gap > 0 else float("inf")
        met = met and closed >= 0.5
        text += (f"; closes {closed:.0%} of nearest's gap to QAT" if gap > 0 else
                 "; QAT is no better than nearest")
    return ("met: " if met else "NOT met: ") + text


def _cell(result) -> str:
    from tfquant.experiments import reports
    if result is None:
        return "-"
    if result.get("error"):
        return f"fails: {result['error'][:80]}"
    s = reports.spread(result["sqnr"])
    return f"{s.mean:.2f} ± {s.stderr:.2f}" if s.n > 1 else f"{s.mean:.2f}"


def _label(method: str) -> str:
    return METHODS[method][0] if method in METHODS else \
        {"keras_gptq": KERAS_GPTQ, "qat": "QAT"}[method]


def format_report(rows: list, config: Config, seconds: float) -> str:
    import numpy as np

    from tfquant.experiments import reports
    methods = list(METHODS) + ["keras_gptq", "qat"]
    labels = [_label(m) for m in methods]
    text = (f"\n\n{len(rows)} of {len(config.models)} models, {seconds / 60:.1f} min. Weights "
            "of conv / depthwise / dense ops at the given bits (symmetric, per channel), "
            "activations int8 (minmax ranges for every post-training row). Output SQNR (dB) "
            f"against the float model, pooled over {config.calibration_draws} calibration "
            f"draws x {config.test_sets} disjoint test sets (mean ± standard error; QAT: one "
            "training, test sets only), on ai-edge-litert. Keras GPTQ: Keras 3's "
            "model.quantize(\"gptq\") (one group per output, asymmetric) converted by tfquant "
            "with Keras's codes, where it applies (token models: it reads token ids through "
            "an Embedding). QAT's SQNR also counts its fine-tuning's drift from the float "
            "model: top-1 is the fairer measure there. '-': not run. See "
            "docs/weight_rounding.md for the methods.\n\n![SQNR per model](low_bit.png)\n\n")
    table = []
    for row in rows:
        if row["error"]:
            table.append([row["name"], "-", f"cannot build: {row['error']}"]
                         + [""] * (len(methods) + 1))
            continue
        for bits in config.bits:
            table.append([row["name"], str(bits)]
                         + [_cell(row["results"].get((bits, m))) for m in methods]
                         + [criterion(row, bits)])
    text += reports.markdown_table(["model", "bits", *labels, "criterion"], table)
    extra = []
    for row in rows:
        for bits in config.bits:
            for m in methods:
                r = row["results"].get((bits, m))
                if not r or r.get("error") or not r.get("seconds"):
                    continue
                top1 = f"{np.mean(np.concatenate(r['correct'])):.3f}" if r.get("correct") \
                    else "-"
                extra.append([row["name"], str(bits), labels[methods.index(m)], top1,
                              f"{r['bytes'] / 1024:.1f}", f"{np.median(r['seconds']):.2f}"])
    text += "\n\nTop-1 (classifiers; float: " + ", ".join(
        f"{r['name']} {r['float_top1']:.3f}" for r in rows if r["float_top1"] is not None) + \
        "), file size and median conversion time (QAT: fine-tuning and export):\n\n"
    text += reports.markdown_table(["model", "bits", "method", "top-1", "KiB", "seconds"],
                                   extra)
    return text


def plot(rows: list, config: Config, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tfquant.experiments import reports
    methods = list(METHODS) + ["keras_gptq", "qat"]
    fig, axes = plt.subplots(len(config.bits), 1, figsize=(max(6, 1.1 * len(rows)), 3.2 *
                                                            len(config.bits)), squeeze=False)
    for ax, bits in zip(axes[:, 0], config.bits):
        width = 0.8 / len(methods)
        for j, m in enumerate(methods):
            values = [pooled(r["results"].get((bits, m))) if not r["error"] else np.nan
                      for r in rows]
            ax.bar(np.arange(len(rows)) + (j - len(methods) / 2 + 0.5) * width, values, width,
                   label=_label(m))
        ax.set_xticks(np.arange(len(rows)), [r["name"] for r in rows], rotation=30,
                      ha="right", fontsize=8)
        ax.set_ylabel(f"{bits}-bit weights: SQNR (dB)")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=len(methods))
    fig.tight_layout()
    reports.save_png(fig, path)


def main(config: Config) -> int:
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    command = _app.command_line("tfquant-low-bit", config)

    def evaluate_logged(name):
        row = evaluate(name, config)
        for bits in config.bits if not row["error"] else ():
            _app.log(f"{name}, {bits} bits: {criterion(row, bits)}")
        return row

    def report(rows, seconds):
        text = format_report(rows, config, seconds)
        _app.write_report(config.output, "tfquant low-bit weights", text, command)
        plot(rows, config, config.plot)
        return text

    print(_app.model_by_model(config.models, evaluate_logged, report)[1])
    return 0


def run():
    """Console-script entry point (tfquant-low-bit)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
