"""Hardened de-duplication: fingerprints, trading-day buckets, cooldown, hysteresis, TTLs, the race."""

from __future__ import annotations

import multiprocessing as mp
from datetime import date, timedelta

import msgspec
import pytest
import redis

from quanticity import keys
from quanticity.calendar import NyseCalendar
from quanticity.messages import Direction, OptionContract, Right, Signal, decode
from quanticity.store.client import connect
from quanticity.store.embedded import EmbeddedRedis
from quanticity.strategies.base import NS, ns_at
from quanticity.strategies.dedupe import (
    AtomicEnqueuer,
    DedupeConfig,
    DedupePolicy,
    DedupeState,
    EnqueueStatus,
    LocalDeduper,
    Verdict,
    cooldown_key,
    format_strike,
    last_state_key,
)

pytestmark = pytest.mark.unit

WED = date(2026, 3, 4)
THU = date(2026, 3, 5)
FRI_BEFORE_MLK = date(2026, 1, 16)  # Monday 2026-01-19 is Martin Luther King Jr. Day
HALF_DAY = date(2026, 11, 27)


@pytest.fixture(scope="module")
def policy() -> DedupePolicy:
    return DedupePolicy(calendar=NyseCalendar())


def make_signal(
    now: int,
    *,
    strategy: str = "zero_dte_gamma",
    symbol: str = "SPY",
    expiry: date = WED,
    strike: float = 591.0,
    direction: Direction = Direction.BULLISH,
    confidence: int = 60,
    bid: float = 1.96,
    ask: float = 2.04,
    strike_step: float | None = 1.0,
    computed_at: int | None = None,
) -> Signal:
    right = Right.CALL if direction is Direction.BULLISH else Right.PUT
    contract = OptionContract(symbol, expiry.isoformat(), strike, right)
    inputs = {"mid": 590.3, "computed_at": float(now), "risk_pct": 2.0}
    if strike_step is not None:
        inputs["strike_step"] = strike_step
    return Signal(
        ts_event=now,
        ts_init=now,
        signal_id=f"{strategy}:{contract.key.replace(' ', '_')}:{computed_at or now}",
        strategy=strategy,
        symbol=symbol,
        direction=direction,
        contract=contract,
        confidence=confidence,
        reference_bid=bid,
        reference_ask=ask,
        reason="test",
        inputs=inputs,
        origin_ts_init=now,
    )


# --- identity ----------------------------------------------------------------------------------
def test_fingerprint_is_stable_and_contract_centric(policy: DedupePolicy) -> None:
    now = ns_at(WED, 11, 0)
    base = make_signal(now)
    assert policy.signal_fingerprint(base) == "zero_dte_gamma:SPY:2026-03-04:C:591"
    # time, price, confidence and signal id do not change the identity; float noise does not either
    later = make_signal(now + 3600 * NS, strike=591.0000001, confidence=90, bid=3.0, ask=3.2, computed_at=1)
    assert policy.signal_fingerprint(later) == policy.signal_fingerprint(base)
    assert policy.signal_fingerprint(make_signal(now, strike=590.5)) == "zero_dte_gamma:SPY:2026-03-04:C:590.5"
    assert policy.signal_fingerprint(make_signal(now, strategy="moc_imbalance")) != policy.signal_fingerprint(base)
    assert policy.signal_fingerprint(make_signal(now, direction=Direction.BEARISH)).endswith(":P:591")
    # SPX lists on a 5-point grid
    spx = OptionContract("SPX", "2026-03-04", 5899.99, Right.CALL)
    assert policy.fingerprint("zero_dte_gamma", spx) == "zero_dte_gamma:SPX:2026-03-04:C:5900"
    assert [format_strike(x) for x in (590.0, 232.5, 0.25, 17.125)] == ["590", "232.5", "0.25", "17.125"]


@pytest.mark.parametrize(
    ("moment", "session"),
    [
        ((WED, 8, 0), WED),  # pre-market belongs to the coming session
        ((WED, 15, 59), WED),
        ((WED, 16, 0), THU),  # at/after the close: the next session
        ((FRI_BEFORE_MLK, 15, 59), FRI_BEFORE_MLK),
        ((FRI_BEFORE_MLK, 18, 30), date(2026, 1, 20)),  # Friday evening → Tuesday (Monday is a holiday)
        ((date(2026, 1, 17), 12, 0), date(2026, 1, 20)),  # Saturday
        ((date(2026, 1, 19), 10, 0), date(2026, 1, 20)),  # the holiday itself
        ((date(2026, 3, 6), 20, 0), date(2026, 3, 9)),  # an ordinary Friday evening → Monday
        ((HALF_DAY, 13, 30), date(2026, 11, 30)),  # after a 13:00 early close
        ((date(2026, 3, 4), 23, 59), THU),  # never resets at UTC midnight (04:59 UTC the next day)
    ],
)
def test_trading_day_bucket(policy: DedupePolicy, moment: tuple[date, int, int], session: date) -> None:
    day, hh, mm = moment
    assert policy.bucket(ns_at(day, hh, mm)) == session


# --- decisions ---------------------------------------------------------------------------------
def admitted_state(policy: DedupePolicy, signal: Signal, last: DedupeState | None = None) -> DedupeState:
    plan = policy.plan(signal, last)
    assert plan.admitted, plan.reason
    assert plan.state is not None
    return plan.state


def test_first_then_duplicate(policy: DedupePolicy) -> None:
    now = ns_at(WED, 11, 0)
    first = make_signal(now)
    assert policy.admit(first, None) == (True, "first signal for strategy/symbol/direction")
    state = admitted_state(policy, first)
    again = make_signal(now + 5 * NS, computed_at=now + 5 * NS)
    assert policy.admit(again, state) == (False, "duplicate: same contract, no material change")
    other_way = make_signal(now + 5 * NS, direction=Direction.BEARISH, strike=590.0)
    assert policy.admit(other_way, None)[0]  # a direction has its own cooldown and state


def test_cooldown_per_strategy_symbol_direction(policy: DedupePolicy) -> None:
    now = ns_at(WED, 11, 0)
    state = admitted_state(policy, make_signal(now))
    nearby = make_signal(now + 60 * NS, strike=592.0)  # one strike step away
    ok, reason = policy.admit(nearby, state)
    assert not ok and reason.startswith("cooldown 840s left") and "1.0 step(s) < 2 (hysteresis)" in reason
    ok, reason = policy.admit(make_signal(now + 900 * NS, strike=592.0), state)
    assert ok and reason == "cooldown 900s elapsed"
    tomorrow = make_signal(now + 60 * NS, strike=591.0, expiry=THU)
    assert policy.decide(tomorrow, state)[1] is Verdict.COOLDOWN  # another expiry is no hysteresis escape
    # the 14-day+ strategies cool down for a day
    long_now, expiry = ns_at(WED, 10, 0), WED + timedelta(days=16)
    long_state = admitted_state(policy, make_signal(long_now, strategy="fourteen_day_directional", expiry=expiry))
    later = make_signal(long_now + 3 * 3600 * NS, strategy="fourteen_day_directional", expiry=expiry, strike=592.0)
    assert policy.decide(later, long_state)[1] is Verdict.COOLDOWN


def test_strike_hysteresis_counts_listed_steps(policy: DedupePolicy) -> None:
    now = ns_at(WED, 11, 0)
    state = admitted_state(policy, make_signal(now, strike=591.0))
    ok, reason = policy.admit(make_signal(now + 60 * NS, strike=593.0), state)
    assert ok and reason == "strike moved 591 → 593 (2 steps ≥ 2)"
    # no 591 → 592 → 591 flapping: the move back is 1 step from the last one
    moved = admitted_state(policy, make_signal(now + 60 * NS, strike=593.0), state)
    assert not policy.admit(make_signal(now + 120 * NS, strike=592.0), moved)[0]
    # the step comes from the signal's chain: on a 5-point listing two steps are 10 points
    spx_state = admitted_state(policy, make_signal(now, symbol="SPX", strike=5900.0, strike_step=5.0))
    assert not policy.admit(make_signal(now + 60 * NS, symbol="SPX", strike=5905.0, strike_step=5.0), spx_state)[0]
    assert policy.admit(make_signal(now + 60 * NS, symbol="SPX", strike=5910.0, strike_step=5.0), spx_state)[0]
    # without a chain step, the strike grid decides (SPX 5, default 0.5)
    grid_state = admitted_state(policy, make_signal(now, symbol="SPX", strike=5900.0, strike_step=None))
    assert grid_state.strike_step == 5.0
    assert not policy.admit(make_signal(now + 60 * NS, symbol="SPX", strike=5905.0, strike_step=None), grid_state)[0]
    aapl_state = admitted_state(policy, make_signal(now, symbol="AAPL", strike=230.0, strike_step=None))
    assert policy.admit(make_signal(now + 60 * NS, symbol="AAPL", strike=231.0, strike_step=None), aapl_state)[0]


def test_material_change(policy: DedupePolicy) -> None:
    now = ns_at(WED, 11, 0)
    state = admitted_state(policy, make_signal(now, confidence=60))
    assert not policy.admit(make_signal(now + 60 * NS, confidence=62), state)[0]  # Δ2 < 3
    ok, reason = policy.admit(make_signal(now + 60 * NS, confidence=63), state)
    assert ok and reason == "material change: confidence 60 → 63 (Δ3 ≥ 3)"
    high = admitted_state(policy, make_signal(now, confidence=80))
    assert not policy.admit(make_signal(now + 60 * NS, confidence=83), high)[0]  # 5 % of 80 = 4
    assert policy.admit(make_signal(now + 60 * NS, confidence=84), high)[0]
    assert not policy.admit(make_signal(now + 60 * NS, bid=2.13, ask=2.23), state)[0]  # mid +9 %
    ok, reason = policy.admit(make_signal(now + 60 * NS, bid=2.16, ask=2.24), state)  # mid +10 %
    assert ok and reason.startswith("material change: reference mid 2.00 → 2.20 (10.0% ≥ 10%)")
    # updates are numbered in the dedupe key and capped per contract and session
    plan1 = policy.plan(make_signal(now + 60 * NS, confidence=70), state)
    assert plan1.dedupe_id == "zero_dte_gamma:SPY:2026-03-04:C:591:2026-03-04:r1" and plan1.in_cooldown
    assert plan1.state is not None
    plan2 = policy.plan(make_signal(now + 120 * NS, confidence=80), plan1.state)
    assert plan2.admitted and plan2.dedupe_id.endswith(":r2") and plan2.state is not None
    plan3 = policy.plan(make_signal(now + 180 * NS, confidence=95), plan2.state)
    assert not plan3.admitted and plan3.verdict is Verdict.UPDATE_LIMIT


def test_expired_signal_can_be_repeated(policy: DedupePolicy) -> None:
    now = ns_at(WED, 11, 0)
    one_dte = make_signal(now, expiry=THU)
    state = admitted_state(policy, one_dte)
    assert not policy.admit(make_signal(now + 4 * 3600 * NS, expiry=THU), state)[0]  # live until Thursday's close
    after = make_signal(ns_at(THU, 16, 1), expiry=THU)
    assert policy.decide(after, state)[1] is Verdict.EXPIRED


@pytest.mark.parametrize(
    ("moment", "expiry", "ttl"),
    [
        ((WED, 15, 0), WED, 3600),  # 0DTE: until today's close
        ((HALF_DAY, 12, 0), HALF_DAY, 3600),  # 0DTE on a half day: close 13:00
        ((THU, 15, 30), date(2026, 3, 6), 24 * 3600 + 1800),  # 1DTE: until the next session's close
        ((FRI_BEFORE_MLK, 15, 30), date(2026, 1, 20), 4 * 86400 + 1800),  # 1DTE across the long weekend
        ((WED, 10, 0), WED + timedelta(days=16), 3 * 86400),  # 14-day+: N days
        ((WED, 10, 0), date(2026, 3, 6), 2 * 86400 + 6 * 3600),  # 2DTE: until its close, under N days
        ((WED, 16, 30), WED, 60),  # an expired contract: the minimum
    ],
)
def test_ttl_by_dte(policy: DedupePolicy, moment: tuple[date, int, int], expiry: date, ttl: int) -> None:
    day, hh, mm = moment
    assert policy.ttl_s(make_signal(ns_at(day, hh, mm), expiry=expiry)) == ttl


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="cooldown_sec"):
        DedupeConfig(cooldown_sec=10)  # type: ignore[call-arg]
    assert DedupeConfig().cooldown_overrides["fourteen_day_high_iv"] == 86_400


def test_local_deduper_mirrors_the_policy(policy: DedupePolicy) -> None:
    local = LocalDeduper(policy)
    now = ns_at(WED, 11, 0)
    assert local.offer(make_signal(now))[0]
    assert not local.offer(make_signal(now + 5 * NS))[0]
    assert local.offer(make_signal(now + 10 * NS, strike=593.0))[0]  # hysteresis
    # back to 591 within its TTL: the policy compares with 593 (2 steps), the marker still blocks
    ok, reason = local.offer(make_signal(now + 20 * NS, strike=591.0))
    assert not ok and reason.startswith("duplicate: marker zero_dte_gamma:SPY:2026-03-04:C:591:2026-03-04")
    restored = LocalDeduper(policy)
    restored.restore(msgspec.json.decode(msgspec.json.encode(local.state())))
    assert not restored.offer(make_signal(now + 30 * NS, strike=593.0))[0]
    assert restored.offer(make_signal(ns_at(THU, 11, 0), expiry=THU))[0]  # next session, cooldown over


# --- Redis --------------------------------------------------------------------------------------
def stream_signals(client: redis.Redis) -> list[Signal]:
    return [decode(fields["signal"], Signal) for _, fields in client.xrange(keys.SIGNALS_STREAM)]


def test_atomic_enqueue_writes_marker_state_and_cooldown(redis_client: redis.Redis, policy: DedupePolicy) -> None:
    enqueuer = AtomicEnqueuer(redis_client, policy)
    now = ns_at(WED, 15, 0)
    signal = make_signal(now)
    result = enqueuer.enqueue(signal)
    assert result.status is EnqueueStatus.ENQUEUED and result.entry_id
    assert result.dedupe_key == keys.signal_dedupe("zero_dte_gamma:SPY:2026-03-04:C:591:2026-03-04")
    assert 3590 <= redis_client.ttl(result.dedupe_key) <= 3600  # 0DTE: until the close
    assert stream_signals(redis_client) == [signal]
    pair = "zero_dte_gamma:SPY:BULLISH"
    state, version = enqueuer.load_state(pair)
    assert state is not None and state.fingerprint == "zero_dte_gamma:SPY:2026-03-04:C:591" and version
    assert int(redis_client.get(cooldown_key(pair))) == now // 1_000_000 + 900_000
    assert redis_client.pttl(last_state_key(pair)) > 3_500_000  # kept for max(cooldown, TTL)
    again = enqueuer.enqueue(make_signal(now + 5 * NS))
    assert again.status is EnqueueStatus.BLOCKED and again.reason.startswith("duplicate")
    update = enqueuer.enqueue(make_signal(now + 10 * NS, confidence=70))
    assert update.status is EnqueueStatus.ENQUEUED and update.dedupe_key.endswith(":r1")
    moved = enqueuer.enqueue(make_signal(now + 20 * NS, strike=593.0))
    assert moved.status is EnqueueStatus.ENQUEUED
    assert len(stream_signals(redis_client)) == 3
    assert enqueuer.counts["enqueued"] == 3 and enqueuer.counts["blocked"] == 1


def test_atomic_enqueue_marker_and_cooldown_in_the_script(redis_client: redis.Redis, policy: DedupePolicy) -> None:
    enqueuer = AtomicEnqueuer(redis_client, policy)
    now = ns_at(WED, 11, 0)
    signal = make_signal(now)
    redis_client.set(keys.signal_dedupe("zero_dte_gamma:SPY:2026-03-04:C:591:2026-03-04"), "x")  # a replay
    assert enqueuer.enqueue(signal).status is EnqueueStatus.DUPLICATE
    redis_client.flushdb()
    # a cooldown marker set by a worker whose state is gone: the script still honours it (event time)
    redis_client.set(cooldown_key("zero_dte_gamma:SPY:BULLISH"), now // 1_000_000 + 1000)
    assert enqueuer.enqueue(signal).status is EnqueueStatus.COOLDOWN
    assert enqueuer.enqueue(make_signal(now + 2 * NS)).status is EnqueueStatus.ENQUEUED  # event time passed it
    assert redis_client.xlen(keys.SIGNALS_STREAM) == 1


def test_atomic_enqueue_rereads_after_losing_a_race(redis_client: redis.Redis, policy: DedupePolicy) -> None:
    """A worker that decided on a stale state is refused by the script, re-reads and re-decides."""
    now = ns_at(WED, 11, 0)
    winner = AtomicEnqueuer(redis_client, policy)
    loser = AtomicEnqueuer(redis_client, policy)
    stale = loser.load_state("zero_dte_gamma:SPY:BULLISH")  # (None, '') read before the winner commits
    assert winner.enqueue(make_signal(now)).status is EnqueueStatus.ENQUEUED
    reads = iter([stale])
    real_load = loser.load_state
    loser.load_state = lambda pair: next(reads, None) or real_load(pair)  # type: ignore[method-assign]
    result = loser.enqueue(make_signal(now + NS, confidence=61))
    assert result.status is EnqueueStatus.BLOCKED and result.reason.startswith("duplicate")
    assert redis_client.xlen(keys.SIGNALS_STREAM) == 1


def _hammer(
    url: str, start: mp.synchronize.Barrier, attempts: int, worker: int, out: mp.Queue, confidences: tuple[int, ...]
) -> None:
    """One worker process: its own connection, policy and calendar, enqueueing one contract repeatedly."""
    client = connect(url)
    enqueuer = AtomicEnqueuer(client, DedupePolicy())
    base = ns_at(WED, 11, 0)
    start.wait()
    statuses: dict[str, int] = {}
    for i in range(attempts):
        # every worker re-derives the same contract from its own snapshot (ids and times differ)
        confidence = confidences[(i + worker) % len(confidences)]
        signal = make_signal(base + (i % 7) * NS, confidence=confidence, computed_at=base + worker * 1000 + i)
        status = enqueuer.enqueue(signal).status.value
        statuses[status] = statuses.get(status, 0) + 1
    statuses["retries"] = enqueuer.retries
    out.put(statuses)
    client.close()


@pytest.mark.parametrize(
    ("confidences", "expected"),
    [
        ((60,), 1),  # the same decision: exactly once
        ((60, 70, 80, 95), 3),  # material changes: the first signal plus max_updates (2) updates, each once
    ],
)
def test_multi_worker_race_enqueues_exactly_once(
    redis_client: redis.Redis, embedded_redis: EmbeddedRedis, confidences: tuple[int, ...], expected: int
) -> None:
    ctx = mp.get_context("fork")
    workers, attempts = 4, 150
    start = ctx.Barrier(workers)
    out = ctx.Queue()
    args = [(embedded_redis.url, start, attempts, w, out, confidences) for w in range(workers)]
    procs = [ctx.Process(target=_hammer, args=a) for a in args]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    retries = sum(statuses.pop("retries") for statuses in results)
    total: dict[str, int] = {}
    for statuses in results:
        for status, count in statuses.items():
            total[status] = total.get(status, 0) + count
    assert total.get("enqueued") == expected
    assert sum(total.values()) == workers * attempts
    assert "conflict" not in total  # a lost race is retried, never surfaced
    assert redis_client.xlen(keys.SIGNALS_STREAM) == expected
    assert retries <= workers * expected  # a worker retries only after someone else committed
    markers = sorted(redis_client.scan_iter(keys.signal_dedupe("zero_dte_gamma:SPY:*")))
    assert markers == [
        keys.signal_dedupe("zero_dte_gamma:SPY:2026-03-04:C:591:2026-03-04" + suffix)
        for suffix in ("", ":r1", ":r2")[:expected]
    ]
