"""What the publisher needs from a platform: send, and — where the platform allows — check.

A sender turns a stored :class:`~quanticity.distribution.schedule.Delivery` into one platform
message and reports the platform's ids. Failures are classified, because the publisher treats
them differently:

* :class:`TransientError` — not delivered, try again later (429 with ``retry_after``, connection
  refused, a transient server error where the request certainly did not take effect);
* :class:`PermanentError` — the platform rejected the message (4xx); retried with backoff up to
  the attempt limit (a permission or chat fix may cure it), then dead-lettered;
* :class:`UnknownOutcome` — the request may or may not have taken effect (timeout, connection
  dropped after sending, 5xx on Discord). The publisher then asks :meth:`Sender.find_existing`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass

from quanticity.distribution.schedule import Delivery


@dataclass(frozen=True)
class Posted:
    """Where a message landed: the platform message id, its chat/channel, and its thread if any."""

    message_id: str
    chat_id: str
    thread_id: str | None = None


class Check(enum.Enum):
    """Answers of :meth:`Sender.find_existing` other than "found"."""

    NOT_FOUND = "not_found"  # checked: the message is not there, a resend is safe
    UNCHECKABLE = "uncheckable"  # the platform offers no way to look (Telegram bots cannot read history)


class SendError(Exception):
    """Base of classified send failures."""


class TransientError(SendError):
    """Not delivered; retry after at least ``retry_after_s`` (None = the backoff decides)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(SendError):
    """The platform rejected the message."""


class UnknownOutcome(SendError):
    """The request may have taken effect."""


class Sender(ABC):
    """One platform connection of one channel; ``platform`` picks the rate limit."""

    platform: str = "local"

    @property
    def rate_credential(self) -> str:
        """Digest of the credential whose platform rate limit this sender spends (shared by all its channels).

        Publishers whose senders name the same ``(platform, rate_credential)`` share one token
        bucket; the default is one budget for the whole platform.
        """
        return "platform"

    async def start(self) -> None:
        """Open connections / log in. Called once before the first send."""
        return None

    async def close(self) -> None:
        """Release connections."""
        return None

    @abstractmethod
    async def send(self, delivery: Delivery, parent: Posted | None) -> Posted:
        """Post ``delivery``; in ``parent``'s thread (reply) when given. Raises a :class:`SendError`."""

    @abstractmethod
    async def find_existing(self, delivery: Delivery, parent: Posted | None) -> Posted | Check:
        """Whether ``delivery`` already landed (after an unknown outcome), by its ``ref``."""
