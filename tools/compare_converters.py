"""tfquant-compare: tfquant vs TFLiteConverter on the same model and calibration data.

Both converters get the same float Keras model and the same calibration batches; the tool
prints conversion wall time (and the ratio), accuracy on the MNIST-5k test split, top-1
agreement with the float model and between the two int8 models, file sizes and median latency
on ai-edge-litert (default kernels, XNNPACK), all measured in one run.

Examples:
  tfquant-compare --architecture=mobilenet_v1,mobilenet_v2
  tfquant-compare --model=my_mnist_model.keras --runs=200
"""

import sys

from absl import flags

from tfquant.tools import _app

FLAGS = flags.FLAGS

flags.DEFINE_list("architecture", ["mobilenet_v1", "mobilenet_v2"],
                  "Built-in architectures to train on MNIST-5k and compare (ignored when "
                  "--model is given): mobilenet_v1, mobilenet_v2, resnet.")
flags.DEFINE_string("model", None, "A Keras model file (28x28x1 MNIST classifier) to compare "
                    "instead of training built-in architectures.")
flags.DEFINE_integer("epochs", None, "Training epochs for built-in architectures "
                     "(default: the model zoo's default).")
flags.DEFINE_integer("num_calibration_batches", 100, "Calibration batches for both "
                     "converters.", lower_bound=1)
flags.DEFINE_integer("calibration_batch_size", 32, "Calibration batch size for both.",
                     lower_bound=1)
flags.DEFINE_integer("runs", 100, "Timed invocations per latency measurement.", lower_bound=5)
flags.DEFINE_integer("conversion_repeats", 3, "Conversions per converter (median reported).",
                     lower_bound=1)


def main(argv):
    del argv
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    from tfquant import peers
    from tfquant.models import data, zoo

    dataset = data.load_mnist_5k()
    models = {}
    if FLAGS.model:
        models[FLAGS.model] = tfquant.load_keras_model(FLAGS.model)
    else:
        for name in FLAGS.architecture:
            print(f"training {name} on MNIST-5k ...", file=sys.stderr)
            models[name] = zoo.trained_model(name, dataset, epochs=FLAGS.epochs)
    rows = {}
    for name, model in models.items():
        print(f"comparing converters on {name}:", file=sys.stderr)
        rows[name] = peers.compare(model, dataset.x_train, dataset.x_test, dataset.y_test,
                             num_batches=FLAGS.num_calibration_batches,
                             batch_size=FLAGS.calibration_batch_size, runs=FLAGS.runs,
                             repeats=FLAGS.conversion_repeats,
                             log=lambda m: print(m, file=sys.stderr))
    print(peers.format_table(rows))
    return 0


def run():
    """Console-script entry point (tfquant-compare)."""
    _app.run(main, __name__, __doc__)


if __name__ == "__main__":
    run()
