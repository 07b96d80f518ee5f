"""tfquant-qat-families: the report's best-PTQ choice and paired differences, and one small
end-to-end run (the Conv1D + GRU family, one seed, one epoch) with its markdown report."""

import numpy as np
import pytest

from tfquant.tools import qat_families


def test_best_ptq_and_paired_differences_in_the_report():
    scores = {"float": [0.95, 0.95, 0.95], "PTQ auto": [0.90, 0.92, 0.91],
              "PTQ minmax": [0.93, 0.91, 0.92], "PTQ mse": [0.80, 0.81, 0.82],
              "QAT seconds": [1.0, 1.0, 1.0],
              "tfquant QAT (Keras, simulated)": [0.94, 0.94, 0.94],
              "tfquant QAT int8": [0.94, 0.93, 0.95], "tfmot QAT int8": [0.93, 0.93, 0.93]}
    assert qat_families.best_ptq(scores) == "PTQ minmax"  # mean 0.92 beats auto's 0.91
    config = qat_families.Config(families=("vit_tiny",), seeds=(1, 2, 3))
    text = qat_families.format_report(
        [{"name": "vit_tiny", "metric": "top-1", "scores": scores, "notes": ["a note"]}],
        config)
    minmax = np.array([0.93, 0.91, 0.92])
    assert (f"| **PTQ minmax** (best PTQ) | {100 * minmax.mean():.2f}% ± "
            f"{100 * minmax.std(ddof=1) / np.sqrt(3):.2f} |") in text, text
    difference = np.array([0.94, 0.93, 0.95]) - np.array([0.93, 0.91, 0.92])
    expected = (f"{100 * difference.mean():.2f}% ± "
                f"{100 * difference.std(ddof=1) / np.sqrt(3):.2f}")
    assert f"- tfquant QAT int8 - best PTQ (PTQ minmax): {expected}" in text, text
    assert "- tfquant QAT int8 - tfmot (tfmot QAT int8): 1.00% ± 0.58" in text, text
    assert "- a note" in text and "QAT seconds" not in text.split("- QAT fine-tuning")[0]


def test_config_refuses_bad_values():
    with pytest.raises(ValueError):
        qat_families.Config(seeds=())
    with pytest.raises(ValueError):
        qat_families.Config(families=("resnet",))


@pytest.mark.slow
def test_small_run_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TFQUANT_COVERAGE_CACHE", str(tmp_path / "cache"))
    output = str(tmp_path / "families.md")
    config = qat_families.Config(families=("conv1d_gru",), seeds=(1,), qat_epochs=1,
                                 train_samples=512, calibration_samples=64, output=output)
    result = qat_families.evaluate("conv1d_gru", config)
    scores = result["scores"]
    assert {"float", "PTQ auto", "PTQ minmax", "PTQ mse", "tfquant QAT int8"} <= set(scores)
    assert all(0.0 <= v[0] <= 1.0 for k, v in scores.items() if k != "QAT seconds")
    # The trained float model classifies the synthetic sinusoids; int8 stays close to it.
    assert scores["float"][0] >= 0.8 and scores["tfquant QAT int8"][0] >= 0.7, scores
    assert any(note.startswith("tfquant QAT keeps float: gru") for note in result["notes"])
    assert any(note.startswith("tfmot QAT:") for note in result["notes"]) or \
        "tfmot QAT int8" in scores
    assert qat_families.main(config) == 0
    with open(output) as f:
        report = f.read()
    assert report.startswith("# Quantization-aware training beyond CNNs") and \
        "### conv1d_gru (top-1, 1 seeds)" in report
