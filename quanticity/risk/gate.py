"""Risk-gate rules, sizing and the persisted trading state.

Every signal, entry or exit, is judged here; an approval becomes an :class:`OrderIntent` with a
deterministic idempotency reference derived from the signal id, so a signal judged twice (a
replay after a restart) produces the same order reference and the router sends it once. Every
denial carries a reason code. The trading state (ACTIVE / REDUCING / HALTED) is written through
the store before it takes effect, so it survives restarts.

SPEC §8 rules, in the order an entry meets them (exits only need a market and a position, and
pass in every state but HALTED; cancels pass in every state):

* HALTED allows only cancels → ``STATE_HALTED`` (cancels: ``CANCEL_ALLOWED``)
* no usable bid/ask → ``NO_MARKET``; exit larger than the position → ``NO_POSITION``
* REDUCING allows only exits → ``STATE_REDUCING_EXITS_ONLY``
* stale-data gate (inputs older than ``max_input_age_s``) → ``STALE_INPUT``
* daily loss ≥ 6 % of equity → HALTED, ``DAILY_LOSS_HALT`` (warning at 4 %)
* drawdown from the window's equity peak > 10 % → REDUCING (configurable), ``DRAWDOWN_LIMIT``
* no 0DTE entries from 15:30 ET (30 min before an early close; MOC exempt) → ``ZERO_DTE_CUTOFF``
* option spread > 10 % of mid → ``SPREAD_TOO_WIDE``
* ≥ 3 open positions in the same direction → ``MAX_OPEN_DIRECTION``
* return correlation > 0.7 with an underlying held in the same direction → ``CORRELATION_LIMIT``
* max order rate per sliding minute → ``ORDER_RATE``
* one contract above the max notional per order → ``MAX_NOTIONAL`` (it also caps the size)
* risk per trade by DTE band (0DTE 1–2 %, 1DTE 2–3 %, 14-day+ 3–5 %) buys no contract → ``SIZE_ZERO``
* buying power → ``BUYING_POWER``
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from quanticity.calendar import ET, NyseCalendar
from quanticity.config.models import RiskSection
from quanticity.messages import CancelRequest, Direction, OrderIntent, RiskDecision, Side, Signal, TradingState

NS = 1_000_000_000


class Reason:
    """Reason codes of risk decisions (the audit trail and the tests name them)."""

    APPROVED = "APPROVED"
    STATE_HALTED = "STATE_HALTED"
    STATE_REDUCING = "STATE_REDUCING_EXITS_ONLY"
    STALE_INPUT = "STALE_INPUT"
    DAILY_LOSS_HALT = "DAILY_LOSS_HALT"
    ZERO_DTE_CUTOFF = "ZERO_DTE_CUTOFF"
    NO_MARKET = "NO_MARKET"
    SPREAD_TOO_WIDE = "SPREAD_TOO_WIDE"
    MAX_OPEN_DIRECTION = "MAX_OPEN_DIRECTION"
    ORDER_RATE = "ORDER_RATE"
    SIZE_ZERO = "SIZE_ZERO"
    BUYING_POWER = "BUYING_POWER"
    NO_POSITION = "NO_POSITION"
    CANCEL_ALLOWED = "CANCEL_ALLOWED"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    CORRELATION_LIMIT = "CORRELATION_LIMIT"
    DRAWDOWN_LIMIT = "DRAWDOWN_LIMIT"
    # high-risk entries an admin must approve (quanticity.risk.approvals)
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED_BY_ADMIN = "APPROVED_BY_ADMIN"
    APPROVAL_REJECTED = "APPROVAL_REJECTED"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"


_STATE_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
"""Breakers only ever tighten the state: a drawdown breach never turns a HALTED gate into REDUCING."""


class CorrelationProvider(Protocol):
    """Return correlation of two underlyings, or None while their common history is too thin."""

    def correlation(self, a: str, b: str) -> float | None: ...


class RiskStore(Protocol):
    """Where the gate persists its state (Redis live, memory in unit tests and backtests)."""

    def load_state(self) -> tuple[TradingState, str]: ...

    def save_state(self, state: TradingState, reason: str, ts_ns: int) -> None: ...

    def load_order_times(self, since_ns: int) -> list[int]: ...

    def record_order_time(self, ts_ns: int) -> None: ...


class MemoryRiskStore:
    """In-process :class:`RiskStore` for unit tests and single-process backtests."""

    def __init__(self) -> None:
        self.state = (TradingState.ACTIVE, "initial")
        self.order_times: list[int] = []

    def load_state(self) -> tuple[TradingState, str]:
        return self.state

    def save_state(self, state: TradingState, reason: str, ts_ns: int) -> None:
        self.state = (state, reason)

    def load_order_times(self, since_ns: int) -> list[int]:
        return [t for t in self.order_times if t >= since_ns]

    def record_order_time(self, ts_ns: int) -> None:
        self.order_times.append(ts_ns)


@dataclass(frozen=True)
class Exposure:
    """What the gate needs to know about the book when it judges a signal."""

    open_by_direction: Mapping[Direction, int] = field(default_factory=dict)
    position_qty: Mapping[str, int] = field(default_factory=dict)  # contract key → contracts held
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    premium_at_risk: float = 0.0  # cost of open positions, for the buying-power check
    held_underlyings: Mapping[Direction, frozenset[str]] = field(default_factory=dict)  # for the correlation rule
    day_pnl: float | None = None  # today's (ET) mark-to-market P&L; None: realized + unrealized stands in
    equity: float | None = None  # account equity + all realized + unrealized; None: no drawdown check
    equity_peak: float | None = None  # highest equity over the drawdown window


def order_ref_for(signal_id: str) -> str:
    """Deterministic idempotency reference of the order a signal produces."""
    return "Q" + hashlib.sha1(signal_id.encode()).hexdigest()[:20]


class RiskGate:
    """Judges signals; owns the trading state."""

    def __init__(
        self,
        config: RiskSection,
        store: RiskStore,
        calendar: NyseCalendar | None = None,
        limit_offset: float = 0.25,
        correlation: CorrelationProvider | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.calendar = calendar or NyseCalendar()
        self.limit_offset = limit_offset
        self.correlation = correlation  # None (backtests): the correlation rule is not applied
        self.correlation_unknown = 0  # pairs let through on thin history
        self.state, self.state_reason = store.load_state()
        self._order_times: deque[int] = deque()
        self.loss_warning_sent = False
        self._cutoffs: dict[date, datetime] = {}
        self.approved = 0
        self.denied = 0

    def restore_rate_window(self, now_ns: int) -> None:
        """Reload the approvals of the last minute (after a restart) for the order-rate rule."""
        self._order_times = deque(sorted(self.store.load_order_times(now_ns - 60 * NS)))

    def set_state(self, state: TradingState, reason: str, now_ns: int) -> None:
        """Persist then apply a new trading state."""
        self.store.save_state(state, reason, now_ns)
        self.state, self.state_reason = state, reason

    # --- decisions ------------------------------------------------------------------------
    def evaluate(self, signal: Signal, exposure: Exposure, now_ns: int) -> tuple[RiskDecision, OrderIntent | None]:
        """Approve (with a sized intent) or deny ``signal``; never raises on bad input."""
        reason, detail, intent = self._judge(signal, exposure, now_ns)
        decision = RiskDecision(
            ts_event=now_ns,
            ts_init=now_ns,
            signal_id=signal.signal_id,
            approved=intent is not None,
            reason_code=reason,
            detail=detail,
            order_ref=intent.order_ref if intent else None,
            quantity=intent.quantity if intent else 0,
        )
        if intent is not None:
            self.approved += 1
            self._order_times.append(now_ns)
            self.store.record_order_time(now_ns)
        else:
            self.denied += 1
        return decision, intent

    def recheck_release(self, deadline_ns: int, now_ns: int) -> tuple[str, str] | None:
        """Re-check an admin-approved, parked entry at the moment it would be released to the router.

        The gate judged it when it was parked; what may have changed since is the trading state (a
        halt or a breaker while the admin was deciding) and the age of its inputs: past the approval
        deadline they are stale, so the entry is denied. Returns (reason code, detail) to deny, None to release.
        """
        if self.state is TradingState.HALTED:
            return Reason.STATE_HALTED, f"trading HALTED ({self.state_reason})"
        if self.state is TradingState.REDUCING:
            return Reason.STATE_REDUCING, "trading REDUCING: exits only"
        if now_ns > deadline_ns:
            late_s = (now_ns - deadline_ns) / NS
            return Reason.APPROVAL_EXPIRED, f"approved {late_s:.1f} s after the approval deadline: inputs stale"
        return None

    def evaluate_cancel(self, request: CancelRequest, now_ns: int) -> RiskDecision:
        """Cancels pass in every state, HALTED included (SPEC §8): they only ever remove risk.

        The decision still goes to the audit trail, so a halt's clean-up is on record.
        """
        return RiskDecision(
            ts_event=now_ns,
            ts_init=now_ns,
            signal_id=f"cancel:{request.order_ref}",
            approved=True,
            reason_code=Reason.CANCEL_ALLOWED,
            detail=f"cancel in state {self.state.value}: {request.reason}",
            order_ref=request.order_ref,
        )

    def daily_loss_check(self, exposure: Exposure, now_ns: int) -> str | None:
        """Apply the daily-loss breaker: HALTED at the halt level; returns "WARN"/"HALT" when crossed.

        The loss is today's mark-to-market P&L (``exposure.day_pnl``, from the P&L book); without a
        book (a one-session backtest) realized + unrealized is the same number.
        """
        pnl = exposure.day_pnl if exposure.day_pnl is not None else exposure.realized_pnl + exposure.unrealized_pnl
        loss_pct = -pnl / self.config.account_equity * 100
        if loss_pct >= self.config.daily_loss_halt_pct and self.state is not TradingState.HALTED:
            self.set_state(
                TradingState.HALTED, f"daily loss {loss_pct:.2f}% ≥ {self.config.daily_loss_halt_pct}%", now_ns
            )
            return "HALT"
        if loss_pct >= self.config.daily_loss_warn_pct and not self.loss_warning_sent:
            self.loss_warning_sent = True
            return "WARN"
        return None

    def drawdown_check(self, exposure: Exposure, now_ns: int) -> str | None:
        """Apply the drawdown limit: past ``max_drawdown_pct`` from the window's equity peak the state
        moves to ``drawdown_state`` (REDUCING by default: exits only). Returns "DRAWDOWN" when it did.

        Exactly at the limit passes (a *maximum* drawdown of 10 % allows 10 %); the state only ever
        tightens, so a HALTED gate stays HALTED.
        """
        pct = self.drawdown_pct(exposure)
        if pct is None or pct <= self.config.max_drawdown_pct + 1e-9:
            return None
        target = TradingState(self.config.drawdown_state)
        if _STATE_RANK[target] <= _STATE_RANK[self.state]:
            return None
        peak = max(exposure.equity_peak or 0.0, exposure.equity or 0.0)
        detail = f"equity {exposure.equity:,.2f} from peak {peak:,.2f}"
        self.set_state(target, f"drawdown {pct:.2f}% > {self.config.max_drawdown_pct}% ({detail})", now_ns)
        return "DRAWDOWN"

    @staticmethod
    def drawdown_pct(exposure: Exposure) -> float | None:
        """Equity below the window's peak, % of the peak; None without equity figures."""
        equity = exposure.equity
        if equity is None or not math.isfinite(equity):
            return None
        peak = max(exposure.equity_peak if exposure.equity_peak is not None else equity, equity)
        return (peak - equity) / peak * 100 if peak > 0 else None

    def _judge(self, signal: Signal, exposure: Exposure, now_ns: int) -> tuple[str, str, OrderIntent | None]:
        cfg = self.config
        if self.state is TradingState.HALTED:
            return Reason.STATE_HALTED, f"trading HALTED ({self.state_reason})", None
        bid, ask = signal.reference_bid, signal.reference_ask
        if not (math.isfinite(bid) and math.isfinite(ask)) or ask <= 0 or bid < 0 or bid > ask:
            return Reason.NO_MARKET, f"no usable market: bid {bid}, ask {ask}", None
        mid = (bid + ask) / 2
        if signal.is_exit:
            held = exposure.position_qty.get(signal.contract.key, 0)
            if signal.quantity <= 0 or signal.quantity > held:
                return Reason.NO_POSITION, f"sell {signal.quantity} of {signal.contract.key} but hold {held}", None
            # exits take the bid: a stop or a time exit that rests unfilled is no exit at all
            limit = round(max(0.01, bid), 2)
            return Reason.APPROVED, "exit", self._intent(signal, Side.SELL, signal.quantity, limit, now_ns)

        if self.state is TradingState.REDUCING:
            return Reason.STATE_REDUCING, "trading REDUCING: exits only", None
        age_s = (now_ns - int(signal.inputs.get("computed_at", signal.ts_event))) / NS
        if age_s > cfg.max_input_age_s:
            return Reason.STALE_INPUT, f"inputs {age_s:.1f} s old > {cfg.max_input_age_s} s", None
        if self.daily_loss_check(exposure, now_ns) == "HALT" or self.state is TradingState.HALTED:
            return Reason.DAILY_LOSS_HALT, self.state_reason, None
        if self.drawdown_check(exposure, now_ns) == "DRAWDOWN":
            return Reason.DRAWDOWN_LIMIT, self.state_reason, None
        now_et = datetime.fromtimestamp(now_ns / NS, tz=UTC).astimezone(ET)
        if signal.contract.expiry == now_et.date().isoformat() and signal.strategy not in cfg.zero_dte_cutoff_exempt:
            cutoff = self._zero_dte_cutoff(now_et.date())
            if now_et >= cutoff:
                return Reason.ZERO_DTE_CUTOFF, f"0DTE entry at {now_et:%H:%M:%S} ET ≥ cutoff {cutoff:%H:%M}", None
        spread_pct = (ask - bid) / mid * 100 if mid > 0 else math.inf
        if spread_pct > cfg.max_option_spread_pct + 1e-9:  # tolerance for float noise at the limit
            return Reason.SPREAD_TOO_WIDE, f"option spread {spread_pct:.1f}% > {cfg.max_option_spread_pct}%", None
        open_same = exposure.open_by_direction.get(signal.direction, 0)
        if open_same >= cfg.max_open_per_direction:
            return (
                Reason.MAX_OPEN_DIRECTION,
                f"{open_same} open {signal.direction} ≥ {cfg.max_open_per_direction}",
                None,
            )
        correlated = self._correlated_holding(signal, exposure)
        if correlated is not None:
            return Reason.CORRELATION_LIMIT, correlated, None
        while self._order_times and self._order_times[0] < now_ns - 60 * NS:
            self._order_times.popleft()
        if len(self._order_times) >= cfg.max_orders_per_minute:
            return Reason.ORDER_RATE, f"{len(self._order_times)} orders in 60 s ≥ {cfg.max_orders_per_minute}", None
        limit = round(mid + self.limit_offset * (ask - mid), 2)
        if limit * 100 > cfg.max_notional_per_order:
            return (
                Reason.MAX_NOTIONAL,
                f"one contract costs {limit * 100:.2f} > max notional per order {cfg.max_notional_per_order:.2f}",
                None,
            )
        risk_pct = self.risk_pct(signal, now_et.date())
        qty = self.size(limit, risk_pct)
        if qty <= 0:
            budget = cfg.account_equity * risk_pct / 100
            return Reason.SIZE_ZERO, f"one contract costs {limit * 100:.2f} > risk budget {budget:.2f}", None
        buying_power = cfg.account_equity + exposure.realized_pnl - exposure.premium_at_risk
        if qty * limit * 100 > buying_power:
            return Reason.BUYING_POWER, f"cost {qty * limit * 100:.2f} > buying power {buying_power:.2f}", None
        return Reason.APPROVED, f"{qty} @ {limit:.2f}", self._intent(signal, Side.BUY, qty, limit, now_ns)

    def _correlated_holding(self, signal: Signal, exposure: Exposure) -> str | None:
        """Why ``signal`` is too correlated with a same-direction holding (None: it is not).

        Only other underlyings held in the *same* direction count: an opposite-direction holding
        is a hedge (seed 002), and more contracts of the same underlying are bounded by the
        open-positions-per-direction rule. A pair without enough common history is allowed and
        counted in ``correlation_unknown``.
        """
        if self.correlation is None:
            return None
        underlying = signal.contract.underlying
        limit = self.config.max_correlation
        for held in sorted(exposure.held_underlyings.get(signal.direction, frozenset())):
            if held == underlying:
                continue
            rho = self.correlation.correlation(underlying, held)
            if rho is None:
                self.correlation_unknown += 1
            elif rho > limit + 1e-12:
                return f"{underlying} return correlation {rho:.3f} with held {signal.direction} {held} > {limit}"
        return None

    def _zero_dte_cutoff(self, day: date) -> datetime:
        """15:30 ET, or 30 minutes before an early close; computed once per day (calendar lookups are slow)."""
        cached = self._cutoffs.get(day)
        if cached is None:
            cached = datetime.combine(day, self.config.zero_dte_cutoff, tzinfo=ET)
            if self.calendar.is_session(day):
                cached = min(cached, self.calendar.session_close(day) - timedelta(minutes=30))
            self._cutoffs[day] = cached
        return cached

    def risk_pct(self, signal: Signal, today: date) -> float:
        """Risk per trade for ``signal``: what the strategy asks (``inputs["risk_pct"]``, else the
        configured default), never above the SPEC §8 band of the contract's DTE class."""
        requested = signal.inputs.get("risk_pct", self.config.risk_per_trade_pct)
        if not isinstance(requested, int | float) or not math.isfinite(requested) or requested <= 0:
            requested = self.config.risk_per_trade_pct
        expiry = date.fromisoformat(signal.contract.expiry)
        days = self.calendar.trading_days_between(today, expiry) if expiry > today else 0
        dte_class = "0dte" if days == 0 else ("1dte" if days == 1 else "14d")
        _, ceiling = self.config.risk_pct_bands.get(dte_class, (0.0, self.config.risk_per_trade_pct))
        return min(float(requested), ceiling)

    def size(self, premium: float, risk_pct: float | None = None) -> int:
        """Contracts to buy at ``premium``: the risk budget, capped by contracts and notional."""
        cfg = self.config
        if not math.isfinite(premium) or premium <= 0:
            return 0
        cost = premium * 100
        pct = cfg.risk_per_trade_pct if risk_pct is None else risk_pct
        qty = math.floor(cfg.account_equity * pct / 100 / cost)
        qty = min(qty, cfg.max_contracts_per_order, math.floor(cfg.max_notional_per_order / cost))
        return max(qty, 0)

    def _intent(self, signal: Signal, side: Side, qty: int, limit: float, now_ns: int) -> OrderIntent:
        return OrderIntent(
            ts_event=now_ns,
            ts_init=now_ns,
            order_ref=order_ref_for(signal.signal_id),
            signal_id=signal.signal_id,
            strategy=signal.strategy,
            contract=signal.contract,
            side=side,
            quantity=qty,
            limit_price=limit,
            origin_ts_init=signal.origin_ts_init,
        )
