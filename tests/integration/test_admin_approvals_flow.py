"""High-risk entries wait for the admin in a running system: the real risk actor parks them, the admin
actor asks in the Telegram twin's admin chat, a press decides, the risk actor releases or denies.

With ``ops.admin.approvals.min_contracts: 1`` every approved entry is high-risk, so nothing reaches
the router unless the admin approves it:
- Approve → ``APPROVED_BY_ADMIN`` on the risk audit trail and the entry reaches the router;
- Reject → ``APPROVAL_REJECTED`` and the router never hears of it;
- a stranger's press changes nothing (and is audited); an unanswered request is denied at its
  deadline with ``APPROVAL_EXPIRED``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from quanticity import keys
from quanticity.admin.controller import NOT_AUTHORISED
from quanticity.execution.store import ExecutionStore
from quanticity.messages import RiskDecision, decode
from quanticity.risk.gate import Reason
from supervisors.launch import start_system, stop_system
from supervisors.twins import ADMIN_CHAT_ID, ADMIN_USER_ID, LoopbackTwins
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.integration

STRANGER = 999_002
TIMEOUT_S = 600.0
"""The approval deadline in simulated seconds: 50 wall seconds at the session's 12x pace."""


def _requests(twins: LoopbackTwins) -> list[dict]:
    """The approval requests in the admin chat (messages whose first button is Approve), oldest first."""
    out = []
    for message in twins.telegram.sent_messages(ADMIN_CHAT_ID):
        rows = message.get("reply_markup", {}).get("inline_keyboard", [])
        if rows and rows[0][0]["callback_data"].startswith("ap:"):
            out.append(message)
    return out


def _decisions(client: redis.Redis, order_ref: str) -> list[str]:
    """Reason codes the risk actor audited for ``order_ref``, oldest first."""
    decisions = (decode(f["decision"], RiskDecision) for _, f in client.xrange(keys.RISK_DECISIONS))
    return [d.reason_code for d in decisions if d.order_ref == order_ref]


def test_high_risk_entries_wait_for_the_admin_approve_releases_reject_and_timeout_deny(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    twins = LoopbackTwins(tmp_path / "watch")
    twins.start()
    ops = {
        "admin_enabled": True,
        "overseer_enabled": False,
        "admin": {"approvals": {"enabled": True, "min_contracts": 1, "timeout_s": TIMEOUT_S}},
    }
    config = system_config(tmp_path, ops=ops, extra={"ops": twins.overrides(str(tmp_path / "channels"))["ops"]})
    spec = session_spec(config, minutes=30, speed=12.0, lead_s=5.0)
    supervisor = start_system(config, spec, embedded_redis.url, env=twins.env())
    store = ExecutionStore(redis_client)
    telegram = twins.telegram
    try:

        def request(index: int) -> tuple[dict, str]:
            """The ``index``-th approval request (waiting for it) and its order reference — still parked."""
            wait_for(lambda: len(_requests(twins)) > index, 240, f"approval request #{index + 1} in the admin chat")
            message = _requests(twins)[index]
            ref = message["reply_markup"]["inline_keyboard"][0][0]["callback_data"].removeprefix("ap:")
            assert _decisions(redis_client, ref)[0] == Reason.PENDING_APPROVAL and not store.entry_known(ref)
            return message, ref

        # each is answered as soon as it arrives: well inside its deadline
        approve, approve_ref = request(0)
        answers = len(telegram.callback_answers)
        telegram.inject_callback(STRANGER, ADMIN_CHAT_ID, approve["message_id"], f"ap:{approve_ref}")
        wait_for(lambda: len(telegram.callback_answers) > answers, 60, "the stranger's popup")
        assert telegram.callback_answers[-1].get("text") == NOT_AUTHORISED
        telegram.inject_callback(ADMIN_USER_ID, ADMIN_CHAT_ID, approve["message_id"], f"ap:{approve_ref}")
        wait_for(lambda: Reason.APPROVED_BY_ADMIN in _decisions(redis_client, approve_ref), 60, "the release")
        wait_for(lambda: store.entry_known(approve_ref), 60, "the approved entry at the router")

        reject, reject_ref = request(1)
        telegram.inject_callback(ADMIN_USER_ID, ADMIN_CHAT_ID, reject["message_id"], f"rj:{reject_ref}")
        wait_for(lambda: Reason.APPROVAL_REJECTED in _decisions(redis_client, reject_ref), 60, "the rejection")
        edits = {e["message_id"]: e["text"] for e in telegram.edits}
        assert "approved" in edits[approve["message_id"]] and "rejected" in edits[reject["message_id"]]

        _, unanswered_ref = request(2)
        refs = [approve_ref, reject_ref, unanswered_ref]
        wait_for(lambda: Reason.APPROVAL_EXPIRED in _decisions(redis_client, refs[2]), 120, "the deadline")
        assert not store.entry_known(refs[1]) and not store.entry_known(refs[2])
        assert _decisions(redis_client, refs[1]) == [Reason.PENDING_APPROVAL, Reason.APPROVAL_REJECTED]
        assert _decisions(redis_client, refs[2]) == [Reason.PENDING_APPROVAL, Reason.APPROVAL_EXPIRED]

        audit = [(e["kind"], e["outcome"]) for _, e in redis_client.xrange(keys.ADMIN_AUDIT) if e["kind"] == "callback"]
        assert audit[:3] == [("callback", "refused"), ("callback", "approved"), ("callback", "rejected")]
    finally:
        stop_system(supervisor)
        twins.stop()
