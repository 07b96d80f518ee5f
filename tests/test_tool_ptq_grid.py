"""tfquant-ptq-grid: every scheme of the grid converts and runs; the table formats."""

import keras
import numpy as np

import tfquant
from tfquant import runtime, spec
from tfquant.tools import ptq_grid


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
    rows = {"tiny": []}
    for label, recipe in ptq_grid.schemes():
        converted = tfquant.convert(model, data, tfquant.Recipe(**recipe), show_progress=False)
        for name in runtime.available_runtimes():
            got = runtime.Runner(converted, name, "reference").predict(data[:16])
            assert spec.sqnr_db(expected, got) > 10.0, (label, name)
        rows["tiny"].append(dict(scheme=label, accuracy=1.0, agreement=1.0,
                                 sqnr=spec.sqnr_db(expected, got), size=len(converted)))
    rows["tiny"].insert(0, dict(scheme="float32", accuracy=1.0, agreement=1.0,
                                sqnr=float("inf"), size=10_000))
    table = ptq_grid.format_tables(rows)
    assert table.count("\n| ") == len(ptq_grid.schemes()) + 2  # header + float + schemes
