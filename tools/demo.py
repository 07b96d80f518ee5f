"""tfquant demo: quantize MobileNets trained on MNIST-5k, compare float and int8.

Takes the MobileNet-v1-style and MobileNet-v2-style models trained on the bundled MNIST-5k data
(4000 train / 1000 test) - the weights tfquant ships (trained offline, 12 epochs; --epochs=N
trains them here instead, minutes per model) - converts each to float32 and full-int8
(per-channel weights) TFLite with tfquant, runs both on ai-edge-litert and prints accuracy,
top-1 agreement, sizes and latency; then runs the int8 model through tfquant's DSP delegate and
checks it against TFLite's reference kernels, element by element.

  python -m tfquant.tools.demo [--architecture=mobilenet_v1,mobilenet_v2] [--epochs=N]
"""

import dataclasses
import os
from typing import Optional

from tfquant.experiments import reports
from tfquant.tools import _app
from tfquant.tools._app import option


@dataclasses.dataclass(frozen=True)
class Config:
    architecture: tuple = option(("mobilenet_v1", "mobilenet_v2"), "Architectures to train and "
                                 "quantize: mobilenet_v1, mobilenet_v2, resnet.",
                                 choices=("mobilenet_v1", "mobilenet_v2", "resnet"))
    epochs: Optional[int] = option(None, "Train the models here for this many epochs instead "
                                   "of taking the weights tfquant ships (trained offline).",
                                   lower=1)
    output_dir: str = option("build/demo", "Where the .keras and .tflite files go.")
    runs: int = option(200, "Timed invocations per latency figure.", lower=5)

    def __post_init__(self):
        _app.validate(self)


def evaluate(name, model, dataset, output_dir, runs, log=print) -> dict:
    """Convert `model` to float and int8 TFLite and measure both against Keras."""
    import numpy as np

    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant import runtime

    x_test, y_test = dataset.x_test, dataset.y_test
    keras_pred = model.predict(x_test, verbose=0)
    float_result = tfquant.convert_model(model, recipe=tfquant.Recipe(mode="float"))
    int8_result = tfquant.convert_model(model, dataset.x_train, tfquant.Recipe())
    paths = {}
    for kind, result in (("float32", float_result), ("int8", int8_result)):
        paths[kind] = os.path.join(output_dir, f"{name}_{kind}.tflite")
        tfquant.save_atomically(result.model, paths[kind])
    row = {"keras_accuracy": reports.top1_accuracy(keras_pred, y_test),
           "convert_seconds": int8_result.seconds}
    for kind, result in (("float32", float_result), ("int8", int8_result)):
        pred = runtime.Runner(result.model).predict(x_test)
        row[kind] = {
            "accuracy": reports.top1_accuracy(pred, y_test),
            "agreement": reports.top1_agreement(pred, keras_pred),
            "max_abs_diff": float(np.abs(pred - keras_pred).max()),
            "bytes": len(result.model),
            "latency_ms": runtime.median_latency_ms(result.model, x_test[:1], runs=runs)[0],
        }
    log(f"  wrote {paths['float32']} and {paths['int8']}")
    row["dsp"] = evaluate_delegate(int8_result.model, x_test, y_test, runs)
    return row


def evaluate_delegate(model, x_test, y_test, runs) -> dict:
    """The int8 model on the DSP delegate vs TFLite's reference kernels (ai-edge-litert)."""
    import numpy as np

    import tfquant.delegate
    from tfquant import runtime

    delegate = tfquant.delegate.load("litert")
    reference = runtime.Runner(model, resolver="reference").predict(x_test)
    on_dsp = runtime.Runner(model, resolver="reference", delegates=[delegate]).predict(x_test)
    claimed, total = tfquant.delegate.claimed_nodes(model)
    return {
        "claimed": claimed, "total": total,
        "equal": float(np.mean(on_dsp == reference)),
        "accuracy": reports.top1_accuracy(on_dsp, y_test),
        "latency_ms": runtime.median_latency_ms(model, x_test[:1], resolver="reference",
                                                runs=runs, delegates=[delegate])[0],
        "reference_ms": runtime.median_latency_ms(model, x_test[:1], resolver="reference",
                                                  runs=runs)[0],
    }


def format_table(rows: dict) -> str:
    table = []
    for name, r in rows.items():
        f, q = r["float32"], r["int8"]
        table.append([
            name, f"{r['keras_accuracy']:.4f}", f"{f['accuracy']:.4f}", f"{q['accuracy']:.4f}",
            f"{100 * (q['accuracy'] - r['keras_accuracy']):+.2f} pt", f"{q['agreement']:.4f}",
            f"{f['bytes'] / 1024:.1f}", f"{q['bytes'] / 1024:.1f}",
            f"{q['bytes'] / f['bytes']:.2f}x", f"{f['latency_ms']:.3f}",
            f"{q['latency_ms']:.3f}", f"{r['convert_seconds']:.2f}"])
    dsp = [[name, f"{d['claimed']}/{d['total']}", f"{100 * d['equal']:.2f}%",
            f"{d['accuracy']:.4f}", f"{d['reference_ms']:.3f}", f"{d['latency_ms']:.3f}"]
           for name, d in ((name, r["dsp"]) for name, r in rows.items())]
    return "\n".join([
        reports.markdown_table(["model", "Keras acc", "float32 acc", "int8 acc", "int8 - Keras",
                                "int8 top-1 agree", "float32 KB", "int8 KB", "size ratio",
                                "float32 ms", "int8 ms", "convert s"], table),
        "", "int8 model on tfquant's DSP delegate (emulated HVX ISA) vs TFLite's reference "
        "kernels, ai-edge-litert:", "",
        reports.markdown_table(["model", "nodes claimed", "outputs equal to reference",
                                "int8 acc (DSP)", "reference kernels ms", "DSP delegate ms"],
                               dsp)])


def main(config: Config, models: Optional[dict] = None) -> int:
    """Load the shipped weights (or train with --epochs; `models`, {name: trained Keras
    model}, replaces both), convert, evaluate and print the table."""
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    from tfquant.models import data, pretrained, zoo

    os.makedirs(config.output_dir, exist_ok=True)
    dataset = data.load_mnist_5k()
    print(f"MNIST-5k: {len(dataset.x_train)} train / {len(dataset.x_test)} test images")
    rows = {}
    for name in config.architecture:
        if models and name in models:
            model = models[name]
        elif config.epochs is None:
            made = pretrained.info(name)
            print(f"\n== {name}: the weights tfquant ships (trained on MNIST-5k offline, "
                  f"{made['epochs']} epochs, seed {made['seed']}; --epochs=N trains here) ==")
            model = pretrained.load(name)
        else:
            print(f"\n== {name}: training on MNIST-5k for {config.epochs} epochs (Keras 3) ==")
            model = zoo.trained_model(name, dataset, epochs=config.epochs, verbose=2)
        model.save(os.path.join(config.output_dir, f"{name}.keras"))
        print(f"== {name}: converting with tfquant and evaluating on ai-edge-litert ==")
        rows[name] = evaluate(name, model, dataset, config.output_dir, config.runs)
    print("\nMNIST-5k test split (1000 images); latency: median of "
          f"{config.runs} single-image invokes, ai-edge-litert, 1 thread, default kernels\n")
    print(format_table(rows))
    return 0


def run():
    """Entry point of `python -m tfquant.tools.demo`."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
