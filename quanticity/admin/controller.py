"""The admin control core (SPEC §13), transport-agnostic: text and button presses in, replies out.

Order of every handling, for commands and callbacks alike:
1. the sender's numeric user id must be on the allow-list — otherwise nothing is done, the attempt
   is audited as ``refused`` and the stranger learns nothing but "not authorised";
2. the input is parsed and validated — bad input is audited as ``rejected`` with the reason;
3. the action goes through :class:`SystemControl` / :class:`RiskControl` only;
4. the outcome (``ok``, ``error`` …) is audited before the reply is returned.

The destructive commands, /halt and /flatten, are two-step: they only create a single-use
confirmation bound to the asking admin and chat (carrying the reason), expiring after
``confirm_ttl_s``; the Confirm button of anyone else, or a late one, does nothing. A confirmed
halt sets the gate HALTED; a confirmed flatten is the supervisor's emergency flatten (HALTED
first, so no new entry races it, then cancel every working order and sell every position).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from quanticity.admin import commands
from quanticity.admin.audit import AdminAudit
from quanticity.admin.commands import CommandError
from quanticity.admin.config import AdminConfig
from quanticity.admin.pending import Approval, ApprovalBook, ConfirmationBook
from quanticity.admin.protocols import RiskControl, SystemControl
from quanticity.admin.replies import Button, Reply
from quanticity.overseer.counters import Counters

log = logging.getLogger(__name__)

HELP = (
    "Commands:\n"
    "/status · /positions · /pnl\n"
    "/halt [reason] · /flatten (both ask you to confirm)\n"
    "/resume · /reduce\n"
    "/approve [id] · /reject [id]\n"
    "/strategy enable|disable NAME\n"
    "/universe add|remove SYMBOL\n"
    "/report now"
)
NOT_AUTHORISED = "⛔ Not authorised."


class AdminController:
    """Handles admin commands and inline-button callbacks."""

    def __init__(
        self,
        config: AdminConfig,
        system: SystemControl,
        risk: RiskControl,
        audit: AdminAudit,
        approvals: ApprovalBook,
        confirmations: ConfirmationBook,
        counters: Counters | None = None,
    ) -> None:
        self.config = config
        self.counters = counters or Counters()
        self._system = system
        self._risk = risk
        self._audit = audit
        self._approvals = approvals
        self._confirmations = confirmations
        self._commands: dict[str, Callable[[int, int, list[str]], Awaitable[Reply]]] = {
            "start": self._help,
            "help": self._help,
            "status": self._status,
            "positions": self._positions,
            "pnl": self._pnl,
            "halt": self._halt,
            "resume": self._resume,
            "reduce": self._reduce,
            "flatten": self._flatten,
            "approve": self._approve_cmd,
            "reject": self._reject_cmd,
            "strategy": self._strategy,
            "universe": self._universe,
            "report": self._report,
        }

    def authorised(self, user_id: int) -> bool:
        """True for an allow-listed numeric user id."""
        return user_id in self.config.allowed_user_ids

    # --- entry points ---------------------------------------------------------------------------
    async def handle_command(self, user_id: int, chat_id: int, text: str) -> Reply:
        """Answer one command message."""
        self.counters.add("commands")
        if not self.authorised(user_id):
            return self._refuse(user_id, chat_id, "command", text)
        try:
            name, args = commands.parse(text)
            handler = self._commands.get(name)
            if handler is None:
                raise CommandError(f"command: /{name} is unknown\n{HELP}")
            self.counters.add(f"commands.{name}")
            reply = await handler(user_id, chat_id, args)
        except CommandError as exc:
            return self._rejected(user_id, chat_id, "command", text, str(exc))
        except Exception as exc:  # a control call failed: report it, never crash the bot
            return self._failed(user_id, chat_id, "command", text, exc)
        self._audit.record(user_id, chat_id, "command", text, text.split()[0], "ok", reply.text)
        return reply

    async def handle_callback(self, user_id: int, chat_id: int, message_id: int, data: str) -> Reply:
        """Answer one inline-button press (``message_id`` is the message that carried the button)."""
        self.counters.add("callbacks")
        if not self.authorised(user_id):
            return self._refuse(user_id, chat_id, "callback", data)
        try:
            action, _, ident = data.partition(":")
            if action == "cf":
                reply, outcome = await self._confirm_answer(user_id, chat_id, ident)
            elif action in ("ap", "rj"):
                reply, outcome = self._decide(user_id, ident, approved=action == "ap")
            else:
                raise CommandError(f"callback: {data[:64]!r} is not a known button")
        except CommandError as exc:
            return self._rejected(user_id, chat_id, "callback", data, str(exc))
        except Exception as exc:
            return self._failed(user_id, chat_id, "callback", data, exc)
        self.counters.add(f"callbacks.{outcome}")
        self._audit.record(user_id, chat_id, "callback", data, action, outcome, f"message {message_id}: {reply.text}")
        return reply

    def request_approval(
        self,
        kind: str,
        summary: str,
        payload: dict[str, Any] | None = None,
        approval_id: str | None = None,
        expires_ns: int | None = None,
    ) -> tuple[Approval, Reply]:
        """Queue an item for approval; returns it and the message (with buttons) to push to the admin chat.

        ``approval_id``/``expires_ns``: see :meth:`ApprovalBook.submit` (the risk gate's parked trades)."""
        item = self._approvals.submit(kind, summary, payload, approval_id, expires_ns)
        self._audit.record(
            0, self.config.admin_chat_id or 0, "system", summary, "approval_requested", "ok", item.approval_id
        )
        return item, self._approval_reply(item)

    # --- outcomes -------------------------------------------------------------------------------
    def _refuse(self, user_id: int, chat_id: int, kind: str, text: str) -> Reply:
        self.counters.add("refused")
        self._audit.record(user_id, chat_id, kind, text, "-", "refused", "user id not on the allow-list")
        log.warning("admin input refused", extra={"user_id": user_id, "chat_id": chat_id, "kind": kind})
        return Reply(NOT_AUTHORISED)

    def _rejected(self, user_id: int, chat_id: int, kind: str, text: str, reason: str) -> Reply:
        self.counters.add("rejected")
        self._audit.record(user_id, chat_id, kind, text, "-", "rejected", reason)
        return Reply(f"❓ {reason}")

    def _failed(self, user_id: int, chat_id: int, kind: str, text: str, exc: Exception) -> Reply:
        self.counters.add("errors")
        detail = f"{type(exc).__name__}: {exc}"
        self._audit.record(user_id, chat_id, kind, text, "-", "error", detail)
        log.error("admin action failed", extra={"text": text, "error": detail})
        return Reply(f"⚠️ Failed: {detail}")

    # --- commands -------------------------------------------------------------------------------
    async def _help(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        return Reply(HELP)

    async def _status(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        state = await self._risk.trading_state()
        facts = await self._system.status()
        pending = len(self._approvals.pending())
        lines = [f"Trading: {state}", *(f"{k}: {v}" for k, v in facts.items()), f"Pending approvals: {pending}"]
        return Reply("\n".join(lines))

    async def _positions(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        positions = await self._system.positions()
        if not positions:
            return Reply("No open positions.")
        lines = [
            f"{p.contract} × {p.quantity} @ {p.avg_price:.2f}"
            + (f" (mark {p.mark:.2f}, {p.unrealized:+,.2f})" if p.mark is not None else "")
            for p in positions
        ]
        return Reply("Open positions:\n" + "\n".join(lines))

    async def _pnl(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        pnl = await self._system.pnl()
        lines = [
            f"Realized: {pnl.realized:+,.2f}",
            f"Unrealized: {pnl.unrealized:+,.2f}",
            f"Total: {pnl.realized + pnl.unrealized:+,.2f}",
            *(f"  {name}: {value:+,.2f}" for name, value in sorted(pnl.by_strategy.items())),
        ]
        return Reply("\n".join(lines))

    async def _set_state(self, state: str, user_id: int, args: list[str], default: str) -> Reply:
        reason = f"admin {user_id}: {' '.join(args) or default}"
        new_state = await self._risk.set_state(state, reason)
        return Reply(f"Trading state: {new_state} ({reason})")

    async def _halt(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        reason = f"admin {user_id}: {' '.join(args) or 'manual halt'}"
        return self._ask("halt", user_id, chat_id, reason, f"⚠️ HALT trading ({reason})? Only cancels will pass.")

    async def _resume(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        return await self._set_state("ACTIVE", user_id, args, "manual resume")

    async def _reduce(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        return await self._set_state("REDUCING", user_id, args, "manual reduce")

    async def _flatten(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        reason = f"admin {user_id}: flatten"
        return self._ask("flatten", user_id, chat_id, reason, "⚠️ Flatten ALL positions and cancel all orders?")

    def _ask(self, action: str, user_id: int, chat_id: int, reason: str, question: str) -> Reply:
        """A destructive command only asks: a single-use confirmation bound to this admin and chat,
        carrying the reason, answered by :meth:`_confirm_answer` (one handler for every such command)."""
        item = self._confirmations.create(action, user_id, chat_id, reason)
        ttl = int(self.config.confirm_ttl_s)
        return Reply(
            f"{question} Confirm within {ttl} s.",
            ((Button(f"✅ Confirm {action}", f"cf:ok:{item.token}"), Button("✖ Cancel", f"cf:no:{item.token}")),),
        )

    async def _confirm_answer(self, user_id: int, chat_id: int, ident: str) -> tuple[Reply, str]:
        """The Confirm/Cancel press of any confirmation; what is done is read from the stored token."""
        verb, _, token = ident.partition(":")
        if verb not in ("ok", "no") or not token:
            raise CommandError(f"callback: confirmation button {ident[:40]!r} is malformed")
        status, item = self._confirmations.consume(token, user_id, chat_id)
        if status == "foreign":
            return Reply("⛔ This confirmation belongs to another admin or chat; nothing done."), "foreign"
        if status == "expired" and item is not None:
            return Reply(f"⌛ Confirmation expired; nothing done. Send /{item.action} again.", settles=True), "expired"
        if status != "ok" or item is None:
            return Reply("Confirmation already used or unknown; nothing done.", settles=True), "unknown"
        if verb == "no":
            return Reply(f"{item.action.capitalize()} cancelled.", settles=True), "cancelled"
        if item.action == "halt":
            state = await self._risk.set_state("HALTED", item.detail)
            return Reply(f"🛑 Trading state: {state} ({item.detail})", settles=True), "halted"
        if item.action == "flatten":
            # the supervisor's emergency path sets HALTED first, then cancels and closes everything;
            # the reply reports the state the gate is really in afterwards
            summary = await self._system.flatten(item.detail)
            state = await self._risk.trading_state()
            return Reply(f"🧯 Flatten sent. Trading {state}; {summary}", settles=True), "flattened"
        raise CommandError(f"callback: confirmation of {item.action!r} has no action")

    async def _approve_cmd(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        return self._decision_cmd(user_id, args, approved=True)

    async def _reject_cmd(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        return self._decision_cmd(user_id, args, approved=False)

    def _decision_cmd(self, user_id: int, args: list[str], approved: bool) -> Reply:
        if args:
            reply, _ = self._decide(user_id, args[0], approved)
            return reply
        pending = self._approvals.pending()
        if not pending:
            return Reply("Nothing awaiting approval.")
        rows = tuple(
            (Button(f"✅ {p.approval_id}", f"ap:{p.approval_id}"), Button(f"❌ {p.approval_id}", f"rj:{p.approval_id}"))
            for p in pending
        )
        text = "Awaiting approval:\n" + "\n".join(f"{p.approval_id} [{p.kind}] {p.summary}" for p in pending)
        return Reply(text, rows)

    def _decide(self, user_id: int, approval_id: str, approved: bool) -> tuple[Reply, str]:
        if not approval_id or len(approval_id) > 32 or not approval_id.isalnum():
            raise CommandError(f"id: {approval_id[:40]!r} is not an approval id")
        status, item = self._approvals.decide(approval_id, approved, user_id)
        if status == "unknown" or item is None:
            return Reply(f"No pending item {approval_id} (already decided or unknown).", settles=True), "unknown"
        if status == "expired":
            late = f"⌛ {item.kind} {approval_id} expired before a decision; nothing was approved or rejected."
            return Reply(late, settles=True), "expired"
        verdict = "approved" if approved else "rejected"
        mark = "✅" if approved else "❌"
        return Reply(f"{mark} {item.kind} {approval_id} {verdict}: {item.summary}", settles=True), verdict

    def _approval_reply(self, item: Approval) -> Reply:
        return Reply(
            f"🔔 {item.kind.upper()} — approval required\nID: {item.approval_id}\n{item.summary}",
            ((Button("✅ Approve", f"ap:{item.approval_id}"), Button("❌ Reject", f"rj:{item.approval_id}")),),
        )

    async def _strategy(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        verb = commands.choice("action", args[0] if args else None, ("enable", "disable"))
        if len(args) != 2:
            raise CommandError("usage: /strategy enable|disable NAME")
        name = commands.strategy(args[1])
        known = await self._system.set_strategy_enabled(name, verb == "enable")
        if not known:
            raise CommandError(f"strategy: {name!r} is not a configured strategy")
        return Reply(f"Strategy {name} {verb}d.")

    async def _universe(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        verb = commands.choice("action", args[0] if args else None, ("add", "remove"))
        if len(args) != 2:
            raise CommandError("usage: /universe add|remove SYMBOL")
        ticker = commands.symbol(args[1])
        if verb == "add":
            return Reply(f"Universe: {ticker} {await self._system.add_symbol(ticker)}.")
        removed = await self._system.remove_symbol(ticker)
        return Reply(f"Universe: {ticker} {'removed' if removed else 'was not in the universe'}.")

    async def _report(self, user_id: int, chat_id: int, args: list[str]) -> Reply:
        commands.choice("when", args[0] if args else None, ("now",))
        return Reply(f"Report: {await self._system.request_report()}")
