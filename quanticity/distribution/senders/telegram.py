"""Telegram through python-telegram-bot: HTML messages, follow-ups as replies to the original.

``Bot(token, base_url=...)`` is the library's supported way to use another Bot API server (a
self-hosted one, or the loopback twin): ``base_url`` is the part before ``<token>/<method>``,
e.g. ``http://127.0.0.1:PORT/bot``.

Unknown outcomes: the Bot API gives a bot no way to read a chat's history, so a send whose result
is unknown (a timeout after the request went out, a publisher killed mid-send) cannot be checked:
:meth:`find_existing` answers :attr:`Check.UNCHECKABLE` and the channel's ``unknown_outcome``
setting decides — ``resend`` (default: a subscriber may, rarely, see an alert twice, but never
misses one; the second copy starts with :func:`repeat_notice` so it cannot be mistaken for a new
trade, and it is audited) or ``dead_letter`` (never twice; the operator is alerted and replays).
"""

from __future__ import annotations

import datetime as dt

from telegram import Bot, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut

from quanticity.distribution.pacing import credential_digest
from quanticity.distribution.schedule import Delivery
from quanticity.distribution.senders.base import (
    Check,
    PermanentError,
    Posted,
    Sender,
    TransientError,
    UnknownOutcome,
)


def repeat_notice(ref: str) -> str:
    """First line of a resend whose earlier attempt may have landed (HTML, Telegram's subset)."""
    return f"<i>↻ Re-sent after a connection failure. If you already have ref {ref}, this is the same alert.</i>"


def _seconds(value: int | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class TelegramSender(Sender):
    """Sends to one chat per tier (``targets``: tier → (chat_id, message_thread_id or None))."""

    platform = "telegram"

    def __init__(
        self,
        token: str,
        targets: dict[str, tuple[int | str, int | None]],
        *,
        base_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not token:
            raise ValueError("token: empty; set the channel's token_env variable")
        self.targets = dict(targets)
        kwargs = {"base_url": base_url} if base_url else {}
        self.bot = Bot(token, **kwargs)
        self._credential = credential_digest(token)
        self.timeout_s = timeout_s
        self._started = False

    @property
    def rate_credential(self) -> str:
        """The bot token's digest: Telegram's 30 messages/s are per bot, whichever channel sends."""
        return self._credential

    async def start(self) -> None:
        if not self._started:
            await self.bot.initialize()  # getMe: fails fast on a bad token or an unreachable server
            self._started = True

    async def close(self) -> None:
        if self._started:
            await self.bot.shutdown()
            self._started = False

    def _target(self, tier: str) -> tuple[int | str, int | None]:
        try:
            return self.targets[tier]
        except KeyError:
            raise PermanentError(f"tier: {tier!r} has no Telegram chat configured") from None

    async def send(self, delivery: Delivery, parent: Posted | None) -> Posted:
        chat_id, topic = self._target(delivery.tier)
        reply = None
        if parent is not None:
            reply = ReplyParameters(message_id=int(parent.message_id), allow_sending_without_reply=True)
        text = f"{repeat_notice(delivery.ref)}\n\n{delivery.html}" if delivery.possible_duplicate else delivery.html
        try:
            message = await self.bot.send_message(
                chat_id=chat_id,
                text=text,
                parse_mode=ParseMode.HTML,
                message_thread_id=topic,
                reply_parameters=reply,
                read_timeout=self.timeout_s,
                write_timeout=self.timeout_s,
                connect_timeout=self.timeout_s,
            )
        except RetryAfter as exc:
            raise TransientError(f"telegram 429: {exc}", _seconds(exc.retry_after)) from exc
        except TimedOut as exc:
            raise UnknownOutcome(f"telegram timeout: {exc}") from exc
        except (BadRequest, Forbidden, InvalidToken) as exc:
            raise PermanentError(f"telegram {type(exc).__name__}: {exc}") from exc
        except NetworkError as exc:
            raise TransientError(f"telegram network error: {exc}") from exc
        except TelegramError as exc:
            raise PermanentError(f"telegram {type(exc).__name__}: {exc}") from exc
        thread = parent.message_id if parent is not None else None
        return Posted(message_id=str(message.message_id), chat_id=str(chat_id), thread_id=thread)

    async def find_existing(self, delivery: Delivery, parent: Posted | None) -> Posted | Check:
        return Check.UNCHECKABLE
