"""tfquant-compare: tfquant vs TFLiteConverter on the same model and calibration data.

Both converters get the same float Keras model and the same calibration batches; the tool
prints conversion wall time (and the ratio), accuracy on the MNIST-5k test split, top-1
agreement with the float model and between the two int8 models, file sizes and median latency
on ai-edge-litert (default kernels, XNNPACK), all measured in one run.

Examples:
  tfquant-compare --architecture=mobilenet_v1,mobilenet_v2
  tfquant-compare --model=my_mnist_model.keras --runs=200
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfquant.tools import _app
from tfquant.tools._app import option

ARCHITECTURES = ("mobilenet_v1", "mobilenet_v2", "resnet")


@dataclasses.dataclass(frozen=True)
class Config:
    architecture: tuple = option(("mobilenet_v1", "mobilenet_v2"), "Built-in architectures to "
                                 "train on MNIST-5k and compare (ignored when --model is given).",
                                 choices=ARCHITECTURES)
    model: Optional[str] = option(None, "A Keras model file (28x28x1 MNIST classifier) to "
                                  "compare instead of training built-in architectures.")
    epochs: Optional[int] = option(None, "Train the built-in architectures here for this many "
                                   "epochs (default: the weights tfquant ships, trained "
                                   "offline).", lower=1)
    num_calibration_batches: int = option(100, "Calibration batches for both converters.",
                                          lower=1)
    calibration_batch_size: int = option(32, "Calibration batch size for both.", lower=1)
    runs: int = option(100, "Timed invocations per latency measurement.", lower=5)
    conversion_repeats: int = option(3, "Conversions per converter (median reported).", lower=1)

    def __post_init__(self):
        _app.validate(self)


def main(config: Config, models: Optional[dict] = None) -> int:
    """Print the comparison table. `models` ({name: Keras model}) replaces the training of the
    built-in architectures (tests pass already trained ones)."""
    import tfquant
    from tfquant.experiments import peers
    from tfquant.models import data, pretrained

    dataset = data.load_mnist_5k()
    if models is None:
        models = {}
        if config.model:
            models[config.model] = tfquant.load_keras_model(config.model)
        else:
            for name in config.architecture:
                models[name] = pretrained.trained(name, dataset, config.epochs, log=_app.log)
    rows = {}
    for name, model in models.items():
        _app.log(f"comparing converters on {name}:")
        rows[name] = peers.compare(model, dataset.x_train, dataset.x_test, dataset.y_test,
                                   num_batches=config.num_calibration_batches,
                                   batch_size=config.calibration_batch_size, runs=config.runs,
                                   repeats=config.conversion_repeats, log=_app.log)
    print(peers.format_table(rows))
    return 0


def run():
    """Console-script entry point (tfquant-compare)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
