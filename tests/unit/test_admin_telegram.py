"""The admin control over the real python-telegram-bot, long-polling the Telegram Bot API twin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis

from quanticity import keys
from quanticity.admin.audit import AdminAudit
from quanticity.admin.config import AdminConfig
from quanticity.admin.controller import NOT_AUTHORISED, AdminController
from quanticity.admin.pending import ApprovalBook, ConfirmationBook
from quanticity.admin.telegram import AlertPusher, TelegramAdminBot
from quanticity.clock import SimulatedClock
from quanticity.overseer.alerts import RedisAdminAlerts
from quanticity.sim.telegram_server import DEFAULT_TOKEN, TelegramTwin
from tests.unit.test_admin_controller import ADMIN, CHAT, STRANGER, T0, MemoryRisk, MemorySystem

pytestmark = pytest.mark.unit


async def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_commands_buttons_and_alert_push_over_telegram(redis_client: redis.Redis) -> None:
    async def main() -> None:
        twin = TelegramTwin()
        await twin.start()
        clock = SimulatedClock(T0)
        config = AdminConfig(allowed_user_ids=frozenset({ADMIN}), admin_chat_id=CHAT)
        risk = MemoryRisk()
        system = MemorySystem(risk)
        audit = AdminAudit(redis_client, clock)
        controller = AdminController(
            config,
            system,
            risk,
            audit,
            ApprovalBook(redis_client, clock, config.approval_ttl_s),
            ConfirmationBook(redis_client, clock, config.confirm_ttl_s),
        )
        bot = TelegramAdminBot(controller, DEFAULT_TOKEN, base_url=twin.base_url, poll_timeout_s=1)
        await bot.start()
        try:
            sent = lambda: twin.sent_messages(CHAT)  # noqa: E731

            twin.inject_message(STRANGER, CHAT, "/halt")
            await _until(lambda: len(sent()) == 1, "the refusal")
            assert sent()[0]["text"] == NOT_AUTHORISED and risk.calls == []

            twin.inject_message(ADMIN, CHAT, "/halt drill")
            await _until(lambda: len(sent()) == 2, "the halt question")
            question = sent()[1]
            assert risk.calls == [] and "HALT trading" in question["text"]
            confirm = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            twin.inject_callback(STRANGER, CHAT, question["message_id"], confirm)
            await _until(lambda: len(twin.callback_answers) == 1, "the stranger's popup on halt")
            assert risk.calls == [] and twin.edits == []
            twin.inject_callback(ADMIN, CHAT, question["message_id"], confirm)
            await _until(lambda: len(twin.edits) == 1, "the settled halt")
            assert risk.state == "HALTED" and "HALTED" in twin.edits[0]["text"]
            assert twin.edits[0]["message_id"] == question["message_id"]
            await risk.set_state("ACTIVE", "drill over")

            twin.inject_message(ADMIN, CHAT, "/flatten")
            await _until(lambda: len(sent()) == 3, "the flatten question")
            question = sent()[2]
            confirm = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            twin.inject_callback(STRANGER, CHAT, question["message_id"], confirm)
            await _until(lambda: len(twin.callback_answers) == 3, "the stranger's popup on flatten")
            assert system.calls == [] and len(twin.edits) == 1
            twin.inject_callback(ADMIN, CHAT, question["message_id"], confirm)
            await _until(lambda: len(twin.edits) == 2, "the settled flatten")
            assert "Flatten sent. Trading HALTED" in twin.edits[1]["text"]
            assert [c[0] for c in system.calls] == ["flatten"]

            alerts = RedisAdminAlerts(redis_client, clock)
            await alerts.alert("CRITICAL", "ibkr heartbeat 61 s old; trading HALTED")
            await alerts.alert("INFO", "not for the admin")
            redis_client.xadd(keys.ALERTS, {"level": "WARN", "text": "daily loss 4.1%", "ts": T0})
            pusher = AlertPusher(redis_client, bot, CHAT, config.push_levels)
            assert await pusher.push_pending() == 2
            assert await pusher.push_pending() == 0  # the cursor moved past them
            texts = [m["text"] for m in sent()[3:]]
            assert texts == ["🚨 CRITICAL: ibkr heartbeat 61 s old; trading HALTED", "⚠️ WARN: daily loss 4.1%"]

            twin.faults.add("500", methods={"sendmessage"})
            await alerts.alert("CRITICAL", "second alert")
            assert await pusher.push_pending() == 0  # Telegram failed: kept for the next round
            assert await pusher.push_pending() == 1 and sent()[-1]["text"].endswith("second alert")
        finally:
            await bot.stop()
            await twin.stop()
        outcomes = [(e["kind"], e["outcome"]) for e in audit.entries()]
        assert outcomes == [
            ("command", "refused"),
            ("command", "ok"),
            ("callback", "refused"),
            ("callback", "halted"),
            ("command", "ok"),
            ("callback", "refused"),
            ("callback", "flattened"),
        ]

    asyncio.run(main())
