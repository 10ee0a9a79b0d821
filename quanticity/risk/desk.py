"""The risk gate with everything it judges from: the book's exposure, the P&L account, the breakers.

Why this exists: the risk actor and the backtest must judge a signal from the *same* inputs —
positions and realized P&L of the router's ledger, today's mark-to-market P&L and the equity peak
of the gate's own P&L book, the underlyings' return correlation — or a live-vs-backtest comparison
measures two different gates. This class is what both hold (the actor adds threads, Ray and the
audit trail around it; the backtest calls it in-process). It never imports Ray and never reads the
wall clock: every method takes ``now_ns``.

The lock-step stage of a step (see :mod:`quanticity.lockstep`) is :meth:`book_fills`, then
:meth:`monitor` with the step's quotes, then :meth:`drain_signals`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import redis

from quanticity import keys
from quanticity.execution.store import ExecutionStore
from quanticity.lockstep import drain_stream
from quanticity.messages import Direction, OrderIntent, Quote, RiskDecision, Signal, decode, encode
from quanticity.risk.account import AccountMonitor
from quanticity.risk.gate import Exposure, RiskGate

MALFORMED_SIGNAL = "MALFORMED_SIGNAL"
"""Decision code counted for a stream entry that is not a readable signal (skipped, never judged)."""


@dataclass(frozen=True)
class Alert:
    """A breaker that tripped: ``level`` is WARN, HALT or DRAWDOWN."""

    level: str
    text: str


@dataclass(frozen=True)
class Judgement:
    """One signal judged: the decision, the intent when approved, and the breaker alerts raised first."""

    entry_id: str
    signal: Signal
    now_ns: int
    decision: RiskDecision
    intent: OrderIntent | None
    alerts: tuple[Alert, ...] = ()


class RiskDesk:
    """:class:`RiskGate` + :class:`AccountMonitor` + the router's :class:`ExecutionStore`.

    Not thread-safe by itself: the risk actor holds its gate lock around :meth:`judge` and
    :meth:`breakers` (the account has its own lock).
    """

    def __init__(self, gate: RiskGate, account: AccountMonitor, execution: ExecutionStore) -> None:
        self.gate = gate
        self.account = account
        self.execution = execution
        self.symbols: set[str] = set()  # underlyings whose quotes feed the correlation rule
        self.malformed = 0
        self._exposure_cache: tuple[int, Exposure] | None = None
        self._marks_version = -1

    # --- what the gate sees --------------------------------------------------------------------
    def exposure(self, now_ns: int) -> Exposure:
        """The book as the gate sees it: positions rebuilt only when the router changed them or its
        P&L (by the store's version); today's P&L, equity and peak from the P&L book on every call."""
        version = self.execution.version()
        if self._exposure_cache is None or self._exposure_cache[0] != version:
            self._exposure_cache = (version, self.read_exposure())
        figures = self.account.figures(now_ns)
        return dataclasses.replace(
            self._exposure_cache[1], day_pnl=figures.day_pnl, equity=figures.equity, equity_peak=figures.equity_peak
        )

    def read_exposure(self) -> Exposure:
        """Positions and realized P&L of the router's ledger, summed in contract-key order (so the
        float sums do not depend on Redis hash order)."""
        stored = self.execution.positions()
        positions = [stored[k] for k in sorted(stored)]
        by_direction: dict[Direction, int] = {}
        held: dict[Direction, set[str]] = {}
        for position in positions:
            by_direction[position.direction] = by_direction.get(position.direction, 0) + 1
            held.setdefault(position.direction, set()).add(position.contract.underlying)
        return Exposure(
            open_by_direction=by_direction,
            held_underlyings={d: frozenset(u) for d, u in held.items()},
            position_qty={p.contract.key: p.quantity for p in positions},
            realized_pnl=self.execution.realized_pnl().get("total", 0.0),
            unrealized_pnl=sum(p.unrealized for p in positions),
            premium_at_risk=sum(p.avg_price * p.quantity * 100 for p in positions),
        )

    # --- decisions -----------------------------------------------------------------------------
    def breakers(self, exposure: Exposure, now_ns: int) -> list[Alert]:
        """Daily-loss then drawdown breaker; the alerts of those that tripped."""
        alerts = []
        level = self.gate.daily_loss_check(exposure, now_ns)
        if level is not None:
            pnl = exposure.day_pnl if exposure.day_pnl is not None else 0.0
            alerts.append(
                Alert(level, f"daily loss breaker {level}: today's P&L {pnl:+,.2f}; trading {self.gate.state.value}")
            )
        if self.gate.drawdown_check(exposure, now_ns) is not None:
            alerts.append(
                Alert("DRAWDOWN", f"drawdown breaker: {self.gate.state_reason}; trading {self.gate.state.value}")
            )
        return alerts

    def judge(self, signal: Signal, now_ns: int, entry_id: str = "") -> Judgement:
        """Breakers, then the gate's decision on ``signal`` at ``now_ns``."""
        self.symbols.add(signal.contract.underlying)
        exposure = self.exposure(now_ns)
        alerts = self.breakers(exposure, now_ns)
        decision, intent = self.gate.evaluate(signal, exposure, now_ns)
        return Judgement(entry_id, signal, now_ns, decision, intent, tuple(alerts))

    # --- account inputs ------------------------------------------------------------------------
    def observe_quotes(self, quotes: Iterable[tuple[str, str | bytes]]) -> None:
        """Underlying quotes (symbol, JSON :class:`Quote`) into the correlation window."""
        for symbol, raw in quotes:
            self.account.on_quote(symbol, raw)

    def mark_book(self, now_ns: int) -> bool:
        """Mark the P&L book from the router's revalued positions when its ledger changed; True if it did."""
        version = self.execution.version()
        if version == self._marks_version:
            return False
        positions = self.execution.positions()
        self.symbols.update(p.contract.underlying for p in positions.values())
        self.account.on_marks({k: positions[k].mark for k in sorted(positions) if positions[k].mark > 0}, now_ns)
        self._marks_version = version
        return True

    def monitor(self, now_ns: int, quotes: Mapping[str, Quote]) -> list[Alert]:
        """One monitor pass with the given quotes: sample them, mark the book, run the breakers."""
        self.observe_quotes((s, encode(quotes[s])) for s in sorted(quotes))
        self.mark_book(now_ns)
        return self.breakers(self.exposure(now_ns), now_ns)

    # --- lock-step draining --------------------------------------------------------------------
    def book_fills(self, client: redis.Redis, on_rejected: Callable[[str, str], None] | None = None) -> int:
        """Book every entry of ``trades:fills`` after the P&L cursor into the P&L book."""

        def handle(entry_id: str, fields: dict[str, str]) -> None:
            outcome = self.account.on_fill_record(entry_id, fields)
            if outcome.startswith("rejected") and on_rejected is not None:
                on_rejected(entry_id, outcome)

        return drain_stream(client, keys.FILLS_STREAM, keys.PNL_CURSOR, handle)

    def drain_signals(
        self,
        client: redis.Redis,
        now_ns: int,
        deliver: Callable[[OrderIntent], None],
        on_judged: Callable[[Judgement], None] | None = None,
    ) -> int:
        """Judge every signal of ``signals:stream`` after the risk cursor at ``now_ns``; each approval is
        delivered (``deliver`` returns once the router took it) before the next signal is judged.
        Malformed entries are counted in :attr:`malformed` and skipped. Returns entries handled."""

        def handle(entry_id: str, fields: dict[str, str]) -> None:
            try:
                signal = decode(fields["signal"], Signal)
            except (KeyError, ValueError):
                self.malformed += 1
                return
            judgement = self.judge(signal, now_ns, entry_id)
            if on_judged is not None:
                on_judged(judgement)
            if judgement.intent is not None:
                deliver(judgement.intent)

        return drain_stream(client, keys.SIGNALS_STREAM, keys.RISK_CURSOR, handle)
