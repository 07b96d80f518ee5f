"""tfquant-qat-families: quantization-aware training of the layer families beyond CNNs, side
by side with post-training quantization and tfmot's QAT.

For each model of tfquant.experiments.qat_families (a ViT-tiny, a Conv1D + GRU sequence
classifier, a U-Net denoiser, an EfficientNet-style network with squeeze-excite; float weights
trained here with seed 0 and cached), and for each seed:
  - PTQ with tfquant's recipes ("auto", minmax, MSE ranges) calibrated on a random subset of
    the training data drawn with that seed;
  - tfquant QAT fine-tuning from the float model (ranges started from the same calibration
    subset, batches in the seed's order), exported to int8 TFLite from its learned ranges;
  - tfmot QAT of the tf_keras copy with the same batches, where tfmot can quantize the model
    (else its refusal is quoted).
Every int8 model runs on ai-edge-litert. The metric is top-1 accuracy, or for the denoiser the
SQNR in dB of its output against the clean digits. The report gives the mean and standard error
over the seeds, and the paired difference of QAT against the best PTQ recipe and against tfmot.

Example:
  tfquant-qat-families --families=vit_tiny,efficientnet_se --seeds=1,2,3 \\
      --output=docs/qat_families.md
"""

import dataclasses
import time

import numpy as np

from tfquant.tools import _app
from tfquant.tools._app import option

PTQ_RECIPES = {"auto": {}, "minmax": {"calibration_method": "minmax"},
               "mse": {"calibration_method": "mse"}}


@dataclasses.dataclass(frozen=True)
class Config:
    families: tuple[str, ...] = option(
        ("vit_tiny", "conv1d_gru", "unet_denoiser", "efficientnet_se"), "Models to evaluate.",
        choices=("vit_tiny", "conv1d_gru", "unet_denoiser", "efficientnet_se"))
    seeds: tuple[int, ...] = option((1, 2, 3), "Paired seeds: calibration subset and batch "
                                    "order.")
    qat_epochs: int = option(2, "Fine-tuning epochs of every QAT run.", lower=1)
    learning_rate: float = option(1e-4, "Adam learning rate of every QAT run.")
    calibration_samples: int = option(256, "Calibration subset size (PTQ and QAT ranges).",
                                      lower=1)
    train_samples: int = option(0, "Use only this many training samples for QAT (0: all).",
                                lower=0)
    tfmot: bool = option(True, "Also run tfmot's QAT of the tf_keras copy.")
    output: str = option("", "Markdown report to write (default: print only).")

    def __post_init__(self):
        _app.validate(self)
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed")


def _mean_se(values) -> tuple:
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def _cell(values, metric) -> str:
    mean, se = _mean_se(values)
    scale, unit = (100.0, "%") if metric == "top-1" else (1.0, "")
    text = f"{scale * mean:.2f}{unit}"
    return text if np.isnan(se) else f"{text} ± {scale * se:.2f}"


def evaluate(name: str, config: Config) -> dict:
    """One family's scores: {row label: [score per seed]}, the notes, and the metric."""
    import keras

    import tfquant
    from tfquant import qat, runtime
    from tfquant.experiments import peers, qat_families

    f, model = qat_families.family(name, _app.log)
    x_train, y_train = f.train
    if config.train_samples:
        x_train, y_train = x_train[:config.train_samples], y_train[:config.train_samples]
    x_test, y_test = f.test
    scores = {"float": [f.score(model.predict(x_test, verbose=0), y_test)] * len(config.seeds)}
    notes = []
    for seed in config.seeds:
        subset = np.random.default_rng(seed).choice(len(f.train[0]), config.calibration_samples,
                                                    replace=False)
        calibration = f.train[0][np.sort(subset)]
        batches = [calibration[i:i + 32] for i in range(0, len(calibration), 32)]
        for label, fields in PTQ_RECIPES.items():
            _app.log(f"[{name}] seed {seed}: PTQ {label}")
            int8 = tfquant.convert_model(model, batches, tfquant.Recipe(**fields),
                                         show_progress=False).model
            scores.setdefault(f"PTQ {label}", []).append(
                f.score(runtime.Runner(int8, "litert").predict(x_test), y_test))
        _app.log(f"[{name}] seed {seed}: tfquant QAT, {config.qat_epochs} epochs")
        start = time.perf_counter()
        qat_model = qat.fine_tune(model, x_train, y_train, epochs=config.qat_epochs,
                                  learning_rate=config.learning_rate, seed=seed, loss=f.loss,
                                  calibration=calibration)
        scores.setdefault("QAT seconds", []).append(time.perf_counter() - start)
        scores.setdefault("tfquant QAT (Keras, simulated)", []).append(
            f.score(qat_model.predict(x_test, verbose=0), y_test))
        int8 = tfquant.convert(qat_model, show_progress=False)
        scores.setdefault("tfquant QAT int8", []).append(
            f.score(runtime.Runner(int8, "litert").predict(x_test), y_test))
        if seed == config.seeds[0]:
            kept = qat.float_layers(qat_model)
            notes.append("tfquant QAT keeps float: " + (", ".join(
                f"{n} ({k})" for n, k in kept) if kept else "nothing"))
        if config.tfmot:
            copy, reason = qat_families.tf_keras_copy(f, model)
            if copy is not None:
                try:
                    _app.log(f"[{name}] seed {seed}: tfmot QAT of the tf_keras copy")
                    data, _ = peers.tfmot_qat(copy, x_train, y_train, epochs=config.qat_epochs,
                                              learning_rate=config.learning_rate, seed=seed,
                                              loss=f.loss)
                    scores.setdefault("tfmot QAT int8", []).append(
                        f.score(runtime.Runner(data, "litert").predict(x_test), y_test))
                except Exception as e:  # noqa: BLE001  tfmot's refusal is a result
                    reason = qat_families.first_line(e, 300)
            if reason and seed == config.seeds[0]:
                notes.append(f"tfmot QAT: fails: \"{reason}\"")
        keras.backend.clear_session()
    return {"name": name, "metric": f.metric, "scores": scores, "notes": notes}


def best_ptq(scores: dict) -> str:
    """The PTQ row with the best mean over the seeds."""
    return max((k for k in scores if k.startswith("PTQ ")), key=lambda k: np.mean(scores[k]))


def format_report(results: list, config: Config) -> str:
    lines = []
    for r in results:
        scores, metric = r["scores"], r["metric"]
        best = best_ptq(scores)
        lines += [f"### {r['name']} ({metric}, {len(config.seeds)} seeds)", "",
                  f"| model | {metric} (mean ± standard error) |", "|---|---|"]
        for label, values in scores.items():
            if label == "QAT seconds":
                continue
            shown = f"**{label}** (best PTQ)" if label == best else label
            lines.append(f"| {shown} | {_cell(values, metric)} |")
        qat_int8 = np.asarray(scores["tfquant QAT int8"])
        pairs = [("best PTQ", best)] + ([("tfmot", "tfmot QAT int8")]
                                        if "tfmot QAT int8" in scores else [])
        lines.append("")
        for peer, key in pairs:
            difference = qat_int8 - np.asarray(scores[key])
            lines.append(f"- tfquant QAT int8 - {peer} ({key}): "
                         f"{_cell(difference, metric)} (paired over seeds)")
        lines += [f"- {note}" for note in r["notes"]]
        lines.append(f"- QAT fine-tuning: {np.mean(scores['QAT seconds']):.0f} s per seed")
        lines.append("")
    return "\n".join(lines)


def main(config: Config) -> int:
    import tfquant  # noqa: F401  (loads before tensorflow)
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    start = time.perf_counter()
    results = [evaluate(name, config) for name in config.families]
    text = format_report(results, config)
    print(text)
    if config.output:
        command = _app.command_line("tfquant-qat-families", config)
        body = (f"\n\n{len(config.families)} models, seeds {list(config.seeds)}, "
                f"{config.qat_epochs} QAT epochs (Adam {config.learning_rate}), "
                f"{(time.perf_counter() - start) / 60:.1f} min. Every int8 model runs on "
                "ai-edge-litert. PTQ and QAT of one seed share the calibration subset; QAT "
                "and tfmot of one seed share the batch order. QAT's epochs also train the "
                "weights further (where its simulated score passes the float model's, part "
                "of its margin over PTQ is that training, not quantization-awareness).\n\n"
                + text)
        _app.write_report(config.output, "Quantization-aware training beyond CNNs", body,
                          command)
    return 0


def run():
    """Console-script entry point (tfquant-qat-families)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
