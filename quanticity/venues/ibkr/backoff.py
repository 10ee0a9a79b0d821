"""The IBKR connection's reconnect backoff: the platform's :class:`ExponentialBackoff` set from
the ``reconnect`` section of the IBKR config (:class:`BackoffSpec`)."""

from __future__ import annotations

from quanticity.backoff import ExponentialBackoff
from quanticity.venues.ibkr.config import BackoffSpec

__all__ = ["Backoff"]


class Backoff(ExponentialBackoff):
    """Delays ``initial × multiplier^n`` capped at ``max``, each scaled by ``1 ± jitter``."""

    def __init__(self, spec: BackoffSpec) -> None:
        super().__init__(spec.initial_s, spec.max_s, spec.jitter, spec.seed, spec.multiplier)
