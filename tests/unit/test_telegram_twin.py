"""The Telegram Bot API twin driven by the real python-telegram-bot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TimedOut

from quanticity.sim.telegram_server import DEFAULT_TOKEN, TelegramTwin, check_html

pytestmark = pytest.mark.unit

CHAT = -1001234567890


def _run(twin: TelegramTwin, body, token: str = DEFAULT_TOKEN):  # noqa: ANN001, ANN202 - test driver
    async def main():  # noqa: ANN202
        await twin.start()
        bot = Bot(token, base_url=f"{twin.base_url}/bot")
        try:
            return await body(bot)
        finally:
            await twin.stop()

    return asyncio.run(main())


def test_send_reply_keyboard_and_records(tmp_path: Path) -> None:
    twin = TelegramTwin(log_dir=tmp_path)

    async def body(bot: Bot):  # noqa: ANN202
        await bot.initialize()
        assert bot.username == "quanticity_twin_bot"
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Approve", callback_data="approve:1")]])
        first = await bot.send_message(CHAT, "<b>FILLED</b> SPY &amp; QQQ", parse_mode="HTML", reply_markup=keyboard)
        reply = await bot.send_message(
            CHAT, "update", reply_parameters=ReplyParameters(message_id=first.message_id), message_thread_id=7
        )
        return first, reply

    first, reply = _run(twin, body)
    assert reply.reply_to_message.message_id == first.message_id
    assert reply.message_thread_id == 7
    sent = twin.sent_messages(CHAT)
    assert [m["text"] for m in sent] == ["<b>FILLED</b> SPY &amp; QQQ", "update"]
    assert sent[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "approve:1"
    assert sent[0]["parse_mode"] == "HTML"
    log = (tmp_path / f"telegram-{CHAT}.log").read_text().splitlines()
    assert len(log) == 2 and log[1].startswith(f"#{reply.message_id} reply_to={first.message_id}")


def test_rejections_have_the_real_shape() -> None:
    twin = TelegramTwin()

    async def body(bot: Bot):  # noqa: ANN202
        errors = []
        for call in (
            bot.send_message(CHAT, "x", reply_parameters=ReplyParameters(message_id=99)),
            bot.send_message(CHAT, "<b>unclosed", parse_mode="HTML"),
            bot.send_message(CHAT, "<div>no</div>", parse_mode="HTML"),
            bot.send_message(CHAT, "x" * 4097),
        ):
            with pytest.raises(BadRequest) as info:
                await call
            errors.append(str(info.value))
        return errors

    errors = _run(twin, body)
    errors = [e.lower() for e in errors]
    assert "replied not found" in errors[0]
    assert "can't parse entities" in errors[1] and "can't parse entities" in errors[2]
    assert "too long" in errors[3]
    assert twin.sent_messages(CHAT) == []


def test_unknown_token_is_refused() -> None:
    twin = TelegramTwin()

    async def body(bot: Bot):  # noqa: ANN202
        with pytest.raises(InvalidToken):
            await bot.get_me()

    _run(twin, body, token="999:not-the-configured-token")
    assert twin.calls == [("getme", 401)]


def test_injected_updates_long_poll_and_callbacks() -> None:
    twin = TelegramTwin()

    async def body(bot: Bot):  # noqa: ANN202
        sent = await bot.send_message(555, "Flatten everything?")
        first = twin.inject_message(555, 555, "/status")
        query_id = twin.inject_callback(555, 555, sent.message_id, "flatten:yes")
        updates = await bot.get_updates(offset=0, timeout=1)
        assert [u.update_id for u in updates] == [first, first + 1]
        command = updates[0].message
        assert command.text == "/status" and command.from_user.id == 555
        assert command.entities[0].type == "bot_command"
        callback = updates[1].callback_query
        assert callback.data == "flatten:yes" and callback.message.message_id == sent.message_id
        assert await bot.answer_callback_query(query_id, text="done")
        with pytest.raises(BadRequest, match="(?i)query is too old"):
            await bot.answer_callback_query(query_id)  # an answered query cannot be answered again
        await bot.edit_message_text("Flattened.", chat_id=555, message_id=sent.message_id)
        with pytest.raises(BadRequest, match="(?i)not modified"):
            await bot.edit_message_text("Flattened.", chat_id=555, message_id=sent.message_id)
        # offset confirms: nothing left; a long poll returns empty after its timeout
        assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0.2) == ()
        # a long poll wakes up when an update is injected from another thread meanwhile
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, twin.inject_message, 556, 555, "hello")
        late = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=5)
        return late

    late = _run(twin, body)
    assert [u.message.text for u in late] == ["hello"]
    assert twin.callback_answers == [{"callback_query_id": "1", "text": "done", "show_alert": False}]
    assert twin.edits[0]["text"] == "Flattened."
    assert twin.sent_messages(555)[0]["text"] == "Flattened."
    with pytest.raises(ValueError, match="user_id"):
        twin.inject_message(-1, 555, "x")


def test_faults_429_500_slow_and_poison() -> None:
    twin = TelegramTwin()

    async def body(bot: Bot):  # noqa: ANN202
        twin.faults.add("429", 1, retry_after=7)
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(CHAT, "a")
        assert int(getattr(info.value.retry_after, "seconds", info.value.retry_after)) == 7
        twin.faults.add("500", 1)
        with pytest.raises(NetworkError):
            await bot.send_message(CHAT, "b")
        twin.faults.add("slow", 1, delay_s=0.5)
        with pytest.raises(TimedOut):
            await bot.send_message(CHAT, "c", read_timeout=0.2)
        twin.faults.poison("POISON")
        for _ in range(2):
            with pytest.raises(BadRequest, match="(?i)poisoned"):
                await bot.send_message(CHAT, "a POISON pill")
        sent = await bot.send_message(CHAT, "d")
        # the slow call is still sleeping in the twin: wait for it to land before the twin stops
        deadline = asyncio.get_running_loop().time() + 30
        while len(twin.sent_messages(CHAT)) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return sent

    last = _run(twin, body)
    # the slow call was served after its delay (the client had given up): Telegram would have sent it too
    assert sorted(m["text"] for m in twin.sent_messages(CHAT)) == ["c", "d"]
    assert last.text == "d"
    assert twin.faults.pending() == 0


def test_threaded_server_for_sync_callers() -> None:
    twin = TelegramTwin()
    port = twin.start_in_thread()
    try:

        async def main():  # noqa: ANN202
            bot = Bot(DEFAULT_TOKEN, base_url=f"http://127.0.0.1:{port}/bot")
            async with bot:
                return await bot.send_message(CHAT, "from another loop")

        assert asyncio.run(main()).text == "from another loop"
        assert len(twin.sent_messages(CHAT)) == 1
    finally:
        twin.stop_thread()


def test_html_check_matches_telegram_rules() -> None:
    assert check_html("<b>x</b> <i>y</i> &lt; &amp;") is None
    assert check_html("<b>x</i>") is not None
    assert check_html("a & b") is not None
