"""A fixed-size window of latency samples with cheap percentiles, for heartbeats and benches."""

from __future__ import annotations

import numpy as np


class LatencyWindow:
    """Keeps the last ``capacity`` samples (seconds) in a ring buffer."""

    def __init__(self, capacity: int = 4096) -> None:
        self._samples = np.zeros(capacity, dtype=np.float64)
        self._count = 0

    def add(self, seconds: float) -> None:
        """Record one sample."""
        self._samples[self._count % len(self._samples)] = seconds
        self._count += 1

    def extend(self, seconds: np.ndarray | list[float]) -> None:
        """Record many samples."""
        for value in seconds:
            self.add(float(value))

    @property
    def count(self) -> int:
        """Samples recorded since creation (not only those still in the window)."""
        return self._count

    def percentiles(self, *quantiles: float) -> dict[str, float]:
        """``{"p50": …, "p99": …}`` over the window, in milliseconds; empty window → {}."""
        n = min(self._count, len(self._samples))
        if n == 0:
            return {}
        values = np.percentile(self._samples[:n], [q * 100 for q in quantiles])
        return {f"p{round(q * 100):d}": float(v) * 1e3 for q, v in zip(quantiles, values, strict=True)}
