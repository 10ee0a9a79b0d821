"""The advisory pre-trade review of complex entries (SPEC §12), fed by ``signals:stream``.

The overseer follows the same stream the risk gate consumes, on its own persisted cursor
(:data:`quanticity.keys.OVERSEER_REVIEW_CURSOR`). For an entry of one of the ``review_strategies``
(the multi-trigger, overnight and longer-dated setups — the config names them) it asks the model
for a second opinion through :meth:`Narrator.review_signal`, which falls back to the rule flags
(wide spread, low confidence, no market) without a key, on an API error, a timeout or a spent
budget, and writes the review to ``system:alerts`` — ``review_red_flag_level`` (WARNING: pushed to
the admin chat) when anything looks wrong, ``review_level`` (REVIEW) otherwise.

Advisory only: the review runs beside the trade, never in front of it. The risk gate reads the
stream independently and the router never waits for this; a failed or slow review is counted
and the next signal is reviewed — it can neither block nor alter an order.

A signal older than ``review_max_age_s`` when the overseer reaches it (a restarted overseer
catching up, a backlog) is skipped and counted: by then its order has long been decided, and a
late second opinion would only page the admin about the past.
"""

from __future__ import annotations

import logging

import msgspec

from quanticity.clock import NS_PER_SECOND
from quanticity.messages import Signal, decode
from quanticity.overseer import templates
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.narratives import Narrator, Review
from quanticity.overseer.protocols import AdminAlerts

log = logging.getLogger(__name__)


class SignalReviewer:
    """Reviews the complex entries of ``signals:stream`` entry by entry (module doc)."""

    def __init__(self, config: OverseerConfig, narrator: Narrator, alerts: AdminAlerts, counters: Counters) -> None:
        self._config = config
        self._narrator = narrator
        self._alerts = alerts
        self._counters = counters

    def wanted(self, signal: Signal, now_ns: int) -> bool:
        """True for a complex entry recent enough to be worth a review (counts why others are skipped)."""
        if not self._config.review_enabled or not self._narrator.needs_review(signal):
            return False
        if now_ns - signal.ts_event > self._config.review_max_age_s * NS_PER_SECOND:
            self._counters.add("reviews.skipped_late")
            return False
        return True

    async def on_entry(self, fields: dict[str, str], now_ns: int) -> Review | None:
        """Review one stream entry if it is a complex entry; returns the review (None when not reviewed).

        A malformed entry is counted (``reviews.rejected``) with the field and value logged, never raised.
        """
        raw = fields.get("signal")
        if raw is None:
            self._reject("signal: missing field", fields)
            return None
        try:
            signal = decode(raw, Signal)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self._reject(f"signal: {exc}", fields)
            return None
        if not self.wanted(signal, now_ns):
            return None
        review = await self._narrator.review_signal(signal)
        level = self._config.review_red_flag_level if review.red_flag else self._config.review_level
        await self._alerts.alert(level, templates.review_alert(signal, review.note, review.source, review.red_flag))
        self._counters.add(f"reviews.{review.source}")
        return review

    def _reject(self, why: str, fields: dict[str, str]) -> None:
        self._counters.add("reviews.rejected")
        log.warning("signal not reviewed", extra={"error": why, "value": str(fields)[:200]})
