"""Configuration of the Telegram admin control: who may command the system and how long a question waits.

The allow-list holds numeric Telegram user ids only — usernames can be changed by their owner and
re-registered by someone else, ids cannot. Values may come from YAML or the environment
(``TELEGRAM_ADMIN_IDS="123,456"``, ``TELEGRAM_ADMIN_CHAT``); a malformed value is rejected with the
variable and value named, never silently turned into an empty allow-list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveFloat = Annotated[float, Field(gt=0)]
UserId = Annotated[int, Field(gt=0)]


class ApprovalRule(BaseModel):
    """Which approved entries are "high-risk" and wait for an admin's Approve before they reach the router.

    An entry the risk gate approved is parked when it buys at least ``min_contracts`` contracts or
    puts at least ``min_risk_pct`` of account equity (premium paid) at risk — whichever thresholds
    are set. Without a decision within ``timeout_s`` (simulated seconds) it is denied: by then its
    inputs are stale. Off by default: an unattended deployment must not park every trade.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    min_contracts: Annotated[int, Field(ge=1)] | None = None
    min_risk_pct: Annotated[float, Field(gt=0, le=100)] | None = None
    timeout_s: PositiveFloat = 300.0

    @model_validator(mode="after")
    def _a_threshold_when_enabled(self) -> ApprovalRule:
        if self.enabled and self.min_contracts is None and self.min_risk_pct is None:
            raise ValueError(
                "approvals: enabled is true but neither min_contracts nor min_risk_pct is set "
                "(nothing would ever need an approval)"
            )
        return self

    def why(self, quantity: int, premium: float, account_equity: float) -> str | None:
        """Why an entry of ``quantity`` contracts costing ``premium`` in total needs approval; None if not."""
        if not self.enabled:
            return None
        reasons = []
        if self.min_contracts is not None and quantity >= self.min_contracts:
            reasons.append(f"{quantity} contracts ≥ {self.min_contracts}")
        risk_pct = premium / account_equity * 100 if account_equity > 0 else 0.0
        if self.min_risk_pct is not None and risk_pct >= self.min_risk_pct:
            reasons.append(f"{risk_pct:.2f}% of equity at risk ≥ {self.min_risk_pct}%")
        return "; ".join(reasons) or None


class AdminConfig(BaseModel):
    """Allow-list, admin chat, confirmation and approval lifetimes, the high-risk approval rule, alert push levels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_user_ids: frozenset[UserId] = frozenset()
    admin_chat_id: int | None = None
    bot_token_env: str = "TELEGRAM_BOT_TOKEN"
    confirm_ttl_s: PositiveFloat = 60.0
    approval_ttl_s: PositiveFloat = 3600.0
    #: alert levels pushed to the admin chat (the overseer writes WARNING/CRITICAL; the gate WARN/HALT)
    push_levels: frozenset[str] = frozenset({"CRITICAL", "HALT", "WARNING", "WARN"})
    poll_interval_s: PositiveFloat = 1.0
    approvals: ApprovalRule = ApprovalRule()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> AdminConfig:
        """Read ``TELEGRAM_ADMIN_IDS`` and ``TELEGRAM_ADMIN_CHAT``; explicit ``overrides`` win."""
        values: dict[str, object] = env_values(env)
        values.update(overrides)
        return cls.model_validate(values)


def env_values(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """The admin settings the environment supplies (``allowed_user_ids``, ``admin_chat_id``), validated.

    Used by :meth:`AdminConfig.from_env` and by the config loader (which merges them over
    ``config/ops.yaml``); a malformed value raises ValueError naming the variable and the value.
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    raw_ids = env.get("TELEGRAM_ADMIN_IDS", "").strip()
    if raw_ids:
        ids = []
        for part in raw_ids.split(","):
            if not part.strip().isdigit():
                raise ValueError(f"TELEGRAM_ADMIN_IDS: {part.strip()!r} is not a numeric Telegram user id")
            ids.append(int(part))
        values["allowed_user_ids"] = frozenset(ids)
    raw_chat = env.get("TELEGRAM_ADMIN_CHAT", "").strip()
    if raw_chat:
        try:
            values["admin_chat_id"] = int(raw_chat)
        except ValueError as exc:
            raise ValueError(f"TELEGRAM_ADMIN_CHAT: {raw_chat!r} is not a numeric chat id") from exc
    return values
