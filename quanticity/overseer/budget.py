"""The model's daily budget in requests and tokens, persisted so a restart cannot reset it.

When the budget is spent, the overseer does not stop watching: it falls back to its rules and
templates (SPEC §12), which is why this module only answers "may I spend?" and never blocks.
Days are ET trading-calendar days, so the budget resets at midnight New York time, not UTC.
"""

from __future__ import annotations

from typing import Protocol

import redis

from quanticity import keys
from quanticity.calendar import ET
from quanticity.clock import Clock
from quanticity.overseer.config import ModelConfig

_BUDGET_KEY_TTL_S = 3 * 24 * 3600


class BudgetStore(Protocol):
    """Where the per-day usage lives."""

    def usage(self, day: str) -> tuple[int, int]:
        """(requests, tokens) spent on ``day``."""
        ...

    def add(self, day: str, requests: int, tokens: int) -> None:
        """Add to the usage of ``day``."""
        ...


class MemoryBudgetStore:
    """In-process usage (unit tests, backtests)."""

    def __init__(self) -> None:
        self._usage: dict[str, tuple[int, int]] = {}

    def usage(self, day: str) -> tuple[int, int]:
        return self._usage.get(day, (0, 0))

    def add(self, day: str, requests: int, tokens: int) -> None:
        spent_requests, spent_tokens = self.usage(day)
        self._usage[day] = (spent_requests + requests, spent_tokens + tokens)


class RedisBudgetStore:
    """Usage in the hash :func:`quanticity.keys.overseer_budget` (HINCRBY: safe across restarts)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def usage(self, day: str) -> tuple[int, int]:
        raw = self._client.hgetall(keys.overseer_budget(day))
        return int(raw.get("requests", 0)), int(raw.get("tokens", 0))

    def add(self, day: str, requests: int, tokens: int) -> None:
        key = keys.overseer_budget(day)
        pipe = self._client.pipeline(transaction=True)
        pipe.hincrby(key, "requests", requests)
        pipe.hincrby(key, "tokens", tokens)
        pipe.expire(key, _BUDGET_KEY_TTL_S)
        pipe.execute()


class Budget:
    """Daily request and token allowance of the model calls."""

    def __init__(self, config: ModelConfig, store: BudgetStore, clock: Clock) -> None:
        self._config = config
        self._store = store
        self._clock = clock

    def day(self) -> str:
        """Today's ET date, the budget period."""
        return self._clock.now().astimezone(ET).date().isoformat()

    def refusal(self, max_tokens: int) -> str | None:
        """Why a call of up to ``max_tokens`` output tokens may not be made now, or None if it may."""
        requests, tokens = self._store.usage(self.day())
        if requests >= self._config.daily_request_budget:
            return "budget_requests"
        if tokens + max_tokens > self._config.daily_token_budget:
            return "budget_tokens"
        return None

    def record(self, requests: int, tokens: int) -> None:
        """Count a request (made, whatever its outcome) and the tokens it used."""
        self._store.add(self.day(), requests, tokens)

    def used(self) -> tuple[int, int]:
        """(requests, tokens) spent today."""
        return self._store.usage(self.day())
