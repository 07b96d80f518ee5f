"""tfquant-ptq-grid: the paper's post-training quantization grid on MNIST-5k, with the peers.

Trains the paper's architecture families at small scale (MobileNet-v1-style, MobileNet-v2-style,
ResNet-style; fixed seeds) and quantizes each with every post-training scheme tfquant offers -
weights per-layer or per-channel at 8 or 4 bits, int8 or int16 (16x8) activations, min/max or
MSE ranges, cross-layer equalization and bias correction - and with TFLiteConverter's PTQ
(int8, 16x8, weight-only). For each it reports accuracy on the 1000 test images, top-1
agreement with the float model, output SQNR against the float model (MNIST accuracy saturates;
agreement and SQNR show the differences) and the file size. Markdown on stdout (and --output),
a PNG plot of SQNR per scheme (--plot) and of one layer's per-channel weight ranges before and
after batch-norm folding (--fold_plot: why per-layer quantization collapses).

  tfquant-ptq-grid --output=docs/ptq_grid.md --plot=docs/ptq_grid.png \
      --fold_plot=docs/bn_fold_ranges.png
"""


import dataclasses
from typing import Optional

from tfquant.experiments import reports
from tfquant.tools import _app
from tfquant.tools._app import option


@dataclasses.dataclass(frozen=True)
class Config:
    architecture: tuple = option(("mobilenet_v1", "mobilenet_v2", "resnet"),
                                 "Model-zoo architectures.")
    epochs: Optional[int] = option(None, "Train the float models here for this many epochs "
                                   "(default: the weights tfquant ships, trained offline).")
    calibration_images: int = option(3200, "Calibration images (training split).", lower=32)
    peers: bool = option(True, "Also convert with TFLiteConverter (int8, 16x8, weight-only).")
    output: Optional[str] = option(None, "Write the tables (markdown) to this file too.")
    plot: Optional[str] = option(None, "PNG of the output SQNR of every scheme and model.")
    fold_plot: Optional[str] = option(None, "PNG of the per-channel weight ranges of the first "
                                      "depthwise layer of MobileNet-v1 before and after "
                                      "batch-norm folding.")

    def __post_init__(self):
        _app.validate(self)


def _trained_model(name, dataset, config, models: dict):
    """The float model `name`: from `models`, else the shipped weights or trained with
    --epochs (and kept in `models`)."""
    from tfquant.models import pretrained
    if name not in models:
        models[name] = pretrained.trained(name, dataset, config.epochs, log=_app.log)
    return models[name]


def schemes():
    """(label, Recipe keyword arguments) of the tfquant rows."""
    return [
        ("int8, weights per-channel", {}),
        ("int8, weights per-layer", {"per_channel": False}),
        ("int8, weights per-layer + CLE (ReLU6 -> ReLU) + bias correction",
         {"per_channel": False, "cross_layer_equalization": True,
          "equalize_through_relu6": True, "bias_correction": True}),
        ("int8, weights per-channel, MSE ranges",
         {"calibration_method": "mse", "weight_range_method": "mse"}),
        ("4-bit weights per-channel, int8 activations", {"weight_bits": 4}),
        ("4-bit weights per-layer, int8 activations", {"weight_bits": 4, "per_channel": False}),
        ("4-bit weights per-channel, MSE ranges", {"weight_bits": 4,
                                                   "weight_range_method": "mse"}),
        ("16x8 (int16 activations), weights per-channel", {"mode": "int16x8"}),
        ("weight-only int8", {"mode": "weights_only"}),
        ("float16 weights", {"mode": "float16"}),
    ]


def evaluate(name, model, dataset, config) -> list:
    """Rows {scheme, accuracy, agreement, sqnr, size} of the float model and of every scheme
    (and of the peers, with config.peers) for one trained float model."""
    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant import runtime

    x, y = dataset.x_test, dataset.y_test
    expected = model.predict(x, verbose=0)
    float_bytes = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    rows = [dict(scheme="float32", accuracy=reports.top1_accuracy(expected, y),
                 agreement=1.0, sqnr=float("inf"), size=len(float_bytes))]
    calibration = dataset.x_train[:config.calibration_images]
    models = []
    for label, recipe in schemes():
        _app.log(f"[{name}] {label} ...")
        models.append((label, tfquant.convert(model, calibration, tfquant.Recipe(**recipe),
                                              show_progress=False)))
    if config.peers:
        _app.log(f"[{name}] TFLiteConverter (int8, 16x8, weight-only) ...")
        from tfquant.experiments import peers
        models += [(f"TFLiteConverter {label}",
                    peers.tflite_converter_ptq(model, calibration, mode))
                   for label, mode in (("int8", "int8"), ("16x8", "int16x8"),
                                       ("weight-only", "weights_only"))]
    for label, data in models:
        got = runtime.Runner(data, resolver="reference").predict(x)
        rows.append(dict(scheme=label, **reports.prediction_metrics(expected, got, y),
                         size=len(data)))
    return rows


def format_tables(results: dict) -> str:
    lines = []
    for name, rows in results.items():
        float_size = rows[0]["size"]
        table = [[r["scheme"], f"{100 * r['accuracy']:.2f}", f"{100 * r['agreement']:.2f}",
                  f"{r['sqnr']:.1f}", f"{r['size'] / 1024:.0f}",
                  f"{r['size'] / float_size:.2f}x"] for r in rows]
        lines += [f"### {name}", "", reports.markdown_table(
            ["scheme", "accuracy %", "top-1 agreement with float %", "output SQNR dB",
             "size KB", "size vs float"], table), ""]
    return "\n".join(lines)


def plot_sqnr(results: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [r["scheme"] for r in next(iter(results.values()))[1:]]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) * len(results) + 1.5))
    height = 0.8 / len(results)
    for k, (name, rows) in enumerate(results.items()):
        values = [min(r["sqnr"], 80.0) for r in rows[1:]]
        ax.barh(np.arange(len(labels)) + k * height, values, height, label=name)
    ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("output SQNR vs float model (dB, MNIST-5k test)")
    ax.legend()
    fig.tight_layout()
    reports.save_png(fig, path)


def plot_fold_ranges(model, path: str):
    """Per-channel weight ranges of the first depthwise layer of `model`, a trained
    MobileNet-v1, raw and folded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tfquant import passes
    from tfquant.frontends.keras_model import from_keras

    raw = model.get_layer("block1_dw").get_weights()[0]  # [kh, kw, c, 1]
    graph = passes.canonicalize(from_keras(model))
    op = next(op for op in graph.ops if "block1_dw" in op.source)
    folded = graph.tensors[op.inputs[1]].data  # [1, kh, kw, c]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=False)
    for ax, weights, title in ((axes[0], raw.reshape(-1, raw.shape[2]), "before folding"),
                               (axes[1], folded.reshape(-1, folded.shape[-1]),
                                "after batch-norm folding")):
        channels = np.arange(weights.shape[1])
        ax.vlines(channels, weights.min(0), weights.max(0), color="tab:blue")
        ax.axhline(weights.max(), color="tab:red", linestyle="--", linewidth=1)
        ax.axhline(weights.min(), color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"block1_dw weights per channel, {title}")
        ax.set_xlabel("output channel")
    axes[0].set_ylabel("weight range (min..max)")
    fig.suptitle("Folding batch norm spreads the channel ranges: one per-layer grid "
                 "(red) wastes most levels on the narrow channels", fontsize=9)
    fig.tight_layout()
    reports.save_png(fig, path)


def main(config: Config, models: Optional[dict] = None, dataset=None) -> int:
    """Print the tables (and write the report and plots config names). `models` ({name:
    trained float Keras model}) replaces the training of those architectures, `dataset` (a
    tfquant.models.data.Dataset) MNIST-5k."""
    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant.models import data

    dataset = data.load_mnist_5k() if dataset is None else dataset
    models = dict(models or {})
    results = {name: evaluate(name, _trained_model(name, dataset, config, models), dataset,
                              config)
               for name in config.architecture}
    tables = format_tables(results)
    print(tables)
    if config.output:
        _app.write_report(config.output, "Post-training quantization grid on MNIST-5k",
                          "; int8 TFLite models on ai-edge-litert's reference kernels, 1000 "
                          f"test images.\n\n{tables}",
                          _app.command_line("tfquant-ptq-grid", config))
    if config.plot:
        plot_sqnr(results, config.plot)
    if config.fold_plot:
        plot_fold_ranges(_trained_model("mobilenet_v1", dataset, config, models),
                         config.fold_plot)
    return 0


def run():
    """Console-script entry point (tfquant-ptq-grid)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
