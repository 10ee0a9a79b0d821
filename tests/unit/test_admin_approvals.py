"""High-risk entries wait for an admin: the gate parks them, a single allow-listed decision releases or
denies them, a timeout denies them; every step audited (real Redis, the real admin controller)."""

from __future__ import annotations

import asyncio

import pytest
import redis
from pydantic import ValidationError

from quanticity import keys
from quanticity.admin.audit import AdminAudit
from quanticity.admin.config import AdminConfig, ApprovalRule
from quanticity.admin.controller import NOT_AUTHORISED, AdminController
from quanticity.admin.pending import ApprovalBook, ConfirmationBook
from quanticity.admin.telegram import ApprovalRequestPusher, TelegramAdminBot
from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.config import load_config
from quanticity.messages import OrderIntent, Side, TradingState
from quanticity.risk.approvals import ApprovalDesk
from quanticity.risk.gate import Exposure, Reason, RiskGate
from quanticity.sim.telegram_server import DEFAULT_TOKEN, TelegramTwin
from tests.async_helpers import until
from tests.unit.test_admin_controller import ADMIN, CHAT, OTHER_ADMIN, STRANGER, MemoryRisk, MemorySystem
from tests.unit.test_risk_gate import gate as make_gate
from tests.unit.test_risk_gate import signal, ts

pytestmark = pytest.mark.unit

RULE = ApprovalRule(enabled=True, min_contracts=4, min_risk_pct=5.0, timeout_s=120)


class ApprovalRig:
    """The risk side (gate + approval desk) and the admin side (controller) on one Redis, one clock."""

    def __init__(self, client: redis.Redis, rule: ApprovalRule = RULE) -> None:
        self.client = client
        self.clock = SimulatedClock(ts("10:00"))
        self.gate: RiskGate = make_gate()
        self.desk = ApprovalDesk(client, rule, self.gate.config.account_equity)
        config = AdminConfig(allowed_user_ids=frozenset({ADMIN, OTHER_ADMIN}), admin_chat_id=CHAT, approvals=rule)
        self.audit = AdminAudit(client, self.clock)
        self.book = ApprovalBook(client, self.clock, config.approval_ttl_s)
        risk = MemoryRisk()
        self.controller = AdminController(
            config,
            MemorySystem(risk),
            risk,
            self.audit,
            self.book,
            ConfirmationBook(client, self.clock, config.confirm_ttl_s),
        )

    def approved_entry(self, sid: str = "s1") -> OrderIntent:
        """An entry the gate really approved (4 contracts of a 2.00/2.10 call at 2.06)."""
        decision, intent = self.gate.evaluate(signal(sid=sid, at=self.clock.now_ns()), Exposure(), self.clock.now_ns())
        assert decision.approved and intent is not None, decision
        return intent

    def park(self, sid: str = "s1") -> OrderIntent:
        """Judge, park, and ask the admin the way the admin actor does (the request stream → the book)."""
        intent = self.approved_entry(sid)
        why = self.desk.why(intent)
        assert why is not None
        decision = self.desk.park(intent, why, self.clock.now_ns())
        assert (decision.approved, decision.reason_code, decision.order_ref) == (
            False,
            Reason.PENDING_APPROVAL,
            intent.order_ref,
        )
        return intent

    def ask(self, order_ref: str):  # noqa: ANN201
        fields = next(f for _, f in self.client.xrange(keys.RISK_APPROVAL_REQUESTS) if f["order_ref"] == order_ref)
        return self.controller.request_approval(
            "trade", fields["summary"], {"order_ref": order_ref}, order_ref, int(fields["deadline_ns"])
        )

    def press(self, user: int, data: str):  # noqa: ANN201
        return asyncio.run(self.controller.handle_callback(user, CHAT, 9, data))


def test_the_rule_is_validated_and_read_from_ops_yaml() -> None:
    with pytest.raises(ValidationError, match="neither min_contracts nor min_risk_pct"):
        ApprovalRule(enabled=True)
    with pytest.raises(ValidationError, match="min_contracts"):
        ApprovalRule(enabled=True, min_contracts=0)
    with pytest.raises(ValidationError, match="timeout_s"):
        ApprovalRule(enabled=True, min_risk_pct=2.0, timeout_s=-1)
    with pytest.raises(ValidationError, match="max_contracts"):
        ApprovalRule.model_validate({"enabled": True, "max_contracts": 3})
    shipped = load_config().ops.admin.approvals
    assert shipped.enabled is False and shipped.min_contracts is not None and shipped.timeout_s > 0
    enabled = load_config(overrides={"ops": {"admin": {"approvals": {"enabled": True, "min_risk_pct": 2.5}}}})
    assert enabled.ops.admin.approvals.min_risk_pct == 2.5


def test_which_entries_are_high_risk(redis_client: redis.Redis) -> None:
    rig = ApprovalRig(redis_client)
    intent = rig.approved_entry()
    assert intent.quantity == 4
    assert rig.desk.why(intent) == "4 contracts ≥ 4"
    small = ApprovalDesk(redis_client, ApprovalRule(enabled=True, min_contracts=5), 100_000.0)
    assert small.why(intent) is None
    by_risk = ApprovalDesk(redis_client, ApprovalRule(enabled=True, min_risk_pct=0.8), 100_000.0)
    assert by_risk.why(intent) == "0.82% of equity at risk ≥ 0.8%"  # 4 × 2.06 × 100 of 100,000
    exit_intent = OrderIntent(**{**_fields(intent), "side": Side.SELL})
    assert rig.desk.why(exit_intent) is None  # an exit never waits for a person
    assert ApprovalDesk(redis_client, ApprovalRule(), 100_000.0).why(intent) is None  # off by default


def _fields(intent: OrderIntent) -> dict:
    return {f: getattr(intent, f) for f in intent.__struct_fields__}


def test_a_parked_entry_is_asked_once_and_released_by_one_allow_listed_press(redis_client: redis.Redis) -> None:
    rig = ApprovalRig(redis_client)
    intent = rig.park()
    rig.desk.park(intent, "replayed", rig.clock.now_ns())  # the same signal re-judged after a restart
    assert redis_client.xlen(keys.RISK_APPROVAL_REQUESTS) == 1 and rig.desk.parked == 1
    approval, message = rig.ask(intent.order_ref)
    again, _ = rig.ask(intent.order_ref)  # a request repeated after a crash is the same item
    assert approval.approval_id == again.approval_id == intent.order_ref
    assert [b.data for b in message.buttons[0]] == [f"ap:{intent.order_ref}", f"rj:{intent.order_ref}"]
    assert "BUY 4 SPY 2026-12-04 600.00 C @ 2.06" in message.text and "4 contracts ≥ 4" in message.text

    assert rig.press(STRANGER, f"ap:{intent.order_ref}").text == NOT_AUTHORISED
    assert rig.desk.settle(rig.gate, rig.clock.now_ns()) == []  # the stranger decided nothing
    assert "approved" in rig.press(ADMIN, f"ap:{intent.order_ref}").text
    assert "already decided" in rig.press(OTHER_ADMIN, f"rj:{intent.order_ref}").text  # single use

    rig.clock.advance(30)
    [settled] = rig.desk.settle(rig.gate, rig.clock.now_ns())
    assert settled.intent == intent  # released to the router unchanged: same reference, same size
    assert (settled.decision.approved, settled.decision.reason_code) == (True, Reason.APPROVED_BY_ADMIN)
    assert settled.decision.detail == f"approved by admin {ADMIN}" and settled.decision.quantity == 4
    assert rig.desk.settle(rig.gate, rig.clock.now_ns()) == [] and rig.desk.pending() == {}
    audit = [(e["kind"], e["outcome"]) for e in rig.audit.entries()]
    assert audit == [("system", "ok"), ("system", "ok"), ("callback", "refused"), ("callback", "approved"),
                     ("callback", "unknown")]  # fmt: skip


def test_reject_and_timeout_deny_with_a_reason_code(redis_client: redis.Redis) -> None:
    rig = ApprovalRig(redis_client)
    rejected, late, unseen = rig.park("s1"), rig.park("s2"), rig.park("s3")
    for intent in (rejected, late):
        rig.ask(intent.order_ref)
    assert "rejected" in rig.press(ADMIN, f"rj:{rejected.order_ref}").text
    [denied] = rig.desk.settle(rig.gate, rig.clock.now_ns())
    assert denied.intent is None and denied.decision.reason_code == Reason.APPROVAL_REJECTED
    assert denied.decision.detail == f"rejected by admin {ADMIN}"

    rig.clock.advance(RULE.timeout_s)  # the deadline: neither of the others was decided
    settled = {s.decision.order_ref: s for s in rig.desk.settle(rig.gate, rig.clock.now_ns())}
    assert set(settled) == {late.order_ref, unseen.order_ref}
    assert {s.decision.reason_code for s in settled.values()} == {Reason.APPROVAL_EXPIRED}
    assert all(s.intent is None and s.by == "timeout" for s in settled.values())
    # a press after the deadline changes nothing: the book calls it expired, the gate has settled it
    assert "expired" in rig.press(ADMIN, f"ap:{late.order_ref}").text
    assert rig.desk.settle(rig.gate, rig.clock.now_ns()) == [] and rig.desk.unknown == 1


def test_an_approval_is_rechecked_by_the_gate_at_release(redis_client: redis.Redis) -> None:
    rig = ApprovalRig(redis_client)

    def approve_in(state: TradingState) -> tuple[str, str]:
        intent = rig.park(f"s-{state.value}")
        rig.ask(intent.order_ref)
        rig.press(ADMIN, f"ap:{intent.order_ref}")
        rig.gate.set_state(state, f"drill {state.value}", rig.clock.now_ns())
        [settled] = rig.desk.settle(rig.gate, rig.clock.now_ns())
        rig.gate.set_state(TradingState.ACTIVE, "drill over", rig.clock.now_ns())
        assert settled.intent is None and settled.outcome == "approved"
        return settled.decision.reason_code, settled.decision.detail

    code, detail = approve_in(TradingState.HALTED)  # halted while the admin was deciding
    assert code == Reason.STATE_HALTED
    assert detail == f"approved by admin {ADMIN}, denied at release: trading HALTED (drill HALTED)"
    assert approve_in(TradingState.REDUCING)[0] == Reason.STATE_REDUCING
    now = rig.clock.now_ns()
    assert rig.gate.recheck_release(now, now) is None  # ACTIVE, on time: released
    late = rig.gate.recheck_release(now - NS_PER_SECOND, now)  # past the deadline: its inputs are stale
    assert late is not None and late[0] == Reason.APPROVAL_EXPIRED and "1.0 s after" in late[1]


def test_unusable_decisions_are_counted_and_skipped(redis_client: redis.Redis) -> None:
    rig = ApprovalRig(redis_client)
    intent = rig.park()
    redis_client.xadd(keys.ADMIN_DECISIONS, {"id": "x", "decision": "approved", "by": "1001", "item": "{not json"})
    redis_client.xadd(
        keys.ADMIN_DECISIONS,
        {"id": "y", "decision": "approved", "by": "1001", "item": '{"kind": "trade", "payload": {}}'},
    )
    report, _ = rig.controller.request_approval("report", "Morning report")
    rig.press(ADMIN, f"ap:{report.approval_id}")  # not the gate's: ignored without complaint
    rig.ask(intent.order_ref)
    rig.press(ADMIN, f"ap:{intent.order_ref}")
    [settled] = rig.desk.settle(rig.gate, rig.clock.now_ns())
    assert settled.intent == intent and rig.desk.malformed == 2


def test_requests_reach_the_admin_chat_over_telegram_and_a_press_releases_the_entry(redis_client: redis.Redis) -> None:
    """The admin actor's path, on the real python-telegram-bot against the Bot API twin."""

    async def main() -> None:
        rig = ApprovalRig(redis_client)
        twin = TelegramTwin()
        await twin.start()
        bot = TelegramAdminBot(rig.controller, DEFAULT_TOKEN, base_url=twin.base_url, poll_timeout_s=1)
        await bot.start()
        pusher = ApprovalRequestPusher(redis_client, bot, CHAT)
        try:
            timed_out = rig.park("s1")
            rig.clock.advance(RULE.timeout_s)
            [expired] = rig.desk.settle(rig.gate, rig.clock.now_ns())  # nobody looked: denied at the deadline
            assert expired.decision.reason_code == Reason.APPROVAL_EXPIRED
            assert expired.decision.order_ref == timed_out.order_ref
            released = rig.park("s2")

            twin.faults.add("500", methods={"sendmessage"})
            assert await pusher.push_pending() == 0  # Telegram failed: the request is kept for the next round
            assert await pusher.push_pending() == 1  # the timed-out request was skipped, the fresh one sent
            assert pusher.counters.get("approvals.skipped") == 1 and await pusher.push_pending() == 0
            [message] = twin.sent_messages(CHAT)
            assert "approval required" in message["text"] and released.order_ref in message["text"]
            approve = message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            assert approve == f"ap:{released.order_ref}"

            twin.inject_callback(STRANGER, CHAT, message["message_id"], approve)
            await until(lambda: len(twin.callback_answers) == 1, what="the stranger's popup")
            assert rig.desk.settle(rig.gate, rig.clock.now_ns()) == [] and twin.edits == []
            twin.inject_callback(ADMIN, CHAT, message["message_id"], approve)
            await until(lambda: len(twin.edits) == 1, what="the settled approval")
            assert "approved" in twin.edits[0]["text"]
            [settled] = rig.desk.settle(rig.gate, rig.clock.now_ns())
            assert settled.intent == released and settled.decision.reason_code == Reason.APPROVED_BY_ADMIN
        finally:
            await bot.stop()
            await twin.stop()

    asyncio.run(main())
