"""The admin's /halt and /strategy through the real python-telegram-bot, the supervisor and the real risk actor.

One session on the Telegram twin proves what the admin commands mean for trading, not only what
they reply:
- ``/strategy disable`` is persisted by the supervisor: the strategy actor killed and recreated
  afterwards is still disabled — it keeps evaluating snapshots but emits no signal;
- a confirmed ``/halt`` (nothing happens before the Confirm button) makes the risk actor deny a new
  entry with ``STATE_HALTED`` while the cancel of a working order passes (``CANCEL_ALLOWED``), and
  the risk actor killed and recreated afterwards is still HALTED and still denies entries.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
import ray
import redis

from actors.common import BROKER, RISK, ROUTER, STALL_LIMIT_S, strategy_name
from quanticity import keys
from quanticity.messages import OrderIntent, RiskDecision, Side, Signal, decode
from quanticity.risk.gate import Reason
from supervisors.launch import start_system, stop_system, wait_until_done
from supervisors.twins import ADMIN_CHAT_ID, ADMIN_USER_ID, LoopbackTwins
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.integration

STRATEGY = "imbalance_momentum"
REPLY_TIMEOUT_S = 60.0
ALERT = re.compile(r"^\S+ [A-Z]+: ")
"""How the alert push formats a message (``🚨 CRITICAL: …``): not a reply to a command."""


class AdminChat:
    """The admin's side of the Telegram twin chat: send a command, press a button, read the replies."""

    def __init__(self, twins: LoopbackTwins) -> None:
        self.telegram = twins.telegram

    def replies(self) -> list[dict]:
        return self.telegram.sent_messages(ADMIN_CHAT_ID)

    def command(self, text: str) -> dict:
        """Send ``text`` as the admin; the bot's reply (the first new message that is not a pushed alert)."""
        count = len(self.replies())
        self.telegram.inject_message(ADMIN_USER_ID, ADMIN_CHAT_ID, text)

        def answers() -> list[dict]:
            return [m for m in self.replies()[count:] if not ALERT.match(m.get("text", ""))]

        wait_for(lambda: bool(answers()), REPLY_TIMEOUT_S, f"the reply to {text}")
        return answers()[0]

    def confirm(self, question: dict) -> str:
        """Press the question's Confirm button; the text the settled message was edited to."""
        edits = len(self.telegram.edits)
        data = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        self.telegram.inject_callback(ADMIN_USER_ID, ADMIN_CHAT_ID, question["message_id"], data)
        wait_for(lambda: len(self.telegram.edits) > edits, REPLY_TIMEOUT_S, f"the answer to {data}")
        return self.telegram.edits[-1]["text"]


def _entry_signals(client: redis.Redis) -> list[Signal]:
    signals = (decode(f["signal"], Signal) for _, f in client.xrange(keys.SIGNALS_STREAM))
    return [s for s in signals if s.strategy == STRATEGY and not s.is_exit]


def _decision(client: redis.Redis, signal_id: str) -> RiskDecision | None:
    for _, fields in client.xrevrange(keys.RISK_DECISIONS, count=500):
        decision = decode(fields["decision"], RiskDecision)
        if decision.signal_id == signal_id:
            return decision
    return None


def _judge_entry(client: redis.Redis, template: Signal, signal_id: str) -> RiskDecision:
    """Put a fresh entry signal (a copy of a real one) on the signal stream; the risk actor's decision."""
    signal = msgspec.structs.replace(template, signal_id=signal_id)
    client.xadd(keys.SIGNALS_STREAM, {"signal": msgspec.json.encode(signal).decode()})
    wait_for(lambda: _decision(client, signal_id) is not None, 60, f"the risk decision on {signal_id}")
    decision = _decision(client, signal_id)
    assert decision is not None
    return decision


def _restart(name: str, namespace: str, client: redis.Redis):  # noqa: ANN202
    """Kill ``name``; the supervisor recreates it under the same name. The new handle."""
    old = ray.get_actor(name, namespace=namespace)
    restarts = int(client.hget(keys.RESTARTS, name) or 0)
    ray.kill(old, no_restart=True)
    wait_for(lambda: int(client.hget(keys.RESTARTS, name) or 0) > restarts, 60, f"the restart of {name}")
    new = ray.get_actor(name, namespace=namespace)
    assert new._actor_id != old._actor_id
    ray.get(new.ping.remote(), timeout=STALL_LIMIT_S)
    return new


def test_admin_strategy_disable_and_confirmed_halt_act_on_trading_and_survive_restarts(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    twins = LoopbackTwins(tmp_path / "watch")
    twins.start()
    ops = {"admin_enabled": True, "overseer_enabled": False}
    # only the admin bot on the twin: no distribution channels (their publishers are not this test's subject)
    config = system_config(tmp_path, ops=ops, extra={"ops": twins.overrides(str(tmp_path / "channels"))["ops"]})
    namespace = config.system.system.namespace
    # paced (12 simulated seconds per wall second): the session must still run after the strategy restart
    spec = session_spec(config, minutes=30, speed=12.0, lead_s=5.0)
    supervisor = start_system(config, spec, embedded_redis.url, env=twins.env())
    chat = AdminChat(twins)
    try:
        # --- /strategy disable survives the strategy actor's restart -----------------------------
        wait_for(lambda: _entry_signals(redis_client), 180, f"a first {STRATEGY} signal")
        assert chat.command(f"/strategy disable {STRATEGY}")["text"] == f"Strategy {STRATEGY} disabled."
        assert redis_client.hget(keys.STRATEGY_ENABLED, STRATEGY) == "0"
        emitted = len(_entry_signals(redis_client))  # the live actor was told before the reply
        strategy = _restart(strategy_name(STRATEGY), namespace, redis_client)
        evaluated = ray.get(strategy.stats.remote())["evaluated"]
        wait_until_done(config, timeout_s=300)
        assert ray.get(strategy.stats.remote())["evaluated"] > evaluated  # it kept seeing snapshots …
        assert ray.get(strategy.stats.remote())["signals"] == 0  # … and emitted nothing
        assert len(_entry_signals(redis_client)) == emitted

        # --- a working order (the session is over: nothing fills it any more) ---------------------
        template = _entry_signals(redis_client)[-1]
        working = OrderIntent(
            ts_event=template.ts_event,
            ts_init=template.ts_init,
            order_ref="QadminHaltWorking1",
            signal_id="admin-halt-working",
            strategy=STRATEGY,
            contract=template.contract,
            side=Side.BUY,
            quantity=1,
            limit_price=0.05,
            origin_ts_init=template.origin_ts_init,
        )
        router = ray.get_actor(ROUTER, namespace=namespace)
        broker = ray.get_actor(BROKER, namespace=namespace)
        resting = {o.order_ref for o in ray.get(broker.open_orders.remote(), timeout=30)}
        ray.get(router.submit.remote(working), timeout=30)
        # the entry policy rests it at the broker as child orders of their own references
        children = sorted({o.order_ref for o in ray.get(broker.open_orders.remote(), timeout=30)} - resting)
        assert children, "the entry rests no order at the broker"

        # --- /halt asks first; the Confirm button halts ------------------------------------------
        risk = ray.get_actor(RISK, namespace=namespace)
        assert ray.get(risk.trading_state.remote()) == "ACTIVE"
        question = chat.command("/halt drill")
        assert "Confirm" in question["text"] and ray.get(risk.trading_state.remote()) == "ACTIVE"
        assert "HALTED" in chat.confirm(question)
        assert ray.get(risk.trading_state.remote()) == "HALTED"

        # new entries are denied, cancels pass — by the real risk actor, on its audit trail
        denied = _judge_entry(redis_client, template, "admin-halt-entry-1")
        assert (denied.approved, denied.reason_code) == (False, Reason.STATE_HALTED), denied
        assert f"admin {ADMIN_USER_ID}: drill" in denied.detail
        assert ray.get(risk.cancel.remote(children[0]), timeout=30) == "CANCELLED"
        cancel = _decision(redis_client, f"cancel:{children[0]}")
        assert cancel is not None and (cancel.approved, cancel.reason_code) == (True, Reason.CANCEL_ALLOWED)
        assert "HALTED" in cancel.detail
        assert children[0] not in {o.order_ref for o in ray.get(broker.open_orders.remote(), timeout=30)}

        # --- the halt survives the risk actor's restart ------------------------------------------
        risk = _restart(RISK, namespace, redis_client)
        assert ray.get(risk.trading_state.remote()) == "HALTED"
        denied = _judge_entry(redis_client, template, "admin-halt-entry-2")
        assert (denied.approved, denied.reason_code) == (False, Reason.STATE_HALTED), denied

        audit = [(e["kind"], e["outcome"]) for _, e in redis_client.xrange(keys.ADMIN_AUDIT)]
        assert audit == [("command", "ok"), ("command", "ok"), ("callback", "halted")]
    finally:
        stop_system(supervisor)
        twins.stop()
