"""tfquant-delegate-check on a .tflite file: the table and the verdict (in-process: main of a
Config)."""

import keras
import numpy as np
import pytest

import tfquant
from tfquant.tools import _app
from tfquant.tools import delegate_check as tool


@pytest.mark.delegate
def test_delegate_check_reports_claims_and_exactness(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    x = keras.Input((10, 10, 3))
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = keras.layers.LeakyReLU(0.1)(y)  # not claimed by the delegate: stays on the CPU
    y = keras.layers.DepthwiseConv2D(3, padding="same")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(x, keras.layers.Dense(5)(y))
    data = np.random.default_rng(0).normal(size=(32, 10, 10, 3)).astype(np.float32)
    result = tfquant.convert_model(model, data, show_progress=False)
    path = tmp_path / "model.tflite"
    path.write_bytes(result.model)
    config = _app.parse(tool.Config, ["tfquant-delegate-check", f"--model={path}",
                                      "--runtimes=litert,tflite_runtime", "--images=3"])
    assert config == tool.Config(model=(str(path),), runtimes=("litert", "tflite_runtime"),
                                 images=3)
    code = tool.main(config)
    out = capsys.readouterr().out
    assert code == 0, out
    total = len(result.graph.ops)
    rows = [line for line in out.splitlines() if line.startswith(f"| {path} |")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"{total - 1}/{total}"  # everything but LEAKY_RELU
        assert cells[3] == str(3 * 5) and cells[4] == "0"
    assert "bit-exact with the reference kernels: yes" in out


def test_config_needs_a_model():
    with pytest.raises(ValueError, match="name at least one model: --model, --zoo or "
                                         "--applications"):
        tool.Config()
    with pytest.raises(ValueError, match="--size must be at least 32"):
        tool.Config(zoo=("mobilenet_v1",), size=16)
