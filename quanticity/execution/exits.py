"""Exit plans of SPEC §9: profit ladder, stops, time and earnings exits, and the OCA bracket.

One :class:`ExitPlan` per open position. The caller feeds it marks (with the time, the trading
days held and the ET session date — the plan never reads a clock or a calendar) and fills; it
answers with :class:`ExitAction` values (sell N contracts, with a reason). :func:`bracket`
describes the one-cancels-all group (stop + targets) that protects the position at the broker; it
is a pure function of the plan's state and carries a ``revision`` that moves exactly when the
broker-visible content (prices, quantities) changes, so the router rebuilds the group on every
change and never otherwise.

Rules (defaults, :data:`SHORT_RULES` / :data:`LONG_RULES`):

* ``short`` (0/1DTE): sell 25 % of the original quantity at +50 %, 50 % at +100 %; hard stop at
  −50 %; the rest trails 25 % below the highest mark seen *since the trail activated*, and the
  trail activates when the mark reaches the +100 % rung (the rung's mark is the first high).
* ``long`` (14 days+): sell 50 % at +100 %; a 25 % trail activates once the mark is up 50 % and
  then protects whatever is held (all of it before the +100 % rung, the remaining half after);
  time stop: everything goes if the mark is down ≥ 30 % after ≥ 5 trading days; no price hard
  stop (the spec names none: the premium paid is the sized risk, the time stop is the cut).
* any class with an ``earnings_date``: everything goes on the last session before earnings (or
  any later session, if one was missed) — at the first mark of that session.
* "a locked gain never reverses into a loss": once the high-water mark has reached the first
  rung's level, the stop is never below entry (break-even stop, ``entry + breakeven_offset``).

With ``broker_bracket=True`` (the live router) the rungs and stops are *not* decided from marks:
the OCA bracket resting at the broker executes them (a STP on the bid, LMT targets), and the plan
learns of them through :meth:`ExitPlan.on_fill` (``rung=`` for a target). Marks still move the
high-water mark, the trail and the break-even lock — i.e. the bracket — and still decide the exits
no resting order can express (time stop, pre-earnings); :meth:`ExitPlan.close` adds the forced
ones (0DTE flat before the close, emergency flatten). Exactly one mechanism sells each contract.

Other choices where the spec is silent:

* rung quantities come from cumulative targets rounded *down*: after rung k, at most
  ``floor(Q × Σ fractions up to k)`` contracts have been sold at rungs; contracts that do not
  divide evenly stay with the trail (Q = 1 never sells at a rung, it trails);
* several rungs reached by one mark (a gap) each fire, in order, as separate actions;
* a stop, time stop or earnings exit is final: it sells every available contract, and any
  contracts released later (an exit order that did not fill) are sold on the next mark with the
  same reason, even if the price recovered;
* the protective stop is checked before the time stop and the earnings exit, so a position
  whose stop is hit is reported as stopped at the stop's price (the price its resting stop order
  has at the broker), not at a gapped mark — ``trigger_price`` is that level, ``mark`` the mark;
* boundaries are inclusive and exact to 1e-9: a rung fires at ``mark ≥ level``, a stop at
  ``mark ≤ stop price``, where the stop price is the stop level rounded *up* to the tick — the
  price the bracket's stop rests at, so the plan and a broker-side stop fire at the same mark and
  the break-even guarantee survives rounding; bracket targets are also rounded up (a target never
  sells below its rung).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import msgspec

from quanticity.execution.lifecycle import ceil_to_tick

DteClass = Literal["short", "long"]
_EPS = 1e-9


class ExitReason(enum.StrEnum):
    """Reasons of exits other than ladder rungs (rungs are labelled ``rung +50%``, ``rung +100%``)."""

    TRAILING_STOP = "trailing stop"
    HARD_STOP = "hard stop"
    BREAK_EVEN = "break-even stop"
    TIME_STOP = "time stop"
    PRE_EARNINGS = "pre-earnings"
    SESSION_CLOSE = "0DTE flat before close"
    EMERGENCY = "emergency flatten"


_STOP_REASONS = frozenset({ExitReason.TRAILING_STOP, ExitReason.HARD_STOP, ExitReason.BREAK_EVEN})


# --- rules -------------------------------------------------------------------------------------
class Rung(msgspec.Struct, frozen=True, kw_only=True):
    """Sell ``fraction`` of the original quantity once the mark is up ``gain_pct`` %."""

    gain_pct: float
    fraction: float

    def __post_init__(self) -> None:
        if not self.gain_pct > 0:
            raise ValueError(f"rung gain_pct: {self.gain_pct} must be > 0")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"rung fraction: {self.fraction} must be within (0, 1]")

    @property
    def label(self) -> str:
        """The exit reason of this rung, e.g. ``rung +50%``."""
        return f"rung +{self.gain_pct:g}%"


class ExitRules(msgspec.Struct, frozen=True, kw_only=True):
    """The numbers of one exit policy; frozen and serialised with each plan it governs."""

    rungs: tuple[Rung, ...]
    trail_pct: float = 25.0
    trail_after_gain_pct: float = 100.0  # trail activates when the mark is up this much
    hard_stop_pct: float | None = None  # sell everything when the mark is down this much
    time_stop_days: int | None = None  # with time_stop_loss_pct: down ≥ X % after ≥ N trading days
    time_stop_loss_pct: float | None = None

    def __post_init__(self) -> None:
        gains = [r.gain_pct for r in self.rungs]
        if gains != sorted(gains) or len(set(gains)) != len(gains):
            raise ValueError(f"rungs: gains {gains} must be strictly increasing")
        if sum(r.fraction for r in self.rungs) > 1 + _EPS:
            raise ValueError("rungs: fractions sum above 1")
        if not 0 < self.trail_pct < 100:
            raise ValueError(f"trail_pct: {self.trail_pct} must be within (0, 100)")
        if self.hard_stop_pct is not None and not 0 < self.hard_stop_pct < 100:
            raise ValueError(f"hard_stop_pct: {self.hard_stop_pct} must be within (0, 100)")
        if (self.time_stop_days is None) != (self.time_stop_loss_pct is None):
            raise ValueError("time_stop_days and time_stop_loss_pct go together")


SHORT_RULES = ExitRules(
    rungs=(Rung(gain_pct=50.0, fraction=0.25), Rung(gain_pct=100.0, fraction=0.50)),
    trail_pct=25.0,
    trail_after_gain_pct=100.0,
    hard_stop_pct=50.0,
)
"""0DTE / 1DTE: 25 % at +50 %, 50 % at +100 %, 25 % trail after +100 %, hard stop −50 %."""

LONG_RULES = ExitRules(
    rungs=(Rung(gain_pct=100.0, fraction=0.50),),
    trail_pct=25.0,
    trail_after_gain_pct=50.0,
    time_stop_days=5,
    time_stop_loss_pct=30.0,
)
"""14 days+: 50 % at +100 %, 25 % trail once up 50 %, time stop down 30 % after 5 trading days."""


def rules_for(dte_class: DteClass) -> ExitRules:
    """The default rules of a DTE class."""
    if dte_class == "short":
        return SHORT_RULES
    if dte_class == "long":
        return LONG_RULES
    raise ValueError(f"dte_class: {dte_class!r} must be 'short' or 'long'")


def classify_dte(dte: int) -> DteClass:
    """``short`` for 0/1 DTE, ``long`` for 14 days or more; the platform trades nothing in between."""
    if dte in (0, 1):
        return "short"
    if dte >= 14:
        return "long"
    raise ValueError(f"dte: {dte} is neither 0/1DTE nor 14 days+")


def last_session_before(day: date, is_session: Callable[[date], bool] | None = None) -> date:
    """The last trading session strictly before ``day``.

    Without ``is_session`` only weekends are skipped; pass ``NyseCalendar().is_session`` for
    exchange holidays (a weekday-only answer can name a holiday, which is then never seen as a
    session date and the earnings exit would come a session late).
    """
    candidate = day - timedelta(days=1)
    for _ in range(31):
        if candidate.weekday() < 5 and (is_session is None or is_session(candidate)):
            return candidate
        candidate -= timedelta(days=1)
    raise ValueError(f"no session in the 31 days before {day}")


# --- actions and brackets ----------------------------------------------------------------------
@dataclass(frozen=True)
class ExitAction:
    """Sell ``quantity`` contracts because of ``reason``.

    ``trigger_price`` is the level that fired (the rung's level, the stop's level) or the mark
    for time and earnings exits; ``in_bracket`` is True when a resting bracket order at the broker
    covers this exit (rungs and stops), False when only the plan can decide it (time, earnings).
    """

    quantity: int
    reason: str
    trigger_price: float
    mark: float
    ts_ns: int
    in_bracket: bool


@dataclass(frozen=True)
class BracketTarget:
    """One take-profit leg: sell ``quantity`` at ``price`` (limit)."""

    price: float
    quantity: int
    label: str


@dataclass(frozen=True)
class Bracket:
    """The OCA group protecting a position: one stop for ``quantity`` contracts plus targets.

    ``group`` names the OCA group and changes with ``revision``, so the broker sees a fresh group
    each time the router rebuilds it. An empty bracket (``quantity`` 0) means nothing to protect.
    """

    group: str
    revision: int
    quantity: int
    stop_price: float | None
    stop_reason: str | None
    targets: tuple[BracketTarget, ...]


_Body = tuple[int, float | None, str | None, tuple[BracketTarget, ...]]


class _PlanState(msgspec.Struct, kw_only=True):
    """Everything an :class:`ExitPlan` knows; JSON round-trips through :meth:`ExitPlan.state`."""

    plan_id: str
    dte_class: str
    rules: ExitRules
    entry_price: float
    quantity: int
    remaining: int
    opened_ns: int
    high_water: float
    tick: float = 0.01
    breakeven_offset: float = 0.0
    earnings_date: date | None = None
    exit_session: date | None = None
    pending: int = 0
    trail_high: float | None = None
    locked: bool = False
    rungs_done: list[int] = msgspec.field(default_factory=list)
    rung_sold: int = 0
    closing_reason: str | None = None
    closing_trigger: float = 0.0
    revision: int = 1
    exec_ids: list[str] = msgspec.field(default_factory=list)
    broker_bracket: bool = False  # rungs and stops execute at the broker (bracket), not from marks
    opened_by: str = ""  # exec id of the fill that opened the position (its subscribers' thread)


# --- the plan ----------------------------------------------------------------------------------
class ExitPlan:
    """Exit rules applied to one long option position (see the module docstring)."""

    def __init__(
        self,
        entry_price: float,
        quantity: int,
        dte_class: DteClass,
        opened_ns: int,
        earnings_date: date | str | None = None,
        *,
        plan_id: str = "plan",
        rules: ExitRules | None = None,
        exit_session: date | str | None = None,
        tick: float = 0.01,
        breakeven_offset: float = 0.0,
        broker_bracket: bool = False,
        opened_by: str = "",
    ) -> None:
        if not (math.isfinite(entry_price) and entry_price > 0):
            raise ValueError(f"entry_price: {entry_price} must be a positive price")
        if quantity < 1:
            raise ValueError(f"quantity: {quantity} must be ≥ 1")
        if breakeven_offset < 0:
            raise ValueError(f"breakeven_offset: {breakeven_offset} must be ≥ 0 (a lower stop could lose)")
        earnings = _as_date(earnings_date)
        session = _as_date(exit_session)
        if earnings is not None and session is None:
            session = last_session_before(earnings)
        self._s = _PlanState(
            plan_id=plan_id,
            dte_class=dte_class,
            rules=rules if rules is not None else rules_for(dte_class),
            entry_price=entry_price,
            quantity=quantity,
            remaining=quantity,
            opened_ns=opened_ns,
            high_water=entry_price,
            tick=tick,
            breakeven_offset=breakeven_offset,
            earnings_date=earnings,
            exit_session=session,
            broker_bracket=broker_bracket,
            opened_by=opened_by,
        )
        self._body = self._bracket_body()

    # --- read-only view -----------------------------------------------------------------------
    @property
    def plan_id(self) -> str:
        """Identifier of the plan (names its OCA groups)."""
        return self._s.plan_id

    @property
    def opened_by(self) -> str:
        """Exec id of the fill that opened the position ("" for plans saved before it was kept)."""
        return self._s.opened_by

    @property
    def rules(self) -> ExitRules:
        """The rules this plan applies."""
        return self._s.rules

    @property
    def entry_price(self) -> float:
        """Average entry price per share."""
        return self._s.entry_price

    @property
    def quantity(self) -> int:
        """Original quantity (every contract bought): the base of the rung fractions."""
        return self._s.quantity

    @property
    def remaining(self) -> int:
        """Contracts still held."""
        return self._s.remaining

    @property
    def pending(self) -> int:
        """Contracts in exit orders that have not filled yet."""
        return self._s.pending

    @property
    def available(self) -> int:
        """Contracts held and not already committed to an exit order."""
        return self._s.remaining - self._s.pending

    @property
    def high_water(self) -> float:
        """Highest mark since the position opened (starts at the entry price)."""
        return self._s.high_water

    @property
    def trail_high(self) -> float | None:
        """Highest mark since the trail activated (None before)."""
        return self._s.trail_high

    @property
    def locked(self) -> bool:
        """True once the first rung's level was reached: the stop is never below entry again."""
        return self._s.locked

    @property
    def rungs_done(self) -> list[str]:
        """Labels of the rungs that have fired."""
        return [self._s.rules.rungs[i].label for i in self._s.rungs_done]

    @property
    def broker_bracket(self) -> bool:
        """True when the bracket at the broker executes rungs and stops (marks never sell them)."""
        return self._s.broker_bracket

    @property
    def closing_reason(self) -> str | None:
        """The final exit under way (stop, time, earnings), if any."""
        return self._s.closing_reason

    @property
    def revision(self) -> int:
        """Bracket revision: moves exactly when the bracket's prices or quantities change."""
        return self._s.revision

    @property
    def stop_level(self) -> float | None:
        """Current protective stop level (unrounded; it fires at this rounded up to the tick), or None."""
        level = self._stop()
        return level[0] if level else None

    def rung_level(self, index: int) -> float:
        """Mark at which rung ``index`` fires."""
        return self._s.entry_price * (1 + self._s.rules.rungs[index].gain_pct / 100)

    # --- inputs -------------------------------------------------------------------------------
    def on_mark(
        self, mark: float, now_ns: int, trading_days_held: int = 0, session_date: date | None = None
    ) -> list[ExitAction]:
        """Apply one mark; returns the sells it triggers (never more than is held and uncommitted).

        ``trading_days_held`` is counted by the caller (calendar-agnostic); ``session_date`` is the
        ET date of the current session, for the earnings exit. A non-finite or non-positive mark
        is no information and changes nothing.
        """
        s = self._s
        if not (math.isfinite(mark) and mark > 0) or s.remaining == 0:
            return []
        rules = s.rules
        s.high_water = max(s.high_water, mark)
        if not s.locked and rules.rungs and s.high_water >= self.rung_level(0) - _EPS:
            s.locked = True
        if s.trail_high is not None:
            s.trail_high = max(s.trail_high, mark)
        elif mark >= s.entry_price * (1 + rules.trail_after_gain_pct / 100) - _EPS:
            s.trail_high = mark
        actions = self._decide(mark, now_ns, trading_days_held, session_date)
        self._refresh()
        return actions

    def on_fill(self, quantity: int, exec_id: str | None = None, rung: str | None = None) -> bool:
        """A sell of ``quantity`` contracts filled; False (nothing changes) for a seen ``exec_id``.

        ``rung`` names the ladder rung when the fill came from a resting bracket target at the
        broker rather than from an :class:`ExitAction`, so the rung is not sold a second time.
        """
        s = self._s
        if exec_id is not None and exec_id in s.exec_ids:
            return False
        if quantity <= 0:
            raise ValueError(f"quantity: {quantity} must be positive")
        if quantity > s.remaining:
            raise ValueError(f"quantity: sell fill of {quantity} but {s.remaining} held ({s.plan_id})")
        s.remaining -= quantity
        s.pending = max(0, min(s.pending - quantity, s.remaining))
        if rung is not None:
            index = next((i for i, r in enumerate(s.rules.rungs) if r.label == rung), None)
            if index is None:
                raise ValueError(f"rung: {rung!r} is not a rung of plan {s.plan_id}")
            if index not in s.rungs_done:
                s.rungs_done.append(index)
                s.rungs_done.sort()
            s.rung_sold += quantity
        if exec_id is not None:
            s.exec_ids.append(exec_id)
        self._refresh()
        return True

    def on_entry_fill(self, quantity: int, price: float, exec_id: str | None = None) -> bool:
        """More contracts were bought (a later partial fill of the entry): grow the plan.

        The entry becomes the volume-weighted average, the original quantity grows (so the rung
        sizes do), and the bracket is rebuilt. False for a seen ``exec_id``.
        """
        s = self._s
        if exec_id is not None and exec_id in s.exec_ids:
            return False
        if quantity <= 0 or not (math.isfinite(price) and price > 0):
            raise ValueError(f"entry fill {quantity} @ {price} must be positive")
        s.entry_price = (s.entry_price * s.quantity + price * quantity) / (s.quantity + quantity)
        s.quantity += quantity
        s.remaining += quantity
        if exec_id is not None:
            s.exec_ids.append(exec_id)
        self._refresh()
        return True

    def close(self, reason: str, mark: float, now_ns: int) -> list[ExitAction]:
        """Close the whole position now for a reason the plan cannot see in marks (0DTE flat before
        the close, an emergency flatten): final like a stop — the bracket empties, contracts
        released later are sold on the next mark with this reason. An exit already under way keeps
        its reason; this only sells what is still available. Returns the sell (none if nothing is
        available).
        """
        s = self._s
        if s.closing_reason is None:
            s.closing_reason, s.closing_trigger = reason, mark
        qty = self.available
        actions = []
        if qty > 0:
            s.pending += qty
            actions.append(ExitAction(qty, s.closing_reason, s.closing_trigger, mark, now_ns, False))
        self._refresh()
        return actions

    def release(self, quantity: int) -> None:
        """An exit order ended without filling ``quantity`` contracts: they are available again."""
        s = self._s
        if not 0 < quantity <= s.pending:
            raise ValueError(f"quantity: release {quantity} but {s.pending} pending")
        s.pending -= quantity
        self._refresh()

    # --- bracket ------------------------------------------------------------------------------
    def bracket(self) -> Bracket:
        """The OCA group for the current state (see :func:`bracket`)."""
        quantity, stop_price, stop_reason, targets = self._body
        return Bracket(
            group=f"{self._s.plan_id}-oca{self._s.revision}",
            revision=self._s.revision,
            quantity=quantity,
            stop_price=stop_price,
            stop_reason=stop_reason,
            targets=targets,
        )

    # --- persistence --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (dates as ISO strings) for :meth:`restore` after a restart."""
        return msgspec.json.decode(msgspec.json.encode(self._s))

    @classmethod
    def restore(cls, state: dict[str, Any]) -> ExitPlan:
        """Rebuild a plan from :meth:`state`; it continues exactly where the saved one stopped."""
        plan = cls.__new__(cls)
        plan._s = msgspec.convert(state, _PlanState)
        plan._body = plan._bracket_body()
        return plan

    # --- internals ----------------------------------------------------------------------------
    def _stop(self) -> tuple[float, str] | None:
        """Highest applicable stop level and its reason; ties go to trail, then break-even."""
        s = self._s
        rules = s.rules
        candidates: list[tuple[float, int, str]] = []
        if rules.hard_stop_pct is not None:
            candidates.append((s.entry_price * (1 - rules.hard_stop_pct / 100), 0, ExitReason.HARD_STOP))
        if s.locked:
            candidates.append((s.entry_price + s.breakeven_offset, 1, ExitReason.BREAK_EVEN))
        if s.trail_high is not None:
            candidates.append((s.trail_high * (1 - rules.trail_pct / 100), 2, ExitReason.TRAILING_STOP))
        if not candidates:
            return None
        level, _, reason = max(candidates)
        return level, reason

    def _decide(self, mark: float, now_ns: int, days: int, session: date | None) -> list[ExitAction]:
        s = self._s
        rules = s.rules
        if s.closing_reason is None:
            stop = None if s.broker_bracket else self._stop()  # a broker stop fires on its own
            stop_price = ceil_to_tick(stop[0], s.tick) if stop is not None else None
            if stop is not None and stop_price is not None and mark <= stop_price + _EPS:
                s.closing_reason, s.closing_trigger = stop[1], stop_price
            elif (
                rules.time_stop_days is not None
                and rules.time_stop_loss_pct is not None
                and days >= rules.time_stop_days
                and mark <= s.entry_price * (1 - rules.time_stop_loss_pct / 100) + _EPS
            ):
                s.closing_reason, s.closing_trigger = ExitReason.TIME_STOP, mark
            elif s.exit_session is not None and session is not None and session >= s.exit_session:
                s.closing_reason, s.closing_trigger = ExitReason.PRE_EARNINGS, mark
        if s.closing_reason is not None:
            qty = self.available
            if qty <= 0:
                return []
            s.pending += qty
            trigger = s.closing_trigger
            return [ExitAction(qty, s.closing_reason, trigger, mark, now_ns, s.closing_reason in _STOP_REASONS)]
        if s.broker_bracket:
            return []  # rungs are resting targets at the broker: their fills arrive through on_fill(rung=…)
        actions = []
        for index, rung in enumerate(rules.rungs):
            if index in s.rungs_done:
                continue
            level = self.rung_level(index)
            if mark < level - _EPS:
                break
            s.rungs_done.append(index)
            qty = min(max(0, self._cumulative_target(index) - s.rung_sold), self.available)
            if qty > 0:
                s.rung_sold += qty
                s.pending += qty
                actions.append(ExitAction(qty, rung.label, level, mark, now_ns, True))
        return actions

    def _cumulative_target(self, index: int) -> int:
        """Contracts sold at rungs 0..index together: floor of the cumulative fraction."""
        fraction = sum(r.fraction for r in self._s.rules.rungs[: index + 1])
        return math.floor(self._s.quantity * fraction + _EPS)

    def _bracket_body(self) -> _Body:
        s = self._s
        available = self.available
        if s.closing_reason is not None or available <= 0:
            return (0, None, None, ())
        stop = self._stop()
        stop_price = ceil_to_tick(stop[0], s.tick) if stop else None
        targets = []
        sold, left = s.rung_sold, available
        for index, rung in enumerate(s.rules.rungs):
            if index in s.rungs_done:
                continue
            qty = min(max(0, self._cumulative_target(index) - sold), left)
            if qty > 0:
                targets.append(BracketTarget(ceil_to_tick(self.rung_level(index), s.tick), qty, rung.label))
                sold += qty
                left -= qty
        return (available, stop_price, stop[1] if stop else None, tuple(targets))

    def _refresh(self) -> None:
        body = self._bracket_body()
        if body != self._body:
            self._body = body
            self._s.revision += 1


def bracket(plan: ExitPlan) -> Bracket:
    """The one-cancels-all group protecting ``plan``'s position: stop + targets, rebuilt per revision.

    The stop covers every available contract (trailing stops are managed here and re-sent as a new
    stop price, not delegated to a broker TRAIL order, so simulation and IBKR behave the same);
    targets are the rungs not yet fired. Pure function of the plan's state.
    """
    return plan.bracket()


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)
