"""Admin control core: allow-list for commands and buttons, audit of everything, guarded /flatten (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest
import redis

from quanticity.admin.audit import AdminAudit
from quanticity.admin.config import AdminConfig
from quanticity.admin.controller import NOT_AUTHORISED, AdminController
from quanticity.admin.pending import ApprovalBook, ConfirmationBook
from quanticity.admin.protocols import PnlView, PositionView
from quanticity.clock import SimulatedClock

pytestmark = pytest.mark.unit

ADMIN, OTHER_ADMIN, STRANGER = 1001, 1002, 6666
CHAT = 5005
T0 = 1_750_000_000_000_000_000


class MemoryRisk:
    """RiskControl keeping the state in memory."""

    def __init__(self) -> None:
        self.state = "ACTIVE"
        self.calls: list[tuple[str, str]] = []

    async def set_state(self, state: str, reason: str) -> str:
        self.calls.append((state, reason))
        self.state = state
        return state

    async def trading_state(self) -> str:
        return self.state


class MemorySystem:
    """SystemControl recording every call; its flatten, like the supervisor's emergency path, halts the gate."""

    def __init__(self, risk: MemoryRisk | None = None) -> None:
        self.risk = risk
        self.calls: list[tuple] = []
        self.strategies = {"zero_dte_gamma": True, "moc_imbalance": True}
        self.universe = {"SPY", "QQQ"}

    async def status(self) -> Mapping[str, str]:
        return {"actors": "12/12 alive"}

    async def positions(self) -> Sequence[PositionView]:
        return [PositionView("SPY 2025-07-18 450.00 C", 3, 2.05, 2.40, 105.0)]

    async def pnl(self) -> PnlView:
        return PnlView(250.0, 105.0, {"moc_imbalance": 250.0})

    async def flatten(self, reason: str) -> str:
        self.calls.append(("flatten", reason))
        if self.risk is not None:
            self.risk.state = "HALTED"
        return "2 orders cancelled, 1 position sold"

    async def set_strategy_enabled(self, name: str, enabled: bool) -> bool:
        self.calls.append(("strategy", name, enabled))
        if name not in self.strategies:
            return False
        self.strategies[name] = enabled
        return True

    async def add_symbol(self, symbol: str) -> str:
        self.calls.append(("add", symbol))
        self.universe.add(symbol)
        return "added"

    async def remove_symbol(self, symbol: str) -> bool:
        self.calls.append(("remove", symbol))
        present = symbol in self.universe
        self.universe.discard(symbol)
        return present

    async def request_report(self) -> str:
        self.calls.append(("report",))
        return "intraday report queued"


class Rig:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.clock = SimulatedClock(T0)
        self.config = AdminConfig(
            allowed_user_ids=frozenset({ADMIN, OTHER_ADMIN}), admin_chat_id=CHAT, confirm_ttl_s=60
        )
        self.risk = MemoryRisk()
        self.system = MemorySystem(self.risk)
        self.audit = AdminAudit(client, self.clock)
        self.approvals = ApprovalBook(client, self.clock, self.config.approval_ttl_s)
        self.controller = AdminController(
            self.config,
            self.system,
            self.risk,
            self.audit,
            self.approvals,
            ConfirmationBook(client, self.clock, self.config.confirm_ttl_s),
        )

    def command(self, user: int, text: str, chat: int = CHAT):  # noqa: ANN201
        return asyncio.run(self.controller.handle_command(user, chat, text))

    def press(self, user: int, data: str, chat: int = CHAT, message_id: int = 7):  # noqa: ANN201
        return asyncio.run(self.controller.handle_callback(user, chat, message_id, data))


def _token(reply) -> str:  # noqa: ANN001
    """The confirmation token of a question's Confirm button (``cf:ok:<token>``)."""
    confirm, cancel = reply.buttons[0]
    assert confirm.data.startswith("cf:ok:") and cancel.data == confirm.data.replace("cf:ok:", "cf:no:")
    return confirm.data.removeprefix("cf:ok:")


def test_unauthorised_commands_and_button_presses_change_nothing_and_are_audited(redis_client: redis.Redis) -> None:
    rig = Rig(redis_client)
    flatten = rig.command(ADMIN, "/flatten")
    halt = rig.command(ADMIN, "/halt drill")
    for text in ("/halt", "/flatten", "/universe add TSLA", "/strategy disable moc_imbalance", "hello"):
        assert rig.command(STRANGER, text).text == NOT_AUTHORISED
    assert rig.press(STRANGER, f"cf:ok:{_token(flatten)}").text == NOT_AUTHORISED
    assert rig.press(STRANGER, f"cf:ok:{_token(halt)}").text == NOT_AUTHORISED
    approval, _ = rig.controller.request_approval("trade", "BUY 50 SPY 440C @ 2.50")
    assert rig.press(STRANGER, f"ap:{approval.approval_id}").text == NOT_AUTHORISED
    assert rig.risk.calls == [] and rig.system.calls == [] and rig.risk.state == "ACTIVE"
    assert [a.approval_id for a in rig.approvals.pending()] == [approval.approval_id]
    refused = [e for e in rig.audit.entries() if e["outcome"] == "refused"]
    assert len(refused) == 8 and {e["user_id"] for e in refused} == {str(STRANGER)}
    assert {e["kind"] for e in refused} == {"command", "callback"}
    # the stranger's presses consumed neither of the admin's confirmations
    assert "HALTED" in rig.press(ADMIN, f"cf:ok:{_token(halt)}").text
    assert "Flatten sent" in rig.press(ADMIN, f"cf:ok:{_token(flatten)}").text


def test_resume_and_reduce_act_at_once_halt_only_after_its_confirmation(redis_client: redis.Redis) -> None:
    rig = Rig(redis_client)
    asked = rig.command(ADMIN, "/halt feed looks wrong")
    assert "Confirm within 60 s" in asked.text and rig.risk.calls == [] and rig.risk.state == "ACTIVE"
    done = rig.press(ADMIN, f"cf:ok:{_token(asked)}")
    assert done.settles and "HALTED" in done.text
    # the reason travelled in the stored confirmation, not in the button
    assert rig.risk.calls == [("HALTED", f"admin {ADMIN}: feed looks wrong")]
    assert "REDUCING" in rig.command(ADMIN, "/reduce").text
    assert "ACTIVE" in rig.command(ADMIN, "/resume@QuantBot").text
    assert [c[0] for c in rig.risk.calls] == ["HALTED", "REDUCING", "ACTIVE"]
    audited = [(e["kind"], e["action"], e["outcome"]) for e in rig.audit.entries()]
    assert audited == [
        ("command", "/halt", "ok"),
        ("callback", "cf", "halted"),
        ("command", "/reduce", "ok"),
        ("command", "/resume@QuantBot", "ok"),
    ]


@pytest.mark.parametrize("command", ["/halt drill", "/flatten"])
def test_a_confirmation_is_single_use_and_bound_to_the_asking_admin_and_chat(
    redis_client: redis.Redis, command: str
) -> None:
    rig = Rig(redis_client)
    asked = rig.command(ADMIN, command)
    assert rig.system.calls == [] and rig.risk.calls == [] and len(asked.buttons[0]) == 2
    token = _token(asked)
    foreign = rig.press(OTHER_ADMIN, f"cf:ok:{token}")
    assert "another admin" in foreign.text and not foreign.settles
    other_chat = rig.press(ADMIN, f"cf:ok:{token}", chat=CHAT + 1)
    assert "another admin or chat" in other_chat.text
    assert rig.system.calls == [] and rig.risk.calls == [] and rig.risk.state == "ACTIVE"
    done = rig.press(ADMIN, f"cf:ok:{token}")
    assert done.settles and rig.risk.state == "HALTED"
    again = rig.press(ADMIN, f"cf:ok:{token}")  # single use
    assert "already used" in again.text
    if command == "/flatten":
        # the supervisor's emergency flatten did everything (HALTED first); the reply reports the real state
        assert "Flatten sent. Trading HALTED" in done.text and "2 orders cancelled" in done.text
        assert rig.system.calls == [("flatten", f"admin {ADMIN}: flatten")] and rig.risk.calls == []
    else:
        assert rig.risk.calls == [("HALTED", f"admin {ADMIN}: drill")] and rig.system.calls == []
    outcomes = [e["outcome"] for e in rig.audit.entries() if e["kind"] == "callback"]
    assert outcomes == ["foreign", "foreign", "flattened" if command == "/flatten" else "halted", "unknown"]


@pytest.mark.parametrize("command", ["/halt", "/flatten"])
def test_expired_or_cancelled_confirmation_does_nothing(redis_client: redis.Redis, command: str) -> None:
    rig = Rig(redis_client)
    token = _token(rig.command(ADMIN, command))
    rig.clock.advance(60)
    late = rig.press(ADMIN, f"cf:ok:{token}")
    assert "expired" in late.text and f"Send {command} again" in late.text
    token = _token(rig.command(ADMIN, command))
    rig.clock.advance(59)
    assert rig.press(STRANGER, f"cf:no:{token}").text == NOT_AUTHORISED  # a stranger cannot even cancel
    assert rig.press(ADMIN, f"cf:no:{token}").text == f"{command[1:].capitalize()} cancelled."
    assert "already used" in rig.press(ADMIN, f"cf:ok:{token}").text
    assert rig.system.calls == [] and rig.risk.calls == [] and rig.risk.state == "ACTIVE"
    outcomes = [e["outcome"] for e in rig.audit.entries() if e["kind"] == "callback"]
    assert outcomes == ["expired", "refused", "cancelled", "unknown"]


def test_malformed_confirmation_button_is_rejected(redis_client: redis.Redis) -> None:
    rig = Rig(redis_client)
    assert "is malformed" in rig.press(ADMIN, "cf:maybe:abc").text
    assert "already used or unknown" in rig.press(ADMIN, "cf:ok:forged-token").text
    assert rig.risk.calls == [] and rig.system.calls == []


def test_approvals_are_decided_once_by_command_or_button(redis_client: redis.Redis) -> None:
    rig = Rig(redis_client)
    trade, message = rig.controller.request_approval("trade", "BUY 50 SPY 440C @ 2.50 (risk $12,500)")
    report, _ = rig.controller.request_approval("report", "Morning report")
    assert message.buttons[0][0].data == f"ap:{trade.approval_id}"
    listing = rig.command(ADMIN, "/approve")
    assert trade.approval_id in listing.text and len(listing.buttons) == 2
    assert "approved" in rig.press(ADMIN, f"ap:{trade.approval_id}").text
    assert "already decided" in rig.press(OTHER_ADMIN, f"rj:{trade.approval_id}").text
    assert "rejected" in rig.command(ADMIN, f"/reject {report.approval_id}").text
    assert rig.command(ADMIN, "/approve").text == "Nothing awaiting approval."
    decisions = [(d["id"], d["decision"], d["by"]) for d in rig.approvals.decisions()]
    assert decisions == [(trade.approval_id, "approved", str(ADMIN)), (report.approval_id, "rejected", str(ADMIN))]
    late, _ = rig.controller.request_approval("trade", "BUY 1 QQQ 380P")
    rig.clock.advance(rig.config.approval_ttl_s)
    assert "expired" in rig.press(ADMIN, f"ap:{late.approval_id}").text
    assert rig.approvals.decisions()[-1]["decision"] == "expired"


def test_information_strategy_universe_report_commands(redis_client: redis.Redis) -> None:
    rig = Rig(redis_client)
    status = rig.command(ADMIN, "/status").text
    assert "Trading: ACTIVE" in status and "actors: 12/12 alive" in status
    assert "SPY 2025-07-18 450.00 C × 3 @ 2.05" in rig.command(ADMIN, "/positions").text
    assert "Total: +355.00" in rig.command(ADMIN, "/pnl").text
    assert rig.command(ADMIN, "/strategy disable moc_imbalance").text == "Strategy moc_imbalance disabled."
    assert rig.system.strategies["moc_imbalance"] is False
    assert "not a configured strategy" in rig.command(ADMIN, "/strategy enable nope").text
    assert rig.command(ADMIN, "/universe add tsla").text == "Universe: TSLA added."
    assert "was not in the universe" in rig.command(ADMIN, "/universe remove IWM").text
    assert rig.command(ADMIN, "/report now").text == "Report: intraday report queued"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/universe add BAD$", "symbol: 'BAD$'"),
        ("/universe move SPY", "action: 'move'"),
        ("/strategy enable Bad-Name", "strategy: 'Bad-Name'"),
        ("/report later", "when: 'later'"),
        ("/launch", "/launch is unknown"),
        ("flatten everything", "not a command"),
    ],
)
def test_bad_input_is_rejected_with_the_value_named_and_audited(
    redis_client: redis.Redis, text: str, message: str
) -> None:
    rig = Rig(redis_client)
    assert message in rig.command(ADMIN, text).text
    assert rig.system.calls == [] and rig.risk.calls == []
    [entry] = rig.audit.entries()
    assert entry["outcome"] == "rejected" and message in entry["detail"]
    assert rig.controller.counters.get("rejected") == 1


def test_failing_control_is_reported_and_audited(redis_client: redis.Redis) -> None:
    rig = Rig(redis_client)

    async def broken(state: str, reason: str) -> str:
        raise TimeoutError("risk gate did not answer")

    rig.risk.set_state = broken  # type: ignore[method-assign]
    assert rig.command(ADMIN, "/resume").text.startswith("⚠️ Failed: TimeoutError")
    assert rig.audit.entries()[-1]["outcome"] == "error"
    assert rig.press(ADMIN, f"cf:ok:{_token(rig.command(ADMIN, '/halt'))}").text.startswith("⚠️ Failed: TimeoutError")
    assert rig.audit.entries()[-1]["outcome"] == "error"
    assert "is not a known button" in rig.press(ADMIN, "xx:1").text


def test_admin_ids_from_the_environment_are_validated() -> None:
    config = AdminConfig.from_env({"TELEGRAM_ADMIN_IDS": "1001, 1002", "TELEGRAM_ADMIN_CHAT": "-100123"})
    assert config.allowed_user_ids == frozenset({1001, 1002}) and config.admin_chat_id == -100123
    with pytest.raises(ValueError, match="TELEGRAM_ADMIN_IDS: '@boss'"):
        AdminConfig.from_env({"TELEGRAM_ADMIN_IDS": "1001,@boss"})
    assert AdminConfig.from_env({}).allowed_user_ids == frozenset()
