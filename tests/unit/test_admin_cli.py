"""``quanticity admin`` against a real admin bot: the command, then the press of its Confirm button.

The CLI talks to the running session's Telegram twin over its control endpoints (another process
in real use), so ``/halt`` and ``/flatten`` — which only ask — can be confirmed from a shell too.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from quanticity.admin.audit import AdminAudit
from quanticity.admin.config import AdminConfig
from quanticity.admin.controller import AdminController
from quanticity.admin.pending import ApprovalBook, ConfirmationBook
from quanticity.admin.telegram import TelegramAdminBot
from quanticity.clock import SimulatedClock
from quanticity.sim.telegram_server import DEFAULT_TOKEN, TelegramTwin
from supervisors import ops_run
from tests.unit.test_admin_controller import ADMIN, CHAT, T0, MemoryRisk, MemorySystem

pytestmark = pytest.mark.unit


def test_admin_cli_confirms_a_halt_by_pressing_the_button(
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        twin = TelegramTwin()
        await twin.start()
        clock = SimulatedClock(T0)
        config = AdminConfig(allowed_user_ids=frozenset({ADMIN}), admin_chat_id=CHAT)
        risk = MemoryRisk()
        controller = AdminController(
            config,
            MemorySystem(risk),
            risk,
            AdminAudit(redis_client, clock),
            ApprovalBook(redis_client, clock, config.approval_ttl_s),
            ConfirmationBook(redis_client, clock, config.confirm_ttl_s),
        )
        bot = TelegramAdminBot(controller, DEFAULT_TOKEN, base_url=twin.base_url, poll_timeout_s=1)
        twins_file = tmp_path / "twins.json"
        twins_file.write_text(json.dumps({"telegram": twin.base_url, "admin_user_id": ADMIN, "admin_chat_id": CHAT}))
        monkeypatch.setattr(ops_run, "TWINS_FILE", twins_file)
        await bot.start()
        try:
            asked = await asyncio.to_thread(ops_run.talk_to_admin_bot, "/halt drill", None, 15.0)
            assert len(asked) == 1 and "HALT trading" in asked[0] and risk.state != "HALTED"
            cancelled = await asyncio.to_thread(ops_run.talk_to_admin_bot, "/halt drill", None, 15.0, "Cancel")
            assert risk.state != "HALTED" and len(cancelled) == 2, cancelled
            confirmed = await asyncio.to_thread(ops_run.talk_to_admin_bot, "/halt drill", None, 15.0, "Confirm")
            assert risk.state == "HALTED" and "HALTED" in confirmed[-1], confirmed
            with pytest.raises(RuntimeError, match="no button labelled 'Approve'"):
                await asyncio.to_thread(ops_run.talk_to_admin_bot, "/halt again", None, 15.0, "Approve")
        finally:
            await bot.stop()
            await twin.stop()

    asyncio.run(main())
