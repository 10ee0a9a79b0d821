"""The advisory pre-trade review (issue 6): ``signals:stream`` → model (or rules) → ``system:alerts``.

The real anthropic SDK talks to the loopback Anthropic twin; the stream, the persisted cursor and
the alert stream are real Redis. The review never touches the order path: the tests check that
the signal stream is left exactly as the strategies wrote it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
import redis

from actors.common import StreamFollower
from quanticity import keys
from quanticity.clock import SimulatedClock
from quanticity.messages import Direction, OptionContract, Right, Side, Signal, encode
from quanticity.overseer.alerts import RedisAdminAlerts
from quanticity.overseer.budget import Budget, MemoryBudgetStore
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.model import ModelGateway, build_client
from quanticity.overseer.narratives import Narrator
from quanticity.overseer.reviews import SignalReviewer
from quanticity.overseer.snapshot import NS
from quanticity.sim.anthropic_server import AnthropicTwin

pytestmark = pytest.mark.unit

T0 = 1_750_000_000 * NS
KEY = "sk-review-test"
CONTRACT = OptionContract("SPY", "2025-07-18", 450.0, Right.CALL)


def _signal(
    signal_id: str,
    strategy: str = "moc_imbalance",
    bid: float = 2.0,
    ask: float = 2.1,
    confidence: int = 80,
    side: Side = Side.BUY,
    ts: int = T0,
) -> Signal:
    return Signal(
        ts_event=ts,
        ts_init=ts,
        signal_id=signal_id,
        strategy=strategy,
        symbol="SPY",
        direction=Direction.BULLISH,
        contract=CONTRACT,
        confidence=confidence,
        reference_bid=bid,
        reference_ask=ask,
        reason="flow asymmetry 68% and dark/lit divergence 12%",
        inputs={},
        origin_ts_init=ts,
        side=side,
    )


class Rig:
    """A reviewer on real Redis alerts, its model behind the twin (``base_url``) or keyless."""

    def __init__(self, client: redis.Redis, base_url: str | None, key: str | None = KEY) -> None:
        base = OverseerConfig()
        self.config = base.model_copy(
            update={"model": base.model.model_copy(update={"base_url": base_url, "timeout_s": 0.5})}
        )
        self.clock = SimulatedClock(T0 + 10 * NS)
        self.counters = Counters()
        env = {"ANTHROPIC_API_KEY": key} if key else {}
        budget = Budget(self.config.model, MemoryBudgetStore(), self.clock)
        gateway = ModelGateway(self.config.model, build_client(self.config.model, env), budget, self.counters)
        narrator = Narrator(self.config, gateway, self.counters)
        self.reviewer = SignalReviewer(self.config, narrator, RedisAdminAlerts(client, self.clock), self.counters)
        self.client = client

    async def review_stream(self) -> list[tuple[str, str]]:
        """Review every entry of the signal stream; the alerts written, as (level, text)."""
        for _, fields in self.client.xrange(keys.SIGNALS_STREAM):
            await self.reviewer.on_entry(fields, self.clock.now_ns())
        return [(f["level"], f["text"]) for _, f in self.client.xrange(keys.ALERTS)]


def _publish(client: redis.Redis, *signals: Signal) -> list[tuple[str, dict[str, str]]]:
    for signal in signals:
        client.xadd(keys.SIGNALS_STREAM, {"signal": encode(signal).decode()})
    return client.xrange(keys.SIGNALS_STREAM)


def _with_twin(body) -> None:  # noqa: ANN001 - an async callable taking the twin
    async def main() -> None:
        twin = AnthropicTwin(api_key=KEY)
        await twin.start()
        try:
            await body(twin)
        finally:
            await twin.stop()

    asyncio.run(main())


def test_complex_entries_get_the_models_advisory_review(redis_client: redis.Redis) -> None:
    before = _publish(
        redis_client,
        _signal("s1"),  # complex entry: reviewed
        _signal("s2", strategy="zero_dte_gamma"),  # a one-trigger 0DTE entry: not reviewed
        _signal("s3", side=Side.SELL),  # an exit: never reviewed
        _signal("s4", strategy="fourteen_day_directional", ts=T0 - 400 * NS),  # 410 s late: skipped
    )
    redis_client.xadd(keys.SIGNALS_STREAM, {"signal": "{broken"})
    redis_client.xadd(keys.SIGNALS_STREAM, {"other": "field"})

    async def body(twin: AnthropicTwin) -> None:
        rig = Rig(redis_client, twin.base_url)
        twin.add_rule(r"fourteen_day", "REVIEW: RED FLAG - earnings in two days")
        alerts = await rig.review_stream()
        assert len(alerts) == 1
        level, text = alerts[0]
        assert level == "REVIEW" and "Pre-trade review: OK (model, advisory)" in text and "moc_imbalance" in text
        assert rig.counters.get("reviews.model") == 1 and rig.counters.get("reviews.skipped_late") == 1
        assert rig.counters.get("reviews.rejected") == 2
        assert len(twin.requests) == 1 and "moc_imbalance" in twin.requests[0].prompt  # one model call: s1
        # a red flag from the model goes out as a WARNING, which the admin chat receives
        _publish(redis_client, _signal("s5", strategy="fourteen_day_directional", ts=T0))
        redis_client.delete(keys.ALERTS)
        (alert,) = [a for a in await rig.review_stream() if a[0] == "WARNING"]
        assert "RED FLAG" in alert[1] and "earnings in two days" in alert[1]

    _with_twin(body)
    assert redis_client.xrange(keys.SIGNALS_STREAM)[: len(before)] == before  # the order path's input untouched


@pytest.mark.parametrize("fault", ["api_error", "overloaded", "slow"])
def test_model_failure_falls_back_to_the_rule_review(redis_client: redis.Redis, fault: str) -> None:
    _publish(redis_client, _signal("w1", bid=1.0, ask=1.5, confidence=30))  # wide and unconvinced

    async def body(twin: AnthropicTwin) -> None:
        rig = Rig(redis_client, twin.base_url)
        twin.inject_fault(fault, delay_s=2.0 if fault == "slow" else 0.0)
        started = time.perf_counter()
        (alert,) = await rig.review_stream()
        assert time.perf_counter() - started < 2.0  # the 0.5 s timeout, not the twin's 2 s delay
        assert alert[0] == "WARNING" and "(rules, advisory)" in alert[1]
        assert "spread" in alert[1] and "confidence 30 < 50" in alert[1]
        assert rig.counters.get("reviews.rules") == 1

    _with_twin(body)


def test_without_a_key_the_rules_review_and_a_clean_signal_is_ok(redis_client: redis.Redis) -> None:
    _publish(redis_client, _signal("k1"))
    rig = Rig(redis_client, None, key=None)
    ((level, text),) = asyncio.run(rig.review_stream())
    assert level == "REVIEW" and "(rules, advisory)" in text and "Rule review: no red flags" in text


def test_the_follower_reviews_each_signal_once_across_a_restart(redis_client: redis.Redis) -> None:
    """The actor's wiring: a StreamFollower on the persisted review cursor hands entries to the loop."""
    rig = Rig(redis_client, None, key=None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    done = threading.Event()

    def handle(entry_id: str, fields: dict[str, str]) -> None:
        asyncio.run_coroutine_threadsafe(rig.reviewer.on_entry(fields, rig.clock.now_ns()), loop).result(5)
        if redis_client.xlen(keys.ALERTS) >= expected:
            done.set()

    def follow() -> StreamFollower:
        return StreamFollower(
            redis_client, keys.SIGNALS_STREAM, keys.OVERSEER_REVIEW_CURSOR, handle, logging.getLogger("t"), "review"
        )

    try:
        expected = 2
        _publish(redis_client, _signal("f1"), _signal("f2"))
        follower = follow()
        assert done.wait(10)
        follower.stop()
        assert follower.join()
        done.clear()
        expected = 3
        _publish(redis_client, _signal("f3"))
        restarted = follow()  # resumes after f2: f1 and f2 are not reviewed again
        assert done.wait(10)
        restarted.stop()
        assert restarted.join()
        texts = [f["text"] for _, f in redis_client.xrange(keys.ALERTS)]
        assert (
            len(texts) == 3
            and redis_client.get(keys.OVERSEER_REVIEW_CURSOR) == redis_client.xrange(keys.SIGNALS_STREAM)[-1][0]
        )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
