"""tfquant-qat-compare: scheme selection, the checked Config and the paired tfquant - tfmot
summary, in-process; one run of the console script checks that a bad flag value is a one-line
usage error."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfquant.tools import _app
from tfquant.tools import qat_compare


def test_schemes_and_paired_summary():
    config = qat_compare.Config(schemes=("per_layer", "per_channel"))
    assert all(s[1].activation_initial_range == (-6.0, 6.0)  # QatRecipe's default
               for s in qat_compare._schemes(config))
    # an empty flag value: first training batch
    config = _app.parse(qat_compare.Config, ["tfquant-qat-compare",
                                             "--schemes=per_layer,per_channel",
                                             "--activation_initial_range="])
    assert config.activation_initial_range == ()
    assert all(s[1].activation_initial_range is None for s in qat_compare._schemes(config))
    config = _app.parse(qat_compare.Config, ["tfquant-qat-compare",
                                             "--schemes=per_layer,per_channel",
                                             "--activation_initial_range=-4,5"])
    schemes = qat_compare._schemes(config)
    # Table order, whatever the flag's order; only the named schemes.
    assert [s[0] for s in schemes] == [qat_compare.SCHEMES["per_channel"][0],
                                       qat_compare.SCHEMES["per_layer"][0]], schemes
    assert schemes[0][1].weight_per_channel and not schemes[1][1].weight_per_channel
    assert all(s[1].activation_initial_range == (-4.0, 5.0) for s in schemes)

    ours, theirs = [0.977, 0.979, 0.975, 0.981], [0.978, 0.976, 0.975, 0.980]
    d = qat_compare.paired_difference(ours, theirs)
    diffs = np.subtract(ours, theirs)
    assert abs(d["mean"] - diffs.mean()) < 1e-12
    assert abs(d["stderr"] - diffs.std(ddof=1) / 2.0) < 1e-12
    assert (d["wins"], d["ties"], d["losses"]) == (2, 1, 1), d
    with pytest.raises(ValueError):
        qat_compare.paired_difference([0.9], [0.9, 0.8])

    def row(scheme, per_seed):
        return dict(scheme=scheme, keras=None, int8=float(np.mean(per_seed)), delta=0.0,
                    per_seed=per_seed)
    results = {"tiny": ([row(qat_compare.SCHEMES["per_channel"][0], ours),
                         row(qat_compare.TFMOT_LABEL, theirs)], (0.0, 0.0)),
               "no_peer": ([row(qat_compare.SCHEMES["per_channel"][0], ours)], (0.0, 0.0))}
    table = qat_compare._format(results)
    line = [line for line in table.splitlines() if line.startswith("| tiny | 4 |")]
    assert len(line) == 1, table
    assert f"| {100 * diffs.mean():+.2f} |" in line[0] and "| 2 / 1 / 1 |" in line[0], line
    assert "| no_peer | " not in table


def test_flags_become_the_config():
    config = _app.parse(qat_compare.Config, ["tfquant-qat-compare", "--seeds=3,4,5",
                                             "--freeze_bn_epochs=0.5", "--nopeers"])
    assert config == qat_compare.Config(seeds=(3, 4, 5), freeze_bn_epochs=0.5, peers=False)
    assert qat_compare.Config().seeds == (1, 2)
    assert qat_compare.Config().schemes == tuple(qat_compare.SCHEMES)
    with pytest.raises(ValueError, match="--seeds takes integers, got 'x'"):
        _app.parse(qat_compare.Config, ["tfquant-qat-compare", "--seeds=1,x"])
    with pytest.raises(ValueError, match="--freeze_bn_epochs must be at least 0.0"):
        qat_compare.Config(freeze_bn_epochs=-1.0)


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="--schemes takes names from: per_channel"):
        qat_compare.Config(schemes=("per_channel", "bogus"))
    with pytest.raises(ValueError, match="--schemes takes names from: per_channel"):
        _app.parse(qat_compare.Config, ["tfquant-qat-compare", "--schemes=per_channel,bogus"])


def test_bad_initial_range_is_a_clear_error():
    for bad in (("1", "2"), (-1.0, 1.0, 2.0), ("a", "b")):
        with pytest.raises(ValueError, match="--activation_initial_range: initial activation "
                                             "range must be"):
            qat_compare.Config(activation_initial_range=bad)
    with pytest.raises(ValueError, match="--activation_initial_range: initial activation range "
                                         "must be"):
        _app.parse(qat_compare.Config, ["tfquant-qat-compare", "--activation_initial_range=1,2"])


def test_console_script_usage_error():
    script = os.path.join(os.path.dirname(sys.executable), "tfquant-qat-compare")
    result = subprocess.run([script, "--schemes=per_channel,bogus"], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.endswith("tfquant-qat-compare: error: --schemes takes names from: "
                                  f"{', '.join(qat_compare.SCHEMES)}\n"), result.stderr[-3000:]
    assert result.stdout == ""


@pytest.mark.slow
def test_main_on_a_trained_zoo_model(pretrained, mnist, tmp_path, capsys):
    """The whole tool on the shared zoo model, fine-tuned and tested on part of MNIST-5k."""
    model = pretrained("resnet")  # the smallest graph of the zoo
    weights = [w.copy() for w in model.get_weights()]
    part = type(mnist)(mnist.x_train[:640], mnist.y_train[:640], mnist.x_test[:300],
                       mnist.y_test[:300])
    output, plot = tmp_path / "qat.md", tmp_path / "qat.png"
    config = qat_compare.Config(architecture=("resnet",), qat_epochs=1, seeds=(1,),
                                schemes=("per_channel",),
                                peers=False, output=str(output), plot=str(plot))
    assert qat_compare.main(config, models={"resnet": model}, dataset=part) == 0
    out = capsys.readouterr().out
    assert "### resnet (MNIST-5k test, 1000 images)" in out
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| scheme")}
    assert list(rows) == ["float (Keras)", "PTQ per-channel", "PTQ per-layer",
                          qat_compare.SCHEMES["per_channel"][0]]
    qat = rows[qat_compare.SCHEMES["per_channel"][0]]
    # exported (agreement of QAT and int8 %); ResNet-style has no depthwise weights to report
    assert float(qat[3]) > 90.0 and qat[5] == "-"
    assert output.read_text().startswith(
        "# Quantization-aware training on MNIST-5k\n\nMade by "
        f"`{_app.command_line('tfquant-qat-compare', config)}` on {_app.machine()}.\n\n")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
