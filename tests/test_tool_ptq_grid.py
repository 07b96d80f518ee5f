"""tfquant-ptq-grid: every scheme of the grid converts and runs on every runtime, and the table
formats. (In a subprocess: the tool's absl flags must not meet other tools' flags.)"""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import tfquant  # first: it loads tflite_runtime before TensorFlow
    import keras
    import numpy as np

    from tfquant import runtime, spec
    from tfquant.tools import ptq_grid

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
    assert table.count("\\n| ") == len(ptq_grid.schemes()) + 2, table
    print("schemes", len(ptq_grid.schemes()))
""")


def test_every_grid_scheme_converts_and_runs_on_every_runtime():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "schemes 10" in done.stdout
