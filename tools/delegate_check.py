"""tfquant-delegate-check: is the DSP delegate bit-exact with TFLite's reference kernels?

Runs each int8 model twice on every runtime - reference kernels (BUILTIN_REF) alone, and with
tfquant's DSP delegate in front of them - and compares every output element. Prints, per model
and runtime: nodes claimed by the delegate / total, elements compared, elements that differ.

Models: any .tflite (--model), the MNIST-5k zoo architectures (--zoo; trained briefly, converted
by tfquant) and keras.applications networks (--applications; weights=None with batch-norm
statistics from photos, converted by tfquant, calibrated on photo crops).

Examples:
  tfquant-delegate-check --zoo=mobilenet_v1,mobilenet_v2,resnet \
      --applications=MobileNet,MobileNetV2,ResNet50
  tfquant-delegate-check --model=my_int8.tflite --runtimes=litert
"""


from absl import app, flags

from tfquant.experiments.delegate_profiling import compare_with_reference
from tfquant.tools import _app

FLAGS = flags.FLAGS

flags.DEFINE_list("model", [], ".tflite files to check (inputs: random in the input range).")
flags.DEFINE_list("zoo", [], "MNIST-5k zoo architectures: mobilenet_v1, mobilenet_v2, resnet.")
flags.DEFINE_list("applications", [], "keras.applications networks: MobileNet, MobileNetV2, "
                  "ResNet50, ...")
flags.DEFINE_integer("size", 96, "Input size of the keras.applications networks.",
                     lower_bound=32)
flags.DEFINE_integer("images", 4, "Images per comparison.", lower_bound=1)
flags.DEFINE_list("runtimes", None, "Runtimes (default: every installed one).")
flags.DEFINE_integer("zoo_epochs", 1, "Training epochs of the zoo models.", lower_bound=1)


def _models():
    """(label, tflite bytes, float inputs) for every requested model."""
    import numpy as np

    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant.models import applications, data, zoo

    for path in FLAGS.model:
        with open(path, "rb") as f:
            model = f.read()
        from tfquant import runtime
        interpreter = runtime.make_interpreter(model, "litert", "reference")
        detail = interpreter.get_input_details()[0]
        shape = [FLAGS.images] + [int(d) for d in detail["shape"][1:]]
        scale, zero_point = detail["quantization"]
        low, high = ((-128 - zero_point) * scale, (127 - zero_point) * scale) if scale else \
            (-1.0, 1.0)
        x = np.random.default_rng(0).uniform(low, high, shape).astype(np.float32)
        yield path, model, x
    if FLAGS.zoo:
        mnist = data.load_mnist_5k()
        for name in FLAGS.zoo:
            _app.log(f"training {name} on MNIST-5k ({FLAGS.zoo_epochs} epoch(s)) and "
                     "converting ...")
            keras_model = zoo.trained_model(name, mnist, epochs=FLAGS.zoo_epochs)
            model = tfquant.convert(keras_model, mnist.x_train[:512], show_progress=False)
            yield name, model, mnist.x_test[:FLAGS.images]
    for name in FLAGS.applications:
        _app.log(f"building keras.applications.{name} ({FLAGS.size}x{FLAGS.size}) and "
                 "converting ...")
        keras_model = applications.build_application(name, FLAGS.size)
        calibration = applications.preprocess(name, data.load_photo_crops(32, FLAGS.size))
        model = tfquant.convert(keras_model, calibration, show_progress=False)
        test = applications.preprocess(name, data.load_photo_crops(FLAGS.images, FLAGS.size,
                                                                   seed=1))
        yield f"{name} {FLAGS.size}x{FLAGS.size}", model, test


def main(argv):
    del argv
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    from tfquant import runtime

    runtimes = FLAGS.runtimes or runtime.available_runtimes()
    if not (FLAGS.model or FLAGS.zoo or FLAGS.applications):
        raise app.UsageError("name at least one model: --model, --zoo or --applications")
    lines = ["| model | runtime | nodes claimed | elements compared | elements differing | "
             "largest difference |", "|---|---|---|---|---|---|"]
    exact = True
    for label, model, x in _models():
        for runtime_name in runtimes:
            _app.log(f"  {label} on {runtime_name} ...")
            r = compare_with_reference(model, x, runtime_name)
            exact = exact and r["differ"] == 0
            lines.append(f"| {label} | {runtime_name} | {r['claimed']}/{r['total']} | "
                         f"{r['elements']} | {r['differ']} | {r['largest']} |")
    print("\n".join(lines))
    print(f"\nbit-exact with the reference kernels: {'yes' if exact else 'NO'}")
    return 0 if exact else 1


def run():
    """Console-script entry point (tfquant-delegate-check)."""
    _app.run_flags_main(main, __name__, __doc__)


if __name__ == "__main__":
    run()
