"""Distribution building blocks: tier templates, pacing, config, input validation."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis
from pydantic import ValidationError

from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.config.loader import load_config
from quanticity.config.models import ChannelSpec, DistributionFile
from quanticity.distribution.alerts import AlertKind, FillContext, fill_alert, followup_alert
from quanticity.distribution.factory import build_sender
from quanticity.distribution.pacing import SharedTokenBucket, backoff_s
from quanticity.distribution.publisher import Publisher
from quanticity.distribution.senders.local import LocalSender
from quanticity.distribution.templates import render
from quanticity.messages import Fill, OptionContract, PositionEvent, PositionEventKind, Right, Side
from quanticity.sim.telegram_server import check_html

pytestmark = pytest.mark.unit
STOP = PositionEventKind.STOP_MOVED

T0 = 1_763_735_400 * NS_PER_SECOND  # a session morning, ns
SPY = OptionContract("SPY", "2025-11-21", 440.0, Right.CALL)
CONTEXT = FillContext(
    stop=1.25,
    targets=(3.75, 5.0),
    triggers=("GEX flip at 438.50", "sweep 2,000 calls"),
    reason="gamma squeeze <fast> & strong",
    risk_amount=500.0,
    risk_pct=1.0,
)


def _fill(exec_id: str = "E1", side: Side = Side.BUY, qty: int = 10, price: float = 2.5, right: Right = Right.CALL):
    contract = OptionContract("SPY", "2025-11-21", 440.0, right)
    return Fill(
        ts_event=T0,
        ts_init=T0,
        exec_id=exec_id,
        order_ref="R1",
        contract=contract,
        side=side,
        quantity=qty,
        price=price,
        commission=6.5,
        strategy="zero_dte_gamma",
    )


def test_premium_has_everything_basic_no_analytics_free_direction_only() -> None:
    alert = fill_alert(_fill(), CONTEXT, None)
    premium = render(alert, "premium", "E1:premium")
    basic = render(alert, "basic", "E1:basic")
    free = render(alert, "free", "E1:free")
    assert premium and basic and free
    for needle in ("SPY 440C 2025-11-21", "BUY 10", "$2.50", "$1.25", "$3.75", "$5.00", "GEX flip", "$500", "1.0%"):
        assert needle in premium.text, needle
    assert "gamma squeeze" in premium.text and "zero_dte_gamma" in premium.text
    assert "SPY 440C 2025-11-21" in basic.text and "$2.50" in basic.text
    for secret in ("1.25", "3.75", "GEX", "500", "gamma squeeze", "10 "):
        assert secret not in basic.text, secret
    assert "Bullish" in free.text and "SPY" in free.text and "calls" in free.text
    for secret in ("440", "2.50", "2025", "GEX", "1.25"):
        assert secret not in free.text, secret
    bearish = render(fill_alert(_fill(right=Right.PUT), CONTEXT, None), "free", "E1:free")
    assert bearish and "Bearish" in bearish.text and "puts" in bearish.text
    # Telegram HTML parses (the reason's < > & are escaped); Discord embed carries the ref in its footer
    assert check_html(premium.html) is None and "&lt;fast&gt; &amp;" in premium.html
    assert premium.ref in premium.embed["footer"]["text"]
    assert {f["name"] for f in premium.embed["fields"]} >= {"Stop", "Target 1", "Target 2", "Triggers", "Risk"}


def test_followups_redacted_per_tier() -> None:
    partial = fill_alert(
        _fill("E2", Side.SELL, 3, 3.75), FillContext(realized=372.0, remaining=7, entry_price=2.5), "E1"
    )
    assert partial.kind is AlertKind.PARTIAL_EXIT and partial.thread_key == "E1"
    premium = render(partial, "premium", "E2:premium")
    basic = render(partial, "basic", "E2:basic")
    assert premium and "Sold 3 @ $3.75" in premium.text and "+372.00" in premium.text and "+50.0%" in premium.text
    assert premium and "7 contracts" in premium.text
    assert basic and "3.75" in basic.text and "372" not in basic.text
    assert render(partial, "free", "E2:free") is None
    closed = fill_alert(
        _fill("E3", Side.SELL, 7, 5.0), FillContext(realized=1743.0, remaining=0, entry_price=2.5), "E1"
    )
    assert closed.kind is AlertKind.CLOSED
    stop = followup_alert(
        PositionEvent(event_id="S1", contract_key=SPY.key, kind=STOP, ts_event=T0, ts_init=T0, new_stop=2.75), "E1"
    )
    rendered = render(stop, "premium", "S1:premium")
    assert rendered and "Trailing stop moved to $2.75" in rendered.text
    basic_stop = render(stop, "basic", "S1:basic")
    assert basic_stop and "2.75" not in basic_stop.text


def test_bad_input_is_rejected_naming_the_field(redis_client: redis.Redis, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="fill.quantity"):
        fill_alert(_fill(qty=0), CONTEXT, None)
    with pytest.raises(ValueError, match="context.stop"):
        fill_alert(_fill(), FillContext(stop=float("nan")), None)
    with pytest.raises(ValueError, match="contract_key"):
        followup_alert(
            PositionEvent(event_id="x", contract_key="SPY", kind=STOP, ts_event=T0, ts_init=T0, new_stop=1), "E1"
        )
    spec = ChannelSpec(tiers=["premium", "basic"])
    publisher = Publisher(
        redis_client, "local", spec, DistributionFile(), LocalSender(tmp_path, "local"), SimulatedClock(T0)
    )
    with pytest.raises(ValueError, match="fill.price"):
        publisher.on_fill(_fill(price=-1.0), CONTEXT)
    assert publisher.counters["rejected"] == 1
    with pytest.raises(ValueError, match="position_event.text"):
        followup_alert(
            PositionEvent(
                event_id="W", contract_key=SPY.key, kind=PositionEventKind.EXPLANATION, ts_event=T0, ts_init=T0
            ),
            "E1",
        )
    with pytest.raises(ValueError, match="position_event.new_stop"):
        followup_alert(PositionEvent(event_id="S", contract_key=SPY.key, kind=STOP, ts_event=T0, ts_init=T0), "E1")
    assert redis_client.keys("system:publisher:*") == []  # nothing half-written
    assert publisher.on_fill(_fill(), CONTEXT) == ["E1:premium", "E1:basic"]
    assert publisher.on_fill(_fill(), CONTEXT) == []  # a replay schedules nothing new
    assert publisher.counters["scheduled"] == 2


def test_break_even_and_explanation_followups_per_tier() -> None:
    """Break-even raises say so; the overseer's explanation goes to premium only, whitespace-normalised."""
    even = followup_alert(
        PositionEvent(
            event_id="S2",
            contract_key=SPY.key,
            kind=STOP,
            ts_event=T0,
            ts_init=T0,
            new_stop=2.5,
            reason="break-even stop",
        ),
        "E1",
    )
    premium = render(even, "premium", "S2:premium")
    assert premium and "Stop raised to break-even to $2.50" in premium.text
    why = followup_alert(
        PositionEvent(
            event_id="why:E1",
            contract_key=SPY.key,
            kind=PositionEventKind.EXPLANATION,
            ts_event=T0,
            ts_init=T0,
            text="Dealer gamma  flipped\nnegative <b>below</b> 450.",
            source="model",
        ),
        "E1",
    )
    assert why.kind is AlertKind.EXPLANATION and why.thread_key == "E1"
    rendered = render(why, "premium", "why:E1:premium")
    assert rendered and "WHY THIS TRADE" in rendered.text and "Dealer gamma flipped negative" in rendered.text
    assert "&lt;b&gt;below&lt;/b&gt;" in rendered.html  # the model's text cannot break Telegram's HTML
    assert render(why, "basic", "why:E1:basic") is None
    assert render(why, "free", "why:E1:free") is None


def test_token_bucket_on_the_simulated_clock(redis_client: redis.Redis) -> None:
    bucket = SharedTokenBucket(redis_client, "test:bucket", per_second=5.0, burst=5)
    now = T0
    assert sum(bucket.try_take(now) for _ in range(10)) == 5
    assert bucket.next_token_ns(now) == now + NS_PER_SECOND // 5
    assert not bucket.try_take(now + NS_PER_SECOND // 5 - 1)
    assert bucket.try_take(now + NS_PER_SECOND // 5)
    sent = sum(bucket.try_take(now + NS_PER_SECOND * 10 + i) for i in range(100))
    assert sent == 5  # never more than the burst, however long it was idle
    later = now + NS_PER_SECOND * 20
    bucket.block(later, later + 3 * NS_PER_SECOND)  # a 429 with retry_after 3 s
    assert not bucket.try_take(later + 3 * NS_PER_SECOND - 1) and bucket.try_take(later + 3 * NS_PER_SECOND)
    assert not bucket.try_take(now)  # a clock that lags (another process) refills nothing
    with pytest.raises(ValueError, match="per_second"):
        SharedTokenBucket(redis_client, "test:bucket", 0, 1)
    with pytest.raises(ValueError, match="per_second: 0.0001"):
        SharedTokenBucket(redis_client, "test:bucket", 0.0001, 1)
    with pytest.raises(ValueError, match="burst"):
        SharedTokenBucket(redis_client, "test:bucket", 1.0, 0)


def test_backoff_is_exponential_capped_and_honours_retry_after() -> None:
    assert [backoff_s(a, 2.0, 30.0) for a in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert backoff_s(1, 2.0, 30.0, retry_after_s=11.0) == 11.0
    assert backoff_s(3, 2.0, 30.0, retry_after_s=1.0) == 8.0


def test_config_defaults_and_validation() -> None:
    config = load_config()
    dist = config.distribution
    assert (dist.delays_s.premium, dist.delays_s.basic, dist.delays_s.free) == (0.0, 60.0, 300.0)
    assert dist.rate_limits["discord"].per_second == 5 and dist.rate_limits["telegram"].per_second == 30
    with pytest.raises(ValidationError, match="per_second: 0.0001"):
        DistributionFile(rate_limits={"telegram": {"per_second": 0.0001, "burst": 1}})
    with pytest.raises(ValidationError, match="burst"):
        DistributionFile(rate_limits={"telegram": {"per_second": 30, "burst": 10_000}})
    with pytest.raises(ValidationError, match="chat_id"):
        ChannelSpec(kind="telegram", tiers=["premium"], token_env="TELEGRAM_BOT_TOKEN", targets={"premium": {}})
    with pytest.raises(ValidationError, match="token_env"):
        ChannelSpec(kind="discord", tiers=["premium"], targets={"premium": {"channel_id": 5}})
    with pytest.raises(ValidationError, match="webhook_url_env"):
        ChannelSpec(kind="discord", tiers=["free"], targets={"free": {"webhook_url_env": "lower-case"}})
    spec = ChannelSpec(
        kind="telegram", tiers=["premium"], token_env="TG_TOKEN", targets={"premium": {"chat_id": "@alerts"}}
    )
    with pytest.raises(ValueError, match="TG_TOKEN"):
        build_sender("tg", spec, dist, environ={})


def test_concurrent_passes_never_double_send(redis_client: redis.Redis, tmp_path) -> None:  # noqa: ANN001
    """An actor's ticker and its on-fill flush may call run_due at once: each message still goes out once."""
    spec = ChannelSpec(tiers=["premium"])
    sender = LocalSender(tmp_path, "local")
    publisher = Publisher(redis_client, "local", spec, DistributionFile(), sender, SimulatedClock(T0))
    for i in range(5):
        publisher.on_fill(_fill(f"C{i}", qty=1, price=1.0 + i), CONTEXT)

    async def passes() -> None:
        await asyncio.gather(*(publisher.run_due() for _ in range(4)))

    asyncio.run(passes())
    lines = (tmp_path / "local-premium.log").read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == [f"[C{i}]" for i in range(5)]
    assert publisher.counters["sent"] == 5 and publisher.counters["retried"] == 0


def test_a_followup_read_after_the_close_still_lands_in_its_thread(redis_client: redis.Redis, tmp_path) -> None:  # noqa: ANN001
    """The streams are followed separately: a stop raise read after the closing fill keeps its thread."""
    spec = ChannelSpec(tiers=["premium", "basic"])
    publisher = Publisher(
        redis_client, "local", spec, DistributionFile(), LocalSender(tmp_path, "local"), SimulatedClock(T0)
    )
    entry = _fill("E1")
    publisher.on_fill(entry, CONTEXT)
    publisher.on_fill(_fill("X1", Side.SELL), FillContext(realized=10.0, remaining=0, entry_price=2.5))
    assert publisher.schedule.thread_of(entry.contract.key) is None  # closed: the open thread is gone
    late = PositionEvent(
        event_id="P1-stop-r3",
        contract_key=entry.contract.key,
        kind=STOP,
        ts_event=T0,
        ts_init=T0,
        new_stop=2.9,
        thread="E1",
    )
    assert publisher.on_followup(late) == ["P1-stop-r3:premium", "P1-stop-r3:basic"]
    assert publisher.on_followup(late) == []  # once
    stray = msgspec.structs.replace(late, event_id="P2-stop-r1", thread="E9")  # never alerted on this channel
    assert publisher.on_followup(stray) == [] and publisher.counters["followup_without_thread"] == 1
