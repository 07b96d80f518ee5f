"""tfquant-delegate-check on a .tflite file: the table and the verdict."""

import os
import subprocess
import sys

import keras
import numpy as np

import tfquant


def test_delegate_check_reports_claims_and_exactness(tmp_path):
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
    done = subprocess.run(
        [sys.executable, "-m", "tfquant.tools.delegate_check", f"--model={path}",
         "--runtimes=litert,tflite_runtime", "--images=3"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    total = len(result.graph.ops)
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {path} |")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"{total - 1}/{total}"  # everything but LEAKY_RELU
        assert cells[3] == str(3 * 5) and cells[4] == "0"
    assert "bit-exact with the reference kernels: yes" in done.stdout
