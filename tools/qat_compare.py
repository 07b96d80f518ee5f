"""tfquant-qat-compare: quantization-aware training schemes side by side with PTQ and tfmot.

Trains a MobileNet-style model on MNIST-5k (fixed seeds), then, from that float checkpoint:
  - post-training quantization with tfquant (per-channel and per-layer weights);
  - tfquant QAT (paper section 3: fake quantization, batch-norm folding with the correction
    factor; one row also freezes the statistics) for several weight schemes, each fine-tuned
    the same way with each seed and exported to int8 TFLite from its learned ranges (no
    calibration); rows are means over the seeds;
  - tfmot QAT of the tf_keras copy of the same model (same weights, epochs and optimizer),
    exported by TFLiteConverter.
It prints one table: accuracy of the simulated (Keras) and exported (int8 TFLite, reference
kernels) models, the difference to float, export exactness (top-1 agreement and mean output
difference in output quantization steps) and whether depthwise weights are per-channel; plus
the fidelity of the batch-norm fold with quantization off.

Examples:
  tfquant-qat-compare
  tfquant-qat-compare --architecture=mobilenet_v1,mobilenet_v2 --output=docs/qat_results.md \
      --plot=docs/qat_accuracy.png
  tfquant-qat-compare --architecture=mobilenet_v1,mobilenet_v2,resnet --schemes=per_channel \
      --seeds=1,2,3,4,5,6,7,8,9,10 --output=docs/qat_vs_tfmot.md

With tfmot and the per_channel scheme in the run, the report ends with the paired difference
tfquant - tfmot per architecture (same seed = same batches in the same order for both).
"""

import dataclasses
import time
from typing import Optional

from tfquant.experiments import reports
from tfquant.tools import _app
from tfquant.tools._app import option

BATCH_SIZE = 64


# --schemes name: (row label, tfquant.qat.QatRecipe arguments, exportable, freeze batch norms)
SCHEMES = {
    "per_channel": ("QAT per-channel sym 8w/8a", {}, True, False),
    "per_channel_bn_frozen": ("QAT per-channel sym 8w/8a, BN frozen", {}, True, True),
    "per_layer": ("QAT per-layer sym 8w/8a", dict(weight_per_channel=False), True, False),
    "per_layer_asym": ("QAT per-layer asym 8w/8a",
                       dict(weight_per_channel=False, weight_symmetric=False), False, False),
    "per_channel_4bit": ("QAT per-channel 4w/8a", dict(weight_bits=4), True, False),
}
TFMOT_LABEL = "tfmot QAT 8w/8a (TFLiteConverter)"


@dataclasses.dataclass(frozen=True)
class Config:
    architecture: tuple = option(("mobilenet_v1",), "Model-zoo architectures to evaluate: "
                                 "mobilenet_v1, mobilenet_v2, resnet.")
    float_epochs: Optional[int] = option(None, "Train the float models here for this many "
                                         "epochs (default: the weights tfquant ships, trained "
                                         "offline).")
    qat_epochs: int = option(3, "Fine-tuning epochs of every QAT run.", lower=1)
    learning_rate: float = option(1e-4, "Adam learning rate of every QAT run.")
    freeze_bn_epochs: float = option(2.0, "The 'BN frozen' row freezes batch-norm statistics "
                                     "after this many epochs (paper 3.2.2); the other rows "
                                     "keep them updating.", lower=0.0)
    seeds: tuple[int, ...] = option((1, 2), "Fine-tuning seeds; every QAT row is the mean over "
                                    "them (single runs differ by a few tenths of a point on "
                                    "1000 test images).")
    schemes: tuple = option(tuple(SCHEMES), "QAT rows to run (tfquant): per_channel, "
                            "per_channel_bn_frozen, per_layer, per_layer_asym, "
                            "per_channel_4bit.")
    activation_initial_range: Optional[tuple[str, ...]] = option(
        None, "min,max every tfquant activation range starts its moving average from; "
        "default: QatRecipe's (-6,6), tfmot's convention; an empty value starts each range at "
        "its first training batch.")
    peers: bool = option(True, "Also run tfmot QAT on the tf_keras copy of each model.")
    output: Optional[str] = option(None, "Write the table (markdown) to this file as well.")
    plot: Optional[str] = option(None, "Write a PNG bar chart of the accuracies to this file.")

    def __post_init__(self):
        _app.validate(self)
        if not set(self.schemes) <= set(SCHEMES):
            raise ValueError(f"--schemes takes names from: {', '.join(SCHEMES)}")
        from tfquant.qat.activation_quantizer import check_initial_range
        initial = self.activation_initial_range
        try:
            check_initial_range(list(initial) if initial else None)
        except ValueError as e:
            raise ValueError(f"--activation_initial_range: {e}") from None


def _schemes(config):
    """(label, recipe, exportable, freeze batch norms) of config.schemes, in table order."""
    from tfquant import qat
    # Flag absent: QatRecipe's default; empty: None (first batch); else the values, which
    # QatRecipe turns into floats.
    initial = config.activation_initial_range
    start = {} if initial is None else dict(activation_initial_range=initial or None)
    return [(label, qat.QatRecipe(**kwargs, **start), exportable, freeze)
            for key, (label, kwargs, exportable, freeze) in SCHEMES.items()
            if key in config.schemes]


def paired_difference(ours: list, theirs: list) -> dict:
    """Mean and standard error of ours[i] - theirs[i] over paired runs, plus how many runs ours
    won, tied and lost."""
    import numpy as np
    diffs = np.asarray(ours, float) - np.asarray(theirs, float)
    if diffs.size == 0 or len(ours) != len(theirs):
        raise ValueError("paired_difference needs two equally long, non-empty lists of runs")
    d = reports.spread(diffs)
    return dict(mean=d.mean, stderr=d.stderr, n=d.n, wins=int((diffs > 0).sum()),
                ties=int((diffs == 0).sum()), losses=int((diffs < 0).sum()))


def _mean_row(runs: list) -> dict:
    """One table row from runs of several seeds: numeric fields averaged."""
    row = reports.mean_of_runs(runs)
    row["per_seed"] = [r["int8"] if r.get("int8") is not None else r["keras"] for r in runs]
    return row


def _fold_fidelity(model, x):
    """Max |QAT - float| / max |float| with quantization off: batch norms in training mode
    (before the freeze) and in inference mode (after it)."""
    import keras
    import numpy as np

    from tfquant import qat

    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    for layer in reference.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # the QAT graph has no dropout (it is an identity at inference)
    qat_model = qat.quantize_model(model)
    for layer in qat_model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    off = qat.QuantizationScheduler(quant_delay=10 ** 9)
    off.apply(qat_model)
    expected = np.asarray(reference(x, training=True))
    training = np.abs(np.asarray(qat_model(x, training=True)) - expected).max()
    training /= max(1e-12, np.abs(expected).max())
    # A fresh QAT model: the training-mode call above moved the statistics of the first one.
    qat_model = qat.quantize_model(model)
    qat.QuantizationScheduler(quant_delay=10 ** 9, freeze_bn_delay=0).apply(qat_model)
    expected = model.predict(x, verbose=0)
    inference = np.abs(qat_model.predict(x, verbose=0) - expected).max()
    return float(training), float(inference / max(1e-12, np.abs(expected).max()))


def _output_step(result) -> float:
    graph = result.graph
    for op in graph.ops:
        if op.type == "DEQUANTIZE" and op.outputs[0] in graph.outputs:
            return float(graph.tensors[op.inputs[0]].quant.scale[0])
    return float(graph.tensors[graph.outputs[0]].quant.scale[0])


def _depthwise(tflite_model) -> str:
    from tfquant.experiments import peers
    found = peers.depthwise_weight_scales(tflite_model)
    if not found:
        return "-"
    if all(n > 1 and axis for n, axis in found):
        return "per-channel"
    if all(n == 1 for n, _ in found):
        return "per-tensor"
    return "per-channel, wrong axis" if all(n > 1 for n, _ in found) else "mixed"


def _evaluate(name, model, dataset, config):
    """The table rows and the fold fidelity of one trained float model."""
    import numpy as np

    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant import qat, runtime
    from tfquant.models import zoo

    x_test, y_test = dataset.x_test, dataset.y_test
    float_acc = reports.top1_accuracy(model.predict(x_test, verbose=0), y_test)
    rows = [dict(scheme="float (Keras)", keras=float_acc, int8=None)]

    fidelity = _fold_fidelity(model, dataset.x_train[:128])
    _app.log(f"[{name}] fold fidelity, quantization off: training mode {fidelity[0]:.2e}, "
             f"inference mode {fidelity[1]:.2e} (relative max difference)")

    calibration = dataset.x_train[:3200]
    for label, per_channel in (("PTQ per-channel", True), ("PTQ per-layer", False)):
        _app.log(f"[{name}] {label} ...")
        data = tfquant.convert(model, calibration, tfquant.Recipe(per_channel=per_channel),
                               show_progress=False)
        got = runtime.Runner(data, resolver="reference").predict(x_test)
        acc = reports.top1_accuracy(got, y_test)
        rows.append(dict(scheme=label, keras=None, int8=acc, depthwise=_depthwise(data)))

    steps_per_epoch = -(-len(dataset.x_train) // BATCH_SIZE)
    for label, recipe, exportable, freeze in _schemes(config):
        runs = []
        for seed in config.seeds:
            _app.log(f"[{name}] {label}: fine-tuning {config.qat_epochs} epochs (seed {seed}) ...")
            start = time.perf_counter()
            qat_model = qat.fine_tune(
                model, dataset.x_train, dataset.y_train, recipe, epochs=config.qat_epochs,
                learning_rate=config.learning_rate, batch_size=BATCH_SIZE, seed=seed,
                freeze_bn_delay=int(config.freeze_bn_epochs * steps_per_epoch) if freeze else None)
            seconds = time.perf_counter() - start
            simulated = qat_model.predict(x_test, verbose=0)
            run = dict(scheme=label, keras=reports.top1_accuracy(simulated, y_test), int8=None,
                       seconds=seconds)
            if exportable:
                result = tfquant.convert_model(qat_model, show_progress=False)
                exported = runtime.Runner(result.model, resolver="reference").predict(x_test)
                run.update(int8=reports.top1_accuracy(exported, y_test),
                           agreement=reports.top1_agreement(simulated, exported),
                           steps=float(np.mean(np.abs(simulated - exported))
                                       / _output_step(result)),
                           depthwise=_depthwise(result.model))
            else:
                run["note"] = "simulation only: TFLite int8 weights have zero point 0"
            runs.append(run)
        rows.append(_mean_row(runs))

    if config.peers:
        from tfquant.experiments import peers
        runs = []
        for seed in config.seeds:
            _app.log(f"[{name}] tfmot QAT of the tf_keras copy: fine-tuning {config.qat_epochs} "
                     f"epochs (seed {seed}) ...")
            copy = zoo.tf_keras_copy(name, model, x_test[:64])
            start = time.perf_counter()
            data, tfmot_model = peers.tfmot_qat(copy, dataset.x_train, dataset.y_train,
                                                epochs=config.qat_epochs,
                                                learning_rate=config.learning_rate,
                                                batch_size=BATCH_SIZE, seed=seed)
            seconds = time.perf_counter() - start
            simulated = tfmot_model.predict(x_test, verbose=0)
            exported = runtime.Runner(data, resolver="reference").predict(x_test)
            runs.append(dict(scheme=TFMOT_LABEL,
                             keras=reports.top1_accuracy(simulated, y_test),
                             int8=reports.top1_accuracy(exported, y_test),
                             agreement=reports.top1_agreement(simulated, exported),
                             depthwise=_depthwise(data), seconds=seconds))
        rows.append(_mean_row(runs))
    for row in rows:
        row["delta"] = None
        best = row["int8"] if row["int8"] is not None else row["keras"]
        if row["scheme"] != "float (Keras)":
            row["delta"] = 100.0 * (best - float_acc)
    return rows, fidelity


def _format(results) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    lines = []
    for name, (rows, fidelity) in results.items():
        table = []
        for r in rows:
            delta = "-" if r["delta"] is None else f"{r['delta']:+.2f}"
            steps = "-" if r.get("steps") is None else f"{r['steps']:.3f}"
            seconds = "-" if r.get("seconds") is None else f"{r['seconds']:.0f}"
            scheme = r["scheme"] + (f" ({r['note']})" if r.get("note") else "")
            per_seed = ", ".join(f"{100 * v:.1f}" for v in r.get("per_seed", []))
            table.append([scheme, pct(r["keras"]), pct(r["int8"]), delta,
                          pct(r.get("agreement")), steps, r.get("depthwise", "-"), seconds,
                          per_seed or "-"])
        lines += [f"### {name} (MNIST-5k test, 1000 images)", "",
                  f"Batch-norm fold with quantization off: max relative difference to the float "
                  f"model {fidelity[0]:.1e} in training mode (before the freeze), "
                  f"{fidelity[1]:.1e} in inference mode (after it).", "",
                  reports.markdown_table(
                      ["scheme", "Keras acc %", "int8 TFLite acc %", "vs float (pt)",
                       "QAT/int8 top-1 agreement %", "mean abs output diff (steps)",
                       "depthwise weights", "train s", "per seed %"], table), ""]
    lines += _paired_section(results)
    return "\n".join(lines)


def _paired_section(results) -> list:
    """tfquant per-channel QAT - tfmot QAT, int8 accuracy, paired by seed, per architecture."""
    table = []
    for name, (rows, _) in results.items():
        by_scheme = {r["scheme"]: r for r in rows}
        ours, theirs = by_scheme.get(SCHEMES["per_channel"][0]), by_scheme.get(TFMOT_LABEL)
        if ours is None or theirs is None:
            continue
        d = paired_difference(ours["per_seed"], theirs["per_seed"])
        stderr = "-" if d["n"] < 2 else f"{100 * d['stderr']:.2f}"
        table.append([name, d["n"], f"{100 * ours['int8']:.2f}", f"{100 * theirs['int8']:.2f}",
                      f"{100 * d['mean']:+.2f}", stderr,
                      f"{d['wins']} / {d['ties']} / {d['losses']}"])
    if not table:
        return []
    return ["### tfquant QAT vs tfmot QAT, paired by seed (int8 TFLite accuracy)", "",
            "Each seed gives both the same batches in the same order; difference = tfquant - "
            "tfmot.", "",
            reports.markdown_table(["architecture", "seeds", "tfquant %", "tfmot %",
                                    "mean difference (pt)", "standard error (pt)",
                                    "tfquant ahead / tied / behind"], table), ""]


def _plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4.5), squeeze=False)
    for ax, (name, (rows, _)) in zip(axes[0], results.items()):
        labels = [r["scheme"] for r in rows]
        values = [100 * (r["int8"] if r["int8"] is not None else r["keras"]) for r in rows]
        colors = ["gray" if r["scheme"].startswith("float") else
                  "tab:orange" if "tfmot" in r["scheme"] else
                  "tab:blue" if r["scheme"].startswith("QAT") else "tab:green" for r in rows]
        ax.barh(labels, values, color=colors)
        low = min(values) - 1.0
        ax.set_xlim(low, 100)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.1f}", va="center", fontsize=8)
        ax.axvline(values[0], color="gray", linestyle="--", linewidth=1)
        ax.invert_yaxis()
        ax.set_title(f"{name}: accuracy (int8 TFLite where exported)")
        ax.set_xlabel("MNIST-5k test accuracy %")
    fig.tight_layout()
    reports.save_png(fig, path)


def main(config: Config, models: Optional[dict] = None, dataset=None) -> int:
    """Print the table (and write the report and plot config names). `models` ({name: trained
    float Keras model}) replaces the training of those architectures, `dataset` (a
    tfquant.models.data.Dataset) MNIST-5k."""
    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant.models import data, pretrained

    dataset = data.load_mnist_5k() if dataset is None else dataset
    results = {}
    for name in config.architecture:
        model = (models or {}).get(name)
        if model is None:
            model = pretrained.trained(name, dataset, config.float_epochs, log=_app.log)
        results[name] = _evaluate(name, model, dataset, config)
    table = _format(results)
    print(table)
    if config.output:
        _app.write_report(config.output, "Quantization-aware training on MNIST-5k",
                          f".\n\n{table}", _app.command_line("tfquant-qat-compare", config))
    if config.plot:
        _plot(results, config.plot)
    return 0


def run():
    """Console-script entry point (tfquant-qat-compare)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
