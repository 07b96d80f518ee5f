"""The experiments' shared report helpers: tables, metrics, spreads, means over seeds."""

import math

import numpy as np

from tfquant.experiments import reports


def test_markdown_table_and_metrics():
    table = reports.markdown_table(["a", "b"], [[1, "x"], [2, "y"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | y |"]
    expected = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    got = np.array([[0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    assert reports.top1_accuracy(got, np.array([1, 1, 1])) == 2 / 3  # argmax 1, 1, 0
    assert reports.top1_agreement(got, expected) == 1 / 3  # expected's argmax 1, 0, 1


def test_spread_and_mean_of_runs_over_seeds():
    s = reports.spread([1.0, 2.0, 3.0, 6.0])
    assert s.mean == 3.0 and s.n == 4
    assert math.isclose(s.std, np.std([1, 2, 3, 6], ddof=1))
    assert math.isclose(s.stderr, s.std / 2.0)
    assert math.isnan(reports.spread([5.0]).std)
    runs = [{"accuracy": 0.9, "seconds": 10, "exported": True, "label": "a"},
            {"accuracy": 0.8, "seconds": 20, "exported": False, "label": "b"}]
    mean = reports.mean_of_runs(runs)
    assert math.isclose(mean.pop("accuracy"), 0.85)
    assert mean == {"seconds": 15.0, "exported": True, "label": "a"}
