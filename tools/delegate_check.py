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


import dataclasses
from typing import Optional

from tfquant.experiments.delegate_profiling import compare_with_reference
from tfquant.experiments.reports import markdown_table
from tfquant.tools import _app
from tfquant.tools._app import option


@dataclasses.dataclass(frozen=True)
class Config:
    model: tuple = option((), ".tflite files to check (inputs: random in the input range).")
    zoo: tuple = option((), "MNIST-5k zoo architectures: mobilenet_v1, mobilenet_v2, resnet.")
    applications: tuple = option((), "keras.applications networks: MobileNet, MobileNetV2, "
                                 "ResNet50, ...")
    size: int = option(96, "Input size of the keras.applications networks.", lower=32)
    images: int = option(4, "Images per comparison.", lower=1)
    runtimes: Optional[tuple[str, ...]] = option(None, "Runtimes (default: every installed "
                                                 "one).")
    zoo_epochs: Optional[int] = option(None, "Train the zoo models here for this many epochs "
                                       "(default: the weights tfquant ships, trained "
                                       "offline).", lower=1)

    def __post_init__(self):
        _app.validate(self)
        if not (self.model or self.zoo or self.applications):
            raise ValueError("name at least one model: --model, --zoo or --applications")


def _models(config, zoo_models):
    """(label, tflite bytes, float inputs) for every requested model."""
    import numpy as np

    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    from tfquant.models import applications, data, pretrained

    for path in config.model:
        with open(path, "rb") as f:
            model = f.read()
        from tfquant import runtime
        interpreter = runtime.make_interpreter(model, "litert", "reference")
        detail = interpreter.get_input_details()[0]
        shape = [config.images] + [int(d) for d in detail["shape"][1:]]
        scale, zero_point = detail["quantization"]
        low, high = ((-128 - zero_point) * scale, (127 - zero_point) * scale) if scale else \
            (-1.0, 1.0)
        x = np.random.default_rng(0).uniform(low, high, shape).astype(np.float32)
        yield path, model, x
    if config.zoo:
        mnist = data.load_mnist_5k()
        for name in config.zoo:
            keras_model = zoo_models.get(name)
            if keras_model is None:
                keras_model = pretrained.trained(name, mnist, config.zoo_epochs, log=_app.log)
            model = tfquant.convert(keras_model, mnist.x_train[:512], show_progress=False)
            yield name, model, mnist.x_test[:config.images]
    for name in config.applications:
        _app.log(f"building keras.applications.{name} ({config.size}x{config.size}) and "
                 "converting ...")
        keras_model = applications.build_application(name, config.size)
        calibration = applications.preprocess(name, data.load_photo_crops(32, config.size))
        model = tfquant.convert(keras_model, calibration, show_progress=False)
        test = applications.preprocess(name, data.load_photo_crops(config.images, config.size,
                                                                   seed=1))
        yield f"{name} {config.size}x{config.size}", model, test


def main(config: Config, zoo_models: Optional[dict] = None) -> int:
    """Print the table and the verdict; 0 if every output is bit-exact. `zoo_models`
    ({name: trained Keras model}) replaces the training of the --zoo architectures."""
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    from tfquant import runtime

    runtimes = config.runtimes or runtime.available_runtimes()
    rows = []
    exact = True
    for label, model, x in _models(config, zoo_models or {}):
        for runtime_name in runtimes:
            _app.log(f"  {label} on {runtime_name} ...")
            r = compare_with_reference(model, x, runtime_name)
            exact = exact and r["differ"] == 0
            rows.append([label, runtime_name, f"{r['claimed']}/{r['total']}", r["elements"],
                         r["differ"], r["largest"]])
    print(markdown_table(["model", "runtime", "nodes claimed", "elements compared",
                          "elements differing", "largest difference"], rows))
    print(f"\nbit-exact with the reference kernels: {'yes' if exact else 'NO'}")
    return 0 if exact else 1


def run():
    """Console-script entry point (tfquant-delegate-check)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
