"""The Discord API twin driven by the real discord.py (webhooks, bot login over HTTP, threads)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import discord
import pytest
from discord.http import Route

from quanticity.distribution.senders.discord import parse_webhook_url, use_api_base
from quanticity.sim.discord_server import DEFAULT_BOT_TOKEN, DiscordTwin

pytestmark = pytest.mark.unit

CHANNEL = 1_100_000_000_000_000_001


@pytest.fixture(autouse=True)
def _restore_route_base():  # noqa: ANN202 - Route.BASE is process-wide; leave it as found
    before = Route.BASE
    yield
    Route.BASE = before


def _run(twin: DiscordTwin, body):  # noqa: ANN001, ANN202 - test driver
    async def main():  # noqa: ANN202
        await twin.start()
        Route.BASE = "https://discord.com/api/v10"
        use_api_base(f"{twin.base_url}/api/v10")
        url = twin.create_webhook(CHANNEL)
        _, webhook_id, token = parse_webhook_url(url)
        async with aiohttp.ClientSession() as session:
            webhook = discord.Webhook.partial(webhook_id, token, session=session)
            client = discord.Client(intents=discord.Intents.none())
            try:
                return await body(webhook, client)
            finally:
                await client.close()
                await twin.stop()

    return asyncio.run(main())


def test_webhook_execute_edit_thread_and_history(tmp_path: Path) -> None:
    twin = DiscordTwin(log_dir=tmp_path)

    async def body(webhook: discord.Webhook, client: discord.Client):  # noqa: ANN202
        embed = discord.Embed(title="FILLED SPY", description="BUY 2 @ 1.25").set_footer(text="ref abc")
        message = await webhook.send(embed=embed, wait=True)
        assert message.channel.id == CHANNEL and message.embeds[0].title == "FILLED SPY"
        await message.edit(content="edited")
        await client.login(DEFAULT_BOT_TOKEN)
        channel = await client.fetch_channel(CHANNEL)
        thread = await channel.get_partial_message(message.id).create_thread(name="Updates")
        assert thread.id == message.id and thread.parent_id == CHANNEL
        with pytest.raises(discord.HTTPException) as info:
            await channel.get_partial_message(message.id).create_thread(name="Updates")
        assert info.value.code == 160004
        in_thread = await webhook.send("stop moved", wait=True, thread=discord.Object(id=thread.id))
        by_bot = await client.get_partial_messageable(thread.id).send("closed")
        history = [m async for m in client.get_partial_messageable(thread.id).history(limit=10)]
        return message, in_thread, by_bot, history

    message, in_thread, by_bot, history = _run(twin, body)
    assert [m["content"] for m in twin.messages(CHANNEL)] == ["edited"]
    assert [m["content"] for m in twin.messages(message.id)] == ["stop moved", "closed"]
    assert [m.id for m in history] == [by_bot.id, in_thread.id]  # newest first, like Discord
    assert twin.edits[0]["content"] == "edited"
    assert in_thread.channel.id == message.id
    assert (tmp_path / f"discord-{CHANNEL}.log").exists()


def test_errors_and_rate_limits() -> None:
    twin = DiscordTwin()

    async def body(webhook: discord.Webhook, client: discord.Client):  # noqa: ANN202
        with pytest.raises(discord.HTTPException) as empty:
            await webhook.send("", wait=True)
        assert empty.value.code == 50006
        with pytest.raises(discord.NotFound):
            await discord.Webhook.partial(1, "x" * 68, session=webhook.session).send("x", wait=True)
        with pytest.raises(discord.LoginFailure):
            await client.login("wrong-token")
        # 429s through Discord's proxy (Via header): discord.py sleeps retry_after and retries itself
        twin.faults.add("429", 2, retry_after=0.01)
        ok = await webhook.send("after two 429s", wait=True)
        # more 429s than discord.py's five tries: it gives up with the 429 (our publisher takes over)
        twin.faults.add("429", 5, retry_after=0.01)
        with pytest.raises(discord.HTTPException) as limited:
            await webhook.send("never", wait=True)
        twin.faults.poison("POISON")
        with pytest.raises(discord.HTTPException) as poisoned:
            await webhook.send("a POISON pill", wait=True)
        return ok, limited.value, poisoned.value

    ok, limited, poisoned = _run(twin, body)
    assert ok.content == "after two 429s"
    assert limited.status == 429 and float(limited.response.headers["X-RateLimit-Reset-After"]) == pytest.approx(0.01)
    assert poisoned.status == 400
    assert [m["content"] for m in twin.messages(CHANNEL)] == ["after two 429s"]
    assert [s for name, s in twin.calls if name == "execute_webhook"].count(429) == 7


def test_nonce_enforcement_deduplicates_bot_posts() -> None:
    twin = DiscordTwin()

    async def body(webhook: discord.Webhook, client: discord.Client):  # noqa: ANN202
        await client.login(DEFAULT_BOT_TOKEN)
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=CHANNEL)
        payload = {"content": "once", "nonce": "n-1", "enforce_nonce": True}
        first = await client.http.request(route, json=payload)
        second = await client.http.request(route, json=payload)
        return first, second

    first, second = _run(twin, body)
    assert first["id"] == second["id"]
    assert len(twin.messages(CHANNEL)) == 1


def test_api_base_and_webhook_url_validation() -> None:
    with pytest.raises(ValueError, match="api_base"):
        use_api_base("http://127.0.0.1:1/not-an-api")
    with pytest.raises(ValueError, match="webhook url"):
        parse_webhook_url("https://example.com/hooks/1/abc")
    assert parse_webhook_url("https://discord.com/api/webhooks/123456789012345678/tok-en_1") == (
        "https://discord.com/api/v10",
        123456789012345678,
        "tok-en_1",
    )
