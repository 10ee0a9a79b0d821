"""Rotation of level-2 depth over more symbols than TWS allows at once.

TWS allows 3 concurrent ``reqMktDepth`` per account. :class:`DepthRotation` decides which
symbols hold the lines: windows of ``lines`` symbols in round-robin order, each kept for
``dwell_s`` seconds. Error 309 ("max number of market depth requests") is a *capacity signal*:
another client of the account holds a line, so the rotation drops the refused symbol and runs
with one line fewer for ``retry_after_s`` before trying the full width again. Error 354 ("market
data not subscribed": the account has no depth entitlement for that symbol's exchange, as on a
delayed-only account) is a *symbol* signal instead: the symbol sits out of the rotation for
``retry_after_s`` and its line goes at once to the next symbol. It is pure logic over the time it
is given, so tests drive it with simulated time.
"""

from __future__ import annotations

import dataclasses

__all__ = ["DepthPlan", "DepthRotation"]


@dataclasses.dataclass(frozen=True)
class DepthPlan:
    """What to change now: symbols to subscribe and symbols to cancel."""

    subscribe: tuple[str, ...]
    cancel: tuple[str, ...]


class DepthRotation:
    """Which symbols hold the depth lines, window after window."""

    def __init__(self, symbols: list[str], lines: int, dwell_s: float, retry_after_s: float) -> None:
        if lines < 1:
            raise ValueError(f"lines: {lines} must be at least 1")
        if dwell_s <= 0:
            raise ValueError(f"dwell_s: {dwell_s} must be positive")
        self.symbols = list(dict.fromkeys(symbols))
        self.lines = lines
        self.dwell_s = dwell_s
        self.retry_after_s = retry_after_s
        self.active: set[str] = set()
        self.capacity = lines
        self.capacity_errors = 0
        self.entitlement_errors = 0
        self.rotations = 0
        self._not_entitled_until: dict[str, float] = {}
        self._cursor = 0
        self._window_start: float | None = None
        self._restore_at: float | None = None

    def reset(self) -> None:
        """Every line was lost (reconnect, 1101): the next :meth:`plan` opens a new window."""
        self.active.clear()
        self._window_start = None

    def plan(self, now_s: float) -> DepthPlan:
        """The changes due at ``now_s``; the caller applies them (and reports 309s back)."""
        if self._restore_at is not None and now_s >= self._restore_at:
            self.capacity = self.lines
            self._restore_at = None
        for symbol, until in list(self._not_entitled_until.items()):
            if now_s >= until:
                del self._not_entitled_until[symbol]
        eligible = [s for s in self.symbols if s not in self._not_entitled_until]
        if not eligible or self.capacity == 0:
            return self._move_to(set(), now_s)
        if len(eligible) <= self.capacity:
            return self._move_to(set(eligible), now_s)
        due = self._window_start is None or now_s - self._window_start >= self.dwell_s
        if not due:
            return DepthPlan((), ())
        n = len(eligible)
        self._cursor %= n
        window = {eligible[(self._cursor + i) % n] for i in range(self.capacity)}
        self._cursor = (self._cursor + self.capacity) % n
        self.rotations += 1
        return self._move_to(window, now_s)

    def _move_to(self, wanted: set[str], now_s: float) -> DepthPlan:
        subscribe = tuple(s for s in self.symbols if s in wanted and s not in self.active)
        cancel = tuple(s for s in self.symbols if s in self.active and s not in wanted)
        self.active = set(wanted)
        if subscribe or cancel or self._window_start is None:
            self._window_start = now_s
        return DepthPlan(subscribe, cancel)

    def add_symbol(self, symbol: str) -> bool:
        """Rotate over ``symbol`` too (added to the universe at run time); False if it already is.

        It joins at the end of the round-robin order and gets a line at the next window (or at
        the next :meth:`plan` while there are no more symbols than lines).
        """
        if symbol in self.symbols:
            return False
        self.symbols.append(symbol)
        return True

    def remove_symbol(self, symbol: str) -> bool:
        """Stop rotating over ``symbol``; True when it held a line, which the caller must cancel.

        The cursor keeps pointing at the same next symbol, so the other symbols' turns are not
        skipped or repeated.
        """
        if symbol not in self.symbols:
            return False
        index = self.symbols.index(symbol)
        self.symbols.remove(symbol)
        if index < self._cursor:
            self._cursor -= 1
        self._cursor = self._cursor % len(self.symbols) if self.symbols else 0
        held = symbol in self.active
        self.active.discard(symbol)
        self._not_entitled_until.pop(symbol, None)
        return held

    def capacity_error(self, symbol: str, now_s: float) -> None:
        """TWS refused ``symbol`` with 309: drop it and use one line fewer until the retry time."""
        self.capacity_errors += 1
        self.active.discard(symbol)
        self.capacity = max(min(self.capacity - 1, len(self.active)), 0)
        self._restore_at = now_s + self.retry_after_s

    def not_entitled(self, symbol: str, now_s: float) -> None:
        """TWS refused ``symbol`` with 354: leave it out until the retry time; its line is free now.

        The capacity stays: the line itself was not refused, so the next :meth:`plan` opens a new
        window with the symbols that remain.
        """
        self.entitlement_errors += 1
        self.active.discard(symbol)
        self._not_entitled_until[symbol] = now_s + self.retry_after_s
        self._window_start = None

    @property
    def not_entitled_symbols(self) -> list[str]:
        """Symbols sitting out after a 354, in rotation order."""
        return [s for s in self.symbols if s in self._not_entitled_until]
