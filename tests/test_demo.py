"""The demo (make demo), in-process on the shipped ResNet-style weights: it writes the models,
prints the float / int8 table and the DSP delegate's exactness."""

import os

import pytest

from tfquant.tools import demo

pytestmark = pytest.mark.delegate


def test_demo_quantizes_and_checks_the_delegate(tmp_path, capsys):
    config = demo.Config(architecture=("resnet",), output_dir=str(tmp_path), runs=5)
    assert demo.main(config) == 0
    out = capsys.readouterr().out
    assert "the weights tfquant ships" in out
    for name in ("resnet.keras", "resnet_float32.tflite", "resnet_int8.tflite"):
        assert os.path.getsize(tmp_path / name) > 0, name
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| resnet")]
    quality, dsp = rows
    keras_accuracy, float_accuracy, int8_accuracy = (float(v) for v in quality[1:4])
    assert keras_accuracy > 0.97 and float_accuracy == keras_accuracy
    assert int8_accuracy >= keras_accuracy - 0.005
    claimed, total = (int(v) for v in dsp[1].split("/"))
    assert claimed == total and dsp[2] == "100.00%"


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="--architecture: 'mobilenet_v3' is not one of"):
        demo.Config(architecture=("mobilenet_v3",))
