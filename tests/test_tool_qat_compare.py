"""tfquant-qat-compare: scheme selection and the paired tfquant - tfmot summary.
(In a subprocess: the tool's absl flags must not meet other tools' flags.)"""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import tfquant  # first: it loads tflite_runtime before TensorFlow
    import numpy as np
    from absl import flags

    from tfquant.tools import qat_compare

    flags.FLAGS(["qat_compare", "--schemes=per_layer,per_channel"])
    assert all(s[1].activation_initial_range == (-6.0, 6.0)  # QatRecipe's default
               for s in qat_compare._schemes(flags.FLAGS.schemes))
    flags.FLAGS.activation_initial_range = []  # an empty flag value: first training batch
    assert all(s[1].activation_initial_range is None
               for s in qat_compare._schemes(flags.FLAGS.schemes))
    flags.FLAGS.activation_initial_range = ["-4", "5"]
    schemes = qat_compare._schemes(flags.FLAGS.schemes)
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
    try:
        qat_compare.paired_difference([0.9], [0.9, 0.8])
    except ValueError:
        pass
    else:
        raise AssertionError("unequal run lists were accepted")

    def row(scheme, per_seed):
        return dict(scheme=scheme, keras=None, int8=float(np.mean(per_seed)), delta=0.0,
                    per_seed=per_seed)
    results = {"tiny": ([row(qat_compare.SCHEMES["per_channel"][0], ours),
                         row(qat_compare.TFMOT_LABEL, theirs)], (0.0, 0.0)),
               "no_peer": ([row(qat_compare.SCHEMES["per_channel"][0], ours)], (0.0, 0.0))}
    table = qat_compare._format(results)
    line = [l for l in table.splitlines() if l.startswith("| tiny | 4 |")]
    assert len(line) == 1, table
    assert f"| {100 * diffs.mean():+.2f} |" in line[0] and "| 2 / 1 / 1 |" in line[0], line
    assert "| no_peer | " not in table
    print("ok")
""")


def _run(args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_schemes_and_paired_summary():
    result = _run(["-c", _SCRIPT])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_unknown_scheme_is_a_clear_error():
    result = _run(["-m", "tfquant.tools.qat_compare", "--schemes=per_channel,bogus"])
    assert result.returncode != 0
    assert "--schemes takes names from: per_channel" in result.stderr


def test_bad_initial_range_is_a_clear_error():
    result = _run(["-m", "tfquant.tools.qat_compare", "--activation_initial_range=1,2"])
    assert result.returncode != 0
    assert "--activation_initial_range: initial activation range must be" in result.stderr
