"""tfquant-paper-tables: every cell of the paper's grid (PTQ simulation, QAT, tfmot QAT,
TFLiteConverter PTQ, deployed int8) runs on a small model and the tables and findings format.
(In a subprocess: the tool's absl flags must not meet other tools' flags.)"""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import sys

    import tfquant  # first: it loads tflite_runtime before TensorFlow
    import keras
    import numpy as np
    import tf_keras
    from absl import flags

    from tfquant.models import data
    from tfquant.tools import paper_tables

    sys.path.insert(0, TESTS_DIR)
    from layer_models import conv_depthwise_classifier

    flags.FLAGS(["paper_tables", "--qat_epochs=1", "--calibration_images=128", "--seeds=1,2"])

    dataset = data.load_digits()
    keras.utils.set_random_seed(0)
    model = conv_depthwise_classifier(keras, (8, 8, 1), 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(dataset.x_train, dataset.y_train, epochs=40, verbose=0)
    copy = conv_depthwise_classifier(tf_keras, (8, 8, 1), 10)
    copy.set_weights(model.get_weights())

    cells = paper_tables.evaluate("tiny", model, dataset, copy)
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
    assert tables.count("\\n| tiny |") == (len(paper_tables.TABLES) + len(paper_tables.DEPLOYED)
                                          + 1 + len(paper_tables.PEER_PTQ))
    found = paper_tables.findings(results)
    assert len(found) == 7, found
    assert all(isinstance(holds, bool) for _, holds, _ in found)
    print(paper_tables.format_findings(found))
    paper_tables.plot(results, "PLOT")
""")


def test_paper_tables_tool_runs_every_cell(tmp_path):
    plot = tmp_path / "tables.png"
    script = _SCRIPT.replace("PLOT", str(plot)).replace("TESTS_DIR",
                                                        repr(os.path.dirname(__file__)))
    result = subprocess.run([sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| tiny: per-channel beats per-layer" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
