"""tfquant-paper-tables: every cell of the paper's grid (PTQ simulation, QAT, tfmot QAT,
TFLiteConverter PTQ, deployed int8) runs on a small model and the tables and findings format
(in-process, the cells of a Config)."""

import keras
import numpy as np
import pytest
import tf_keras

from layer_models import conv_depthwise_classifier
from tfquant.tools import _app
from tfquant.tools import paper_tables


def test_config_is_checked():
    config = _app.parse(paper_tables.Config, ["tfquant-paper-tables", "--architecture=resnet",
                                              "--seeds=1,2,3", "--noqat"])
    assert config == paper_tables.Config(architecture=("resnet",), seeds=(1, 2, 3), qat=False)
    assert paper_tables.Config().seeds == (1,)
    with pytest.raises(ValueError, match="--qat_epochs must be at least 1"):
        paper_tables.Config(qat_epochs=0)


@pytest.mark.slow
@pytest.mark.peers
def test_paper_tables_tool_runs_every_cell(digits, tmp_path):
    # One seed (averaging over seeds is reports.mean_of_runs, tested in test_reports).
    config = paper_tables.Config(qat_epochs=1, calibration_images=128, seeds=(1,))
    keras.utils.set_random_seed(0)
    model = conv_depthwise_classifier(keras, (8, 8, 1), 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=40, verbose=0)
    copy = conv_depthwise_classifier(tf_keras, (8, 8, 1), 10)
    copy.set_weights(model.get_weights())

    cells = paper_tables.evaluate("tiny", model, digits, config, copy)
    keys = {key for _, columns in paper_tables.TABLES for _, key in columns}
    assert keys <= set(cells), keys - set(cells)
    assert cells["float"]["agreement"] == 1.0
    for key in keys - {"float"}:
        assert 0.0 <= cells[key]["accuracy"] <= 1.0 and np.isfinite(cells[key]["sqnr"]), key
    # Every exportable cell was deployed, and its int8 model computes what was simulated.
    for key in list(paper_tables.DEPLOYED) + ["tfmot_qat"]:
        deployed, simulated = cells["deployed_" + key], cells[key]
        assert abs(deployed["sqnr"] - simulated["sqnr"]) < 3.0, (key, deployed, simulated)
    assert len(cells["peers"]) == len(paper_tables.PEER_PTQ)

    results = {"tiny": cells}
    tables = paper_tables.format_tables(results)
    for title, columns in paper_tables.TABLES:
        assert title in tables
    assert tables.count("\n| tiny |") == (len(paper_tables.TABLES) + len(paper_tables.DEPLOYED)
                                         + 1 + len(paper_tables.PEER_PTQ))
    found = paper_tables.findings(results)
    assert len(found) == 7, found
    assert all(isinstance(holds, bool) for _, holds, _ in found)
    assert "| tiny: per-channel beats per-layer" in paper_tables.format_findings(found)
    plot = tmp_path / "tables.png"
    paper_tables.plot(results, str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
