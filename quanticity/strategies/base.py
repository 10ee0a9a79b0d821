"""What every SPEC §7 strategy shares: the hooks, contract selection, confidence, and the Signal.

A strategy is pure decision logic. It is handed feature snapshots (and, where it needs more than
the snapshot's two nearest-OTM quotes, the option chain) plus alternative-data events, and it
returns contract-level :class:`~quanticity.messages.Signal` objects. It never talks to Redis or
Ray, never reads the wall clock for a decision (``now_ns`` is passed in, so backtests and live
share the code), and never de-duplicates across workers — that is
:mod:`quanticity.strategies.dedupe`'s job.

Conventions shared by the five strategies:

* **Unknown is "no"**: a metric that is missing, ``None``, NaN or infinite fails the condition
  that reads it (fail closed). :func:`metric` is the one place that turns a snapshot value into a
  float, so the rule is applied uniformly.
* **Times are ET** and the intraday cut-offs come from :class:`quanticity.calendar.NyseCalendar`
  (15:30, or 30 minutes before an early close), cached per session by :class:`SessionClock`
  because calendar look-ups cost ~80 µs each.
* **DTE** of 0DTE/1DTE contracts counts NYSE *sessions* (Friday's "1DTE" is Monday's expiry, and
  the Tuesday after a Monday holiday); 14-day+ bands count *calendar* days, as options traders do.
* **Contract selection** picks the expiry (nearest in the DTE band that the strategy accepts),
  then the strike by rule (first OTM / ATM / delta-targeted) among *all* quotes of that expiry,
  and only then applies the liquidity filter. An illiquid chosen strike is a rejection, not a
  silent move further out of the money: the strike rule is part of the strategy's edge.
* Every signal carries ``inputs`` = every analytics number the decision read (plus the
  contract's quote facts, ``computed_at`` for the risk gate's stale-input check and
  ``risk_pct`` for its sizing) and a ``reason`` chain ("; "-separated) a person can read.
"""

from __future__ import annotations

import enum
import math
import re
import time as _time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from quanticity.analytics.volatility import vol_close_values
from quanticity.calendar import ET, NyseCalendar
from quanticity.messages import AltDataEvent, AltDataKind, Direction, FeatureSnapshot, OptionQuote, Right, Signal

NS = 1_000_000_000

Ticker = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9.]{0,9}$")]

ZERO_DTE_SYMBOLS: tuple[str, ...] = ("SPX", "SPY", "QQQ", "IWM")
"""0DTE/1DTE universe (seed 000 line 881: "SPX, SPY, QQQ, IWM only")."""

MAG7: tuple[str, ...] = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA")
"""Magnificent Seven (seed 000 line 886)."""

EXTENDED: tuple[str, ...] = ("COST", "WMT", "DIS", "V", "NFLX", "HOOD", "HIMS", "ORCL")
"""Extended 14-day+ list (SPEC §1)."""

LONG_DATED_SYMBOLS: tuple[str, ...] = MAG7 + EXTENDED

LIQUIDITY_GRADES: dict[float, str] = {3.0: "A", 2.0: "B", 1.0: "C", 0.0: "D"}


# --- configuration ---------------------------------------------------------------------------
class StrikeRule(enum.StrEnum):
    """How the strike is chosen inside the selected expiry."""

    FIRST_OTM = "first_otm"  # call: lowest strike above spot; put: highest strike below spot
    ATM = "atm"  # strike closest to spot
    DELTA = "delta"  # |delta| closest to ``target_delta``


class DteUnit(enum.StrEnum):
    """What a DTE band counts: NYSE sessions (0/1DTE) or calendar days (14-day+)."""

    TRADING = "trading"
    CALENDAR = "calendar"


class DteBand(BaseModel):
    """Accepted days to expiry, inclusive on both ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_dte: Annotated[int, Field(ge=0)]
    max_dte: Annotated[int, Field(ge=0)]
    unit: DteUnit = DteUnit.TRADING

    def contains(self, dte: int) -> bool:
        """True when ``dte`` lies in the band."""
        return self.min_dte <= dte <= self.max_dte

    def describe(self) -> str:
        """``0DTE`` / ``1DTE`` / ``14-21 calendar DTE`` for reason chains."""
        if self.min_dte == self.max_dte and self.unit is DteUnit.TRADING:
            return f"{self.min_dte}DTE"
        unit = "sessions" if self.unit is DteUnit.TRADING else "calendar days"
        return f"{self.min_dte}-{self.max_dte} DTE ({unit})"


class StrategyConfig(BaseModel):
    """Settings every strategy has; subclasses add their trigger thresholds.

    Frozen and ``extra="forbid"`` like every config model of the platform: a misspelt key in
    YAML must fail at start, not silently fall back to a default while money trades.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    enabled: bool = True
    symbols: tuple[Ticker, ...]
    risk_pct: Annotated[float, Field(gt=0, le=5)]
    """Premium at risk per trade, % of equity; carried on the signal as ``inputs["risk_pct"]``."""
    min_confidence: Annotated[int, Field(ge=0, le=100)] = 50
    max_option_spread_pct: Annotated[float, Field(gt=0, le=100)] = 10.0
    """Liquidity filter: option (ask − bid) / mid ≤ this (seed 000 line 1088, "Cancel if spread > 10%")."""
    min_open_interest: Annotated[int, Field(ge=0)] = 100
    """Liquidity filter: contracts with less OI are not traded (spec silent; seed's MIN_OI=5 is for GEX)."""


# --- small numeric helpers ------------------------------------------------------------------
def finite(value: object) -> float:
    """``value`` as a float, or NaN when it is missing, a bool, or not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    x = float(value)
    return x if math.isfinite(x) else math.nan


def metric(snap: FeatureSnapshot, name: str) -> float:
    """A SPEC §6 scalar of the snapshot (NaN when unknown), the only accessor strategies use."""
    return finite(snap.metrics.get(name))


def sign(x: float) -> int:
    """+1 / −1 / 0; NaN is 0 (no view)."""
    if not math.isfinite(x) or x == 0:
        return 0
    return 1 if x > 0 else -1


def direction_sign(direction: Direction) -> int:
    """+1 for bullish, −1 for bearish."""
    return 1 if direction is Direction.BULLISH else -1


def right_for(direction: Direction) -> Right:
    """Long-only: bullish buys calls, bearish buys puts (SPEC §1)."""
    return Right.CALL if direction is Direction.BULLISH else Right.PUT


def excess(value: float, threshold: float, full: float) -> float:
    """How far ``value`` is past ``threshold`` on the way to ``full``, clipped to [0, 1].

    ``full`` may lie below ``threshold`` (for "smaller is better" inputs such as a distance).
    Used to turn "how convincingly did the trigger fire" into a confidence contribution.
    """
    if not (math.isfinite(value) and math.isfinite(threshold) and math.isfinite(full)) or full == threshold:
        return 0.0
    return min(1.0, max(0.0, (value - threshold) / (full - threshold)))


def confidence_score(base: float, parts: Iterable[tuple[float, float]]) -> int:
    """Confidence 0–100 = ``base`` + Σ weight × fraction (fractions clipped to [0, 1]).

    Every strategy uses ``base`` = 50 for "the trigger fired exactly at its thresholds" and adds
    weighted excesses, so 50 means "barely", 100 "every input far beyond its threshold"; the same
    scale across strategies lets the risk gate and subscribers compare them.
    """
    total = base + sum(w * min(1.0, max(0.0, f)) for w, f in parts if math.isfinite(f))
    return int(max(0, min(100, round(total))))


def option_spread_pct(quote: OptionQuote) -> float:
    """(ask − bid) / mid in % of mid; infinite for a one-sided, crossed or non-positive market."""
    bid, ask = quote.bid, quote.ask
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid < 0 or ask <= 0 or ask < bid:
        return math.inf
    mid = (bid + ask) / 2
    return (ask - bid) / mid * 100 if mid > 0 else math.inf


def et_datetime(now_ns: int) -> datetime:
    """``now_ns`` as an aware ET datetime (every trading rule of the seeds is written in ET)."""
    return datetime.fromtimestamp(now_ns / NS, tz=UTC).astimezone(ET)


def fmt_num(x: float, digits: int = 2) -> str:
    """A number for a reason chain; ``n/a`` for NaN."""
    return f"{x:.{digits}f}" if math.isfinite(x) else "n/a"


# --- session times --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionTimes:
    """One NYSE session's bells and the platform's cut-off, as ns since the epoch."""

    day: date
    open_ns: int
    close_ns: int
    cutoff_ns: int  # 15:30 ET, or 30 min before an early close

    def at_offset_before_close(self, seconds: float) -> int:
        """The instant ``seconds`` before the close (e.g. the MOC detection start, 2 h before)."""
        return self.close_ns - int(seconds * NS)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_ns(moment: datetime) -> int:
    """An aware datetime as integer ns since the epoch, exactly (no float round trip)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def ns_at(day: date, hh: int, mm: int, ss: int = 0) -> int:
    """ns since the epoch of ``hh:mm:ss`` ET on ``day``."""
    return _to_ns(datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=ET))


class SessionClock:
    """NYSE sessions and trading-day counts, memoised per date (calendar calls are slow)."""

    def __init__(self, calendar: NyseCalendar | None = None) -> None:
        self.calendar = calendar or NyseCalendar()
        self._times: dict[date, SessionTimes | None] = {}
        self._dte: dict[tuple[date, date], int] = {}

    def session(self, day: date) -> SessionTimes | None:
        """The session on ``day``, or None on a weekend/holiday."""
        if day not in self._times:
            if not self.calendar.is_session(day):
                self._times[day] = None
            else:
                self._times[day] = SessionTimes(
                    day=day,
                    open_ns=_to_ns(self.calendar.session_open(day)),
                    close_ns=_to_ns(self.calendar.session_close(day)),
                    cutoff_ns=_to_ns(self.calendar.zero_dte_entry_cutoff(day)),
                )
        return self._times[day]

    def session_at(self, now_ns: int) -> SessionTimes | None:
        """The session whose ET date is the date of ``now_ns`` (None on a non-trading day)."""
        return self.session(et_datetime(now_ns).date())

    def trading_dte(self, today: date, expiry: date) -> int:
        """Sessions after ``today`` up to and including ``expiry`` (0 = same day, −1 = expired)."""
        if expiry < today:
            return -1
        key = (today, expiry)
        if key not in self._dte:
            self._dte[key] = self.calendar.trading_days_between(today, expiry)
        return self._dte[key]

    def dte(self, today: date, expiry: date, unit: DteUnit) -> int:
        """Days to expiry in ``unit``."""
        if unit is DteUnit.CALENDAR:
            return (expiry - today).days
        return self.trading_dte(today, expiry)


# --- contract selection ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen contract (or why none): what a strategy needs to build the signal."""

    quote: OptionQuote | None
    reason: str
    dte: int = -1
    strike_step: float = math.nan  # the chain's strike spacing around the chosen strike

    @property
    def ok(self) -> bool:
        """True when a contract was chosen."""
        return self.quote is not None


def gather_candidates(snap: FeatureSnapshot, chain: Sequence[OptionQuote] = ()) -> list[OptionQuote]:
    """The chain plus the snapshot's own quotes, one per contract (the latest ``ts_event`` wins)."""
    best: dict[str, OptionQuote] = {}
    for quote in (*chain, snap.atm_call, snap.atm_put):
        if quote is None or quote.contract.underlying != snap.symbol:
            continue
        key = quote.contract.key
        if key not in best or quote.ts_event > best[key].ts_event:
            best[key] = quote
    return list(best.values())


def _strike_step(strikes: Sequence[float], strike: float) -> float:
    """Spacing of the listed strikes next to ``strike`` (NaN with a single strike).

    Carried on the signal as ``inputs["strike_step"]`` so the de-duplication's strike hysteresis
    counts steps of the real listing (1 for SPY, 5 for SPX, 2.5 for many single names).
    """
    ordered = sorted(set(strikes))
    i = ordered.index(strike)
    gaps = []
    if i > 0:
        gaps.append(strike - ordered[i - 1])
    if i + 1 < len(ordered):
        gaps.append(ordered[i + 1] - strike)
    return min(gaps) if gaps else math.nan


def select_contract(
    candidates: Sequence[OptionQuote],
    *,
    right: Right,
    spot: float,
    today: date,
    band: DteBand,
    rule: StrikeRule,
    sessions: SessionClock,
    max_spread_pct: float,
    min_open_interest: int,
    target_delta: float = 0.40,
    expiry_ok: Callable[[date], bool] | None = None,
) -> Selection:
    """Pick one contract: expiry in ``band`` (nearest first), strike by ``rule``, then liquidity.

    ``expiry_ok`` lets a strategy add its own expiry condition (e.g. the high-IV strategy needs
    the earnings date before expiry). Returns a :class:`Selection` whose ``reason`` says what was
    chosen or why nothing was.
    """
    if not math.isfinite(spot) or spot <= 0:
        return Selection(None, "no spot")
    by_expiry: dict[str, list[OptionQuote]] = {}
    for q in candidates:
        if q.contract.right is right:
            by_expiry.setdefault(q.contract.expiry, []).append(q)
    chosen_expiry: date | None = None
    dte = -1
    for iso in sorted(by_expiry):
        try:
            expiry = date.fromisoformat(iso)
        except ValueError:
            continue
        d = sessions.dte(today, expiry, band.unit)
        if band.contains(d) and (expiry_ok is None or expiry_ok(expiry)):
            chosen_expiry, dte = expiry, d
            break
    if chosen_expiry is None:
        return Selection(None, f"no {right.name} expiry in {band.describe()}")
    quotes = by_expiry[chosen_expiry.isoformat()]
    if rule is StrikeRule.FIRST_OTM:
        otm = [q for q in quotes if (q.contract.strike > spot if right is Right.CALL else q.contract.strike < spot)]
        if not otm:
            return Selection(None, f"no OTM {right.name} strike on {chosen_expiry}")
        pick = min(otm, key=lambda q: abs(q.contract.strike - spot))
    elif rule is StrikeRule.ATM:
        # Ties (spot exactly between two strikes) go to the OTM side: cheaper, same moneyness.
        pick = min(
            quotes,
            key=lambda q: (
                abs(q.contract.strike - spot),
                -q.contract.strike if right is Right.CALL else q.contract.strike,
            ),
        )
    else:
        with_delta = [q for q in quotes if math.isfinite(q.delta)]
        if not with_delta:
            return Selection(None, f"no deltas on {chosen_expiry}")
        pick = min(with_delta, key=lambda q: (abs(abs(q.delta) - target_delta), abs(q.contract.strike - spot)))
    step = _strike_step([q.contract.strike for q in quotes], pick.contract.strike)
    spread = option_spread_pct(pick)
    label = f"{rule.value.replace('_', ' ')} {pick.contract.key}"
    if spread > max_spread_pct:
        return Selection(None, f"{label}: option spread {fmt_num(spread, 1)}% > {max_spread_pct:g}%", dte, step)
    if pick.open_interest < min_open_interest:
        return Selection(None, f"{label}: OI {pick.open_interest} < {min_open_interest}", dte, step)
    reason = (
        f"{label} ({band.describe()}, dte {dte}): spread {spread:.1f}% ≤ {max_spread_pct:g}%, "
        f"OI {pick.open_interest} ≥ {min_open_interest}"
    )
    return Selection(pick, reason, dte, step)


# --- histories ------------------------------------------------------------------------------
class DailySeries:
    """Per-symbol daily readings of one scalar (the last reading of a day wins), N days kept.

    Used for the rr25 skew: the 1DTE strategy compares today's reading with the mean and σ of the
    previous sessions' closing readings (seed 000 line 935: "current_skew, 20day_avg"); the 14-day
    strategies read its trend. Daily closes rather than every tick keep the window meaningful
    (20 *days*) and the state small.
    """

    def __init__(self, window_days: int) -> None:
        self.window_days = window_days
        self._days: dict[str, deque[tuple[str, float]]] = {}

    def update(self, symbol: str, day: date, value: float) -> None:
        """Record ``value`` as ``symbol``'s latest reading of ``day`` (NaN is ignored)."""
        if not math.isfinite(value):
            return
        series = self._days.setdefault(symbol, deque(maxlen=self.window_days + 1))
        key = day.isoformat()
        if series and series[-1][0] == key:
            series[-1] = (key, value)
        elif not series or series[-1][0] < key:
            series.append((key, value))
        else:  # an older day arriving late (history delivered after today's first reading)
            merged = dict(series)
            merged[key] = value
            series.clear()
            series.extend(sorted(merged.items())[-(self.window_days + 1) :])

    def prior(self, symbol: str, day: date, count: int | None = None) -> list[float]:
        """Readings of the days before ``day``, oldest first, at most ``count`` (default: window)."""
        key = day.isoformat()
        values = [v for d, v in self._days.get(symbol, ()) if d < key]
        n = self.window_days if count is None else count
        return values[-n:] if n > 0 else []

    def zscore(self, symbol: str, day: date, value: float, min_days: int) -> tuple[float, float, float, int]:
        """(z, mean, σ, n) of ``value`` against the prior days (z NaN with < ``min_days`` or σ = 0)."""
        prior = self.prior(symbol, day)
        n = len(prior)
        if n < max(min_days, 2) or not math.isfinite(value):
            return math.nan, math.nan, math.nan, n
        mean = sum(prior) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in prior) / (n - 1))
        return ((value - mean) / sd if sd > 0 else math.nan), mean, sd, n

    def trend(self, symbol: str, day: date, value: float, lookback_days: int, min_days: int) -> tuple[float, int]:
        """(``value`` − mean of the last ``lookback_days`` prior readings, n); NaN with < ``min_days``."""
        prior = self.prior(symbol, day, lookback_days)
        if len(prior) < max(min_days, 1) or not math.isfinite(value):
            return math.nan, len(prior)
        return value - sum(prior) / len(prior), len(prior)

    def state(self) -> dict[str, list[list[Any]]]:
        """JSON-serialisable checkpoint."""
        return {s: [[d, v] for d, v in series] for s, series in self._days.items()}

    def restore(self, state: Mapping[str, Sequence[Sequence[Any]]]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self._days = {
            str(s): deque(((str(d), float(v)) for d, v in rows), maxlen=self.window_days + 1)
            for s, rows in state.items()
        }


@dataclass(frozen=True, slots=True)
class AltRecord:
    """One stored alternative-data event, reduced to what the rules read."""

    kind: AltDataKind
    direction: int
    amount: float
    day: date  # event date (for EARNINGS: the report date)
    ident: str  # identity used to drop re-deliveries of the same event

    def as_list(self) -> list[Any]:
        """JSON form for checkpoints."""
        return [self.kind.value, self.direction, self.amount, self.day.isoformat(), self.ident]

    @classmethod
    def from_list(cls, row: Sequence[Any]) -> AltRecord:
        """Inverse of :meth:`as_list`."""
        kind, direction, amount, day, ident = row
        return cls(AltDataKind(kind), int(direction), float(amount), date.fromisoformat(day), str(ident))


def event_day(event: AltDataEvent) -> date:
    """The date an event refers to: ``when`` when it is an ISO date, else its ``ts_event`` in ET.

    The book dates (and de-duplicates) events by it; the UW bridge files its delivered ids under
    the same day, so both agree on which day an event belongs to."""
    if event.when:
        try:
            return date.fromisoformat(event.when[:10])
        except ValueError:
            pass
    return et_datetime(event.ts_event).date()


class AltDataBook:
    """Alternative-data events per symbol, de-duplicated and pruned to ``retention_days``.

    The REST fetchers re-deliver the same congress/insider filing on every poll; counting it
    twice would invent a "cluster". An event's identity is its kind, direction, amount, date and
    detail, so a re-delivery is dropped and a genuinely new filing is kept.
    """

    def __init__(self, retention_days: int = 120) -> None:
        self.retention_days = retention_days
        self._events: dict[str, list[AltRecord]] = {}
        self._seen: dict[str, set[str]] = {}

    def add(self, event: AltDataEvent) -> bool:
        """Store ``event``; False when it is a re-delivery of a stored one."""
        day = event_day(event)
        detail = ",".join(f"{k}={v}" for k, v in sorted(event.detail.items()))
        ident = f"{event.kind.value}|{event.direction}|{event.amount:.2f}|{day.isoformat()}|{detail}"
        seen = self._seen.setdefault(event.symbol, set())
        if ident in seen:
            return False
        seen.add(ident)
        records = self._events.setdefault(event.symbol, [])
        records.append(AltRecord(event.kind, int(sign(float(event.direction))), float(event.amount), day, ident))
        self._prune(event.symbol, day)
        return True

    def _prune(self, symbol: str, latest: date) -> None:
        horizon = latest - timedelta(days=self.retention_days)
        records = self._events.get(symbol, [])
        keep = [r for r in records if r.day >= horizon or r.kind is AltDataKind.EARNINGS]
        if len(keep) != len(records):
            self._events[symbol] = keep
            self._seen[symbol] = {r.ident for r in keep}

    def window(
        self, symbol: str, kind: AltDataKind, today: date, days: int, direction: int | None = None
    ) -> list[AltRecord]:
        """Events of ``kind`` dated in [today − days, today] (optionally of one direction)."""
        start = today - timedelta(days=days)
        return [
            r
            for r in self._events.get(symbol, ())
            if r.kind is kind and start <= r.day <= today and (direction is None or r.direction == direction)
        ]

    def first_day(self, symbol: str, kind: AltDataKind) -> date | None:
        """Date of the oldest stored event of ``kind`` (how much history there is)."""
        days = [r.day for r in self._events.get(symbol, ()) if r.kind is kind]
        return min(days) if days else None

    def next_earnings(self, symbol: str, today: date) -> date | None:
        """The earliest known earnings date on or after ``today``."""
        days = [r.day for r in self._events.get(symbol, ()) if r.kind is AltDataKind.EARNINGS and r.day >= today]
        return min(days) if days else None

    def state(self) -> dict[str, list[list[Any]]]:
        """JSON-serialisable checkpoint."""
        return {s: [r.as_list() for r in records] for s, records in self._events.items()}

    def restore(self, state: Mapping[str, Sequence[Sequence[Any]]]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self._events = {str(s): [AltRecord.from_list(r) for r in rows] for s, rows in state.items()}
        self._seen = {s: {r.ident for r in records} for s, records in self._events.items()}


# --- the strategy base ----------------------------------------------------------------------
_NUMBER = re.compile(r"(?<![A-Za-z\d])[-+]?\d[\d,]*(?:\.\d+)?σ?")


def reason_family(reason: str) -> str:
    """``reason`` with its numbers replaced by ``#``: "confidence 42 < 60" → "confidence # < #".

    Rejection reasons embed the values that failed; counting by family tells an operator *which*
    rule keeps a strategy silent without one counter per value.
    """
    return _NUMBER.sub("#", reason)


class Strategy(ABC):
    """A SPEC §7 strategy: snapshots and alternative data in, contract-level signals out.

    Subclasses implement :meth:`_evaluate`; the base applies the gates every strategy shares
    (enabled, symbol in its universe, snapshot not stale, a finite mid), counts evaluations and
    emissions, and remembers the last reason a symbol did *not* trigger (``last_reason``), which
    is what an operator asks first when a strategy stays silent.
    """

    config: StrategyConfig

    def __init__(self, config: StrategyConfig, calendar: NyseCalendar | None = None) -> None:
        self.config = config
        self.sessions = SessionClock(calendar)
        self.evaluated = 0
        self.emitted = 0
        self.last_reason: dict[str, str] = {}
        self.rejections: Counter[str] = Counter()

    @property
    def name(self) -> str:
        """The strategy's name (``signal.strategy``, dedupe fingerprints, config section)."""
        return self.config.name

    def on_features(self, snap: FeatureSnapshot, now_ns: int, chain: Sequence[OptionQuote] = ()) -> list[Signal]:
        """Evaluate ``snap`` at ``now_ns``; ``chain`` adds option quotes beyond the snapshot's two."""
        self.evaluated += 1
        cfg = self.config
        if not cfg.enabled:
            return self._reject(snap.symbol, "disabled")
        if snap.symbol not in cfg.symbols:
            return self._reject(snap.symbol, f"{snap.symbol} not in universe")
        if now_ns > snap.valid_until:
            return self._reject(snap.symbol, "stale snapshot")
        if not math.isfinite(snap.mid) or snap.mid <= 0:
            return self._reject(snap.symbol, "no mid")
        signals = self._evaluate(snap, now_ns, chain)
        if signals:
            self.emitted += len(signals)
            self.last_reason[snap.symbol] = "signal"
        return signals

    @abstractmethod
    def _evaluate(self, snap: FeatureSnapshot, now_ns: int, chain: Sequence[OptionQuote]) -> list[Signal]:
        """The strategy's rule, after the shared gates passed."""

    def on_alt_data(self, event: AltDataEvent) -> None:  # noqa: B027 - optional hook, default no-op
        """Take one alternative-data event (congress, insider, dark pool, earnings …)."""

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint: counters plus the subclass's histories."""
        return {"evaluated": self.evaluated, "emitted": self.emitted}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self.evaluated = int(state.get("evaluated", 0))
        self.emitted = int(state.get("emitted", 0))

    # --- helpers for subclasses -----------------------------------------------------------
    def _record_vol_close(self, event: AltDataEvent, series: DailySeries) -> None:
        """A prior session's closing rr25 (``VOL_CLOSE`` history) into ``series``; a malformed
        event is counted under ``rejections`` and dropped, never raised into the actor."""
        if event.symbol not in self.config.symbols:
            return
        try:
            day, _, rr25 = vol_close_values(event)
        except ValueError as exc:
            self.rejections[f"bad vol_close: {reason_family(str(exc))}"] += 1
            return
        series.update(event.symbol, day, rr25)

    def _reject(self, symbol: str, reason: str) -> list[Signal]:
        self.last_reason[symbol] = reason
        self.rejections[reason_family(reason)] += 1
        return []

    def _select(
        self,
        snap: FeatureSnapshot,
        chain: Sequence[OptionQuote],
        direction: Direction,
        today: date,
        band: DteBand,
        rule: StrikeRule,
        target_delta: float = 0.40,
        expiry_ok: Callable[[date], bool] | None = None,
    ) -> Selection:
        return select_contract(
            gather_candidates(snap, chain),
            right=right_for(direction),
            spot=snap.mid,
            today=today,
            band=band,
            rule=rule,
            sessions=self.sessions,
            max_spread_pct=self.config.max_option_spread_pct,
            min_open_interest=self.config.min_open_interest,
            target_delta=target_delta,
            expiry_ok=expiry_ok,
        )

    def _signal(
        self,
        snap: FeatureSnapshot,
        now_ns: int,
        direction: Direction,
        selection: Selection,
        confidence: int,
        reasons: Sequence[str],
        inputs: Mapping[str, float],
    ) -> Signal:
        return build_signal(
            strategy=self.name,
            snap=snap,
            now_ns=now_ns,
            direction=direction,
            selection=selection,
            confidence=confidence,
            reasons=reasons,
            inputs=inputs,
            risk_pct=self.config.risk_pct,
        )


def build_signal(
    *,
    strategy: str,
    snap: FeatureSnapshot,
    now_ns: int,
    direction: Direction,
    selection: Selection,
    confidence: int,
    reasons: Sequence[str],
    inputs: Mapping[str, float],
    risk_pct: float,
) -> Signal:
    """The Signal of a decision: the contract, its quote, every input and the reason chain.

    The id is derived from the strategy, contract and the snapshot's ``computed_at``, so two
    workers evaluating the same snapshot produce the same id. The standard ``inputs`` added
    here — ``computed_at`` (the risk gate's stale-input check), ``risk_pct`` (its sizing),
    ``confidence``, ``mid`` and the chosen contract's quote facts — are the same for every
    strategy, so consumers can rely on them.
    """
    quote = selection.quote
    if quote is None:
        raise ValueError("build_signal: selection has no contract")
    if quote.contract.right is not right_for(direction):
        raise ValueError(f"build_signal: {direction} signal cannot buy {quote.contract.right.name}")
    all_inputs: dict[str, float] = dict(inputs)
    all_inputs.update(
        {
            "mid": snap.mid,
            "computed_at": float(snap.computed_at),
            "risk_pct": float(risk_pct),
            "confidence": float(confidence),
            "strike": quote.contract.strike,
            "dte": float(selection.dte),
            "strike_step": selection.strike_step,
            "option_spread_pct": option_spread_pct(quote),
            "open_interest": float(quote.open_interest),
            "option_iv": quote.iv,
            "option_delta": quote.delta,
        }
    )
    return Signal(
        ts_event=now_ns,
        ts_init=_time.time_ns(),
        signal_id=f"{strategy}:{quote.contract.key.replace(' ', '_')}:{snap.computed_at}",
        strategy=strategy,
        symbol=snap.symbol,
        direction=direction,
        contract=quote.contract,
        confidence=confidence,
        reference_bid=quote.bid,
        reference_ask=quote.ask,
        reason="; ".join([*reasons, selection.reason, f"confidence {confidence}"]),
        # JSON has no NaN (msgspec writes null, which no reader can decode back into a float):
        # an unknown input is left out rather than sent as a number it is not.
        inputs={k: float(v) for k, v in all_inputs.items() if math.isfinite(finite(v))},
        origin_ts_init=snap.origin_ts_init,
    )


# --- 14-day+ common ground ------------------------------------------------------------------
class LongDatedConfig(StrategyConfig):
    """What both 14-day+ strategies share: universe, expiry band, IV-rank cap, skew trend, alt data."""

    symbols: tuple[Ticker, ...] = LONG_DATED_SYMBOLS  # seed 000 line 886 + SPEC §1 extended list
    dte_band: DteBand = DteBand(min_dte=14, max_dte=21, unit=DteUnit.CALENDAR)  # seed 000 line 1039
    max_iv_rank: Annotated[float, Field(ge=0, le=100)] = 80.0  # seed 000 line 1011 "Avoid if IV rank > 80%"
    allow_unknown_iv_rank: bool = False  # fail closed: unknown premium richness is not "cheap enough"
    skew_trend_days: Annotated[int, Field(ge=1)] = 5  # spec silent: rr25 vs its last 5 sessions' mean
    min_skew_days: Annotated[int, Field(ge=1)] = 3  # spec silent
    min_skew_change: Annotated[float, Field(gt=0)] = 0.005  # spec silent: 0.5 vol point of rr25
    congress_lookback_days: Annotated[int, Field(ge=0)] = 30  # spec silent
    insider_window_days: Annotated[int, Field(ge=0)] = 30  # spec silent
    alt_retention_days: Annotated[int, Field(ge=1)] = 120


class LongDatedStrategy(Strategy):
    """Base of the 14-day+ strategies: keeps rr25 daily closes and the symbol's alternative data."""

    config: LongDatedConfig

    def __init__(self, config: LongDatedConfig, calendar: NyseCalendar | None = None) -> None:
        super().__init__(config, calendar)
        self.rr25 = DailySeries(max(config.skew_trend_days, 1) + 1)
        self.alt = AltDataBook(retention_days=config.alt_retention_days)

    def on_alt_data(self, event: AltDataEvent) -> None:
        """Store congress, insider, dark-pool, flow-alert and earnings events of the universe, and
        prior sessions' closing rr25 (``VOL_CLOSE``) into the skew history."""
        if event.kind is AltDataKind.VOL_CLOSE:
            self._record_vol_close(event, self.rr25)
        elif event.symbol in self.config.symbols:
            self.alt.add(event)

    def _iv_rank_gate(self, snap: FeatureSnapshot) -> tuple[float, str | None]:
        """(IV rank, rejection reason or None): skip when IV rank > ``max_iv_rank`` or unknown."""
        rank = metric(snap, "iv_rank")
        if math.isfinite(rank):
            if rank > self.config.max_iv_rank:
                return rank, f"IV rank {rank:.0f} > {self.config.max_iv_rank:g}"
            return rank, None
        return rank, None if self.config.allow_unknown_iv_rank else "IV rank unknown"

    def _skew_trend(self, snap: FeatureSnapshot, today: date) -> tuple[float, float, int]:
        """(rr25, rr25 − mean of the last ``skew_trend_days`` closes, n); records today's reading."""
        rr25 = metric(snap, "rr25")
        self.rr25.update(snap.symbol, today, rr25)
        trend, n = self.rr25.trend(snap.symbol, today, rr25, self.config.skew_trend_days, self.config.min_skew_days)
        return rr25, trend, n

    def state(self) -> dict[str, Any]:
        """Counters, the rr25 daily closes and the stored alternative data."""
        return {**super().state(), "rr25": self.rr25.state(), "alt": self.alt.state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        super().restore(state)
        self.rr25.restore(state.get("rr25", {}))
        self.alt.restore(state.get("alt", {}))
