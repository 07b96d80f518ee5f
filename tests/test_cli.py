"""tfquant-convert: conversions from each model format, and bad input that must fail clearly
without writing or damaging any output file. In-process (main of the Config the command line
gives, parsed by _app.parse without absl's global flags); one run of the console script checks
the command line's own error path."""

import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tf_keras
from absl import flags

from tfquant import runtime
from tfquant.tools import _app
from tfquant.tools import convert as cli


def run_cli(capsys, *args):
    """tfquant-convert with these flags, in-process: (exit code, stdout, stderr)."""
    code = cli.main(_app.parse(cli.Config, ["tfquant-convert", *args]))
    out = capsys.readouterr()
    return code, out.out, out.err


def _model(K, unsupported=False):
    K.utils.set_random_seed(0)
    x = K.Input((8, 8, 1), name="image")
    y = K.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    if unsupported:  # a layer the Keras frontend does not read
        y = K.layers.Reshape((8, 8, 4, 1))(y)
        y = K.layers.Conv3D(1, (3, 3, 1), padding="same", name="conv3d")(y)
        y = K.layers.Reshape((8, 8, 4))(y)
    y = K.layers.GlobalAveragePooling2D(name="gap")(y)
    y = K.layers.Dense(10, activation="softmax", name="probs")(y)
    return K.Model(x, y)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    paths = {"dir": d}
    _model(keras).save(d / "model.keras")
    _model(tf_keras).save(d / "model.h5")
    _model(tf_keras).save(str(d / "saved_model"), save_format="tf")
    _model(keras, unsupported=True).save(d / "unsupported.keras")
    rng = np.random.default_rng(0)
    np.save(d / "calib.npy", rng.uniform(size=(64, 8, 8, 1)).astype(np.float32))
    np.savez(d / "calib.npz", x=rng.uniform(size=(64, 8, 8, 1)).astype(np.float32))
    np.save(d / "nan.npy", np.full((8, 8, 8, 1), np.nan, np.float32))
    np.save(d / "empty.npy", np.zeros((0, 8, 8, 1), np.float32))
    np.save(d / "wrong_shape.npy", np.zeros((8, 28, 28, 1), np.float32))
    (d / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    for name in ("model.keras", "model.h5", "unsupported.keras", "calib.npy"):
        paths[name] = str(d / name)
    paths["saved_model"] = str(d / "saved_model")
    return paths


@pytest.mark.parametrize("source", ["model.keras", "model.h5", "saved_model"])
def test_convert_each_model_format(files, capsys, source):
    out = str(files["dir"] / f"{source}.tflite")
    code, stdout, _ = run_cli(capsys, f"--model={files[source]}", f"--output={out}",
                              f"--calibration_data={files['calib.npy']}")
    assert code == 0 and "wrote" in stdout and "CONV_2D" in stdout
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    probs = runtime.Runner(open(out, "rb").read()).predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.03)


@pytest.mark.parametrize("mode,extra", [
    ("float", []), ("weights_only", []),
    ("int8", ["--inference_type=int8", "--per_channel_dense=false"]),
    ("int8", ["--calibration_method=ema", "--num_calibration_batches=2"]),
    ("int8", ["--weight_bits=4", "--weight_rounding=gptq"]),
])
def test_modes_and_options(files, capsys, mode, extra):
    out = str(files["dir"] / f"{mode}{len(extra)}.tflite")
    calib = [f"--calibration_data={files['dir'] / 'calib.npz'}"] if mode == "int8" else []
    code, stdout, stderr = run_cli(capsys, f"--model={files['model.keras']}",
                                   f"--output={out}", f"--mode={mode}", *calib, *extra)
    assert code == 0, stderr
    details = runtime.make_interpreter(out).get_input_details()[0]
    expected = np.int8 if "--inference_type=int8" in extra else np.float32
    assert details["dtype"] == expected


def test_builtin_dataset(files, capsys):
    out = str(files["dir"] / "digits.tflite")
    code, _, stderr = run_cli(capsys, f"--model={files['model.keras']}", f"--output={out}",
                              "--calibration_data=digits", "--quiet")
    assert code == 0, stderr
    assert os.path.getsize(out) > 0


BAD_INPUTS = [
    ("unsupported layer", {"model": "unsupported.keras", "route": "native"},
     "'conv3d' (Conv3D)"),
    ("corrupt model", {"model": "corrupt.keras"}, "cannot load"),
    ("missing model", {"model": "nope.keras"}, "does not exist"),
    ("NaN calibration", {"calibration_data": "nan.npy"}, "NaN"),
    ("empty calibration", {"calibration_data": "empty.npy"}, "empty"),
    ("wrong-shape calibration", {"calibration_data": "wrong_shape.npy"}, "shape (8, 28, 28, 1)"),
    ("missing calibration file", {"calibration_data": "nope.npy"}, "does not exist"),
    ("rounding without calibration", {"mode": "weights_only", "weight_rounding": "adaround"},
     "needs mode 'int8' or 'int16x8'"),
]


@pytest.mark.parametrize("case,override,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_fails_clearly_and_keeps_existing_output(files, capsys, case, override,
                                                           message):
    d = files["dir"]
    output = d / "existing.tflite"
    output.write_bytes(b"precious earlier result")
    args = {"model": files["model.keras"], "calibration_data": files["calib.npy"]}
    for key, value in override.items():
        args[key] = None if value is None else str(d / value) if key == "model" or \
            value.endswith(".npy") else value
    argv = [f"--{k}={v}" for k, v in args.items() if v is not None]
    before = set(os.listdir(d))
    code, stdout, stderr = run_cli(capsys, *argv, f"--output={output}")
    assert code == 1
    assert message in stderr, stderr
    assert stderr.startswith("tfquant-convert: error: ") and stderr.count("\n") == 1
    assert output.read_bytes() == b"precious earlier result"
    assert set(os.listdir(d)) == before  # no temporary or partial file left behind


def test_unsupported_layer_takes_the_lowered_route(files, capsys):
    out = str(files["dir"] / "lowered.tflite")
    code, stdout, _ = run_cli(capsys, f"--model={files['unsupported.keras']}", f"--output={out}",
                              f"--calibration_data={files['calib.npy']}")
    assert code == 0 and "route lowered by TFLiteConverter" in stdout
    assert "'conv3d' (Conv3D)" in stdout


def test_output_in_missing_directory(files, capsys):
    target = files["dir"] / "no_such_dir" / "m.tflite"
    code, _, stderr = run_cli(capsys, f"--model={files['model.keras']}", f"--output={target}",
                              f"--calibration_data={files['calib.npy']}")
    assert code == 1 and "does not exist" in stderr
    assert not target.parent.exists()


def test_nooverwrite(files, capsys):
    output = files["dir"] / "keep.tflite"
    output.write_bytes(b"keep me")
    code, _, stderr = run_cli(capsys, f"--model={files['model.keras']}", f"--output={output}",
                              "--mode=float", "--nooverwrite")
    assert code == 1 and "exists" in stderr and output.read_bytes() == b"keep me"


def test_inputs_are_never_modified(files, capsys):
    watched = [files["model.keras"], files["calib.npy"]]
    before = {p: open(p, "rb").read() for p in watched}
    run_cli(capsys, f"--model={files['model.keras']}",
            f"--output={files['dir'] / 'x.tflite'}", f"--calibration_data={files['calib.npy']}")
    assert {p: open(p, "rb").read() for p in watched} == before


def test_config_is_checked_like_the_command_line(files):
    with pytest.raises(ValueError, match="--model and --output are required"):
        cli.Config(mode="float")
    with pytest.raises(ValueError, match="--weight_bits must be at most 8"):
        cli.Config(model="m", output="o", mode="float", weight_bits=9)
    with pytest.raises(ValueError, match="--mode: 'int4' is not one of"):
        cli.Config(model="m", output="o", mode="int4")
    # absl's own checks on the command line: bounds and enum values
    for name, value in (("weight_bits", "1"), ("mode", "int4"), ("bogus", "1")):
        with pytest.raises(flags.Error, match=name):
            _app.parse(cli.Config, ["tfquant-convert", "--model=m", "--output=o",
                                    f"--{name}={value}"])


def test_flags_and_command_line_round_trip():
    config = _app.parse(cli.Config, [
        "tfquant-convert", "--model=m.keras", "--output=o.tflite", "--nooverwrite", "--quiet",
        "--mode=weights_only", "--per_channel_dense=false", "--weight_bits=4",
        "--inference_input_type=int8", "--ema_decay=0.5"])
    assert config == cli.Config(model="m.keras", output="o.tflite", overwrite=False, quiet=True,
                                mode="weights_only", per_channel_dense="false", weight_bits=4,
                                inference_input_type="int8", ema_decay=0.5)
    line = _app.command_line("tfquant-convert", config)
    assert _app.parse(cli.Config, line.split()) == config
    assert len(dataclasses.fields(cli.Config)) >= 12


def test_console_script_error_is_one_line_exit_1_and_keeps_the_output(files):
    """The console script's own error path: a Config error (int8 without calibration data) is
    `tfquant-convert: error: ...` on one line, exit code 1, and touches no file."""
    d = files["dir"]
    output = d / "existing_cli.tflite"
    output.write_bytes(b"precious earlier result")
    before = set(os.listdir(d))
    script = os.path.join(os.path.dirname(sys.executable), "tfquant-convert")
    proc = subprocess.run([script, f"--model={files['model.keras']}", f"--output={output}"],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("tfquant-convert: error: --mode=int8 needs "
                                  "--calibration_data") and proc.stderr.count("\n") == 1, \
        proc.stderr
    assert proc.stdout == ""
    assert output.read_bytes() == b"precious earlier result"
    assert set(os.listdir(d)) == before


@pytest.fixture(scope="module")
def qat_file(tmp_path_factory):
    """A briefly trained QAT model saved as .keras, and its calibration-free int8 export."""
    import keras

    import tfquant
    from tfquant import qat
    from tfquant.models.data import load_digits
    d = tmp_path_factory.mktemp("qat_cli")
    digits = load_digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(y))
    model = qat.quantize_model(keras.Model(inputs, keras.layers.Dense(10, "softmax")(y)))
    x = digits.x_train[:512]
    qat.calibrate_activation_ranges(model, x, show_progress=False)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, digits.y_train[:512], epochs=5, verbose=0,
              callbacks=[qat.QuantizationScheduler()])
    path = str(d / "qat.keras")
    model.save(path)
    np.save(d / "calib.npy", x * 3.0)
    return {"path": path, "dir": d, "x": x, "test": digits.x_test, "labels": digits.y_test,
            "keras_top1": np.argmax(model.predict(digits.x_test, verbose=0), -1),
            "expected": tfquant.convert(model, show_progress=False)}


def test_qat_model_exports_from_the_cli_without_calibration_data(qat_file, capsys):
    """A saved QAT model converts with --mode=int8 and no data: the same bytes as the Python
    export of the trained model (its learned ranges)."""
    out = qat_file["dir"] / "qat_int8.tflite"
    code, stdout, stderr = run_cli(capsys, f"--model={qat_file['path']}", f"--output={out}")
    assert code == 0, stderr
    assert "route native (QAT model)" in stdout
    assert out.read_bytes() == qat_file["expected"]
    int8_top1 = np.argmax(runtime.Runner(str(out)).predict(qat_file["test"]), -1)
    agreement = float(np.mean(int8_top1 == qat_file["keras_top1"]))
    accuracy = float(np.mean(qat_file["keras_top1"] == qat_file["labels"]))
    print(f"QAT Keras model (top-1 {accuracy:.3f}) vs tfquant-convert int8: {agreement:.4f} "
          "top-1 agreement")
    assert accuracy > 0.8  # trained: agreement is not decided by near-ties
    assert agreement >= 0.995


def test_qat_model_ignores_calibration_data_and_says_so(qat_file, capsys):
    out = qat_file["dir"] / "qat_int8_data.tflite"
    code, _, stderr = run_cli(capsys, f"--model={qat_file['path']}", f"--output={out}",
                              f"--calibration_data={qat_file['dir'] / 'calib.npy'}")
    assert code == 0 and "--calibration_data ignored" in stderr, stderr
    assert out.read_bytes() == qat_file["expected"]  # not recalibrated on the scaled data


def test_qat_model_in_int16x8_needs_16_bit_quantizers(qat_file, capsys):
    code, _, stderr = run_cli(capsys, f"--model={qat_file['path']}", "--mode=int16x8",
                              f"--output={qat_file['dir'] / 'w.tflite'}")
    assert code == 1 and stderr.count("\n") == 1 and "16-bit activations" in stderr, stderr
