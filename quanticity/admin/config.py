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

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
UserId = Annotated[int, Field(gt=0)]


class AdminConfig(BaseModel):
    """Allow-list, admin chat, confirmation and approval lifetimes, alert push levels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_user_ids: frozenset[UserId] = frozenset()
    admin_chat_id: int | None = None
    bot_token_env: str = "TELEGRAM_BOT_TOKEN"
    confirm_ttl_s: PositiveFloat = 60.0
    approval_ttl_s: PositiveFloat = 3600.0
    #: alert levels pushed to the admin chat (the overseer writes WARNING/CRITICAL; the gate WARN/HALT)
    push_levels: frozenset[str] = frozenset({"CRITICAL", "HALT", "WARNING", "WARN"})
    poll_interval_s: PositiveFloat = 1.0

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
