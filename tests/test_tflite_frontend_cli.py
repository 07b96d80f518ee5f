"""tfquant-convert --model=x.tflite: every mode from a float .tflite, and a corrupt .tflite is a
one-line error that writes nothing."""

import os

import keras
import numpy as np
import pytest

import tfquant
from tfquant import runtime
from test_cli import run_cli



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tflite_cli")
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 1), name="image")
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(10, activation="softmax", name="probs")(y)
    model = keras.Model(x, y)
    source = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    (d / "model.tflite").write_bytes(source)
    (d / "corrupt.tflite").write_bytes(source[:len(source) // 2])
    (d / "garbage.tflite").write_bytes(b"PK\x03\x04 not a flatbuffer at all")
    np.save(d / "calib.npy", np.random.default_rng(0).uniform(size=(64, 8, 8, 1))
            .astype(np.float32))
    return d


@pytest.mark.parametrize("mode,extra", [("int8", []), ("int8", ["--inference_type=int8"]),
                                        ("int16x8", []), ("float", []), ("weights_only", [])])
def test_convert_tflite_in_every_mode(files, capsys, mode, extra):
    out = files / f"{mode}{len(extra)}.tflite"
    calib = [f"--calibration_data={files / 'calib.npy'}"] if mode.startswith("int") else []
    code, stdout, stderr = run_cli(capsys, f"--model={files / 'model.tflite'}",
                                   f"--output={out}", f"--mode={mode}", *calib, *extra)
    assert code == 0, stderr
    assert "wrote" in stdout and "CONV_2D" in stdout
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    reference = runtime.Runner((files / "model.tflite").read_bytes()).predict(x)
    probs = runtime.Runner(out.read_bytes()).predict(x)
    assert np.abs(probs - reference).max() < 0.05


@pytest.mark.parametrize("name", ["corrupt.tflite", "garbage.tflite"])
def test_corrupt_tflite_is_a_one_line_error_and_writes_nothing(files, capsys, name):
    output = files / "never.tflite"
    before = set(os.listdir(files))
    code, _, stderr = run_cli(capsys, f"--model={files / name}", f"--output={output}",
                              f"--calibration_data={files / 'calib.npy'}")
    assert code == 1
    assert stderr.startswith("tfquant-convert: error: ") and stderr.count("\n") == 1, stderr
    assert "TFLite" in stderr
    assert not output.exists() and set(os.listdir(files)) == before


def test_ai_edge_quantizer_comparison_helpers(files):
    """The peer tool's two quantizers on one float .tflite (the full comparison is the
    tfquant-compare-tflite tool)."""
    pytest.importorskip("ai_edge_quantizer")
    from tfquant.tools import compare_tflite_quantizers as tool
    source = (files / "model.tflite").read_bytes()
    x = np.random.default_rng(3).uniform(size=(64, 8, 8, 1)).astype(np.float32)
    batches = [x[i:i + 16] for i in range(0, 64, 16)]
    expected = tool.run_outputs(source, x[:16])
    for quantize in (tool.quantize_with_tfquant, tool.quantize_with_ai_edge_quantizer):
        got = tool.run_outputs(quantize(source, batches), x[:16])
        assert tfquant.spec.sqnr_db(expected[0], got[0]) > 20, quantize.__name__
    row = {"model": "tiny", "weights": "fp32", "sqnr": {"tfquant": [30.0]},
           "seconds": {"tfquant": 0.1}}
    assert "| tiny | fp32 | 30.00 | - | - | 0.1 | - | - | - |" in tool.format_table([row])
    # the paired difference to TFLiteConverter, per draw and over calibration draws
    rows = [{"model": "tiny", "weights": "fp32", "seed": seed,
             "sqnr": {"tfquant": [ours], "tflite_converter": [theirs]},
             "seconds": {"tfquant": 0.1, "tflite_converter": 1.0}}
            for seed, ours, theirs in ((1, 30.0, 29.0), (2, 28.0, 29.0))]
    assert "| 29.00 | 0.1 | - | 1.0 | +1.00 |" in tool.format_table(rows[:1])
    assert ("| tiny | fp32 | 2 | 29.00 +- 1.41 | - | 29.00 +- 0.00 | 0.00 +- 1.41 | -1.00 |"
            in tool.format_seed_table(rows))


def test_compare_tflite_config_is_checked():
    """tfquant-compare-tflite's flags become a checked Config (the run itself builds
    keras.applications networks: see the tool)."""
    from tfquant.tools import _app
    from tfquant.tools import compare_tflite_quantizers as tool
    with pytest.raises(ValueError, match="--applications: 'VGG16' is not one of"):
        tool.Config(applications=("VGG16",))
    with pytest.raises(ValueError, match="--weights: 'bf16' is not one of fp32, fp16"):
        tool.Config(weights=("fp32", "bf16"))
    with pytest.raises(ValueError, match="--calibration_seeds needs at least one seed"):
        tool.Config(calibration_seeds=())
    with pytest.raises(ValueError, match="--calibration_seeds takes integers, got 'x'"):
        _app.parse(tool.Config, ["tfquant-compare-tflite", "--calibration_seeds=1,x"])
    config = _app.parse(tool.Config, ["tfquant-compare-tflite", "--calibration_seeds=1,11",
                                      "--weights=fp16", "--notflite_converter"])
    assert config == tool.Config(calibration_seeds=(1, 11), weights=("fp16",),
                                 tflite_converter=False)
    assert _app.parse(tool.Config, ["tfquant-compare-tflite"]).applications == tool.APPLICATIONS


def test_python_api_takes_a_tflite_path(files):
    path = files / "model.tflite"
    # tfquant's own float export goes through the frontend unchanged, byte for byte
    assert tfquant.convert(str(path), recipe=tfquant.Recipe(mode="float")) == path.read_bytes()
    assert tfquant.convert(path, recipe=tfquant.Recipe(mode="weights_only"))
    with pytest.raises(tfquant.ModelLoadError, match="does not exist"):
        tfquant.convert(str(files / "missing.tflite"))


def test_int16x8_without_data_names_the_flag(files, capsys):
    code, _, stderr = run_cli(capsys, f"--model={files / 'model.tflite'}", "--mode=int16x8",
                              f"--output={files / 'w16.tflite'}")
    assert code == 1 and "--mode=int16x8 needs --calibration_data" in stderr, stderr
    assert "representative_data" not in stderr
