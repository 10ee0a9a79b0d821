"""Telegram transport of the admin control: python-telegram-bot long polling + the alert push.

The transport holds no rules: every text message and button press goes to the
:class:`~quanticity.admin.controller.AdminController` with the sender's numeric user id, and the
controller decides. A refused or foreign button press is answered only to the presser (a popup),
so a stranger in a group chat can never wipe the admin's buttons; a settled question replaces the
message that carried the buttons.

:class:`AlertPusher` forwards the durable ``system:alerts`` stream (overseer, risk gate) to the
admin chat. Its cursor advances only after Telegram accepted a message, so an alert raised while
Telegram is unreachable is delivered later — at-least-once: a crash between the send and the
cursor write repeats one alert rather than losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

import redis
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from quanticity import keys
from quanticity.admin.controller import NOT_AUTHORISED, AdminController
from quanticity.admin.replies import Reply
from quanticity.overseer.counters import Counters

log = logging.getLogger(__name__)

_LEVEL_MARK = {"CRITICAL": "🚨", "HALT": "🚨", "WARNING": "⚠️", "WARN": "⚠️"}
_MAX_TEXT = 4096


def markup(reply: Reply) -> InlineKeyboardMarkup | None:
    """The inline keyboard of ``reply`` (None without buttons)."""
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.text, callback_data=b.data) for b in row] for row in reply.buttons]
    )


class TelegramAdminBot:
    """Feeds Telegram updates to the controller and sends its replies."""

    def __init__(
        self,
        controller: AdminController,
        token: str,
        base_url: str | None = None,
        poll_timeout_s: float = 10.0,
    ) -> None:
        self.controller = controller
        builder = Application.builder().token(token)
        if base_url is not None:  # the loopback twin (or a self-hosted Bot API server)
            builder = builder.base_url(f"{base_url}/bot").base_file_url(f"{base_url}/file/bot")
        self.app: Application = builder.build()
        self.app.add_handler(MessageHandler(filters.TEXT, self._on_text))
        self.app.add_handler(CallbackQueryHandler(self._on_callback))
        self.app.add_error_handler(self._on_error)
        self._poll_timeout_s = poll_timeout_s
        self.counters = controller.counters

    async def start(self) -> None:
        """Connect and start long polling (``getUpdates``)."""
        await self.app.initialize()
        await self.app.start()
        assert self.app.updater is not None  # built by ApplicationBuilder unless disabled
        await self.app.updater.start_polling(poll_interval=0.0, timeout=int(self._poll_timeout_s))

    async def stop(self) -> None:
        """Stop polling and release the HTTP connections."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    async def send(self, chat_id: int, reply: Reply) -> int:
        """Send ``reply`` to ``chat_id``; returns the message id."""
        message = await self.app.bot.send_message(chat_id, reply.text[:_MAX_TEXT], reply_markup=markup(reply))
        return message.message_id

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.text is None:
            return
        reply = await self.controller.handle_command(user.id, message.chat_id, message.text)
        await message.reply_text(reply.text[:_MAX_TEXT], reply_markup=markup(reply))

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or query.from_user is None:
            return
        message = query.message
        chat_id = message.chat.id if message is not None else 0
        message_id = message.message_id if message is not None else 0
        reply = await self.controller.handle_callback(query.from_user.id, chat_id, message_id, query.data or "")
        if reply.settles and message is not None:
            await query.answer()
            await context.bot.edit_message_text(
                reply.text[:_MAX_TEXT], chat_id=chat_id, message_id=message_id, reply_markup=markup(reply)
            )
        else:
            await query.answer(reply.text[:200], show_alert=reply.text != NOT_AUTHORISED)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.counters.add("transport.errors")
        log.error("telegram handler failed", extra={"error": repr(context.error)})


class _StreamToAdmin(ABC):
    """Follows one Redis stream from a persisted cursor and sends the admin chat a message per entry.

    The cursor advances only after Telegram accepted the message (or the entry needed none), so an
    entry written while Telegram is unreachable goes out later — at-least-once: a crash between the
    send and the cursor write repeats one message rather than losing it. Counters are named
    ``<prefix>.<sent_counter>``, ``<prefix>.skipped``, ``<prefix>.push_failed``, ``<prefix>.read_failed``.
    """

    stream: str
    cursor_key: str
    prefix: str
    sent_counter: str

    def __init__(
        self,
        client: redis.Redis,
        bot: TelegramAdminBot,
        admin_chat_id: int,
        counters: Counters | None = None,
        batch: int = 100,
    ) -> None:
        self._client = client
        self._bot = bot
        self._chat_id = admin_chat_id
        self.counters = counters or Counters()
        self._batch = batch

    @abstractmethod
    async def _message(self, entry_id: str, fields: dict[str, str]) -> Reply | None:
        """The message for one entry, or None when it needs none (counted as skipped)."""

    async def push_pending(self) -> int:
        """Send a message for every entry after the cursor; returns how many were sent. Stops at the first failure."""
        cursor = await asyncio.to_thread(self._client.get, self.cursor_key) or "0-0"
        entries = await asyncio.to_thread(self._client.xrange, self.stream, f"({cursor}", "+", self._batch)
        sent = 0
        for entry_id, fields in entries:
            reply = await self._message(entry_id, fields)
            if reply is None:
                self.counters.add(f"{self.prefix}.skipped")
            else:
                try:
                    await self._bot.send(self._chat_id, reply)
                except TelegramError as exc:
                    self.counters.add(f"{self.prefix}.push_failed")
                    log.warning(
                        "admin push failed; will retry",
                        extra={"stream": self.stream, "error": str(exc), "entry": entry_id},
                    )
                    return sent
                sent += 1
                self.counters.add(f"{self.prefix}.{self.sent_counter}")
            await asyncio.to_thread(self._client.set, self.cursor_key, entry_id)
        return sent

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Push until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.push_pending()
            except redis.RedisError as exc:
                self.counters.add(f"{self.prefix}.read_failed")
                log.warning("admin stream unreadable", extra={"stream": self.stream, "error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


class AlertPusher(_StreamToAdmin):
    """Pushes new ``system:alerts`` entries of the configured levels to the admin chat."""

    stream = keys.ALERTS
    cursor_key = keys.ADMIN_ALERTS_CURSOR
    prefix = "alerts"
    sent_counter = "pushed"

    def __init__(
        self,
        client: redis.Redis,
        bot: TelegramAdminBot,
        admin_chat_id: int,
        levels: frozenset[str],
        counters: Counters | None = None,
        batch: int = 100,
    ) -> None:
        super().__init__(client, bot, admin_chat_id, counters, batch)
        self._levels = levels

    async def _message(self, entry_id: str, fields: dict[str, str]) -> Reply | None:
        level = str(fields.get("level", "")).upper()
        if level not in self._levels:
            return None
        return Reply(f"{_LEVEL_MARK.get(level, 'ℹ️')} {level}: {fields.get('text', '')}")


class ApprovalRequestPusher(_StreamToAdmin):
    """Puts the risk gate's approval requests in front of the admin: a message with Approve/Reject buttons.

    The gate parks a high-risk entry and appends a request to ``system:risk:approvals:requests``
    (see :mod:`quanticity.risk.approvals`). Each request becomes an item of the admin's
    :class:`~quanticity.admin.pending.ApprovalBook` named by the order reference — so a request
    repeated after a crash is the same item, decided once — and a message to the admin chat. A
    request whose entry is no longer parked (it timed out meanwhile) is skipped; a malformed one is
    counted (``approvals.malformed``), logged and skipped.
    """

    stream = keys.RISK_APPROVAL_REQUESTS
    cursor_key = keys.ADMIN_APPROVAL_REQUESTS_CURSOR
    prefix = "approvals"
    sent_counter = "requested"

    async def _message(self, entry_id: str, fields: dict[str, str]) -> Reply | None:
        order_ref = str(fields.get("order_ref", ""))
        if not await asyncio.to_thread(self._client.hexists, keys.RISK_APPROVALS_PARKED, order_ref):
            return None
        try:
            _, reply = self._bot.controller.request_approval(
                "trade",
                str(fields.get("summary", "")),
                {"order_ref": order_ref},
                approval_id=order_ref,
                expires_ns=int(fields.get("deadline_ns", "")),
            )
        except ValueError as exc:  # a malformed request: nothing to ask
            self.counters.add("approvals.malformed")
            log.error("approval request unusable", extra={"entry": entry_id, "error": str(exc)})
            return None
        return reply
