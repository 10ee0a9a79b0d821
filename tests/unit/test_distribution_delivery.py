"""Publisher end to end: Redis schedule → real discord.py / python-telegram-bot → loopback twins.

Everything runs on a simulated clock: the publisher is asked to deliver what is due every 0.5
simulated seconds, so tier delays (60 s, 5 min) take milliseconds of wall time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path

import pytest
import redis
from discord.http import Route

from quanticity import keys
from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.config.models import ChannelSpec, DistributionFile, RetrySpec
from quanticity.distribution.alerts import FillContext
from quanticity.distribution.factory import build_sender
from quanticity.distribution.publisher import Publisher
from quanticity.distribution.schedule import Delivery
from quanticity.distribution.senders.base import Check, Posted, Sender
from quanticity.distribution.senders.telegram import repeat_notice
from quanticity.distribution.templates import ref_of
from quanticity.messages import Fill, OptionContract, PositionEvent, PositionEventKind, Right, Side
from quanticity.sim.discord_server import DEFAULT_BOT_TOKEN, DiscordTwin
from quanticity.sim.telegram_server import DEFAULT_TOKEN, TelegramTwin
from tests.async_helpers import until

pytestmark = pytest.mark.unit

T0 = 1_763_735_400 * NS_PER_SECOND
TIERS = ["premium", "basic", "free"]
TG_CHATS = {"premium": -1001, "basic": -1002, "free": -1003}
DC_CHANNELS = {
    "premium": 1_100_000_000_000_000_001,
    "basic": 1_100_000_000_000_000_002,
    "free": 1_100_000_000_000_000_003,
}
DELAYS = {"premium": 0.0, "basic": 60.0, "free": 300.0}


class SimulatedCrash(BaseException):
    """The publisher process dying: not an Exception, so nothing in the publisher can swallow it."""


class CrashingSender(Sender):
    """Wraps a real sender and dies on its ``crash_on``-th send, before or after the platform took it."""

    def __init__(self, inner: Sender, crash_on: int, after_send: bool) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.crash_on = crash_on
        self.after_send = after_send
        self.calls = 0

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def send(self, delivery: Delivery, parent: Posted | None) -> Posted:
        self.calls += 1
        if self.calls == self.crash_on and not self.after_send:
            raise SimulatedCrash(delivery.id)
        posted = await self.inner.send(delivery, parent)
        if self.calls == self.crash_on:
            raise SimulatedCrash(delivery.id)
        return posted

    async def find_existing(self, delivery: Delivery, parent: Posted | None) -> Posted | Check:
        return await self.inner.find_existing(delivery, parent)


@pytest.fixture(autouse=True)
def _discord_base():  # noqa: ANN202 - discord.py's Route.BASE is process-wide; each twin has its own port
    before = Route.BASE
    Route.BASE = "https://discord.com/api/v10"
    yield
    Route.BASE = before


def _fill(exec_id: str, ts: int, side: Side = Side.BUY, qty: int = 10, price: float = 2.5, strike: float = 440.0):
    contract = OptionContract("SPY", "2025-11-21", strike, Right.CALL)
    return Fill(
        ts_event=ts,
        ts_init=ts,
        exec_id=exec_id,
        order_ref=f"R-{exec_id}",
        contract=contract,
        side=side,
        quantity=qty,
        price=price,
        commission=6.5,
        strategy="zero_dte_gamma",
    )


ENTRY = FillContext(stop=1.25, targets=(3.75, 5.0), triggers=("GEX flip",), risk_amount=500.0, risk_pct=1.0)


class Env:
    """Both twins, the channel specs pointing at them, and publisher factories."""

    def __init__(self, client: redis.Redis, tmp_path: Path, tiers: list[str], **dist: object) -> None:
        self.client = client
        self.tmp_path = tmp_path
        self.tiers = tiers
        self.tg = TelegramTwin()
        self.dc = DiscordTwin()
        retry = RetrySpec(max_attempts=3, base_s=2.0, cap_s=30.0, send_timeout_s=5.0)
        self.dist = DistributionFile(log_dir=str(tmp_path / "channels"), **{"retry": retry, **dist})
        self.clock = SimulatedClock(T0)
        self.publishers: list[Publisher] = []

    async def __aenter__(self) -> Env:
        await self.tg.start()
        await self.dc.start()
        self.env = {"TG_TOKEN": DEFAULT_TOKEN, "DC_BOT": DEFAULT_BOT_TOKEN}
        for tier, channel in DC_CHANNELS.items():
            self.env[f"DC_{tier.upper()}"] = self.dc.create_webhook(channel, name=f"alerts-{tier}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for publisher in self.publishers:
            with suppress(Exception):
                await publisher.close()
        await self.tg.stop()
        await self.dc.stop()

    def spec(self, kind: str, **extra: object) -> ChannelSpec:
        if kind == "telegram":
            targets = {t: {"chat_id": TG_CHATS[t]} for t in self.tiers}
            return ChannelSpec(
                kind="telegram",
                tiers=self.tiers,
                token_env="TG_TOKEN",
                api_base=f"{self.tg.base_url}/bot",
                targets=targets,
                **extra,
            )
        if kind == "discord":
            targets = {t: {"webhook_url_env": f"DC_{t.upper()}", "channel_id": DC_CHANNELS[t]} for t in self.tiers}
            return ChannelSpec(kind="discord", tiers=self.tiers, token_env="DC_BOT", targets=targets, **extra)
        return ChannelSpec(kind="local", tiers=self.tiers, **extra)

    def publisher(self, kind: str, wrap: Callable[[Sender], Sender] | None = None, **extra: object) -> Publisher:
        spec = self.spec(kind, **extra)
        sender = build_sender(kind, spec, self.dist, environ=self.env)
        publisher = Publisher(self.client, kind, spec, self.dist, wrap(sender) if wrap else sender, self.clock)
        self.publishers.append(publisher)
        return publisher

    # --- what the platforms show ------------------------------------------------------------------
    def telegram(self, tier: str) -> list[dict]:
        return self.tg.sent_messages(TG_CHATS[tier])

    def discord(self, tier: str) -> list[dict]:
        return self.dc.messages(DC_CHANNELS[tier])

    def local(self, tier: str) -> list[str]:
        path = Path(self.dist.log_dir) / f"local-{tier}.log"
        return path.read_text().splitlines() if path.exists() else []

    def audit(self) -> list[dict[str, str]]:
        return [fields for _, fields in self.client.xrange(keys.DISTRIBUTION_AUDIT)]

    def dead_letters(self) -> list[dict[str, str]]:
        return [fields for _, fields in self.client.xrange(keys.DISTRIBUTION_DEAD_LETTER)]

    async def drive(
        self,
        publishers: list[Publisher],
        until_s: float,
        events: list[tuple[float, Callable[[], object]]] = (),
        observe: Callable[[int], None] | None = None,
        step_s: float = 0.5,
    ) -> None:
        """Advance the simulated clock to T0 + ``until_s``, firing ``events`` at their times."""
        pending = sorted(events, key=lambda e: e[0])
        while self.clock.now_ns() <= T0 + int(until_s * NS_PER_SECOND):
            while pending and T0 + int(pending[0][0] * NS_PER_SECOND) <= self.clock.now_ns():
                pending.pop(0)[1]()
            for publisher in publishers:
                await publisher.run_due()
            if observe is not None:
                observe(self.clock.now_ns())
            self.clock.advance(step_s)


def _refs(messages: list[dict]) -> list[str]:
    """The delivery ref of each message (Telegram text / Discord embed footer)."""
    out = []
    for message in messages:
        text = message.get("text") or (message.get("embeds") or [{}])[0].get("footer", {}).get("text", "")
        out.append(text.rsplit("ref ", 1)[-1].removesuffix("</i>"))
    return out


def _run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


# --- tier timing ------------------------------------------------------------------------------------
def test_tiers_arrive_after_their_delay_and_within_five_seconds(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, TIERS) as env:
            tg, dc, local = env.publisher("telegram"), env.publisher("discord"), env.publisher("local")
            fills = [_fill(f"E{i}", T0 + int(i * 7 * NS_PER_SECOND), strike=430.0 + i) for i in range(4)]
            events = [
                (i * 7.0, lambda f=f: [p.on_fill(f, ENTRY) for p in (tg, dc, local)]) for i, f in enumerate(fills)
            ]
            seen: dict[tuple[str, str], list[int]] = {}

            def observe(now: int) -> None:
                for tier in TIERS:
                    for platform, count in (
                        ("telegram", len(env.telegram(tier))),
                        ("discord", len(env.discord(tier))),
                        ("local", len(env.local(tier))),
                    ):
                        times = seen.setdefault((platform, tier), [])
                        times.extend([now] * (count - len(times)))

            await env.drive([tg, dc, local], until_s=340.0, events=events, observe=observe)
            assert set(seen) == {(p, t) for p in ("telegram", "discord", "local") for t in TIERS}
            for (platform, tier), times in seen.items():
                assert len(times) == len(fills), (platform, tier)
                for fill, at in zip(fills, times, strict=True):
                    delay = (at - fill.ts_event) / NS_PER_SECOND
                    assert DELAYS[tier] <= delay <= DELAYS[tier] + 5.0, (platform, tier, delay)
            # one audit record per outbound message, with the platform's ids
            sent = [a for a in env.audit() if a["outcome"] == "sent"]
            assert len(sent) == 3 * len(TIERS) * len(fills)
            tg_ids = {str(m["message_id"]) for t in TIERS for m in env.telegram(t)}
            assert {a["message_id"] for a in sent if a["platform"] == "telegram"} == tg_ids
            dc_ids = {m["id"] for t in TIERS for m in env.discord(t)}
            assert {a["message_id"] for a in sent if a["platform"] == "discord"} == dc_ids
            assert all(DELAYS[a["tier"]] <= float(a["delay_s"]) <= DELAYS[a["tier"]] + 5 for a in sent)
            assert {(a["platform"], a["tier"]) for a in sent} == set(seen)

    _run(body)


def test_discord_rate_limit_paces_a_burst(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium"]) as env:
            dc = env.publisher("discord")
            for i in range(20):
                dc.on_fill(_fill(f"B{i}", T0, strike=400.0 + i), ENTRY)
            await env.drive([dc], until_s=5.0, step_s=0.1)
            assert len(env.discord("premium")) == 20
            times = sorted((int(a["ts_ns"]) - T0) / NS_PER_SECOND for a in env.audit())
            assert times[:10] == [0.0] * 10  # the burst of 10 goes at once
            gaps = [round(b - a, 3) for a, b in zip(times[9:], times[10:], strict=False)]
            assert gaps == [0.2] * 10  # then 5 per second, never faster

    _run(body)


# --- follow-ups -------------------------------------------------------------------------------------
def test_followups_thread_under_the_original_on_both_platforms(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, TIERS) as env:
            tg, dc = env.publisher("telegram"), env.publisher("discord")
            key = _fill("E1", T0).contract.key
            entry = _fill("E1", T0)
            partial = _fill("X1", T0 + 90 * NS_PER_SECOND, Side.SELL, qty=3, price=3.75)
            close = _fill("X2", T0 + 400 * NS_PER_SECOND, Side.SELL, qty=7, price=5.0)
            stop = PositionEvent(
                event_id="S1",
                contract_key=key,
                kind=PositionEventKind.STOP_MOVED,
                ts_event=T0 + 30 * NS_PER_SECOND,
                ts_init=T0,
                new_stop=2.75,
            )
            both = (tg, dc)
            events = [
                (0.0, lambda: [p.on_fill(entry, ENTRY) for p in both]),
                (30.0, lambda: [p.on_followup(stop) for p in both]),
                (
                    90.0,
                    lambda: [
                        p.on_fill(partial, FillContext(realized=372.0, remaining=7, entry_price=2.5)) for p in both
                    ],
                ),
                (
                    400.0,
                    lambda: [
                        p.on_fill(close, FillContext(realized=1743.0, remaining=0, entry_price=2.5)) for p in both
                    ],
                ),
            ]
            await env.drive([tg, dc], until_s=470.0, events=events, step_s=1.0)
            for tier in ("premium", "basic"):
                messages = env.telegram(tier)
                assert len(messages) == 4, tier
                original = messages[0]["message_id"]
                assert all(m["reply_to_message"]["message_id"] == original for m in messages[1:])
                assert "Trailing stop" in messages[1]["text"] or "Stop adjusted" in messages[1]["text"]
                assert "CLOSED" in messages[3]["text"]
                posts = env.discord(tier)
                assert len(posts) == 1, tier
                thread = env.dc.messages(int(posts[0]["id"]))
                assert len(thread) == 3 and int(posts[0]["id"]) in env.dc.threads
                assert "CLOSED" in thread[2]["embeds"][0]["title"]
            assert len(env.telegram("free")) == 1 and len(env.discord("free")) == 1  # no follow-ups for free
            assert not env.dc.threads.keys() & {int(m["id"]) for m in env.discord("free")}
            # one "sent" audit record per outbound message, follow-ups included, carrying the platform's ids
            sent = [a for a in env.audit() if a["outcome"] == "sent"]
            tg_ids = sorted((str(m["chat"]["id"]), str(m["message_id"])) for t in TIERS for m in env.telegram(t))
            assert sorted((a["chat_id"], a["message_id"]) for a in sent if a["platform"] == "telegram") == tg_ids
            dc_posts = [m for t in TIERS for m in env.discord(t)]
            dc_ids = sorted(
                [m["id"] for m in dc_posts] + [m["id"] for p in dc_posts for m in env.dc.messages(int(p["id"]))]
            )
            assert sorted(a["message_id"] for a in sent if a["platform"] == "discord") == dc_ids
            replies = [a for a in sent if a["kind"] != "entry"]
            assert replies and all(a["thread_id"] for a in replies)  # each follow-up records the thread it went to
            # the position is closed: a later stop move has no thread to go to
            assert tg.on_followup(stop) == [] and tg.counters["followup_without_thread"] == 1

    _run(body)


# --- crash mid-batch ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "after_send", "resolution"),
    [
        ("discord", True, "found_after_unknown"),  # it landed: the bot finds it in the channel history
        ("local", True, "found_after_unknown"),  # it landed: the line is in the file
        ("telegram", False, "resend_unknown"),  # died before the request: the resend is its only copy
        ("discord", False, "not_found_after_unknown"),  # checked, not there: re-sent safely
    ],
)
def test_publisher_killed_mid_batch_delivers_each_exactly_once(
    redis_client: redis.Redis, tmp_path: Path, kind: str, after_send: bool, resolution: str
) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium", "basic"]) as env:
            first = env.publisher(kind, wrap=lambda s: CrashingSender(s, crash_on=4, after_send=after_send))
            fills = [_fill(f"K{i}", T0, strike=420.0 + i) for i in range(6)]
            for fill in fills:
                first.on_fill(fill, ENTRY)
            with pytest.raises(SimulatedCrash):
                await env.drive([first], until_s=120.0)
            await first.close()
            assert len(first.schedule.inflight()) == 1
            second = env.publisher(kind)  # a new process: new sender, same Redis
            for fill in fills:  # the fills stream is replayed from the persisted cursor
                second.on_fill(fill, ENTRY)
            await env.drive([second], until_s=130.0)
            view = {"discord": env.discord, "telegram": env.telegram, "local": env.local}[kind]
            for tier in ("premium", "basic"):
                delivered = view(tier)
                if kind == "local":
                    ids = [line.split()[0].strip("[]") for line in delivered]
                else:
                    ids = _refs(delivered)
                    assert sorted(ids) == sorted(ref_of(f"{f.exec_id}:{tier}") for f in fills)
                assert len(ids) == len(set(ids)) == len(fills), (tier, ids)
            outcomes = Counter(a["outcome"] for a in env.audit())
            assert outcomes[resolution] == 1 and outcomes["sent"] == 2 * len(fills) - (
                resolution == "found_after_unknown"
            )
            assert second.schedule.inflight() == [] and env.dead_letters() == []

    _run(body)


@pytest.mark.parametrize("policy", ["resend", "dead_letter"])
def test_telegram_crash_inside_the_send_follows_the_documented_policy(
    redis_client: redis.Redis, tmp_path: Path, policy: str
) -> None:
    """A crash *inside* the HTTP call, after Telegram took the message: the one case exactly-once cannot cover.

    The Bot API cannot tell a bot whether the message landed, so the channel's policy decides,
    and says so: ``resend`` (default) delivers a second, labelled copy and audits it as a possible
    duplicate; ``dead_letter`` never sends a second copy and alerts the operator instead.
    """

    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium"]) as env:
            first = env.publisher("telegram", wrap=lambda s: CrashingSender(s, crash_on=2, after_send=True))
            for i in range(3):
                first.on_fill(_fill(f"U{i}", T0, strike=410.0 + i), ENTRY)
            with pytest.raises(SimulatedCrash):
                await env.drive([first], until_s=30.0)
            await first.close()
            second = env.publisher("telegram", unknown_outcome=policy)
            await env.drive([second], until_s=40.0)
            messages = env.telegram("premium")
            counts = Counter(_refs(messages))
            crashed = ref_of("U1:premium")
            assert counts[ref_of("U0:premium")] == counts[ref_of("U2:premium")] == 1
            trail = [(a["outcome"], a["possible_duplicate"]) for a in env.audit() if a["delivery"] == "U1:premium"]
            alerts = [f for _, f in redis_client.xrange(keys.ALERTS)]
            if policy == "resend":
                assert counts[crashed] == 2  # at-least-once: the documented duplicate...
                copies = [m["text"] for m in messages if _refs([m]) == [crashed]]
                assert repeat_notice(crashed) not in copies[0]
                assert copies[1].startswith(repeat_notice(crashed))  # ...labelled, so nobody trades it twice
                assert copies[1].endswith(copies[0])  # otherwise the very same alert
                assert trail == [("resend_unknown", "0"), ("sent", "1")]  # audited as a possible duplicate
                assert second.counters["possible_duplicate"] == 1 and alerts == []
            else:
                assert counts[crashed] == 1  # the copy sent before the crash; never a second one
                assert [d["delivery"] for d in env.dead_letters()] == ["U1:premium"]
                assert [o for o, _ in trail] == ["dead_letter"]
                assert len(alerts) == 1 and alerts[0]["level"] == "WARNING"
                assert crashed in alerts[0]["text"] and "telegram" in alerts[0]["text"]

    _run(body)


def test_drill_pause_holds_a_batch_between_sends_and_a_restart_finishes_it(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The deterministic "killed mid-batch": paused after 2 of 5 sends, nothing in flight, then a new publisher."""

    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium"]) as env:
            first = env.publisher("telegram")
            fills = [_fill(f"D{i}", T0, strike=400.0 + i) for i in range(5)]
            for fill in fills:
                first.on_fill(fill, ENTRY)
            first.drill.arm(after_sends=2)
            held = asyncio.ensure_future(first.run_due())
            await until(first.drill.paused.is_set, 10.0, "the drill pause")
            assert len(env.telegram("premium")) == 2
            assert first.schedule.inflight() == [] and first.schedule.pending_count() == 3
            held.cancel()  # the process dies here; the thread the drill waits in is let go below
            first.drill.release()
            with suppress(asyncio.CancelledError):
                await held
            second = env.publisher("telegram")  # a new process: new sender, same Redis
            for fill in fills:  # the fills stream replayed from the persisted cursor
                second.on_fill(fill, ENTRY)
            await env.drive([second], until_s=5.0)
            refs = _refs(env.telegram("premium"))
            assert sorted(refs) == sorted(ref_of(f"{f.exec_id}:premium") for f in fills)
            assert len(refs) == len(set(refs))
            outcomes = Counter(a["outcome"] for a in env.audit())
            assert outcomes == {"sent": 5}  # nothing was ambiguous: no recovery, no possible duplicate

    _run(body)


# --- 429 storms and poison -------------------------------------------------------------------------
def test_429_storm_delays_but_drops_nothing(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        retry = RetrySpec(max_attempts=6, base_s=1.0, cap_s=30.0, send_timeout_s=5.0)
        async with Env(redis_client, tmp_path, ["premium"], retry=retry) as env:
            tg, dc = env.publisher("telegram"), env.publisher("discord")
            env.tg.faults.add("429", 10, retry_after=2)
            env.dc.faults.add("429", 14, retry_after=0.01)  # discord.py retries 5 times itself, then we do
            fills = [_fill(f"S{i}", T0, strike=400.0 + i) for i in range(8)]
            for fill in fills:
                tg.on_fill(fill, ENTRY)
                dc.on_fill(fill, ENTRY)
            await env.drive([tg, dc], until_s=90.0)
            expected = sorted(ref_of(f"{f.exec_id}:premium") for f in fills)
            assert sorted(_refs(env.telegram("premium"))) == expected
            assert sorted(_refs(env.discord("premium"))) == expected
            assert env.dead_letters() == [] and env.tg.faults.pending() == env.dc.faults.pending() == 0
            audit = env.audit()
            retried = [a for a in audit if a["outcome"] == "retry"]
            assert {a["platform"] for a in retried} == {"telegram", "discord"}
            tg_delays = [float(a["delay_s"]) for a in audit if a["outcome"] == "sent" and a["platform"] == "telegram"]
            assert max(tg_delays) >= 2.0  # honoured retry_after: delayed, not dropped

    _run(body)


def test_poison_message_is_dead_lettered_after_max_attempts(redis_client: redis.Redis, tmp_path: Path) -> None:
    async def body() -> None:
        async with Env(redis_client, tmp_path, ["premium"]) as env:
            tg, dc = env.publisher("telegram"), env.publisher("discord")
            poison = ref_of("P1:premium")
            env.tg.faults.poison(poison)
            env.dc.faults.poison(poison)
            for i in range(3):
                fill = _fill(f"P{i}", T0, strike=400.0 + i)
                tg.on_fill(fill, ENTRY)
                dc.on_fill(fill, ENTRY)
            await env.drive([tg, dc], until_s=60.0)
            assert sorted(_refs(env.telegram("premium"))) == sorted(ref_of(f"P{i}:premium") for i in (0, 2))
            assert sorted(_refs(env.discord("premium"))) == sorted(ref_of(f"P{i}:premium") for i in (0, 2))
            dead = env.dead_letters()
            assert sorted((d["channel"], d["delivery"], d["attempts"]) for d in dead) == [
                ("discord", "P1:premium", "3"),
                ("telegram", "P1:premium", "3"),
            ]
            trail = [a["outcome"] for a in env.audit() if a["delivery"] == "P1:premium" and a["channel"] == "telegram"]
            assert trail == ["rejected", "rejected", "dead_letter"]
            assert tg.schedule.load("P1:premium").state == "dead"  # type: ignore[union-attr]
            alerts = [f for _, f in redis_client.xrange(keys.ALERTS)]  # the operator hears of each one
            assert sorted(a["source"] for a in alerts) == ["publisher:discord", "publisher:telegram"]
            assert all(poison in a["text"] and "after 3 attempts" in a["text"] for a in alerts)

    _run(body)
