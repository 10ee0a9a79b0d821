"""P&L subscriptions of the simulated TWS: reqPnL / reqPnLSingle and their periodic updates.

TWS answers a P&L subscription at once and then pushes an update about once a second while
the values move; the simulator does the same on *simulated* time: the first message goes out
when the subscription is made, later ones at most every ``interval`` simulated seconds (checked
after each market step, so fills of that step are included) and only when a value changed.
cancelPnL / cancelPnLSingle (or the session closing, or a 1101 "data lost") ends a
subscription; a cancel of an unknown request id is ignored, as TWS does.

The values are not computed here: the server hands in the account's own P&L
(:meth:`~.orders.OrderEngine.pnl` / :meth:`~.orders.OrderEngine.position_pnl`), so what a
client sees is exactly what the account values and positions say.

Wire layouts (ib_async's decoder, no version field): PNL ``94, reqId, dailyPnL,
unrealizedPnL, realizedPnL``; PNL_SINGLE ``95, reqId, pos, dailyPnL, unrealizedPnL,
realizedPnL, value``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from quanticity.sim.tws.ids import ErrorCode, Out, error_text
from quanticity.sim.tws.marketdata import Subscriber, SubscriptionRefused
from quanticity.sim.tws.orders import PnlValues

__all__ = ["PnlSubscriptions"]

NS = 1_000_000_000


@dataclasses.dataclass(slots=True)
class _PnlSub:
    session: Subscriber
    req_id: int
    con_id: int | None  # None: the whole account (reqPnL)
    sent_ns: int = 0
    last: PnlValues | None = None


class PnlSubscriptions:
    """Every live reqPnL / reqPnLSingle of every session."""

    def __init__(self, interval_s: float) -> None:
        self._interval_ns = int(interval_s * NS)
        self._subs: dict[tuple[int, int], _PnlSub] = {}
        self.messages_sent = 0

    def add(self, session: Subscriber, req_id: int, con_id: int | None, values: PnlValues, now_ns: int) -> None:
        """Register and send the first values now; SubscriptionRefused(322) for a request id in use."""
        key = (session.session_id, req_id)
        if key in self._subs:
            raise SubscriptionRefused(ErrorCode.DUPLICATE_TICKER_ID, error_text(ErrorCode.DUPLICATE_TICKER_ID))
        sub = _PnlSub(session, req_id, con_id)
        self._subs[key] = sub
        self._send(sub, values, now_ns)

    def cancel(self, session: Subscriber, req_id: int, single: bool) -> bool:
        """cancelPnL (``single`` False) or cancelPnLSingle; False when no such subscription exists."""
        key = (session.session_id, req_id)
        sub = self._subs.get(key)
        if sub is None or (sub.con_id is not None) != single:
            return False
        del self._subs[key]
        return True

    def drop_session(self, session_id: int) -> int:
        """Forget every subscription of a session; returns how many."""
        keys = [k for k in self._subs if k[0] == session_id]
        for key in keys:
            del self._subs[key]
        return len(keys)

    def counts(self) -> dict[str, int]:
        """Live subscriptions by kind."""
        single = sum(1 for s in self._subs.values() if s.con_id is not None)
        return {"pnl": len(self._subs) - single, "pnl_single": single}

    def publish(self, now_ns: int, account: Callable[[], PnlValues], single: Callable[[int], PnlValues]) -> None:
        """After a market step: send every subscription whose interval elapsed and whose values moved."""
        if not self._subs:
            return
        account_values: PnlValues | None = None
        for sub in list(self._subs.values()):
            if now_ns - sub.sent_ns < self._interval_ns:
                continue
            if sub.con_id is None:
                if account_values is None:
                    account_values = account()
                values = account_values
            else:
                values = single(sub.con_id)
            if values != sub.last:
                self._send(sub, values, now_ns)

    def _send(self, sub: _PnlSub, values: PnlValues, now_ns: int) -> None:
        if sub.con_id is None:
            fields: list[object] = [Out.PNL, sub.req_id, values.daily, values.unrealized, values.realized]
        else:
            fields = [
                Out.PNL_SINGLE,
                sub.req_id,
                values.position,
                values.daily,
                values.unrealized,
                values.realized,
                values.value,
            ]
        sub.session.send(fields)
        sub.sent_ns = now_ns
        sub.last = values
        self.messages_sent += 1
