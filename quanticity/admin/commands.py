"""Parsing admin command text: ``/name@bot arg …`` → (name, args), and argument validation.

Validation errors name the argument and the value, so the admin sees exactly what was wrong.
"""

from __future__ import annotations

import re

_COMMAND = re.compile(r"^/([A-Za-z_]{1,32})(?:@[A-Za-z0-9_]{1,64})?(?:\s+(.*))?$", re.DOTALL)
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_STRATEGY = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class CommandError(ValueError):
    """A malformed command or argument; the message is shown to the admin."""


def parse(text: str) -> tuple[str, list[str]]:
    """``("halt", ["feed", "down"])`` from ``"/halt@QuantBot feed down"``."""
    match = _COMMAND.match(text.strip())
    if match is None:
        raise CommandError(f"not a command: {text.strip()[:40]!r} (commands start with '/'; try /help)")
    return match.group(1).lower(), (match.group(2) or "").split()


def symbol(value: str) -> str:
    """A ticker (upper-cased) or a CommandError naming the value."""
    ticker = value.upper()
    if not _SYMBOL.match(ticker):
        raise CommandError(f"symbol: {value!r} is not a valid ticker (A-Z, digits, '.', ≤ 10 chars)")
    return ticker


def strategy(value: str) -> str:
    """A strategy name or a CommandError naming the value."""
    if not _STRATEGY.match(value):
        raise CommandError(f"strategy: {value!r} is not a valid strategy name (lower-case, digits, '_')")
    return value


def choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else a CommandError naming ``name``."""
    if value is None or value.lower() not in allowed:
        raise CommandError(f"{name}: {value!r} must be one of {' | '.join(allowed)}")
    return value.lower()
