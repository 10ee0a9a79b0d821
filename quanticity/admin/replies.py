"""What the controller answers: text plus inline buttons, independent of any chat library.

Callback data is kept short (Telegram caps it at 64 bytes) and carries only an action and an
opaque id; everything the action needs is looked up server-side, so a forged callback can at most
name an id that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_CALLBACK_BYTES = 64


@dataclass(frozen=True)
class Button:
    """One inline button."""

    text: str
    data: str

    def __post_init__(self) -> None:
        if len(self.data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"callback data: {self.data!r} is longer than {MAX_CALLBACK_BYTES} bytes")


@dataclass(frozen=True)
class Reply:
    """A message to send back: ``text``, rows of buttons, and for a button press whether the answer
    replaces the message that carried the button (a settled question) or is only shown to the
    presser (a refused, foreign or malformed press must not wipe the owner's buttons)."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = field(default=())
    settles: bool = False
