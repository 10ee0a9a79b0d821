"""Per-platform rate limits shared across publishers: two channels of one bot never outrun the bot's budget.

Each channel is its own publisher (its own Ray actor, process and schedule); they share the
Redis token bucket of their platform credential. On a simulated clock, with the real
discord.py / python-telegram-bot against the loopback twins, the combined send times must fit the
bucket's envelope (``burst + rate · t`` by any time ``t``, never more than ``rate`` in any 1 s
window once the burst is spent), while a channel of another bot keeps its own budget.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from quanticity.clock import NS_PER_SECOND
from quanticity.config.models import ChannelSpec
from quanticity.distribution.factory import build_sender
from quanticity.distribution.publisher import Publisher
from quanticity.sim.discord_server import DEFAULT_BOT_TOKEN
from quanticity.sim.telegram_server import DEFAULT_TOKEN, TelegramTwin
from tests.unit.test_distribution_delivery import ENTRY, T0, Env, _discord_base, _fill

pytestmark = pytest.mark.unit
__all__ = ["_discord_base"]  # the autouse fixture resetting discord.py's process-wide API base

OTHER_TOKEN = "987654321:OTHER-token_for-the-loopback-twin"


def _publisher(env: Env, channel: str, spec: ChannelSpec, environ: dict[str, str] | None = None) -> Publisher:
    sender = build_sender(channel, spec, env.dist, environ=environ or env.env)
    publisher = Publisher(env.client, channel, spec, env.dist, sender, env.clock)
    env.publishers.append(publisher)
    return publisher


def _sent_times(env: Env, channels: set[str]) -> list[float]:
    """Seconds after T0 of every send of ``channels`` (from the audit: one record per outbound message)."""
    return sorted(
        (int(a["ts_ns"]) - T0) / NS_PER_SECOND
        for a in env.audit()
        if a["outcome"] == "sent" and a["channel"] in channels
    )


def _assert_within(times: list[float], rate: float, burst: int, carry: int) -> None:
    """The shared bucket's contract, checked at every send.

    By any time t at most ``burst + rate·t`` sends in all. Once the initial burst is spent, any
    window [s, s + 1 s) holds at most ``rate + carry``: a publisher polls the bucket every step, so
    when a token accrues between two polls the fraction past it is carried into the next window
    (``carry`` = 0 when the polls fall exactly on the token times, 1 otherwise).
    """
    for i, t in enumerate(times):
        assert i + 1 <= burst + rate * t + 1e-9, (i + 1, t)
    for i, start in enumerate(times[burst:], start=burst):
        window = sum(1 for t in times[i:] if t < start + 1.0)
        assert window <= rate + carry, (start, window)


def test_two_discord_channels_of_one_bot_share_five_per_second(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium"]) as env:
            second = env.dc.add_channel(1_200_000_000_000_000_001)
            env.env["DC_SECOND"] = env.dc.create_webhook(second, name="second-channel")
            a = _publisher(env, "dc-a", env.spec("discord"))
            b_spec = ChannelSpec(
                kind="discord",
                tiers=["premium"],
                token_env="DC_BOT",  # the same bot token: the same budget
                targets={"premium": {"webhook_url_env": "DC_SECOND", "channel_id": second}},
            )
            b = _publisher(env, "dc-b", b_spec)
            assert a.bucket.key == b.bucket.key and DEFAULT_BOT_TOKEN not in a.bucket.key
            for i in range(20):
                a.on_fill(_fill(f"A{i}", T0, strike=400.0 + i), ENTRY)
                b.on_fill(_fill(f"B{i}", T0, strike=400.0 + i), ENTRY)
            await env.drive([a, b], until_s=8.0, step_s=0.05)
            assert len(env.discord("premium")) == len(env.dc.messages(second)) == 20
            times = _sent_times(env, {"dc-a", "dc-b"})
            # exactly one bucket's schedule for both: the burst of 10 at once, then one per 0.2 s
            assert times == [0.0] * 10 + [round(0.2 * k, 2) for k in range(1, 31)]
            _assert_within(times, rate=5.0, burst=10, carry=0)
            assert {a.counters["throttled"] > 0, b.counters["throttled"] > 0} == {True}

    asyncio.run(body())


def test_a_channel_of_another_credential_keeps_its_own_budget(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium"]) as env:
            await env.tg.stop()
            env.tg = TelegramTwin(tokens=[DEFAULT_TOKEN, OTHER_TOKEN])
            await env.tg.start()
            mine = _publisher(env, "tg-a", env.spec("telegram"))
            other_spec = env.spec("telegram").model_copy(update={"token_env": "TG_OTHER"})
            other = _publisher(env, "tg-b", other_spec, {**env.env, "TG_OTHER": OTHER_TOKEN})
            assert mine.bucket.key != other.bucket.key
            for i in range(50):
                mine.on_fill(_fill(f"A{i}", T0, strike=400.0 + i), ENTRY)
                other.on_fill(_fill(f"B{i}", T0, strike=400.0 + i), ENTRY)
            await env.drive([mine, other], until_s=0.0)
            assert _sent_times(env, {"tg-a"}) == [0.0] * 50  # each bot its own burst of 50
            assert _sent_times(env, {"tg-b"}) == [0.0] * 50

    asyncio.run(body())


def test_two_telegram_channels_of_one_bot_share_thirty_per_second(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium"]) as env:
            a = _publisher(env, "tg-a", env.spec("telegram"))
            b_spec = ChannelSpec.model_validate(
                {**env.spec("telegram").model_dump(), "targets": {"premium": {"chat_id": -2001}}}
            )
            b = _publisher(env, "tg-b", b_spec)  # another chat, the same bot token
            assert a.bucket.key == b.bucket.key and DEFAULT_TOKEN not in a.bucket.key
            for i in range(60):
                a.on_fill(_fill(f"A{i}", T0, strike=400.0 + i), ENTRY)
                b.on_fill(_fill(f"B{i}", T0, strike=400.0 + i), ENTRY)
            await env.drive([a, b], until_s=4.0, step_s=0.01)
            assert len(env.telegram("premium")) == len(env.tg.sent_messages(-2001)) == 60
            times = _sent_times(env, {"tg-a", "tg-b"})
            assert times[:50] == [0.0] * 50 and times[50] > 0.0  # the burst of 50, then paced
            _assert_within(times, rate=30.0, burst=50, carry=1)
            assert times[-1] == pytest.approx((120 - 50) / 30.0, abs=0.02)  # paced at the rate, not slower

    asyncio.run(body())
