"""tfquant-ptq-grid: every scheme of the grid converts and runs on every runtime, and the table
formats; the tool's main on the shared MNIST-5k zoo model (in-process)."""

import keras
import numpy as np
import pytest

import tfquant
from tfquant import runtime, spec
from tfquant.tools import _app
from tfquant.tools import ptq_grid

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_grid_scheme_converts_and_runs_on_every_runtime():
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((12, 12, 1))
    y = L.Conv2D(8, 3, padding="same", use_bias=False)(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
    y = L.Conv2D(16, 1, activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    model = keras.Model(x, L.Dense(4, activation="softmax")(y))
    data = np.random.default_rng(0).uniform(0, 1, (128, 12, 12, 1)).astype(np.float32)
    expected = model.predict(data[:16], verbose=0)
    rows = [dict(scheme="float32", accuracy=1.0, agreement=1.0, sqnr=float("inf"),
                 size=10_000)]
    for label, recipe in ptq_grid.schemes():
        converted = tfquant.convert(model, data, tfquant.Recipe(**recipe), show_progress=False)
        for name in runtime.available_runtimes():
            got = runtime.Runner(converted, name, "reference").predict(data[:16])
            sqnr = spec.sqnr_db(expected, got)
            assert sqnr > 10.0, (label, name, sqnr)
        rows.append(dict(scheme=label, accuracy=1.0, agreement=1.0, sqnr=sqnr,
                         size=len(converted)))
    table = ptq_grid.format_tables({"tiny": rows})
    assert table.count("\n| ") == len(ptq_grid.schemes()) + 2, table
    assert len(ptq_grid.schemes()) == 10


def test_config_is_checked():
    with pytest.raises(ValueError, match="--calibration_images must be at least 32"):
        ptq_grid.Config(calibration_images=16)
    config = _app.parse(ptq_grid.Config, ["tfquant-ptq-grid", "--architecture=resnet",
                                          "--nopeers", "--output=grid.md"])
    assert config == ptq_grid.Config(architecture=("resnet",), peers=False, output="grid.md")
    assert _app.command_line("tfquant-ptq-grid", config) == \
        "tfquant-ptq-grid --architecture=resnet --nopeers --output=grid.md"


@pytest.mark.slow
def test_main_on_a_trained_zoo_model(pretrained, mnist, tmp_path, capsys):
    """The whole tool on the shared zoo model, calibrated and tested on part of MNIST-5k."""
    model = pretrained("resnet")  # the smallest graph of the zoo
    part = type(mnist)(mnist.x_train[:640], mnist.y_train[:640], mnist.x_test[:300],
                       mnist.y_test[:300])
    weights = [w.copy() for w in model.get_weights()]
    paths = {key: str(tmp_path / name) for key, name in
             (("output", "grid.md"), ("plot", "grid.png"), ("fold_plot", "fold.png"))}
    config = ptq_grid.Config(architecture=("resnet",), calibration_images=64,
                             peers=False, **paths)
    assert ptq_grid.main(config, models={"resnet": model}, dataset=part) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 1 + len(ptq_grid.schemes())  # header, float32, every scheme
    cells = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in rows[1:]}
    assert cells["float32"][2] == "inf" and cells["float32"][4] == "1.00x |"
    assert float(cells["int8, weights per-channel"][1]) > 90.0  # top-1 agreement %
    assert float(cells["int8, weights per-channel"][2]) > 15.0  # output SQNR dB
    report = open(paths["output"]).read()
    assert report.startswith("# Post-training quantization grid on MNIST-5k\n\nMade by "
                             f"`{_app.command_line('tfquant-ptq-grid', config)}` on "
                             f"{_app.machine()};")
    assert out.strip() in report
    for key in ("plot", "fold_plot"):
        assert open(paths[key], "rb").read(8) == PNG
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
