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

import time

from absl import flags

from tfquant.experiments.reports import save_png
from tfquant.tools import _app

FLAGS = flags.FLAGS

flags.DEFINE_list("architecture", ["mobilenet_v1", "mobilenet_v2", "resnet"],
                  "Model-zoo architectures (the rows of every table).")
flags.DEFINE_integer("epochs", None, "Float training epochs (default: the zoo's).")
flags.DEFINE_integer("qat_epochs", 3, "Fine-tuning epochs of every QAT run (tfquant and tfmot).",
                     lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate of every QAT run.")
flags.DEFINE_list("seeds", ["1"], "Fine-tuning seeds of the QAT runs (tfquant and tfmot); "
                  "QAT cells are means over them (one run varies by ~0.3 pt on MNIST-5k).")
flags.DEFINE_integer("calibration_images", 3200, "Calibration images (training split).",
                     lower_bound=1)
flags.DEFINE_bool("qat", True, "Run the QAT columns (tfquant and tfmot); PTQ only when false.")
flags.DEFINE_bool("peers", True, "Run TFLiteConverter PTQ and tfmot QAT on the same models.")
flags.DEFINE_string("output", None, "Write the tables (markdown) to this file too.")
flags.DEFINE_string("plot", None, "PNG of the output SQNR of every cell, one panel per table.")

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


def _metrics(expected, got, labels) -> dict:
    import numpy as np

    from tfquant import spec
    return dict(accuracy=float(np.mean(np.argmax(got, 1) == labels)),
                agreement=float(np.mean(np.argmax(got, 1) == np.argmax(expected, 1))),
                sqnr=spec.sqnr_db(expected, got))


def _mean(runs: list) -> dict:
    """Metrics of several seeds averaged (SQNR averaged in dB)."""
    return {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]}


def evaluate(name, model, dataset, tf_keras_model=None) -> dict:
    """Every cell for one trained float model: {key: metrics dict}, plus "deployed" and
    "peers" sub-dictionaries. `tf_keras_model` (the same weights in tf_keras) enables tfmot."""
    import tfquant
    from tfquant import qat, runtime
    from tfquant.experiments import peers

    x, y = dataset.x_test, dataset.y_test
    expected = model.predict(x, verbose=0)
    cells = {"float": _metrics(expected, expected, y)}
    calibration = dataset.x_train[:FLAGS.calibration_images]
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
        cells[key] = _metrics(expected, simulated[key][0].predict(x, verbose=0), y)
    if FLAGS.qat:
        steps = -(-len(dataset.x_train) // BATCH_SIZE) * FLAGS.qat_epochs
        for key, recipe in QAT_CELLS.items():
            _app.log(f"[{name}] {key}: fine-tuning {FLAGS.qat_epochs} epochs ({steps} steps) ...")
            start = time.perf_counter()
            simulated[key] = [qat.fine_tune(model, dataset.x_train, dataset.y_train,
                                            qat.QatRecipe(**recipe), epochs=FLAGS.qat_epochs,
                                            learning_rate=FLAGS.learning_rate,
                                            batch_size=BATCH_SIZE, seed=int(seed))
                              for seed in FLAGS.seeds]
            cells[key] = _mean([_metrics(expected, m.predict(x, verbose=0), y)
                                for m in simulated[key]])
            cells[key]["seconds"] = time.perf_counter() - start
    if FLAGS.qat and FLAGS.peers and tf_keras_model is not None:
        _app.log(f"[{name}] tfmot QAT of the tf_keras copy: fine-tuning {FLAGS.qat_epochs} "
                 "epochs ...")
        start = time.perf_counter()
        simulated_runs, deployed_runs = [], []
        for seed in FLAGS.seeds:
            tf_keras_model.set_weights(model.get_weights())
            data, tfmot_model = peers.tfmot_qat(tf_keras_model, dataset.x_train,
                                                dataset.y_train, epochs=FLAGS.qat_epochs,
                                                learning_rate=FLAGS.learning_rate,
                                                batch_size=BATCH_SIZE, seed=int(seed))
            simulated_runs.append(_metrics(expected, tfmot_model.predict(x, verbose=0), y))
            deployed_runs.append(_metrics(
                expected, runtime.Runner(data, resolver="reference").predict(x), y))
        cells["tfmot_qat"] = _mean(simulated_runs)
        cells["tfmot_qat"]["seconds"] = time.perf_counter() - start
        cells["deployed_tfmot_qat"] = _mean(deployed_runs)

    for key in DEPLOYED:
        if key not in simulated:
            continue
        _app.log(f"[{name}] {key}: int8 TFLite export ...")
        runs = []
        for simulated_model in simulated[key]:
            result = tfquant.convert_model(simulated_model, show_progress=False)
            got = runtime.Runner(result.model, resolver="reference").predict(x)
            runs.append(dict(_metrics(expected, got, y), size=len(result.model)))
        cells[f"deployed_{key}"] = _mean(runs)

    peer_rows = []
    for label, recipe, mode in PEER_PTQ if FLAGS.peers else []:
        _app.log(f"[{name}] PTQ {label}: tfquant and TFLiteConverter ...")
        ours = tfquant.convert(model, calibration, tfquant.Recipe(**recipe), show_progress=False)
        theirs = peers.tflite_converter_ptq(model, calibration, mode)
        peer_rows.append(dict(label=label, **{
            side: dict(size=len(data), **_metrics(
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
    lines = []
    for title, columns in TABLES:
        lines += [f"### {title}", "",
                  "| Network | " + " | ".join(header for header, _ in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for name, cells in results.items():
            lines.append(f"| {name} | " + " | ".join(_cell(cells.get(key))
                                                    for _, key in columns) + " |")
        lines.append("")
    lines += ["### Deployed: the exportable cells as int8 TFLite (reference kernels) vs their "
              "simulation", "",
              "| Network | cell | simulation | int8 TFLite | TFLite size KB |",
              "|---|---|---|---|---|"]
    for name, cells in results.items():
        for key, label in list(DEPLOYED.items()) + [("tfmot_qat", "tfmot QAT 8/8")]:
            deployed = cells.get(f"deployed_{key}")
            if deployed is None:
                continue
            size = f"{deployed['size'] / 1024:.0f}" if "size" in deployed else "-"
            lines.append(f"| {name} | {label} | {_cell(cells.get(key))} | {_cell(deployed)} | "
                         f"{size} |")
    lines.append("")
    if any(cells.get("peers") for cells in results.values()):
        lines += ["### Peers: tfquant PTQ vs TFLiteConverter PTQ on the same model and "
                  "calibration data (int8 TFLite, reference kernels)", "",
                  "| Network | scheme | tfquant | TFLiteConverter | size KB tfquant / "
                  "TFLiteConverter |", "|---|---|---|---|---|"]
        for name, cells in results.items():
            for row in cells.get("peers", []):
                lines.append(f"| {name} | {row['label']} | {_cell(row['tfquant'])} | "
                             f"{_cell(row['tflite'])} | {row['tfquant']['size'] / 1024:.0f} / "
                             f"{row['tflite']['size'] / 1024:.0f} |")
        lines.append("")
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
    lines = ["### The paper's findings on these results", "", "| claim | holds | evidence |",
             "|---|---|---|"]
    lines += [f"| {claim} | {'yes' if holds else 'no'} | {evidence} |"
              for claim, holds, evidence in found]
    return "\n".join(lines) + "\n"


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
    save_png(fig, path)


def main(argv):
    del argv
    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant.models import data, zoo

    dataset = data.load_mnist_5k()
    results = {}
    for name in FLAGS.architecture:
        _app.log(f"[{name}] training the float model on MNIST-5k ...")
        model = zoo.trained_model(name, dataset, epochs=FLAGS.epochs)
        copy = None
        if FLAGS.qat and FLAGS.peers:
            copy = zoo.tf_keras_copy(name, model, dataset.x_test[:64])
        results[name] = evaluate(name, model, dataset, copy)
    report = format_tables(results) + "\n" + format_findings(findings(results))
    print(report)
    if FLAGS.output:
        _app.write_report(
            FLAGS.output, "The paper's tables 2-6 on MNIST-5k",
            ". Cells: accuracy % / top-1 agreement with the float model % / output SQNR vs "
            "float dB, on the 1000 MNIST-5k test images; PTQ cells are simulated (fake "
            "quantization in Keras; the deployed table checks them against int8 TFLite), QAT "
            f"cells fine-tune {FLAGS.qat_epochs} epochs from the float model (Adam "
            f"{FLAGS.learning_rate:g}, mean over seeds {', '.join(FLAGS.seeds)}), activations "
            f"per-layer asymmetric min/max over {FLAGS.calibration_images} training "
            f"images.\n\n{report}",
            "tfquant-paper-tables")
    if FLAGS.plot:
        plot(results, FLAGS.plot)
    return 0


def run():
    """Console-script entry point (tfquant-paper-tables)."""
    _app.run_flags_main(main, __name__, __doc__)


if __name__ == "__main__":
    run()
