"""Admin actor: a thin shell running the Telegram admin bot and the alert push (SPEC §13).

It long-polls Telegram with python-telegram-bot (:class:`~quanticity.admin.telegram.TelegramAdminBot`)
and hands every message and button press to the :class:`~quanticity.admin.controller.AdminController`,
which checks the allow-list, audits and acts ONLY through :class:`~actors.ops_control.SupervisorControl`
(the RootSupervisor's emergency, universe and strategy enable/disable methods) and
:class:`~actors.ops_control.RiskGateControl` (the risk actor's ``set_state``). The
:class:`~quanticity.admin.telegram.AlertPusher` forwards ``system:alerts`` (overseer, risk gate,
emergencies, the daily summary) to the admin chat from a persisted cursor; the
:class:`~quanticity.admin.telegram.ApprovalRequestPusher` does the same for the risk gate's parked
high-risk entries, as messages with Approve/Reject buttons (``ops.admin.approvals``).

Without the bot token in the environment (``ops.admin.bot_token_env``) the actor stays up but idle
(``bot_running`` 0 in its heartbeat) — a deployment without Telegram still runs. Pending
confirmations and approvals live in Redis, so a restarted admin actor loses neither.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import ray

from actors.common import STALL_LIMIT_S, ActorShell
from actors.ops_control import RiskGateControl, SupervisorControl
from quanticity.admin.audit import AdminAudit
from quanticity.admin.controller import AdminController
from quanticity.admin.pending import ApprovalBook, ConfirmationBook
from quanticity.admin.telegram import AlertPusher, ApprovalRequestPusher, TelegramAdminBot
from quanticity.config.models import QuanticityConfig
from quanticity.overseer.counters import Counters
from quanticity.session import RunSpec

START_TIMEOUT_S = 30.0
POLL_TIMEOUT_S = 2.0
"""Seconds one getUpdates long poll may wait (short: a stop does not wait long for it)."""


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class AdminActor(ActorShell):
    """Shell over the admin controller, its Telegram transport and the alert pusher."""

    kind = "admin"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        ops = config.ops
        admin = ops.admin
        self.counters = Counters()
        system = SupervisorControl(self.peers, self.redis, self.clock)
        self.controller = AdminController(
            admin,
            system,
            RiskGateControl(self.peers),
            AdminAudit(self.redis, self.clock),
            ApprovalBook(self.redis, self.clock, admin.approval_ttl_s),
            ConfirmationBook(self.redis, self.clock, admin.confirm_ttl_s),
            self.counters,
        )
        self.bot: TelegramAdminBot | None = None
        self.pusher: AlertPusher | None = None
        self.requests: ApprovalRequestPusher | None = None
        self.loop_wall_ns = 0
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="admin-loop", daemon=True)
        self._loop_thread.start()
        token = os.environ.get(admin.bot_token_env, "").strip()
        if not token:
            self.log.warning("admin bot idle: bot token not set", extra={"variable": admin.bot_token_env})
            return
        if not admin.allowed_user_ids:
            self.log.warning("admin bot has an empty allow-list: every command will be refused")
        self.bot = TelegramAdminBot(self.controller, token, base_url=ops.admin_api_base, poll_timeout_s=POLL_TIMEOUT_S)
        asyncio.run_coroutine_threadsafe(self.bot.start(), self.loop).result(START_TIMEOUT_S)
        if admin.admin_chat_id is not None:
            self.pusher = AlertPusher(self.redis, self.bot, admin.admin_chat_id, admin.push_levels, self.counters)
            asyncio.run_coroutine_threadsafe(self.pusher.run(self._stop, admin.poll_interval_s), self.loop)
            # the risk gate's high-risk entries, as messages with Approve/Reject buttons
            self.requests = ApprovalRequestPusher(self.redis, self.bot, admin.admin_chat_id, self.counters)
            asyncio.run_coroutine_threadsafe(self.requests.run(self._stop, admin.poll_interval_s), self.loop)
        elif admin.approvals.enabled:
            self.log.warning("approvals enabled but no admin chat: parked entries will time out unseen")
        asyncio.run_coroutine_threadsafe(self._beat(), self.loop)

    async def _beat(self) -> None:
        """Proves the event loop turns (ping reports a stalled loop as unhealthy)."""
        while not self._stop.is_set():
            self.loop_wall_ns = time.time_ns()
            self.events = int(self.counters.get("commands") + self.counters.get("callbacks"))
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        """Stop polling Telegram and pushing alerts."""
        self.loop.call_soon_threadsafe(self._stop.set)
        if self.bot is not None:
            asyncio.run_coroutine_threadsafe(self.bot.stop(), self.loop).result(START_TIMEOUT_S)

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        stalled_s = (time.time_ns() - self.loop_wall_ns) / 1e9 if self.loop_wall_ns else 0.0
        if stalled_s > STALL_LIMIT_S:
            raise RuntimeError(f"admin loop stalled for {stalled_s:.0f} s")
        return super().ping()

    def stats(self) -> dict[str, float]:
        values = self.counters.snapshot()
        return {
            "bot_running": float(self.bot is not None),
            "commands": values.get("commands", 0.0),
            "callbacks": values.get("callbacks", 0.0),
            "refused": values.get("refused", 0.0),
            "rejected": values.get("rejected", 0.0),
            "admin_errors": values.get("errors", 0.0),
            "alerts_pushed": values.get("alerts.pushed", 0.0),
            "approvals_requested": values.get("approvals.requested", 0.0),
            "actions": sum(v for k, v in values.items() if k.startswith("callbacks.") or k.startswith("commands.")),
        }
