"""What the experiment tools share to report: markdown tables, the metrics of a classifier's
outputs against the float model's (top-1 accuracy, top-1 agreement, output SQNR), means over
runs with their spread, and PNG output of matplotlib figures (written atomically)."""

from __future__ import annotations

import dataclasses


# -- tables -------------------------------------------------------------------------------------

def markdown_table(header, rows) -> str:
    """A markdown table: `header` cells, then one line per row (cells formatted with str)."""
    lines = ["| " + " | ".join(str(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- metrics ------------------------------------------------------------------------------------

def top1_accuracy(predictions, labels) -> float:
    """Share of samples whose highest-scoring class is the label."""
    import numpy as np
    return float(np.mean(np.argmax(predictions, -1) == labels))


def top1_agreement(predictions, reference) -> float:
    """Share of samples whose highest-scoring class is the reference model's."""
    import numpy as np
    return float(np.mean(np.argmax(predictions, -1) == np.argmax(reference, -1)))


def prediction_metrics(reference, predictions, labels) -> dict:
    """accuracy, agreement (top-1 with `reference`, the float model's outputs) and sqnr (dB of
    the outputs against `reference`, tfquant.spec.sqnr_db) of a model's `predictions`."""
    from tfquant import spec
    return dict(accuracy=top1_accuracy(predictions, labels),
                agreement=top1_agreement(predictions, reference),
                sqnr=spec.sqnr_db(reference, predictions))


# -- several runs -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Spread:
    """Mean of n values, their sample standard deviation and the standard error of the mean
    (both nan for a single value)."""
    mean: float
    std: float
    stderr: float
    n: int


def spread(values) -> Spread:
    """Spread of a non-empty list of numbers."""
    import numpy as np
    values = np.asarray(values, float)
    if values.size == 0:
        raise ValueError("spread needs at least one value")
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return Spread(mean=float(values.mean()), std=std,
                  stderr=std / float(np.sqrt(values.size)), n=int(values.size))


def mean_of_runs(runs: list) -> dict:
    """One result from runs of several seeds: the numeric fields (int or float, not bool) of the
    first run averaged over all runs, the other fields as in the first run."""
    row = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = sum(run[key] for run in runs) / len(runs)
    return row


# -- figures ------------------------------------------------------------------------------------

def save_png(fig, path: str, dpi: int = 110):
    """Write `fig` as PNG through a temporary file (a failure leaves any old file intact)."""
    import io

    import matplotlib.pyplot as plt

    from tfquant.converter import save_atomically
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    save_atomically(buffer.getvalue(), path)
