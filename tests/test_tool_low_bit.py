"""tfquant-low-bit: the report, the plot and the criterion."""

import os

import pytest

from tfquant.tools import low_bit


def test_report_on_a_trained_model(tmp_path, capsys):
    config = low_bit.Config(models=("mnist_resnet",), bits=(4,), calibration_draws=2,
                            test_sets=2, qat_models=(), output=str(tmp_path / "low_bit.md"),
                            plot=str(tmp_path / "low_bit.png"))
    assert low_bit.main(config) == 0
    text = (tmp_path / "low_bit.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| mnist_resnet | 4 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    nearest, mse, gptq, adaround = (float(c.split(" ± ")[0]) for c in cells[2:6])
    assert cells[6:8] == ["-", "-"]  # Keras's GPTQ does not apply to images; no QAT asked
    assert max(gptq, adaround) > mse and cells[8].startswith("met")
    assert os.path.getsize(tmp_path / "low_bit.png") > 1000
    assert "Made by `tfquant-low-bit" in text


def _row(**pooled_sqnr):
    return {"results": {(4, m): {"sqnr": [v, v]} for m, v in pooled_sqnr.items()}}


@pytest.mark.parametrize("values,met", [
    (dict(nearest=20, nearest_mse=21, gptq=23, adaround=22), True),
    (dict(nearest=20, nearest_mse=21, gptq=20.5, adaround=20.9), False),  # below MSE nearest
    (dict(nearest=20, nearest_mse=21, gptq=23, adaround=22, qat=24), True),  # 2 of 3 dB
    (dict(nearest=20, nearest_mse=21, gptq=22, adaround=22, qat=24), False),  # 1 of 3 dB
])
def test_criterion(values, met):
    text = low_bit.criterion(_row(**values), 4)
    assert text.startswith("met" if met else "NOT met"), text
