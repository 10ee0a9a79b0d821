"""High-risk entries wait for an admin (SPEC §13 approvals): park, request, then release or deny — once.

Why here, after the gate: only an entry the gate *approved* can need an approval (a denied one is
denied anyway), and the release goes to the router by the same path as any approval, so nothing
about routing or idempotency changes. The flow:

1. :meth:`ApprovalDesk.why` — the configured :class:`~quanticity.admin.config.ApprovalRule` says
   whether an approved BUY is high-risk (contracts, or premium as % of equity).
2. :meth:`ApprovalDesk.park` — in one Redis step the intent is stored in
   :data:`~quanticity.keys.RISK_APPROVALS_PARKED` (``HSETNX``: a signal re-judged after a restart
   parks and asks nothing twice) and a request is appended to
   :data:`~quanticity.keys.RISK_APPROVAL_REQUESTS`. The decision is audited as ``PENDING_APPROVAL``.
3. The admin actor puts the request in front of the admin (Approve/Reject buttons); the
   :class:`~quanticity.admin.pending.ApprovalBook` records the single decision in
   :data:`~quanticity.keys.ADMIN_DECISIONS`.
4. :meth:`ApprovalDesk.settle` — drains those decisions after its own cursor and times out parked
   entries past their deadline. Each parked entry is *taken* (read and deleted in one Lua step) by
   whichever comes first, so it is released or denied exactly once. An approval is re-checked by
   the gate (:meth:`~quanticity.risk.gate.RiskGate.recheck_release`: trading state, deadline)
   before the intent is handed back for delivery.

Never imports Ray and never reads the wall clock: every method takes ``now_ns``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, cast

import msgspec
import redis

from quanticity import keys
from quanticity.admin.config import ApprovalRule
from quanticity.clock import NS_PER_SECOND
from quanticity.lockstep import drain_stream
from quanticity.messages import OrderIntent, RiskDecision, Side
from quanticity.risk.gate import Reason, RiskGate

REQUESTS_MAXLEN = 10_000

# Park once: store the intent unless it is already parked, and only then publish the request.
_PARK = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
    'order_ref', ARGV[1], 'summary', ARGV[3], 'deadline_ns', ARGV[4], 'why', ARGV[5])
return 1
"""

# Take a parked entry out: whoever gets the value settles it; everyone else gets nil.
_TAKE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return value
"""

Outcome = Literal["approved", "rejected", "expired"]


@dataclass(frozen=True)
class Parked:
    """An approved high-risk entry waiting for an admin: the intent, why, and until when."""

    intent: OrderIntent
    why: str
    summary: str
    parked_ns: int
    deadline_ns: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "intent": msgspec.json.encode(self.intent).decode(),
                "why": self.why,
                "summary": self.summary,
                "parked_ns": self.parked_ns,
                "deadline_ns": self.deadline_ns,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Parked:
        data = json.loads(raw)
        return cls(
            intent=msgspec.json.decode(data["intent"], type=OrderIntent),
            why=str(data["why"]),
            summary=str(data["summary"]),
            parked_ns=int(data["parked_ns"]),
            deadline_ns=int(data["deadline_ns"]),
        )


@dataclass(frozen=True)
class Settlement:
    """A parked entry settled: the audited decision, and the intent to deliver when it was released."""

    decision: RiskDecision
    intent: OrderIntent | None
    outcome: Outcome
    by: str


class ApprovalDesk:
    """Parks high-risk entries and settles them from the admin's decisions or the deadline."""

    def __init__(self, client: redis.Redis, rule: ApprovalRule, account_equity: float) -> None:
        self.rule = rule
        self.account_equity = account_equity
        self._client = client
        self._park = client.register_script(_PARK)
        self._take = client.register_script(_TAKE)
        self.parked = 0
        self.released = 0
        self.malformed = 0  # decision entries that name no parked trade (logged by the caller)
        self.unknown = 0  # decisions about an entry already settled (e.g. timed out first)

    # --- parking ---------------------------------------------------------------------------
    def why(self, intent: OrderIntent) -> str | None:
        """Why an approved ``intent`` must wait for an admin; None when it goes straight to the router.

        Only entries (BUY) are ever held: an exit removes risk and must never wait for a person.
        """
        if intent.side is not Side.BUY:
            return None
        return self.rule.why(intent.quantity, intent.quantity * intent.limit_price * 100, self.account_equity)

    def park(self, intent: OrderIntent, why: str, now_ns: int) -> RiskDecision:
        """Park ``intent`` and publish its approval request (once); the ``PENDING_APPROVAL`` decision to audit."""
        deadline = now_ns + int(self.rule.timeout_s * NS_PER_SECOND)
        premium = intent.quantity * intent.limit_price * 100
        summary = (
            f"BUY {intent.quantity} {intent.contract.key} @ {intent.limit_price:.2f} ({intent.strategy}); "
            f"premium {premium:,.2f}; {why}"
        )
        parked = Parked(intent, why, summary, now_ns, deadline)
        fresh = self._park(
            keys=[keys.RISK_APPROVALS_PARKED, keys.RISK_APPROVAL_REQUESTS],
            args=[intent.order_ref, parked.to_json(), summary, deadline, why, REQUESTS_MAXLEN],
        )
        self.parked += int(bool(fresh))
        return RiskDecision(
            ts_event=now_ns,
            ts_init=now_ns,
            signal_id=intent.signal_id,
            approved=False,
            reason_code=Reason.PENDING_APPROVAL,
            detail=f"{why}; awaiting an admin's approval for {self.rule.timeout_s:g} s",
            order_ref=intent.order_ref,
            quantity=intent.quantity,
        )

    def pending(self) -> dict[str, Parked]:
        """Parked entries by order reference (unreadable ones are skipped and counted)."""
        out = {}
        for order_ref, raw in self._client.hgetall(keys.RISK_APPROVALS_PARKED).items():
            try:
                out[order_ref] = Parked.from_json(raw)
            except (KeyError, TypeError, ValueError, msgspec.DecodeError):
                self.malformed += 1
        return out

    # --- settling --------------------------------------------------------------------------
    def settle(self, gate: RiskGate, now_ns: int) -> list[Settlement]:
        """Act on the admin's decisions recorded since the last call, then time out what is past its
        deadline. Call under the gate's lock (the release re-check reads the gate's state)."""
        settled: list[Settlement] = []

        def on_decision(entry_id: str, fields: dict[str, str]) -> None:
            try:
                item = json.loads(fields["item"])
                outcome = fields["decision"]
                order_ref = str(item["payload"]["order_ref"]) if item.get("kind") == "trade" else ""
            except (KeyError, TypeError, ValueError):
                self.malformed += 1
                return
            if not order_ref or outcome not in ("approved", "rejected", "expired"):
                if item.get("kind") == "trade":
                    self.malformed += 1
                return  # an approval of something else (e.g. a report): not the gate's
            result = self._settle(order_ref, cast(Outcome, outcome), str(fields.get("by", "")), gate, now_ns)
            if result is not None:
                settled.append(result)

        drain_stream(self._client, keys.ADMIN_DECISIONS, keys.RISK_APPROVALS_CURSOR, on_decision)
        for order_ref, parked in sorted(self.pending().items()):
            if parked.deadline_ns <= now_ns:
                result = self._settle(order_ref, "expired", "timeout", gate, now_ns)
                if result is not None:
                    settled.append(result)
        return settled

    def _settle(self, order_ref: str, outcome: Outcome, by: str, gate: RiskGate, now_ns: int) -> Settlement | None:
        raw = self._take(keys=[keys.RISK_APPROVALS_PARKED], args=[order_ref])
        if raw is None:
            self.unknown += 1  # settled already (the deadline or another decision came first)
            return None
        try:
            parked = Parked.from_json(raw)
        except (KeyError, TypeError, ValueError, msgspec.DecodeError):
            self.malformed += 1
            return None
        intent = parked.intent
        if outcome == "approved":
            denial = gate.recheck_release(parked.deadline_ns, now_ns)
            if denial is None:
                self.released += 1
                return Settlement(
                    self._decision(intent, True, Reason.APPROVED_BY_ADMIN, f"approved by admin {by}", now_ns),
                    intent,
                    outcome,
                    by,
                )
            reason, detail = denial
            detail = f"approved by admin {by}, denied at release: {detail}"
        elif outcome == "rejected":
            reason, detail = Reason.APPROVAL_REJECTED, f"rejected by admin {by}"
        else:
            who = "no decision" if by == "timeout" else f"decided too late (admin {by})"
            reason, detail = Reason.APPROVAL_EXPIRED, f"{who} within {self.rule.timeout_s:g} s: inputs stale"
        return Settlement(self._decision(intent, False, reason, detail, now_ns), None, outcome, by)

    @staticmethod
    def _decision(intent: OrderIntent, approved: bool, reason: str, detail: str, now_ns: int) -> RiskDecision:
        return RiskDecision(
            ts_event=now_ns,
            ts_init=now_ns,
            signal_id=intent.signal_id,
            approved=approved,
            reason_code=reason,
            detail=detail,
            order_ref=intent.order_ref,
            quantity=intent.quantity if approved else 0,
        )
