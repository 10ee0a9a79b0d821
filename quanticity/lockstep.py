"""The canonical per-step order of a simulated session, shared by the backtest and the lock-step live run.

Why this exists: issue 4 asks that the backtest of a session trade exactly like the live actor
system on the same session. The live actors normally interleave by wall-clock timing; in
lock-step mode (``RunSpec.lockstep``) the feed instead awaits each stage of a step before the
next, in the order below, and ``research.backtest`` calls the same stages in-process. Every piece
of the order that is not a plain call on a library object lives here, so both drivers run *this*
code rather than two copies of it.

Canonical order, per feed step (``ts`` = the step's ``ts_event``; the simulated clock is ``ts``):

1. the market steps with ``ts_init = ts``; ``system:clock`` is set to ``ts``;
2. alternative data due by ``ts`` (:class:`AltDataCursor`) goes to every SPEC strategy, and the
   ``VOL_CLOSE`` readings (:func:`vol_close_by_symbol`) to their symbol's analytics engine;
3. for each symbol in sorted order: the analytics engine takes the step's batch; when a snapshot is
   due it goes to the strategies trading the symbol (the legacy rule first, then the SPEC strategies
   in config order), each of which enqueues its signals into ``signals:stream`` (atomic, de-duplicated)
   before the next strategy runs;
4. the risk desk (:class:`quanticity.risk.desk.RiskDesk`) books the fills of ``trades:fills`` up to its
   end, samples the step's underlying quotes (:func:`step_quotes`) for the correlation rule, marks the
   P&L book when the router revalued, runs the daily-loss and drawdown breakers, then drains
   ``signals:stream`` up to its end (the previous tick's exits first, by contract key, then the
   entries in the order step 3 enqueued them), judging each at ``now = ts`` and handing an approval
   to the router (entries worked from the venue's current quote) before the next signal;
5. the venue takes the step's marks and matches its working orders; the fills are booked by the router;
6. when ``feed.router_tick_every_s`` of simulated time has passed since the last tick
   (:class:`TickSchedule`), the router ticks: missed executions are replayed, the open positions and
   working entries (:func:`tick_contracts`) are quoted, entries worked, brackets kept in line, and the
   due exits enqueued in contract-key order (:func:`sorted_exits`) — judged in step 4 of the next step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import redis

from quanticity.messages import AltDataEvent, AltDataKind, MarketBatch, OptionContract, Quote, Signal

NS = 1_000_000_000
DRAIN_CHUNK = 256
"""Stream entries read per XRANGE while draining a stream to its end."""

__all__ = [
    "AltDataCursor",
    "TickSchedule",
    "drain_stream",
    "sorted_exits",
    "step_quotes",
    "tick_contracts",
    "vol_close_by_symbol",
]


class AltDataCursor:
    """The session's alternative-data events (sorted by ``ts_event``), handed out as time passes."""

    def __init__(self, events: Sequence[AltDataEvent]) -> None:
        self.events = list(events)
        self.position = 0

    def due(self, now_ns: int) -> list[AltDataEvent]:
        """Every event not handed out yet that has happened by ``now_ns`` (in order); advances."""
        end = self.position
        while end < len(self.events) and self.events[end].ts_event <= now_ns:
            end += 1
        batch = self.events[self.position : end]
        self.position = end
        return batch


def vol_close_by_symbol(events: Iterable[AltDataEvent]) -> dict[str, list[AltDataEvent]]:
    """The prior sessions' closing vol readings per symbol (they seed each symbol's IV-rank history)."""
    out: dict[str, list[AltDataEvent]] = {}
    for event in events:
        if event.kind is AltDataKind.VOL_CLOSE:
            out.setdefault(event.symbol, []).append(event)
    return out


class TickSchedule:
    """When the router ticks: every ``every_s`` simulated seconds since the last tick, checked per step
    (per flush in the paced mode, so paced ticks land on flush boundaries)."""

    def __init__(self, every_s: float, start_ns: int) -> None:
        self.every_ns = every_s * NS  # a float, compared exactly as the feed always did
        self.last_ns = start_ns

    def due(self, now_ns: int) -> bool:
        """True when a tick is due at ``now_ns``; the caller then calls :meth:`ticked`."""
        return now_ns - self.last_ns >= self.every_ns

    def ticked(self, now_ns: int) -> None:
        """Record that the router ticked at ``now_ns``."""
        self.last_ns = now_ns


def step_quotes(batches: Mapping[str, MarketBatch]) -> dict[str, Quote]:
    """The last underlying quote of each symbol's batch (symbols without one are left out): what the
    risk desk samples for the correlation rule in lock-step."""
    return {symbol: batch.quotes[-1] for symbol, batch in sorted(batches.items()) if batch.quotes}


def tick_contracts(
    positions: Iterable[OptionContract], working_entries: Iterable[OptionContract]
) -> list[OptionContract]:
    """The contracts a router tick quotes (open positions, then working entries), one per key, sorted
    by key so the venue is asked in the same order every run."""
    contracts = {c.key: c for c in positions}
    contracts.update({c.key: c for c in working_entries})
    return [contracts[k] for k in sorted(contracts)]


def sorted_exits(signals: Iterable[Signal]) -> list[Signal]:
    """Exit signals of one router tick in the order they are enqueued: by contract key."""
    return sorted(signals, key=lambda s: s.contract.key)


def drain_stream(
    client: redis.Redis,
    stream: str,
    cursor_key: str,
    handle: Callable[[str, dict[str, str]], None],
    chunk: int = DRAIN_CHUNK,
) -> int:
    """Handle every entry of ``stream`` after the cursor stored at ``cursor_key``, up to the stream's end
    *as it was when the drain started*; the cursor is saved after each entry (like the followers do),
    so entries added while draining (none in lock-step) wait for the next drain. Returns entries handled.
    """
    last = client.xrevrange(stream, count=1)
    if not last:
        return 0
    end = last[0][0]
    cursor = client.get(cursor_key) or "0-0"
    handled = 0
    while cursor != end:
        entries = client.xrange(stream, min=f"({cursor}", max=end, count=chunk)
        if not entries:
            break
        for entry_id, fields in entries:
            handle(entry_id, fields)
            cursor = entry_id
            client.set(cursor_key, entry_id)
            handled += 1
    return handled
