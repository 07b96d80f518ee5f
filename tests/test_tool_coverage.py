"""tfquant-coverage: the flags map to the Config, and the whole tool (in-process) on two small
trained models writes a report with every column and a row per model."""

import re

import pytest

from tfquant.tools import _app
from tfquant.tools import coverage

COLUMNS = ["model", "kind", "tfquant route", "SQNR dB tfquant", "SQNR dB TFLiteConverter",
           "SQNR dB AI Edge Quantizer", "int8 ops tfquant", "int8 ops TFLiteConverter",
           "int8 ops AI Edge Quantizer", "criterion", "runs on"]


def test_config_is_checked():
    with pytest.raises(ValueError, match="--models: 'AlexNet' is not one of"):
        coverage.Config(models=("AlexNet",))
    config = _app.parse(coverage.Config, ["tfquant-coverage", "--models=mtcnn_pnet,MobileNet",
                                          "--calibration_draws=2", "--output=c.md"])
    assert config == coverage.Config(models=("mtcnn_pnet", "MobileNet"), calibration_draws=2,
                                     output="c.md")
    assert _app.command_line("tfquant-coverage", config) == \
        "tfquant-coverage --models=mtcnn_pnet,MobileNet --calibration_draws=2 --output=c.md"


@pytest.mark.slow
@pytest.mark.peers
def test_main_on_two_small_models(tmp_path, capsys):
    models = ("mnist_resnet", "mtcnn_pnet")
    path = tmp_path / "coverage.md"
    config = coverage.Config(models=models, calibration_draws=2, test_sets=2, output=str(path),
                             runtimes=("litert", "tf"))
    assert coverage.main(config) == 0
    text = path.read_text()
    assert text.startswith("# tfquant coverage\n\nMade by `tfquant-coverage --models="
                           "mnist_resnet,mtcnn_pnet"), text[:200]
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| model | kind |"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    start = lines.index(header) + 2
    table = lines[start:lines.index("", start)]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table}
    assert list(rows) == list(models)
    resnet = rows["mnist_resnet"]
    assert len(resnet) == len(COLUMNS)
    assert resnet[1] == "trained" and resnet[2].startswith("native")
    assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", resnet[3]), resnet
    assert re.fullmatch(r"\d+\.\d%", resnet[6]), resnet
    assert resnet[9] == "met" or resnet[9].startswith("not met: "), resnet
    assert resnet[10] == "litert, tf"
    assert "| model | bytes tfquant |" in text and "top-1 float" in text
    assert "mnist_resnet" in capsys.readouterr().out


def _result(sqnr, seconds, note=""):
    return {"sqnr": sqnr, "seconds": seconds, "correct": [], "note": note, "error": None,
            "bytes": 1000, "share": 1.0}


def test_criterion_holds_each_route_to_its_time_limit():
    """Native route: at most 0.5x TFLiteConverter's conversion time; lowered: 1.0x; a row
    over its limit says by how much, and what it is with minmax ranges when measured."""
    def row(route, ours, theirs, diagnosis=None):
        return {"error": None, "kind": "trained", "time_diagnosis": diagnosis, "tools": {
            "tfquant": _result([30.0, 31.0], ours, route),
            "tflite_converter": _result([29.0, 30.0], theirs),
            "ai_edge_quantizer": _result([29.0, 30.0], [0.1])}}

    assert coverage.criterion(row("native (Keras frontend)", [0.4, 0.6], [1.0, 1.0])) == "met"
    assert coverage.criterion(row("native (Keras frontend)", [0.6], [1.0])) == \
        "not met: time 0.60x TFLiteConverter's > 0.5x"
    assert coverage.criterion(row("lowered by TFLiteConverter (LSTM)", [0.9], [1.0])) == "met"
    assert coverage.criterion(row("lowered by TFLiteConverter (LSTM)", [1.5], [1.0], 0.8)) == \
        "not met: time 1.50x TFLiteConverter's > 1.0x; with minmax ranges (no auto search) 0.80x"
    assert coverage.time_ratio(row("float .tflite (TFLite frontend)", [1.5], [1.0])) is None
