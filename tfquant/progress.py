"""A small text progress bar for long work (calibration, conversion, benchmarks)."""

import sys
import time


class Progress:
    """Progress of `total` steps on stderr; prints nothing when disabled or total is 0."""

    def __init__(self, label: str, total: int, enabled: bool = True, stream=None):
        self.label, self.total, self.enabled = label, total, enabled and total > 0
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, steps: int = 1):
        self.done += steps
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw > 0.1 or self.done >= self.total):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now):
        width = 30
        filled = int(width * min(self.done, self.total) / self.total)
        bar = "#" * filled + "." * (width - filled)
        elapsed = now - self.start
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()

    def close(self):
        """Draw the final state (also when fewer than `total` steps happened)."""
        if self.enabled and 0 < self.done < self.total:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
