"""Redis persistence of the :class:`~quanticity.execution.pnl.PnLBook` under ``pnl:*`` (SPEC §4, §9).

One transaction writes the book's snapshot, the fills-stream cursor it includes, the readable
views (per position, strategy and ET day) and the equity high-water marks, so a crash can never
leave a fill in the views but not in the snapshot, or the cursor ahead of the snapshot. A restart
restores the snapshot and resumes the stream after the cursor; a fill replayed from before the
cursor (the crash fell between the write and the stream acknowledgement) is recognised by its
``exec_id`` and changes nothing.

A missing or unreadable snapshot is not fatal: ``trades:fills`` is durable and complete, so the
book is rebuilt from the first entry (the cursor is reset with it) and the problem is counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import redis

from quanticity import keys
from quanticity.execution.pnl import PnLBook

START_CURSOR = "0-0"


@dataclass
class PnLSnapshot:
    """What :meth:`RedisPnLStore.load` restores."""

    book: PnLBook
    cursor: str = START_CURSOR
    equity: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # unreadable keys that were reset (for the log)


class RedisPnLStore:
    """Reads and writes the ``pnl:*`` keys of the risk gate's P&L book."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def load(self) -> PnLSnapshot:
        """The persisted book, its cursor and the equity marks; an unreadable book restarts from the stream."""
        raw_book, cursor = self._client.mget(keys.PNL_BOOK, keys.PNL_CURSOR)
        problems: list[str] = []
        book = PnLBook()
        if raw_book:
            try:
                book = PnLBook.restore(json.loads(raw_book))
            except (ValueError, TypeError, KeyError, AttributeError, msgspec.ValidationError) as exc:
                problems.append(f"{keys.PNL_BOOK}: unreadable ({exc}); rebuilt from {keys.FILLS_STREAM}")
                book, cursor = PnLBook(), None
        else:
            cursor = None  # no snapshot: whatever cursor exists does not describe this (empty) book
        equity: dict[str, Any] = {}
        for day, raw in self._client.hgetall(keys.PNL_EQUITY).items():
            try:
                equity[day] = json.loads(raw)
            except ValueError:
                problems.append(f"{keys.PNL_EQUITY}[{day}]: unreadable {raw!r}; dropped")
        return PnLSnapshot(book=book, cursor=cursor or START_CURSOR, equity=equity, problems=problems)

    def save(self, book: PnLBook, cursor: str | None, equity: Mapping[str, Any]) -> None:
        """Write the snapshot, cursor, views and equity marks in one MULTI/EXEC."""
        positions = {k: json.dumps(asdict(v)) for k, v in book.positions().items()}
        strategies = {k: json.dumps({**asdict(v), "total": v.total}) for k, v in book.by_strategy().items()}
        days = {
            d.isoformat(): json.dumps({**asdict(v), "day": d.isoformat(), "by_strategy": dict(v.by_strategy)})
            for d, v in book.by_day().items()
        }
        pipe = self._client.pipeline(transaction=True)
        pipe.set(keys.PNL_BOOK, json.dumps(book.state()))
        if cursor is not None:
            pipe.set(keys.PNL_CURSOR, cursor)
        for key, mapping in ((keys.PNL_POSITIONS, positions), (keys.PNL_STRATEGIES, strategies), (keys.PNL_DAYS, days)):
            pipe.delete(key)
            if mapping:
                pipe.hset(key, mapping=mapping)
        pipe.delete(keys.PNL_EQUITY)
        if equity:
            pipe.hset(keys.PNL_EQUITY, mapping={d: json.dumps(v) for d, v in equity.items()})
        pipe.execute()

    def cursor(self) -> str:
        """The last fills-stream entry included in the persisted book."""
        return self._client.get(keys.PNL_CURSOR) or START_CURSOR

    def positions(self) -> dict[str, dict[str, Any]]:
        """Persisted per-position P&L (for reports and ``quanticity status``)."""
        return {k: json.loads(v) for k, v in self._client.hgetall(keys.PNL_POSITIONS).items()}

    def strategies(self) -> dict[str, dict[str, Any]]:
        """Persisted per-strategy P&L."""
        return {k: json.loads(v) for k, v in self._client.hgetall(keys.PNL_STRATEGIES).items()}

    def days(self) -> dict[str, dict[str, Any]]:
        """Persisted per-day P&L by ISO date."""
        return {k: json.loads(v) for k, v in self._client.hgetall(keys.PNL_DAYS).items()}
