"""tfquant-paper-tables: the whitepaper's tables 2-6 reproduced on MNIST-5k, with the peers.

Trains the paper's architecture families at small scale (MobileNet-v1-style, MobileNet-v2-style,
ResNet-style; fixed seeds) and runs every cell of the paper's grid:
  - post-training quantization in simulation (tfquant.qat.simulate_ptq: the QAT graph with the
    inference batch-norm fold, weights from their own min / max, activation ranges calibrated
    on the float model) for every scheme, including those TFLite cannot store (asymmetric
    weights, 4-bit activations, weight- or activation-only quantization);
  - quantization-aware training (tfquant.qat.fine_tune, the paper's BN folding with the
    correction factor) from the float checkpoint for the paper's QAT columns;
  - the peers on the same models: TFLiteConverter PTQ (int8, 16x8, weight-only) and tfmot QAT;
  - the deployable cells again as int8 TFLite (ai-edge-litert reference kernels), next to their
    simulation.
Every cell gives accuracy, top-1 agreement with the float model and output SQNR vs float on the
1000 MNIST-5k test images (accuracy saturates on MNIST; SQNR and agreement do not).

Examples:
  tfquant-paper-tables --output=docs/paper_tables.md --plot=docs/paper_tables.png
  tfquant-paper-tables --architecture=mobilenet_v1 --qat=false
"""

import dataclasses
import time
from typing import Optional

from tfquant.experiments import reports
from tfquant.tools import _app
from tfquant.tools._app import option


@dataclasses.dataclass(frozen=True)
class Config:
    architecture: tuple = option(("mobilenet_v1", "mobilenet_v2", "resnet"),
                                 "Model-zoo architectures (the rows of every table).")
    epochs: Optional[int] = option(None, "Train the float models here for this many epochs "
                                   "(default: the weights tfquant ships, trained offline).")
    qat_epochs: int = option(3, "Fine-tuning epochs of every QAT run (tfquant and tfmot).",
                             lower=1)
    learning_rate: float = option(1e-4, "Adam learning rate of every QAT run.")
    seeds: tuple[int, ...] = option((1,), "Fine-tuning seeds of the QAT runs (tfquant and "
                                    "tfmot); QAT cells are means over them (one run varies by "
                                    "~0.3 pt on MNIST-5k).")
    calibration_images: int = option(3200, "Calibration images (training split).", lower=1)
    qat: bool = option(True, "Run the QAT columns (tfquant and tfmot); PTQ only when false.")
    peers: bool = option(True, "Run TFLiteConverter PTQ and tfmot QAT on the same models.")
    output: Optional[str] = option(None, "Write the tables (markdown) to this file too.")
    plot: Optional[str] = option(None, "PNG of the output SQNR of every cell, one panel per "
                                 "table.")

    def __post_init__(self):
        _app.validate(self)


BATCH_SIZE = 64


# -- the grid -------------------------------------------------------------------------------------

# PTQ cells in simulation: key -> (QatRecipe keyword arguments, quantize weights, quantize
# activations).
PTQ_CELLS = {
    "w8_asym_layer_wo": ({"weight_symmetric": False, "weight_per_channel": False}, True, False),
    "w8_sym_channel_wo": ({}, True, False),
    "w8_asym_channel_wo": ({"weight_symmetric": False}, True, False),
    "w8_asym_layer": ({"weight_symmetric": False, "weight_per_channel": False}, True, True),
    "w8_sym_channel": ({}, True, True),
    "w8_asym_channel": ({"weight_symmetric": False}, True, True),
    "a8_only": ({}, False, True),
    "w4_asym_layer": ({"weight_bits": 4, "weight_symmetric": False,
                       "weight_per_channel": False}, True, True),
    "w4_sym_channel": ({"weight_bits": 4}, True, True),
    "a4": ({"activation_bits": 4}, True, True),
}

# QAT cells: key -> QatRecipe keyword arguments (fine-tuned from the float checkpoint).
QAT_CELLS = {
    "qat_w8_asym_layer": {"weight_symmetric": False, "weight_per_channel": False},
    "qat_w8_sym_channel": {},
    "qat_w4_sym_channel": {"weight_bits": 4},
    "qat_a4": {"activation_bits": 4},
}

# The paper's tables: (title, [(column header, cell key)]). "float" is the float model.
TABLES = [
    ("Table 2: weight-only quantization, 8 bits",
     [("Asym per-layer", "w8_asym_layer_wo"), ("Sym per-channel", "w8_sym_channel_wo"),
      ("Asym per-channel", "w8_asym_channel_wo"), ("Float", "float")]),
    ("Table 3: post-training quantization, 8-bit weights and activations",
     [("Asym per-layer", "w8_asym_layer"), ("Sym per-channel", "w8_sym_channel"),
      ("Asym per-channel", "w8_asym_channel"), ("Activations only", "a8_only"),
      ("Float", "float")]),
    ("Table 4: quantization-aware training, 8 bits",
     [("PTQ asym per-layer", "w8_asym_layer"), ("PTQ sym per-channel", "w8_sym_channel"),
      ("QAT asym per-layer", "qat_w8_asym_layer"), ("QAT sym per-channel", "qat_w8_sym_channel"),
      ("tfmot QAT (peer)", "tfmot_qat"), ("Float", "float")]),
    ("Table 5: 4-bit weights, 8-bit activations",
     [("PTQ asym per-layer", "w4_asym_layer"), ("PTQ sym per-channel", "w4_sym_channel"),
      ("QAT sym per-channel", "qat_w4_sym_channel"), ("Float", "float")]),
    ("Table 6: 4-bit activations, 8-bit weights (sym per-channel)",
     [("PTQ (8,4)", "a4"), ("QAT (8,4)", "qat_a4"), ("QAT (4,8)", "qat_w4_sym_channel"),
      ("Float", "float")]),
]

# Deployable cells: simulation key -> label of the int8 TFLite model made from that model.
DEPLOYED = {
    "w8_sym_channel": "PTQ sym per-channel 8/8",
    "w4_sym_channel": "PTQ sym per-channel 4/8",
    "qat_w8_sym_channel": "QAT sym per-channel 8/8",
    "qat_w4_sym_channel": "QAT sym per-channel 4/8",
}

# Side-by-side PTQ with the peer converter: (label, tfquant Recipe kwargs, TFLiteConverter mode).
PEER_PTQ = [
    ("int8", {}, "int8"),
    ("int8, MSE ranges", {"calibration_method": "mse", "weight_range_method": "mse"}, "int8"),
    ("16x8", {"mode": "int16x8"}, "int16x8"),
    ("weight-only int8", {"mode": "weights_only"}, "weights_only"),
]


def evaluate(name, model, dataset, config, tf_keras_model=None) -> dict:
    """Every cell for one trained float model: {key: metrics dict}, plus "deployed" and
    "peers" sub-dictionaries. `tf_keras_model` (the same weights in tf_keras) enables tfmot."""
    import tfquant
    from tfquant import qat, runtime
    from tfquant.experiments import peers
    from tfquant.experiments.reports import mean_of_runs as mean
    from tfquant.experiments.reports import prediction_metrics as metrics

    x, y = dataset.x_test, dataset.y_test
    expected = model.predict(x, verbose=0)
    cells = {"float": metrics(expected, expected, y)}
    calibration = dataset.x_train[:config.calibration_images]
    _app.log(f"[{name}] calibrating activation ranges on the float model ...")
    ranges = qat.calibrate_activation_ranges(qat.quantize_model(model), calibration,
                                             show_progress=False)
    simulated = {}
    for key, (recipe, weights, activations) in PTQ_CELLS.items():
        _app.log(f"[{name}] PTQ {key} (simulation) ...")
        simulated[key] = [qat.simulate_ptq(model, qat.QatRecipe(**recipe),
                                           quantize_weights=weights,
                                           quantize_activations=activations,
                                           activation_ranges=ranges)]
        cells[key] = metrics(expected, simulated[key][0].predict(x, verbose=0), y)
    if config.qat:
        steps = -(-len(dataset.x_train) // BATCH_SIZE) * config.qat_epochs
        for key, recipe in QAT_CELLS.items():
            _app.log(f"[{name}] {key}: fine-tuning {config.qat_epochs} epochs ({steps} steps) "
                     "...")
            start = time.perf_counter()
            simulated[key] = [qat.fine_tune(model, dataset.x_train, dataset.y_train,
                                            qat.QatRecipe(**recipe), epochs=config.qat_epochs,
                                            learning_rate=config.learning_rate,
                                            batch_size=BATCH_SIZE, seed=seed)
                              for seed in config.seeds]
            cells[key] = mean([metrics(expected, m.predict(x, verbose=0), y)
                               for m in simulated[key]])
            cells[key]["seconds"] = time.perf_counter() - start
    if config.qat and config.peers and tf_keras_model is not None:
        _app.log(f"[{name}] tfmot QAT of the tf_keras copy: fine-tuning {config.qat_epochs} "
                 "epochs ...")
        start = time.perf_counter()
        simulated_runs, deployed_runs = [], []
        for seed in config.seeds:
            tf_keras_model.set_weights(model.get_weights())
            data, tfmot_model = peers.tfmot_qat(tf_keras_model, dataset.x_train,
                                                dataset.y_train, epochs=config.qat_epochs,
                                                learning_rate=config.learning_rate,
                                                batch_size=BATCH_SIZE, seed=seed)
            simulated_runs.append(metrics(expected, tfmot_model.predict(x, verbose=0), y))
            deployed_runs.append(metrics(
                expected, runtime.Runner(data, resolver="reference").predict(x), y))
        cells["tfmot_qat"] = mean(simulated_runs)
        cells["tfmot_qat"]["seconds"] = time.perf_counter() - start
        cells["deployed_tfmot_qat"] = mean(deployed_runs)

    for key in DEPLOYED:
        if key not in simulated:
            continue
        _app.log(f"[{name}] {key}: int8 TFLite export ...")
        runs = []
        for simulated_model in simulated[key]:
            result = tfquant.convert_model(simulated_model, show_progress=False)
            got = runtime.Runner(result.model, resolver="reference").predict(x)
            runs.append(dict(metrics(expected, got, y), size=len(result.model)))
        cells[f"deployed_{key}"] = mean(runs)

    peer_rows = []
    for label, recipe, mode in PEER_PTQ if config.peers else []:
        _app.log(f"[{name}] PTQ {label}: tfquant and TFLiteConverter ...")
        ours = tfquant.convert(model, calibration, tfquant.Recipe(**recipe), show_progress=False)
        theirs = peers.tflite_converter_ptq(model, calibration, mode)
        peer_rows.append(dict(label=label, **{
            side: dict(size=len(data), **metrics(
                expected, runtime.Runner(data, resolver="reference").predict(x), y))
            for side, data in (("tfquant", ours), ("tflite", theirs))}))
    cells["peers"] = peer_rows
    return cells


# -- reporting ------------------------------------------------------------------------------------

def _cell(metrics) -> str:
    if metrics is None:
        return "-"
    sqnr = "inf" if metrics["sqnr"] == float("inf") else f"{metrics['sqnr']:.1f}"
    return f"{100 * metrics['accuracy']:.1f} / {100 * metrics['agreement']:.1f} / {sqnr}"


def format_tables(results: dict) -> str:
    """The paper's tables (rows: networks; cells: accuracy % / agreement % / SQNR dB)."""
    table = reports.markdown_table
    lines = []
    for title, columns in TABLES:
        lines += [f"### {title}", "",
                  table(["Network"] + [header for header, _ in columns],
                        [[name] + [_cell(cells.get(key)) for _, key in columns]
                         for name, cells in results.items()]), ""]
    deployed_rows = []
    for name, cells in results.items():
        for key, label in list(DEPLOYED.items()) + [("tfmot_qat", "tfmot QAT 8/8")]:
            deployed = cells.get(f"deployed_{key}")
            if deployed is None:
                continue
            size = f"{deployed['size'] / 1024:.0f}" if "size" in deployed else "-"
            deployed_rows.append([name, label, _cell(cells.get(key)), _cell(deployed), size])
    lines += ["### Deployed: the exportable cells as int8 TFLite (reference kernels) vs their "
              "simulation", "",
              table(["Network", "cell", "simulation", "int8 TFLite", "TFLite size KB"],
                    deployed_rows), ""]
    if any(cells.get("peers") for cells in results.values()):
        peer_rows = [[name, row["label"], _cell(row["tfquant"]), _cell(row["tflite"]),
                      f"{row['tfquant']['size'] / 1024:.0f} / "
                      f"{row['tflite']['size'] / 1024:.0f}"]
                     for name, cells in results.items() for row in cells.get("peers", [])]
        lines += ["### Peers: tfquant PTQ vs TFLiteConverter PTQ on the same model and "
                  "calibration data (int8 TFLite, reference kernels)", "",
                  table(["Network", "scheme", "tfquant", "TFLiteConverter",
                         "size KB tfquant / TFLiteConverter"], peer_rows), ""]
    return "\n".join(lines)


def findings(results: dict) -> list:
    """The paper's qualitative claims checked on these results: (claim, holds, evidence)."""
    out = []

    def sqnr(cells, key):
        return cells[key]["sqnr"] if key in cells else None

    for name, cells in results.items():
        a, b = sqnr(cells, "w4_sym_channel"), sqnr(cells, "w4_asym_layer")
        c, d = sqnr(cells, "w8_sym_channel"), sqnr(cells, "w8_asym_layer")
        out.append((f"{name}: per-channel beats per-layer weights, more at 4 bits",
                    a > b and (a - b) > (c - d),
                    f"4-bit {a:.1f} vs {b:.1f} dB (+{a - b:.1f}); 8-bit {c:.1f} vs {d:.1f} dB "
                    f"(+{c - d:.1f})"))
        w4, a4 = sqnr(cells, "w4_sym_channel"), sqnr(cells, "a4")
        out.append((f"{name}: 4-bit activations hurt more than 4-bit weights (PTQ)", a4 < w4,
                    f"(8,4) {a4:.1f} dB, acc {100 * cells['a4']['accuracy']:.1f}% vs (4,8) "
                    f"{w4:.1f} dB, acc {100 * cells['w4_sym_channel']['accuracy']:.1f}%"))
        if "qat_w8_asym_layer" in cells:
            ptq_gap = abs(cells["w8_sym_channel"]["accuracy"] - cells["w8_asym_layer"]["accuracy"])
            qat_gap = abs(cells["qat_w8_sym_channel"]["accuracy"]
                          - cells["qat_w8_asym_layer"]["accuracy"])
            qat_sqnr_gap = sqnr(cells, "qat_w8_sym_channel") - sqnr(cells, "qat_w8_asym_layer")
            # 0.2 pt = 2 of the 1000 test images: the seed-to-seed spread of one QAT run.
            out.append((f"{name}: QAT closes the gap between per-channel sym and per-layer asym",
                        qat_gap <= max(ptq_gap, 0.002),
                        f"accuracy gap PTQ {100 * ptq_gap:.1f} pt -> QAT {100 * qat_gap:.1f} pt; "
                        f"SQNR gap PTQ {c - d:+.1f} dB -> QAT {qat_sqnr_gap:+.1f} dB (QAT SQNR "
                        "is vs the float model it started from)"))
            for key, label in (("qat_w4_sym_channel", "4-bit weights"), ("qat_a4",
                                                                          "4-bit activations")):
                ptq_key = "w4_sym_channel" if key == "qat_w4_sym_channel" else "a4"
                gain = cells[key]["accuracy"] - cells[ptq_key]["accuracy"]
                out.append((f"{name}: QAT recovers accuracy lost by PTQ with {label}",
                            gain >= 0, f"{100 * cells[ptq_key]['accuracy']:.1f}% -> "
                            f"{100 * cells[key]['accuracy']:.1f}% ({100 * gain:+.1f} pt)"))
        if "tfmot_qat" in cells:
            ours = cells["deployed_qat_w8_sym_channel"]["accuracy"]
            theirs = cells["deployed_tfmot_qat"]["accuracy"]
            out.append((f"{name}: tfquant QAT at least as accurate as tfmot QAT (int8 TFLite)",
                        ours >= theirs, f"{100 * ours:.1f}% vs {100 * theirs:.1f}%"))
        if cells.get("peers"):
            best = max(row["tfquant"]["accuracy"] for row in cells["peers"]
                       if row["label"].startswith("int8"))
            theirs = next(row["tflite"]["accuracy"] for row in cells["peers"]
                          if row["label"] == "int8")
            out.append((f"{name}: tfquant's best int8 PTQ at least as accurate as "
                        "TFLiteConverter's", best >= theirs,
                        f"{100 * best:.1f}% vs {100 * theirs:.1f}%"))
    return out


def format_findings(found: list) -> str:
    return "\n".join(["### The paper's findings on these results", "", reports.markdown_table(
        ["claim", "holds", "evidence"],
        [[claim, "yes" if holds else "no", evidence] for claim, holds, evidence in found])]) \
        + "\n"


def plot(results: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(TABLES), figsize=(4.2 * len(TABLES), 4.8), sharey=True)
    width = 0.8 / len(results)
    for ax, (title, columns) in zip(axes, TABLES):
        columns = [(h, k) for h, k in columns if k != "float"]
        for i, (name, cells) in enumerate(results.items()):
            values = [min(cells[k]["sqnr"], 60.0) if k in cells else 0.0 for _, k in columns]
            ax.bar(np.arange(len(columns)) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(len(columns)) + 0.4 - width / 2)
        ax.set_xticklabels([h for h, _ in columns], rotation=40, ha="right", fontsize=8)
        ax.set_title(title.split(":")[0] + ":\n" + title.split(":")[1].strip(), fontsize=9)
    axes[0].set_ylabel("output SQNR vs float (dB, MNIST-5k test)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    reports.save_png(fig, path)


def main(config: Config, models: Optional[dict] = None) -> int:
    """Print the tables and findings (and write the report and plot config names). `models`
    ({name: trained float Keras model, or (that model, its tf_keras copy) for tfmot}) replaces
    the training of those architectures."""
    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant.models import data, pretrained, zoo

    dataset = data.load_mnist_5k()
    results = {}
    for name in config.architecture:
        given = (models or {}).get(name)
        model, copy = given if isinstance(given, tuple) else (given, None)
        if model is None:
            model = pretrained.trained(name, dataset, config.epochs, log=_app.log)
        if copy is None and config.qat and config.peers:
            copy = zoo.tf_keras_copy(name, model, dataset.x_test[:64])
        results[name] = evaluate(name, model, dataset, config, copy)
    report = format_tables(results) + "\n" + format_findings(findings(results))
    print(report)
    if config.output:
        _app.write_report(
            config.output, "The paper's tables 2-6 on MNIST-5k",
            ". Cells: accuracy % / top-1 agreement with the float model % / output SQNR vs "
            "float dB, on the 1000 MNIST-5k test images; PTQ cells are simulated (fake "
            "quantization in Keras; the deployed table checks them against int8 TFLite), QAT "
            f"cells fine-tune {config.qat_epochs} epochs from the float model (Adam "
            f"{config.learning_rate:g}, mean over seeds {', '.join(map(str, config.seeds))}), "
            f"activations per-layer asymmetric min/max over {config.calibration_images} "
            f"training images.\n\n{report}",
            _app.command_line("tfquant-paper-tables", config))
    if config.plot:
        plot(results, config.plot)
    return 0


def run():
    """Console-script entry point (tfquant-paper-tables)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
