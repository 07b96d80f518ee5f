"""The "auto" calibration method: choose the activation range estimator per model by the
quantized model's own output error.

No estimator is best on every model (docs/calibration.md has the measurements): the extremes
("minmax") keep rare large activations, a moving average of batch extremes ("ema") or a
clipped range ("mse", "percentile") trade them for finer steps, and which trade wins depends on
the model. One calibration pass yields every candidate's ranges and holds the first
calibration samples with the float model's outputs on them; the model is quantized with each
candidate and run on those samples, and the candidate whose outputs are closest to the float
model's (output SQNR, mean over outputs) is kept. Ties keep the earlier candidate (minmax,
TFLiteConverter's estimator, first). The score is in-sample: the held samples are inside
minmax's ranges, a bias toward minmax (holding samples out of the fit measured worse with
small calibration sets: docs/calibration.md).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import numpy as np

from tfquant import spec
from tfquant.calibrate import Calibration

log = logging.getLogger("tfquant")

CANDIDATES = ("minmax", "ema", "mse", "percentile")
# At most this many (the first) calibration samples score the candidates, in whole batches,
# and no more batches once their float outputs have HELD_OUTPUT_VALUES values. Classifiers
# (up to 1000 classes) keep 256 samples; models with dense outputs, whose every sample is
# expensive to run four times, score on fewer: basic-pitch (75,680 output values per 2 s
# clip) on 4 of its 8 calibration clips, which halves the search's 1.2 s of inference and
# chose the 8-clip choice in 4 of 5 calibration draws (the fifth was a 0.01 dB tie).
HELD_SAMPLES = 256
HELD_OUTPUT_VALUES = 1 << 18


@dataclasses.dataclass(frozen=True)
class Choice:
    """The estimator kept and every candidate's score (output SQNR in dB on the held
    calibration samples; None for a candidate whose model did not run)."""

    method: str
    scores: dict

    def describe(self) -> str:
        scores = ", ".join(f"{m} {s:.2f}" if s is not None else f"{m} failed"
                           for m, s in self.scores.items())
        return f"auto: {self.method} (output SQNR on calibration samples, dB: {scores})"


def score(model: bytes, calibration: Calibration, kernels: str = "default") -> float:
    """Mean output SQNR (dB) of a quantized model against the float model's outputs on the
    held calibration samples (float outputs only), on ai-edge-litert's `kernels` (reference:
    the same choice on every CPU)."""
    from tfquant import runtime
    runner = runtime.Runner(model, "litert", kernels, num_threads=os.cpu_count() or 1)
    got = runner.predict(calibration.inputs)
    got = got if isinstance(got, list) else [got]
    values = [spec.sqnr_db(expected, actual) for expected, actual
              in zip(calibration.outputs, got) if expected.dtype.kind == "f"]
    return float(np.mean(values)) if values else 0.0


def choose(calibration: Calibration, quantize: Callable, kernels: str = "default") -> tuple:
    """(quantized graph, model bytes, Choice): `quantize(ranges)` returns (graph, bytes) for
    one candidate's ranges. A candidate whose model ai-edge-litert cannot run is not chosen;
    if none runs, the first is kept (with a warning)."""
    results, scores = {}, {}
    with spec.quantization_memo():  # the candidates share their weights' codes
        for method, ranges in calibration.ranges.items():
            results[method] = quantize(ranges)
            try:
                scores[method] = score(results[method][1], calibration, kernels)
            except (RuntimeError, ValueError) as e:
                log.warning("range estimator %s: its model does not run on ai-edge-litert "
                            "(%s)", method,
                            str(e).splitlines()[0] if str(e) else type(e).__name__)
                scores[method] = None
    order = list(scores)
    runnable = [m for m in order if scores[m] is not None]
    best = max(runnable, key=lambda m: (scores[m], -order.index(m))) if runnable else order[0]
    choice = Choice(best, scores)
    log.info("calibration %s", choice.describe())
    return results[best][0], results[best][1], choice
