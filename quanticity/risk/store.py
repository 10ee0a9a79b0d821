"""Redis persistence of the risk gate: trading state, recent approvals, decision audit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import redis

from quanticity import keys
from quanticity.messages import RiskDecision, TradingState, encode


class RedisRiskStore:
    """:class:`~quanticity.risk.gate.RiskStore` on Redis; the state hash survives restarts (AOF)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def load_state(self) -> tuple[TradingState, str]:
        data = self._client.hgetall(keys.TRADING_STATE)
        if not data:
            return TradingState.ACTIVE, "initial"
        return TradingState(data["state"]), data.get("reason", "")

    def save_state(self, state: TradingState, reason: str, ts_ns: int) -> None:
        self._client.hset(keys.TRADING_STATE, mapping={"state": state.value, "reason": reason, "changed_at": ts_ns})

    def load_order_times(self, since_ns: int) -> list[int]:
        return [int(float(v)) for v in self._client.zrangebyscore(keys.RISK_ORDER_TIMES, since_ns, "+inf")]

    def record_order_time(self, ts_ns: int) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.zadd(keys.RISK_ORDER_TIMES, {str(ts_ns): ts_ns})
        pipe.zremrangebyscore(keys.RISK_ORDER_TIMES, "-inf", ts_ns - 3600 * 1_000_000_000)
        pipe.execute()

    def audit(self, decision: RiskDecision) -> None:
        """Append a decision to the audit stream (bounded to the last 100k)."""
        self._client.xadd(
            keys.RISK_DECISIONS, {"decision": encode(decision).decode()}, maxlen=100_000, approximate=True
        )

    def load_correlation(self) -> dict[str, Any]:
        """The persisted returns window of the correlation rule ({} when absent or unreadable)."""
        raw = self._client.get(keys.RISK_CORRELATION)
        if not raw:
            return {}
        try:
            state = json.loads(raw)
        except ValueError:
            return {}
        return state if isinstance(state, dict) else {}

    def save_correlation(self, state: Mapping[str, Any]) -> None:
        """Persist the returns window (restored after a restart, so the rule is not blind for a window)."""
        self._client.set(keys.RISK_CORRELATION, json.dumps(state))
