"""Hardened signal de-duplication (SPEC §7; seed 003 lines 186–192, seed 002 lines 44–84).

A strategy re-evaluates every few seconds and several workers may run it, so the same decision
is taken many times. What reaches ``signals:stream`` must be one signal per decision:

* **Contract fingerprint** — ``strategy:UNDERLYING:expiry:C|P:strike``, the strike rounded to the
  listing grid, so float noise (``590.0000001``) cannot make a new identity and the key stays
  readable in ``redis-cli``. Time and price are *not* part of it (the seed's original bug: ids
  that changed every 5 s).
* **NYSE trading-day bucket** — the ET session the signal belongs to; after the close (and on a
  weekend or holiday) that is the next session, so an evening signal does not reset at UTC
  midnight and a Friday-evening one belongs to Monday (Tuesday after a Monday holiday).
* **Cooldown** per (strategy, symbol, direction): after an emission, nothing more in that
  direction for ``cooldown_s`` (900 s; 1 day for the 14-day+ strategies) …
* … except a **strike hysteresis** move: a different strike is let through inside the cooldown
  only when it is ≥ ``min_strike_steps`` (2) listed strike steps from the last one, so spot
  hovering at a boundary cannot flip 506 → 507 → 506;
* **Material change**: the same contract again (while its previous signal is still live) only
  when the confidence moved by ≥ max(3 points, 5 % of the last) or the option's reference mid by
  ≥ 10 % — an update, at most ``max_updates`` (2) per contract and session;
* **TTL by DTE** — how long an emitted signal stays live (and its marker in Redis): 0DTE until
  the session's close, 1DTE until the next session's close, longer-dated ``long_ttl_s`` (3 days,
  the seed's "scale in over 2–3 days") capped at the expiry's close.

:class:`DedupePolicy` is the pure decision (unit-testable, used by backtests through
:class:`LocalDeduper`); :class:`AtomicEnqueuer` is the multi-worker-safe Redis part: it reads the
last emitted state, asks the policy, and commits with **one Lua script** that (1) checks the state
is still the one the decision was based on (optimistic concurrency: a worker that lost a race
re-reads and re-decides), (2) enforces the cooldown marker, (3) ``SET NX``-es the dedupe marker
``signals:dedupe:{fingerprint}:{bucket}`` with the TTL, (4) ``XADD``-s the signal and (5) records
the new state and cooldown marker — all or nothing, so two processes racing on one fingerprint
enqueue it exactly once and a crash can never leave a marker without its signal.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any, NamedTuple

import msgspec
import redis
from pydantic import BaseModel, ConfigDict, Field

from quanticity import keys
from quanticity.calendar import ET, NyseCalendar
from quanticity.messages import OptionContract, Signal, encode
from quanticity.strategies.base import NS, SessionClock, et_datetime

_LONG_DATED_STRATEGIES = ("fourteen_day_directional", "fourteen_day_high_iv")


class DedupeConfig(BaseModel):
    """Thresholds of the de-duplication; defaults from the seeds where they give numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cooldown_s: Annotated[float, Field(ge=0)] = 900.0  # seed 002 line 73 "Sliding 900s TTL"
    cooldown_overrides: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict.fromkeys(_LONG_DATED_STRATEGIES, 86_400.0)
    )  # spec silent: a 14-day+ thesis does not need a new contract every 15 minutes
    min_strike_steps: Annotated[int, Field(ge=1)] = 2  # spec silent; seed 002 line 67 "506→507→506"
    strike_grid: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: {"SPX": 5.0})
    default_strike_grid: Annotated[float, Field(gt=0)] = 0.5  # the finest standard US listing increment
    material_confidence_points: Annotated[float, Field(ge=0)] = 3.0  # seed 002 line 71 "max(3, …)"
    material_confidence_pct: Annotated[float, Field(ge=0)] = 5.0  # seed 002 line 71 "0.05 * last_confidence"
    material_price_pct: Annotated[float, Field(gt=0)] = 10.0  # spec silent: option mid moved ≥ 10 %
    max_updates: Annotated[int, Field(ge=0)] = 2  # spec silent: material updates per contract and session
    long_ttl_s: Annotated[float, Field(gt=0)] = 3 * 86_400.0  # seed 000 line 1041 "Scale in over 2-3 days"
    min_ttl_s: Annotated[int, Field(ge=1)] = 60


class DedupeState(msgspec.Struct, frozen=True, kw_only=True):
    """The last emitted signal of one (strategy, symbol, direction): what the next one is judged by."""

    fingerprint: str
    bucket: str  # ISO date of its trading-day bucket
    expiry: str
    strike: float
    strike_step: float
    confidence: int
    reference_mid: float
    emitted_ns: int
    expires_ns: int  # emitted_ns + its TTL by DTE
    revision: int = 0  # material updates of this fingerprint in this bucket


class Verdict(enum.StrEnum):
    """Why a signal was admitted (or the block reason class)."""

    FIRST = "first"
    EXPIRED = "expired"  # the previous signal's cooldown and TTL both ran out
    MATERIAL = "material_change"
    HYSTERESIS = "strike_moved"
    COOLDOWN_ELAPSED = "cooldown_elapsed"
    DUPLICATE = "duplicate"
    UPDATE_LIMIT = "update_limit"
    COOLDOWN = "cooldown"


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the Redis commit needs, derived purely from the signal and the last state."""

    admitted: bool
    verdict: Verdict
    reason: str
    fingerprint: str
    bucket: date
    dedupe_id: str  # fingerprint:bucket (":r<n>" for the n-th material update)
    ttl_s: int
    cooldown_s: float
    in_cooldown: bool  # admitted although the cooldown runs (hysteresis / material change)
    state: DedupeState | None  # the state to record when the commit succeeds


def format_strike(strike: float) -> str:
    """``590`` / ``232.5`` / ``0.25``: the shortest exact form, stable across float noise."""
    return f"{strike:.3f}".rstrip("0").rstrip(".")


class DedupePolicy:
    """The pure decision: fingerprint, bucket, TTL, and admit/block against the last state."""

    def __init__(self, config: DedupeConfig | None = None, calendar: NyseCalendar | None = None) -> None:
        self.config = config or DedupeConfig()
        self.sessions = SessionClock(calendar)
        self._next_session: dict[date, date] = {}

    # --- identity ---------------------------------------------------------------------------
    def grid(self, underlying: str) -> float:
        """The strike grid of ``underlying`` used by fingerprints."""
        return self.config.strike_grid.get(underlying, self.config.default_strike_grid)

    def fingerprint(self, strategy: str, contract: OptionContract) -> str:
        """Stable contract identity: strategy, underlying, expiry, right and grid-rounded strike."""
        step = self.grid(contract.underlying)
        strike = round(round(contract.strike / step) * step, 6)
        return f"{strategy}:{contract.underlying}:{contract.expiry}:{contract.right.value}:{format_strike(strike)}"

    def signal_fingerprint(self, signal: Signal) -> str:
        """:meth:`fingerprint` of a signal's strategy and contract."""
        return self.fingerprint(signal.strategy, signal.contract)

    def bucket(self, ts_ns: int) -> date:
        """The NYSE session ``ts_ns`` belongs to: today's before its close, else the next one."""
        day = et_datetime(ts_ns).date()
        session = self.sessions.session(day)
        if session is not None and ts_ns < session.close_ns:
            return day
        if day not in self._next_session:
            self._next_session[day] = self.sessions.calendar.next_session(day)
        return self._next_session[day]

    # --- time -------------------------------------------------------------------------------
    def ttl_s(self, signal: Signal) -> int:
        """Seconds the signal (and its Redis marker) stays live, by its contract's DTE."""
        cfg = self.config
        now = signal.ts_event
        bucket = self.bucket(now)
        expiry = date.fromisoformat(signal.contract.expiry)
        dte = self.sessions.trading_dte(bucket, expiry)
        if dte < 0:
            return cfg.min_ttl_s  # an expired contract: nothing to protect for long
        until_expiry_close = (self._close_ns(expiry) - now) / NS
        ttl = until_expiry_close if dte <= 1 else min(cfg.long_ttl_s, until_expiry_close)
        return max(cfg.min_ttl_s, math.ceil(ttl))

    def _close_ns(self, day: date) -> int:
        session = self.sessions.session(day)
        if session is not None:
            return session.close_ns
        return int(datetime.combine(day, time(16, 0), tzinfo=ET).timestamp()) * NS  # expiry on a non-session

    def cooldown_s(self, strategy: str) -> float:
        """The cooldown of ``strategy``'s (symbol, direction) pairs."""
        return self.config.cooldown_overrides.get(strategy, self.config.cooldown_s)

    # --- decision ---------------------------------------------------------------------------
    def _material(self, signal: Signal, last: DedupeState) -> str | None:
        """Why the signal differs materially from ``last`` (None when it does not)."""
        cfg = self.config
        need = max(cfg.material_confidence_points, cfg.material_confidence_pct / 100 * last.confidence)
        moved = abs(signal.confidence - last.confidence)
        if moved >= need:
            return f"confidence {last.confidence} → {signal.confidence} (Δ{moved} ≥ {need:g})"
        mid = _mid(signal)
        if math.isfinite(mid) and last.reference_mid > 0:
            change = abs(mid / last.reference_mid - 1) * 100
            if change >= cfg.material_price_pct:
                return (
                    f"reference mid {last.reference_mid:.2f} → {mid:.2f} ({change:.1f}% ≥ {cfg.material_price_pct:g}%)"
                )
        return None

    def _strike_step(self, signal: Signal, last: DedupeState) -> float:
        """The listing's strike step: from the signal's chain (``inputs``), else the grid."""
        for step in (signal.inputs.get("strike_step", math.nan), last.strike_step):
            if math.isfinite(step) and step > 0:
                return step
        return self.grid(signal.contract.underlying)

    def decide(self, signal: Signal, last: DedupeState | None) -> tuple[bool, Verdict, str]:
        """(admitted, verdict, human-readable reason) of ``signal`` given the ``last`` emission."""
        if last is None:
            return True, Verdict.FIRST, "first signal for strategy/symbol/direction"
        now = signal.ts_event
        cooldown = self.cooldown_s(signal.strategy)
        cooling = now - last.emitted_ns < cooldown * NS
        live = now < last.expires_ns
        if self.signal_fingerprint(signal) == last.fingerprint:
            if not cooling and not live:
                return True, Verdict.EXPIRED, "previous signal for this contract expired"
            why = self._material(signal, last)
            if why is None:
                return False, Verdict.DUPLICATE, "duplicate: same contract, no material change"
            same_bucket = self.bucket(now).isoformat() == last.bucket
            if same_bucket and last.revision >= self.config.max_updates:
                return False, Verdict.UPDATE_LIMIT, f"update limit {self.config.max_updates} reached ({why})"
            return True, Verdict.MATERIAL, f"material change: {why}"
        if not cooling:
            return True, Verdict.COOLDOWN_ELAPSED, f"cooldown {cooldown:g}s elapsed"
        left = (last.emitted_ns + cooldown * NS - now) / NS
        if signal.contract.expiry != last.expiry:
            return False, Verdict.COOLDOWN, f"cooldown: {left:.0f}s left (different expiry)"
        step = self._strike_step(signal, last)
        steps = abs(signal.contract.strike - last.strike) / step
        need = self.config.min_strike_steps
        moved = f"strike moved {last.strike:g} → {signal.contract.strike:g}"
        if steps + 1e-9 >= need:
            return True, Verdict.HYSTERESIS, f"{moved} ({steps:.0f} steps ≥ {need})"
        return (
            False,
            Verdict.COOLDOWN,
            f"cooldown {left:.0f}s left; {moved}: {steps:.1f} step(s) < {need} (hysteresis)",
        )

    def admit(self, signal: Signal, last_state: DedupeState | None) -> tuple[bool, str]:
        """(admitted, reason) of ``signal`` given the last emission of its (strategy, symbol, direction)."""
        admitted, _, reason = self.decide(signal, last_state)
        return admitted, reason

    def plan(self, signal: Signal, last: DedupeState | None) -> Plan:
        """The decision plus the keys, TTLs and next state an enqueue commits."""
        admitted, verdict, reason = self.decide(signal, last)
        fingerprint = self.signal_fingerprint(signal)
        bucket = self.bucket(signal.ts_event)
        revision = 0
        if verdict is Verdict.MATERIAL and last is not None and last.bucket == bucket.isoformat():
            revision = last.revision + 1
        dedupe_id = f"{fingerprint}:{bucket.isoformat()}" + (f":r{revision}" if revision else "")
        ttl = self.ttl_s(signal)
        cooldown = self.cooldown_s(signal.strategy)
        state = None
        if admitted:
            step = signal.inputs.get("strike_step", math.nan)
            state = DedupeState(
                fingerprint=fingerprint,
                bucket=bucket.isoformat(),
                expiry=signal.contract.expiry,
                strike=signal.contract.strike,
                strike_step=step if math.isfinite(step) and step > 0 else self.grid(signal.contract.underlying),
                confidence=signal.confidence,
                reference_mid=_mid(signal) if math.isfinite(_mid(signal)) else 0.0,
                emitted_ns=signal.ts_event,
                expires_ns=signal.ts_event + ttl * NS,
                revision=revision,
            )
        in_cooldown = verdict in (Verdict.MATERIAL, Verdict.HYSTERESIS)
        return Plan(admitted, verdict, reason, fingerprint, bucket, dedupe_id, ttl, cooldown, in_cooldown, state)


def _mid(signal: Signal) -> float:
    bid, ask = signal.reference_bid, signal.reference_ask
    if not (math.isfinite(bid) and math.isfinite(ask)) or ask <= 0 or bid < 0:
        return math.nan
    return (bid + ask) / 2


def pair_id(signal: Signal) -> str:
    """``strategy:symbol:direction`` — the unit of cooldown and of the last-state record."""
    return f"{signal.strategy}:{signal.symbol}:{signal.direction.value}"


# --- single-process (backtests) -------------------------------------------------------------
class LocalDeduper:
    """The policy with in-memory state, for backtests and one-process runs (no Redis).

    Mirrors :class:`AtomicEnqueuer` exactly: last state per (strategy, symbol, direction) plus the
    set of live dedupe markers, so a backtest suppresses the same signals live trading does.
    """

    def __init__(self, policy: DedupePolicy | None = None) -> None:
        self.policy = policy or DedupePolicy()
        self.last: dict[str, DedupeState] = {}
        self.markers: dict[str, int] = {}  # dedupe id → expiry (ns)

    def offer(self, signal: Signal) -> tuple[bool, str]:
        """Admit and record ``signal`` or say why not."""
        now = signal.ts_event
        key = pair_id(signal)
        last = self.last.get(key)
        keep_ns = int(self.policy.cooldown_s(signal.strategy) * NS)
        if last is not None and now >= max(last.expires_ns, last.emitted_ns + keep_ns):
            last = None  # the Redis state key would have expired too
        plan = self.policy.plan(signal, last)
        if not plan.admitted:
            return False, plan.reason
        if self.markers.get(plan.dedupe_id, 0) > now:
            return False, f"duplicate: marker {plan.dedupe_id} exists"
        self.markers = {k: v for k, v in self.markers.items() if v > now}
        self.markers[plan.dedupe_id] = now + plan.ttl_s * NS
        if plan.state is not None:
            self.last[key] = plan.state
        return True, plan.reason

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint."""
        return {
            "last": {k: msgspec.to_builtins(v) for k, v in self.last.items()},
            "markers": dict(self.markers),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self.last = {str(k): msgspec.convert(v, DedupeState) for k, v in state.get("last", {}).items()}
        self.markers = {str(k): int(v) for k, v in state.get("markers", {}).items()}


# --- Redis (several workers) ----------------------------------------------------------------
# KEYS: 1 dedupe marker, 2 stream, 3 last-state hash, 4 cooldown marker
# ARGV: 1 expected state version ('' = none), 2 marker TTL (s), 3 payload, 4 new state JSON,
#       5 new version, 6 state TTL (ms), 7 cooldown end (event-time ms, 0 = none),
#       8 '1' = the policy admitted inside the cooldown, 9 now (event-time ms), 10 cooldown marker TTL (ms)
# The cooldown compares *event* times stored in the marker, not the key's Redis TTL: a simulated
# session runs at up to 100 000x, where a wall-clock TTL would outlive the whole simulated day.
_ATOMIC_ENQUEUE = """
local current = redis.call('HGET', KEYS[3], 'version')
if not current then current = '' end
if current ~= ARGV[1] then
  return {'conflict', current}
end
if ARGV[8] ~= '1' then
  local cooling_until = redis.call('GET', KEYS[4])
  if cooling_until and tonumber(cooling_until) > tonumber(ARGV[9]) then
    return {'cooldown', cooling_until}
  end
end
if not redis.call('SET', KEYS[1], ARGV[5], 'NX', 'EX', ARGV[2]) then
  return {'duplicate', ''}
end
local id = redis.call('XADD', KEYS[2], '*', 'signal', ARGV[3])
redis.call('HSET', KEYS[3], 'version', ARGV[5], 'state', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if tonumber(ARGV[7]) > 0 then
  redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[10])
end
return {'enqueued', id}
"""


class EnqueueStatus(enum.StrEnum):
    """Outcome of :meth:`AtomicEnqueuer.enqueue`."""

    ENQUEUED = "enqueued"
    BLOCKED = "blocked"  # the policy said no (duplicate, cooldown + hysteresis, update limit)
    DUPLICATE = "duplicate"  # the dedupe marker already exists (another worker, or a replay)
    COOLDOWN = "cooldown"  # the cooldown marker exists and the policy had no reason to override it
    CONFLICT = "conflict"  # lost the race ``max_attempts`` times in a row (should not happen)


class EnqueueResult(NamedTuple):
    """What happened to one signal; ``entry_id`` is the stream id when enqueued."""

    status: EnqueueStatus
    entry_id: str | None
    reason: str
    dedupe_key: str | None = None


def last_state_key(pair: str) -> str:
    """Hash holding the last emitted state (and its version) of ``strategy:symbol:direction``."""
    return keys.signal_dedupe(f"last:{pair}")


def cooldown_key(pair: str) -> str:
    """Cooldown marker of ``strategy:symbol:direction`` (TTL = the cooldown)."""
    return keys.signal_dedupe(f"cooldown:{pair}")


class AtomicEnqueuer:
    """Check-and-enqueue of strategy signals onto ``signals:stream``, safe with several workers."""

    def __init__(
        self,
        client: redis.Redis,
        policy: DedupePolicy | None = None,
        stream: str = keys.SIGNALS_STREAM,
        max_attempts: int = 5,
    ) -> None:
        self._client = client
        self._script = client.register_script(_ATOMIC_ENQUEUE)
        self.policy = policy or DedupePolicy()
        self.stream = stream
        self.max_attempts = max_attempts
        self.counts: dict[str, int] = {s.value: 0 for s in EnqueueStatus}
        self.retries = 0  # commits refused because another worker emitted between our read and write

    def load_state(self, pair: str) -> tuple[DedupeState | None, str]:
        """(last state, its version) of ``strategy:symbol:direction``; (None, '') when absent."""
        raw = self._client.hmget(last_state_key(pair), ["version", "state"])
        version, state = (_text(raw[0]), _text(raw[1])) if raw else ("", "")
        if not version or not state:
            return None, version
        try:
            return msgspec.json.decode(state, type=DedupeState), version
        except msgspec.DecodeError:
            return None, version  # an unreadable state is treated as none; the version still guards

    def enqueue(self, signal: Signal) -> EnqueueResult:
        """Admit ``signal`` through the policy and enqueue it atomically at most once."""
        pair = pair_id(signal)
        payload = encode(signal).decode()
        for _ in range(self.max_attempts):
            last, version = self.load_state(pair)
            plan = self.policy.plan(signal, last)
            marker = keys.signal_dedupe(plan.dedupe_id)
            if not plan.admitted or plan.state is None:
                return self._count(EnqueueResult(EnqueueStatus.BLOCKED, None, plan.reason, marker))
            now_ms = signal.ts_event // 1_000_000
            cooldown_ms = int(plan.cooldown_s * 1000)
            keep_ms = max(1000, cooldown_ms, (plan.state.expires_ns - signal.ts_event) // 1_000_000)
            status, value = self._script(
                keys=[marker, self.stream, last_state_key(pair), cooldown_key(pair)],
                args=[
                    version,
                    plan.ttl_s,
                    payload,
                    msgspec.json.encode(plan.state).decode(),
                    uuid.uuid4().hex,
                    keep_ms,
                    now_ms + cooldown_ms if cooldown_ms > 0 else 0,
                    "1" if plan.in_cooldown else "0",
                    now_ms,
                    max(1, cooldown_ms),
                ],
            )
            status = _text(status)
            if status == "conflict":
                self.retries += 1
                continue  # another worker emitted since we read: re-read and decide again
            if status == "enqueued":
                return self._count(EnqueueResult(EnqueueStatus.ENQUEUED, _text(value), plan.reason, marker))
            if status == "duplicate":
                return self._count(EnqueueResult(EnqueueStatus.DUPLICATE, None, f"marker {marker} exists", marker))
            return self._count(EnqueueResult(EnqueueStatus.COOLDOWN, None, f"cooldown marker for {pair}", marker))
        return self._count(EnqueueResult(EnqueueStatus.CONFLICT, None, f"lost {self.max_attempts} races on {pair}"))

    def _count(self, result: EnqueueResult) -> EnqueueResult:
        self.counts[result.status.value] += 1
        return result


def _text(value: object) -> str:
    """A Redis reply as text whether the client decodes responses or not."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
