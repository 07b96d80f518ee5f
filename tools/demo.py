"""tfquant demo: train small MobileNets on MNIST-5k, quantize them, compare float and int8.

Trains MobileNet-v1-style and MobileNet-v2-style models on the bundled MNIST-5k data (4000
train / 1000 test), converts each to float32 and full-int8 (per-channel weights) TFLite with
tfquant, runs both on ai-edge-litert and prints accuracy, top-1 agreement, sizes and latency;
then runs the int8 model through tfquant's DSP delegate and checks it against TFLite's
reference kernels, element by element.

  python -m tfquant.tools.demo [--architecture=mobilenet_v1,mobilenet_v2] [--epochs=N]
"""

import os

from absl import flags

from tfquant.tools import _app

FLAGS = flags.FLAGS

flags.DEFINE_list("architecture", ["mobilenet_v1", "mobilenet_v2"],
                  "Architectures to train and quantize: mobilenet_v1, mobilenet_v2, resnet.")
flags.DEFINE_integer("epochs", None, "Training epochs (default: the model zoo's default).")
flags.DEFINE_string("output_dir", "build/demo", "Where the .keras and .tflite files go.")
flags.DEFINE_integer("runs", 200, "Timed invocations per latency figure.", lower_bound=5)


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
    row = {"keras_accuracy": float(np.mean(np.argmax(keras_pred, 1) == y_test)),
           "convert_seconds": int8_result.seconds}
    for kind, result in (("float32", float_result), ("int8", int8_result)):
        pred = runtime.Runner(result.model).predict(x_test)
        row[kind] = {
            "accuracy": float(np.mean(np.argmax(pred, 1) == y_test)),
            "agreement": float(np.mean(np.argmax(pred, 1) == np.argmax(keras_pred, 1))),
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
        "accuracy": float(np.mean(np.argmax(on_dsp, 1) == y_test)),
        "latency_ms": runtime.median_latency_ms(model, x_test[:1], resolver="reference",
                                                runs=runs, delegates=[delegate])[0],
        "reference_ms": runtime.median_latency_ms(model, x_test[:1], resolver="reference",
                                                  runs=runs)[0],
    }


def format_table(rows: dict) -> str:
    lines = ["| model | Keras acc | float32 acc | int8 acc | int8 - Keras | int8 top-1 agree "
             "| float32 KB | int8 KB | size ratio | float32 ms | int8 ms | convert s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        f, q = r["float32"], r["int8"]
        lines.append(
            f"| {name} | {r['keras_accuracy']:.4f} | {f['accuracy']:.4f} | {q['accuracy']:.4f} "
            f"| {100 * (q['accuracy'] - r['keras_accuracy']):+.2f} pt | {q['agreement']:.4f} | "
            f"{f['bytes'] / 1024:.1f} | {q['bytes'] / 1024:.1f} | {q['bytes'] / f['bytes']:.2f}x"
            f" | {f['latency_ms']:.3f} | {q['latency_ms']:.3f} | {r['convert_seconds']:.2f} |")
    lines += ["", "int8 model on tfquant's DSP delegate (emulated HVX ISA) vs TFLite's reference "
              "kernels, ai-edge-litert:", "",
              "| model | nodes claimed | outputs equal to reference | int8 acc (DSP) | "
              "reference kernels ms | DSP delegate ms |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        d = r["dsp"]
        lines.append(f"| {name} | {d['claimed']}/{d['total']} | {100 * d['equal']:.2f}% | "
                     f"{d['accuracy']:.4f} | {d['reference_ms']:.3f} | {d['latency_ms']:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    from tfquant.models import data, zoo

    os.makedirs(FLAGS.output_dir, exist_ok=True)
    dataset = data.load_mnist_5k()
    print(f"MNIST-5k: {len(dataset.x_train)} train / {len(dataset.x_test)} test images")
    rows = {}
    for name in FLAGS.architecture:
        print(f"\n== {name}: training on MNIST-5k (Keras 3) ==")
        model = zoo.trained_model(name, dataset, epochs=FLAGS.epochs, verbose=2)
        model.save(os.path.join(FLAGS.output_dir, f"{name}.keras"))
        print(f"== {name}: converting with tfquant and evaluating on ai-edge-litert ==")
        rows[name] = evaluate(name, model, dataset, FLAGS.output_dir, FLAGS.runs)
    print("\nMNIST-5k test split (1000 images); latency: median of "
          f"{FLAGS.runs} single-image invokes, ai-edge-litert, 1 thread, default kernels\n")
    print(format_table(rows))
    return 0


def run():
    _app.run_flags_main(main, __name__, __doc__)


if __name__ == "__main__":
    run()
