"""Single-run backtest: one synthetic session through the live library objects, in one process.

Why this exists: the live system runs analytics, strategy, risk gate, router and venue as Ray
actors that, in the normal paced mode, interleave by wall-clock timing, so two paced runs of the
same seed never trade exactly alike. This driver holds the *same* library objects the actors hold —
:class:`AnalyticsEngine` per symbol, the strategies, the :class:`RiskDesk` (a :class:`RiskGate` with
the risk actor's :class:`AccountMonitor` as its correlation source and P&L book / equity curve for
the daily-loss and drawdown breakers), :class:`OrderRouter` over a Redis :class:`ExecutionStore`,
:class:`SimBroker` priced by a pricing-only :class:`SyntheticMarket` twin — and calls them in the
canonical order of :mod:`quanticity.lockstep` on a :class:`SimulatedClock`, so a seed always gives
byte-identical fills, trades and signals. Nothing reads the wall clock for a decision: ``ts_init``
is the step's ``ts_event`` wherever this driver stamps, and the router's ``wall_ns`` is the
simulated clock (the SPEC strategies' library stamps a signal's ``ts_init`` from the wall clock;
no output carries it).

Per feed step (``ts`` = the step's ``ts_event``), the stages of :mod:`quanticity.lockstep`:

1. ``market.step(ts_init=ts)``; the clock is set to ``ts``;
2. alternative data due by ``ts`` to the SPEC strategies and (``VOL_CLOSE``) the engines;
3. for each symbol in sorted order: ``engine.on_batch(batch)``; if a snapshot is due →
   ``engine.snapshot(now, ts)`` → each strategy trading the symbol (legacy rule first), whose signals
   are enqueued into ``signals:stream`` exactly like the StrategyActor does (``enqueue_once`` /
   ``AtomicEnqueuer``);
4. ``RiskGateActor.step``: the desk books ``trades:fills`` into the P&L book, samples the step's
   underlying quotes, marks the book when the router revalued, runs the breakers, then drains
   ``signals:stream`` (the previous tick's exits, then this step's entries) at ``now = ts``; each
   approval goes to ``OrderRouter.submit_entry`` (worked from the venue's current quote) or
   ``submit`` before the next signal is judged;
5. the venue takes the step's marks exactly like ``SimBrokerActor.match`` and matches working
   orders; fills go to ``OrderRouter.on_fills``;
6. when due (:class:`~quanticity.lockstep.TickSchedule`), the router ticks like
   ``OrderRouterActor.on_tick`` and its exits are enqueued by contract key, for step 4 of the next step;
7. the equity curve of the summary is sampled (realized + open positions at the pricing twin's mids).

**Lock-step live runs** (``RunSpec.lockstep``, ``quanticity run --lockstep``) run exactly these
stages, stage by stage, through the actors: for trades there is no difference —
``tests/integration/test_live_vs_backtest.py`` asserts equal fills, positions, realized P&L and
judged signals with their decisions. Only stamps and side effects differ (see below).

Where this differs from the **paced** live actors (a paced comparison must allow for these):

* **Matching cadence.** Paced, the venue matches once per feed *flush* (every ``flush_ms`` of wall
  time or ``max_steps_per_flush`` steps) at the marks of the flush's last step, and an order can
  first fill at the flush *after* the one that produced its signal. Here the venue matches every
  step, and an order submitted in step ``t`` can fill at step ``t``'s marks. Passive fills draw
  from the venue's seeded generator once per working order per matching round, so the number of
  rounds changes which draws fill: fill times and passive fills differ from paced runs.
* **Router ticks** are checked once per flush when paced, so ticks land on flush boundaries; paced
  exits enter the stream whenever the router actor runs its tick and are judged whenever the
  gate's follower reads them.
* **Risk "now".** Paced, the gate judges at the feed's last published ``system:clock`` (the last
  step of a flush, later if the gate lags) with whatever fills the router and the P&L follower have
  booked by then; its monitor samples quotes from the raw snapshots every 0.2 s of wall time. Here
  ``now`` is the signal's step, every fill of earlier steps is booked, and the quotes are the step's.
  This moves the order-rate window, the 0DTE cut-off boundary, input age, intent timestamps, the
  correlation window's samples and the breakers' timing.
* **Signal order into the gate.** Paced it is stream arrival order (symbols and strategies
  interleave by timing); here exits (by contract key) then entries (by symbol, then strategy). The
  *set* of entry signals is the same: snapshots are decided per batch and strategy state is per
  strategy, so interleaving cannot change which signals fire (only, through the gate, which pass).
* **Skipped side effects** that decide nothing (also true against lock-step runs): analytics metric
  snapshots and checkpoints, strategy checkpoints, raw snapshots, feed checkpoints,
  ``system:clock``, venue persistence (``sim:broker:*``), P&L book and correlation persistence
  (``pnl:*``), the risk audit stream and alerts (decisions go to ``signals.parquet``, breaker alerts
  are counted). The gate uses :class:`MemoryRiskStore` instead of the Redis one (the same state,
  not persisted).
* **Stamps** (also against lock-step runs): the live actors stamp heartbeats, audit and alert
  entries, supervisor events and the SPEC strategies' signal ``ts_init`` from the wall clock; in
  lock-step every other ``ts_init`` (batches, marks, snapshots, legacy signals, fills, router records
  and exits) is the step's simulated time, as here.
* **No faults:** the router is reconciled once against an empty venue; no restarts, no retries.
* **Session end:** open positions are valued at the pricing twin's final mids (not written to
  Redis); exit signals of the final tick are recorded as ``SESSION_END`` (never judged) — a
  lock-step live run leaves the same signals in the stream, unjudged.

Outputs (``out_dir``): ``fills``, ``trades`` (round trips, flat to flat), ``signals`` (with the
gate's decision) and ``pnl`` (per ET day and strategy) as Parquet with fixed schemas, rows in
processing order and no pandas or wall-clock metadata, so a seed gives byte-identical files; and
``summary.json``, identical across runs except its ``timing`` block (wall seconds, events/s).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from quanticity import keys
from quanticity.analytics.engine import AnalyticsEngine
from quanticity.calendar import ET
from quanticity.clock import SimulatedClock
from quanticity.config import QuanticityConfig, load_config
from quanticity.execution.pnl import trading_day
from quanticity.execution.positions import Position, apply_fill
from quanticity.execution.router import OrderRouter
from quanticity.execution.store import ExecutionStore
from quanticity.lockstep import (
    AltDataCursor,
    TickSchedule,
    sorted_exits,
    step_quotes,
    tick_contracts,
    vol_close_by_symbol,
)
from quanticity.messages import (
    Direction,
    Fill,
    MarketBatch,
    OptionContract,
    OrderIntent,
    Right,
    RiskDecision,
    Side,
    Signal,
    UnderlyingMark,
    decode,
    encode,
)
from quanticity.risk.account import AccountMonitor
from quanticity.risk.desk import Judgement, RiskDesk
from quanticity.risk.gate import MemoryRiskStore, RiskGate
from quanticity.session import RunSpec, plan_session
from quanticity.sim.altdata import session_alt_data
from quanticity.sim.broker import SimBroker
from quanticity.sim.market import SyntheticMarket
from quanticity.store.client import SignalQueue, connect
from quanticity.store.embedded import EmbeddedRedis
from quanticity.strategies.base import Strategy
from quanticity.strategies.dedupe import AtomicEnqueuer, EnqueueStatus
from quanticity.strategies.imbalance_momentum import ImbalanceMomentumStrategy
from quanticity.strategies.registry import build_strategy

__all__ = ["BacktestResult", "main", "parse_duration", "run_backtest"]

NS = 1_000_000_000
SIGNAL_TTL_S = 24 * 3600  # what StrategyActor and OrderRouterActor give the de-duplication markers
SESSION_END = "SESSION_END"
"""Decision code of exit signals produced by the last router tick: the session ended before judging."""
PROGRESS_EVERY_STEPS = 60
PARQUET_FILES = ("fills", "trades", "signals", "pnl")

_TS_ET = pa.timestamp("ns", tz="America/New_York")

FILLS_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("exec_id", pa.string()),
        ("order_ref", pa.string()),
        ("signal_id", pa.string()),
        ("strategy", pa.string()),
        ("contract", pa.string()),
        ("underlying", pa.string()),
        ("expiry", pa.string()),
        ("strike", pa.float64()),
        ("right", pa.string()),
        ("side", pa.string()),
        ("quantity", pa.int64()),
        ("price", pa.float64()),
        ("commission", pa.float64()),
        ("ts_event", pa.int64()),
        ("time_et", _TS_ET),
        ("realized", pa.float64()),
        ("position_after", pa.int64()),
        ("origin", pa.string()),
    ]
)
TRADES_SCHEMA = pa.schema(
    [
        ("trade_id", pa.string()),
        ("strategy", pa.string()),
        ("contract", pa.string()),
        ("underlying", pa.string()),
        ("expiry", pa.string()),
        ("strike", pa.float64()),
        ("right", pa.string()),
        ("direction", pa.string()),
        ("status", pa.string()),
        ("entry_ns", pa.int64()),
        ("entry_time_et", _TS_ET),
        ("exit_ns", pa.int64()),
        ("exit_time_et", _TS_ET),
        ("holding_s", pa.float64()),
        ("quantity", pa.int64()),
        ("quantity_closed", pa.int64()),
        ("entry_price", pa.float64()),
        ("exit_price", pa.float64()),
        ("commissions", pa.float64()),
        ("realized", pa.float64()),
        ("unrealized", pa.float64()),
        ("pnl", pa.float64()),
        ("fills", pa.int64()),
        ("entry_signal_id", pa.string()),
        ("entry_reason", pa.string()),
        ("exit_reason", pa.string()),
    ]
)
SIGNALS_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("signal_id", pa.string()),
        ("strategy", pa.string()),
        ("symbol", pa.string()),
        ("side", pa.string()),
        ("direction", pa.string()),
        ("contract", pa.string()),
        ("underlying", pa.string()),
        ("expiry", pa.string()),
        ("strike", pa.float64()),
        ("right", pa.string()),
        ("confidence", pa.int64()),
        ("reason", pa.string()),
        ("ts_event", pa.int64()),
        ("time_et", _TS_ET),
        ("judged_ns", pa.int64()),
        ("reference_bid", pa.float64()),
        ("reference_ask", pa.float64()),
        ("signal_quantity", pa.int64()),
        ("approved", pa.bool_()),
        ("decision", pa.string()),
        ("decision_detail", pa.string()),
        ("order_ref", pa.string()),
        ("order_quantity", pa.int64()),
        ("limit_price", pa.float64()),
    ]
)
PNL_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("strategy", pa.string()),
        ("realized", pa.float64()),
        ("commissions", pa.float64()),
        ("unrealized", pa.float64()),
        ("total", pa.float64()),
        ("fills", pa.int64()),
        ("trades_closed", pa.int64()),
    ]
)


# --- result ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BacktestResult:
    """What one run produced: the summary and the paths of its files under ``out_dir``."""

    out_dir: Path
    summary: dict[str, Any]
    files: dict[str, Path]
    open_positions: dict[str, int]


# --- the venue ---------------------------------------------------------------------------------
class _Venue:
    """In-process stand-in for ``SimBrokerActor``: the same SimBroker and pricing twin, no persistence.

    The router talks to :attr:`broker` directly (it satisfies the router's ``Broker`` protocol and
    ``place`` is synchronous); this class adds what the actor adds around it — the marks, the
    pricing twin and the matching call — without Redis or Ray.
    """

    def __init__(self, config: QuanticityConfig, spec: RunSpec) -> None:
        execution = config.trading.execution
        self.broker = SimBroker(
            seed=spec.seed,
            commission_per_contract=execution.commission_per_contract,
            min_commission=execution.min_commission,
        )
        self.pricing = SyntheticMarket(
            config.market, [], date.fromisoformat(spec.session_date), spec.seed, spec.sim_start_ns, spec.step_ns
        )
        self.marks: dict[str, UnderlyingMark] = {}
        self.now_ns = spec.sim_start_ns
        # option_quote is a pure function of the twin's state, which only moves in on_marks: matching,
        # router ticks and the equity curve of one step share one BSM evaluation per contract.
        self._cache: dict[str, tuple[float, float]] = {}

    def quote(self, contract: OptionContract) -> tuple[float, float] | None:
        """(bid, ask) exactly as ``SimBrokerActor._quote`` computes it; None before the first mark."""
        if contract.underlying not in self.marks:
            return None
        key = contract.key
        cached = self._cache.get(key)
        if cached is None:
            quote = self.pricing.option_quote(contract, self.now_ns)
            cached = self._cache[key] = (quote.bid, quote.ask)
        return cached

    def quotes(self, contracts: Iterable[OptionContract]) -> dict[str, tuple[float, float]]:
        """``SimBrokerActor.quotes``: current (bid, ask) of each contract the venue can price."""
        out = {}
        for contract in contracts:
            quote = self.quote(contract)
            if quote is not None:
                out[contract.key] = quote
        return out

    def on_marks(self, marks: Sequence[UnderlyingMark], ts_init: int) -> list[Fill]:
        """``SimBrokerActor.on_marks`` without persistence: adopt the marks, match working orders."""
        for mark in marks:
            self.marks[mark.symbol] = mark
            self.now_ns = max(self.now_ns, mark.ts_event)
        self.pricing.apply_marks(marks)
        self._cache.clear()
        if not self.broker.open_orders():
            return []
        return self.broker.on_market(self.quote, self.now_ns, ts_init)


# --- bookkeeping records -----------------------------------------------------------------------
@dataclass
class _SignalRecord:
    """One signal that reached the gate (or was left unjudged at the end) and its decision."""

    seq: int
    signal: Signal
    judged_ns: int | None = None
    decision: RiskDecision | None = None
    intent: OrderIntent | None = None


@dataclass
class _FillRecord:
    """One booked fill with the realized P&L the store booked for it."""

    seq: int
    fill: Fill
    signal_id: str
    realized: float
    position_after: int
    owner: str  # strategy of the position the fill belongs to (P&L attribution, like PnLBook)
    origin: str  # what sent the order: "signal", "entry child", "bracket stop", "bracket t1", …


@dataclass
class _Trade:
    """A round trip of one contract: from flat to flat (or still open at the end)."""

    trade_id: str
    owner: str
    contract: OptionContract
    entry_ns: int
    entry_signal_id: str
    entry_reason: str
    bought: int = 0
    buy_notional: float = 0.0
    sold: int = 0
    sell_notional: float = 0.0
    commissions: float = 0.0
    realized: float = 0.0
    fills: int = 0
    exit_ns: int | None = None
    exit_reasons: list[str] = field(default_factory=list)


# --- the run -----------------------------------------------------------------------------------
class _Backtest:
    """One run's objects and state; :meth:`run` drives the canonical order of the module docstring."""

    def __init__(self, config: QuanticityConfig, spec: RunSpec, client: redis.Redis) -> None:
        self.config = config
        self.spec = spec
        self.client = client
        self.symbols = sorted(config.system.universe.symbols)
        session_date = date.fromisoformat(spec.session_date)
        self.clock = SimulatedClock(spec.sim_start_ns)
        self.market = SyntheticMarket(
            config.market, list(self.symbols), session_date, spec.seed, spec.sim_start_ns, spec.step_ns
        )
        analytics = config.trading.analytics
        self.engines: dict[str, AnalyticsEngine] = {}
        for symbol in self.symbols:  # constructed exactly like SymbolAnalyticsActor does
            underlying = config.market.underlyings.get(symbol)
            self.engines[symbol] = AnalyticsEngine(
                symbol,
                analytics,
                min_dte=0 if symbol in config.system.universe.zero_dte else 14,
                rate=config.market.chain.risk_free_rate,
                div_yield=underlying.dividend_yield if underlying else 0.0,
                session_date=session_date,
            )
        # the strategies the supervisor would start, in the order actors.common.strategy_names lists them
        self.legacy = ImbalanceMomentumStrategy(config.trading.strategy) if config.trading.strategy.enabled else None
        self.strategies: list[Strategy] = [build_strategy(cfg) for cfg in config.trading.strategies.enabled()]
        self.queue = SignalQueue(client)
        self.enqueuer = AtomicEnqueuer(client)
        self.alt_data = AltDataCursor(session_alt_data(config, self.symbols, session_date, spec.seed))
        # the risk actor's gate: correlation from the account's returns window, the drawdown and
        # daily-loss breakers on the account's P&L book and equity curve (no persistence here)
        self.account = AccountMonitor(config.trading.risk)
        self.gate = RiskGate(
            config.trading.risk,
            MemoryRiskStore(),
            limit_offset=config.trading.execution.limit_offset_of_spread,
            correlation=self.account,
        )
        self.gate.restore_rate_window(self.clock.now_ns())
        self.venue = _Venue(config, spec)
        self.store = ExecutionStore(client)
        self.desk = RiskDesk(self.gate, self.account, self.store)
        self.desk.symbols.update(self.symbols)
        self.router = OrderRouter(
            self.store, self.venue.broker, config.trading.execution, self.clock.now_ns, clock=self.clock, brackets=True
        )
        self.router.reconcile()  # an empty venue: makes the router ready, as the actor does at start
        self.tick_schedule = TickSchedule(config.system.feed.router_tick_every_s, spec.sim_start_ns)

        # what the run observed
        self.events = 0
        self.steps = 0
        self.snapshots = 0
        self.duplicate_signals = 0
        self.alt_delivered = 0
        self.signals_by_strategy: Counter[str] = Counter()
        self.ticks = 0
        self.breaker_alerts: Counter[str] = Counter()
        self.signals: list[_SignalRecord] = []
        self.by_order_ref: dict[str, _SignalRecord] = {}
        self.fills: list[_FillRecord] = []
        self.rejected_fills = 0
        self.rejected_pnl_fills = 0  # fills the risk desk's P&L book refused (never expected)
        # an in-memory ledger, replaying the store's own apply_fill, so the equity curve never reads Redis
        self.positions: dict[str, Position] = {}
        self.owner: dict[str, str] = {}
        self.realized = 0.0
        self.equity_peak = config.trading.risk.account_equity
        self.max_drawdown = 0.0
        self.max_drawdown_pct = 0.0
        self.final_marks: dict[str, float] = {}

    # --- driving ------------------------------------------------------------------------------
    def run(self, on_step: Callable[[_Backtest], None] | None = None) -> None:
        """Step the session to its end in the canonical order."""
        spec = self.spec
        while self.market.now_ns < spec.sim_end_ns:
            ts = self.market.now_ns + spec.step_ns
            batches = self.market.step(ts)
            self.clock.set(ts)
            self.steps += 1
            self._deliver_alt_data(ts)
            for symbol in sorted(batches):
                for signal in self._analyse(symbol, batches[symbol], ts):
                    self._enqueue(signal)
            self._risk_step(ts, batches)
            fills = self.venue.on_marks(self.market.marks(ts), ts)
            if fills:
                self._book(fills)
            if self.tick_schedule.due(ts):
                self._tick(ts)
                self.tick_schedule.ticked(ts)
            self._sample_equity()
            if on_step is not None:
                on_step(self)
        # exits of the final tick are still in the stream: no step left to judge them
        cursor = self.client.get(keys.RISK_CURSOR) or "0-0"
        for _, fields in self.client.xrange(keys.SIGNALS_STREAM, min=f"({cursor}"):
            self.signals.append(_SignalRecord(seq=len(self.signals), signal=decode(fields["signal"], Signal)))
        self.final_marks = self._marks()

    def _deliver_alt_data(self, now: int) -> None:
        """FeedActor's lock-step alt-data stage: every alternative-data event that has happened by ``now``."""
        batch = self.alt_data.due(now)
        if not batch:
            return
        for strategy in self.strategies:
            for event in batch:
                strategy.on_alt_data(event)
        for symbol, events in vol_close_by_symbol(batch).items():  # closing vol history for IV rank
            if symbol in self.engines:
                for event in events:
                    self.engines[symbol].on_vol_close(event)
        self.alt_delivered += len(batch)

    def _analyse(self, symbol: str, batch: MarketBatch, ts: int) -> list[Signal]:
        """SymbolAnalyticsActor.on_batches for one batch, then StrategyActor.on_features for each
        strategy trading ``symbol`` (legacy rule first, then the SPEC strategies in config order)."""
        self.events += batch.event_count
        engine = self.engines[symbol]
        engine.on_batch(batch)
        now = engine.features.last_event_ns
        if not (now and engine.features.snapshot_due(now)):
            return []
        snap, _ = engine.snapshot(now, ts)
        self.snapshots += 1
        signals: list[Signal] = []
        if self.legacy is not None:
            signal = self.legacy.on_features(snap, now_ns=snap.ts_event, ts_init=ts)
            if signal is not None:
                signals.append(signal)
        for strategy in self.strategies:
            if symbol in strategy.config.symbols:
                signals.extend(strategy.on_features(snap, snap.ts_event))
        return signals

    def _enqueue(self, signal: Signal) -> bool:
        """The StrategyActor's atomic check-and-enqueue; False for a signal seen before (or, for the
        SPEC strategies, held back by the hardened de-duplication: cooldown, hysteresis, …)."""
        if self.legacy is not None and signal.strategy == self.legacy.config.name:
            entry = self.queue.enqueue_once(
                keys.signal_dedupe(signal.signal_id), keys.SIGNALS_STREAM, encode(signal).decode(), SIGNAL_TTL_S
            )
            added = entry is not None
        else:
            added = self.enqueuer.enqueue(signal).status is EnqueueStatus.ENQUEUED
        if not added:
            self.duplicate_signals += 1
            return False
        self.signals_by_strategy[signal.strategy] += 1
        return True

    def _risk_step(self, now: int, batches: dict[str, MarketBatch]) -> None:
        """``RiskGateActor.step``: book the fills so far, sample the step's quotes, mark the book, run the
        breakers, then judge the stream's signals at ``now``, each approval sent before the next."""
        self.desk.book_fills(self.client, lambda _entry, _outcome: self._count_rejected())
        for alert in self.desk.monitor(now, step_quotes(batches)):
            self.breaker_alerts[alert.level] += 1
        self.desk.drain_signals(self.client, now, self._deliver, self._record)

    def _count_rejected(self) -> None:
        self.rejected_pnl_fills += 1

    def _record(self, judgement: Judgement) -> None:
        for alert in judgement.alerts:
            self.breaker_alerts[alert.level] += 1
        record = _SignalRecord(
            seq=len(self.signals),
            signal=judgement.signal,
            judged_ns=judgement.now_ns,
            decision=judgement.decision,
            intent=judgement.intent,
        )
        self.signals.append(record)
        if judgement.intent is not None:
            self.by_order_ref[judgement.intent.order_ref] = record

    def _deliver(self, intent: OrderIntent) -> None:
        """OrderRouterActor.submit: entries are worked from the venue's quote, exits go out as they are."""
        if intent.side is Side.BUY:
            self.router.submit_entry(intent, self.venue.quote(intent.contract))
        else:
            self.router.submit(intent)

    def _book(self, fills: Sequence[Fill]) -> None:
        """Push the venue's executions to the router; mirror what it booked in the in-memory ledger."""
        self.router.on_fills(fills)
        for fill in fills:
            self._mirror(fill)

    def _mirror(self, fill: Fill) -> None:
        key = fill.contract.key
        try:  # the same pure function the store books with, on the same position: the same outcome
            position, realized = apply_fill(self.positions.get(key), fill)
        except ValueError:
            self.rejected_fills += 1
            return
        if key not in self.positions:
            self.owner[key] = fill.strategy
        owner = self.owner[key]
        if position is None:
            self.positions.pop(key, None)
        else:
            self.positions[key] = position
        self.realized += realized
        record, origin = self.origin(fill.order_ref)
        self.fills.append(
            _FillRecord(
                seq=len(self.fills),
                fill=fill,
                signal_id=record.signal.signal_id if record else "",
                realized=realized,
                position_after=position.quantity if position else 0,
                owner=owner,
                origin=origin,
            )
        )

    def origin(self, order_ref: str) -> tuple[_SignalRecord | None, str]:
        """The judged signal behind ``order_ref`` (if any) and what sent the order: the signal's
        own order, a chunk child of an entry (``{ref}-c{n}``), or a protective bracket leg."""
        record = self.by_order_ref.get(order_ref)
        if record is not None:
            return record, "signal"
        parent, _, child = order_ref.rpartition("-c")
        if parent and child.isdigit() and parent in self.by_order_ref:
            return self.by_order_ref[parent], "entry child"
        leg = self.store.bracket_leg(order_ref)
        if leg is not None:
            return None, f"bracket {leg.get('label') or leg.get('kind')}"
        return None, "unknown"

    def _tick(self, now: int) -> None:
        """OrderRouterActor.on_tick: catch up on executions, quote open positions and working
        entries, work the entries, keep the brackets in line, enqueue due exits."""
        self.ticks += 1
        broker = self.venue.broker
        if broker.execution_count != self.store.booked_count():
            self.router.on_fills(broker.executions())
        contracts = tick_contracts(
            (p.contract for p in self.store.positions().values()),
            (o.intent.contract for o in self.router.entries.working()),
        )
        if not contracts:
            return
        quotes = self.venue.quotes(contracts)
        for signal in sorted_exits(self.router.on_tick(quotes, now, now)):
            entry = self.queue.enqueue_once(  # the router actor's de-duplication of exits
                keys.signal_dedupe(signal.signal_id), keys.SIGNALS_STREAM, encode(signal).decode(), SIGNAL_TTL_S
            )
            if entry is None:
                self.duplicate_signals += 1

    def _marks(self) -> dict[str, float]:
        """Mid of every open position at the pricing twin's current state."""
        marks = {}
        for key in sorted(self.positions):
            quote = self.venue.quote(self.positions[key].contract)
            if quote is not None:
                marks[key] = (quote[0] + quote[1]) / 2
        return marks

    def unrealized(self, marks: dict[str, float]) -> dict[str, float]:
        """Open P&L per position at ``marks`` (Position.unrealized, the live formula)."""
        out = {}
        for key in sorted(self.positions):
            position = self.positions[key]
            mark = marks.get(key, position.mark)
            out[key] = msgspec.structs.replace(position, mark=mark).unrealized
        return out

    def _sample_equity(self) -> None:
        equity = self.config.trading.risk.account_equity + self.realized
        if self.positions:
            equity += sum(self.unrealized(self._marks()).values())
        if equity > self.equity_peak:
            self.equity_peak = equity
        drawdown = self.equity_peak - equity
        if drawdown > self.max_drawdown:
            self.max_drawdown = drawdown
            self.max_drawdown_pct = drawdown / self.equity_peak * 100 if self.equity_peak > 0 else 0.0


# --- outputs -----------------------------------------------------------------------------------
def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write with fixed settings and no pandas or wall-clock metadata, so equal rows give equal bytes."""
    pq.write_table(table, path, compression="zstd", compression_level=3, write_statistics=True)


def _table(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    columns = {}
    for column in schema:
        values = [row[column.name] for row in rows]
        if pa.types.is_timestamp(column.type):
            columns[column.name] = pa.array(values, type=pa.int64()).cast(column.type)
        else:
            columns[column.name] = pa.array(values, type=column.type)
    return pa.table(columns, schema=schema)


def _contract_columns(contract: OptionContract) -> dict[str, Any]:
    return {
        "contract": contract.key,
        "underlying": contract.underlying,
        "expiry": contract.expiry,
        "strike": float(contract.strike),
        "right": contract.right.value,
    }


def _fill_rows(bt: _Backtest) -> list[dict[str, Any]]:
    rows = []
    for record in bt.fills:
        fill = record.fill
        rows.append(
            {
                "seq": record.seq,
                "exec_id": fill.exec_id,
                "order_ref": fill.order_ref,
                "signal_id": record.signal_id,
                "strategy": fill.strategy,
                **_contract_columns(fill.contract),
                "side": fill.side.value,
                "quantity": fill.quantity,
                "price": fill.price,
                "commission": fill.commission,
                "ts_event": fill.ts_event,
                "time_et": fill.ts_event,
                "realized": record.realized,
                "position_after": record.position_after,
                "origin": record.origin,
            }
        )
    return rows


def _signal_rows(bt: _Backtest) -> list[dict[str, Any]]:
    rows = []
    for record in bt.signals:
        signal, decision, intent = record.signal, record.decision, record.intent
        rows.append(
            {
                "seq": record.seq,
                "signal_id": signal.signal_id,
                "strategy": signal.strategy,
                "symbol": signal.symbol,
                "side": signal.side.value,
                "direction": signal.direction.value,
                **_contract_columns(signal.contract),
                "confidence": signal.confidence,
                "reason": signal.reason,
                "ts_event": signal.ts_event,
                "time_et": signal.ts_event,
                "judged_ns": record.judged_ns,
                "reference_bid": signal.reference_bid,
                "reference_ask": signal.reference_ask,
                "signal_quantity": signal.quantity,
                "approved": bool(decision and decision.approved),
                "decision": decision.reason_code if decision else SESSION_END,
                "decision_detail": decision.detail if decision else "session ended before the gate judged it",
                "order_ref": intent.order_ref if intent else None,
                "order_quantity": intent.quantity if intent else 0,
                "limit_price": intent.limit_price if intent else None,
            }
        )
    return rows


def _trades(bt: _Backtest) -> list[_Trade]:
    """Round trips from the booked fills: a trade opens on a buy when flat and closes back at flat."""
    open_trades: dict[str, _Trade] = {}
    counts: Counter[str] = Counter()
    trades: list[_Trade] = []
    for record in bt.fills:
        fill = record.fill
        key = fill.contract.key
        signal, _ = bt.origin(fill.order_ref)
        trade = open_trades.get(key)
        if trade is None:
            counts[key] += 1
            trade = _Trade(
                trade_id=f"{key.replace(' ', '_')}#{counts[key]}",
                owner=record.owner,
                contract=fill.contract,
                entry_ns=fill.ts_event,
                entry_signal_id=record.signal_id,
                entry_reason=signal.signal.reason if signal else "",
            )
            open_trades[key] = trade
            trades.append(trade)
        trade.fills += 1
        trade.commissions += fill.commission
        trade.realized += record.realized
        if fill.side is Side.BUY:
            trade.bought += fill.quantity
            trade.buy_notional += fill.quantity * fill.price
        else:
            trade.sold += fill.quantity
            trade.sell_notional += fill.quantity * fill.price
            reason = signal.signal.reason if signal and signal.signal.is_exit else record.origin
            if reason not in trade.exit_reasons:
                trade.exit_reasons.append(reason)
        if record.position_after == 0:
            trade.exit_ns = fill.ts_event
            del open_trades[key]
    return trades


def _trade_rows(trades: list[_Trade], unrealized: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for trade in sorted(trades, key=lambda t: (t.entry_ns, t.trade_id)):
        closed = trade.exit_ns is not None
        open_pnl = 0.0 if closed else unrealized.get(trade.contract.key, 0.0)
        rows.append(
            {
                "trade_id": trade.trade_id,
                "strategy": trade.owner,
                **_contract_columns(trade.contract),
                "direction": (Direction.BULLISH if trade.contract.right is Right.CALL else Direction.BEARISH).value,
                "status": "CLOSED" if closed else "OPEN",
                "entry_ns": trade.entry_ns,
                "entry_time_et": trade.entry_ns,
                "exit_ns": trade.exit_ns,
                "exit_time_et": trade.exit_ns,
                "holding_s": (trade.exit_ns - trade.entry_ns) / NS if trade.exit_ns is not None else None,
                "quantity": trade.bought,
                "quantity_closed": trade.sold,
                "entry_price": trade.buy_notional / trade.bought if trade.bought else None,
                "exit_price": trade.sell_notional / trade.sold if trade.sold else None,
                "commissions": trade.commissions,
                "realized": trade.realized,
                "unrealized": open_pnl,
                "pnl": trade.realized + open_pnl,
                "fills": trade.fills,
                "entry_signal_id": trade.entry_signal_id,
                "entry_reason": trade.entry_reason,
                "exit_reason": "; ".join(trade.exit_reasons) if closed else "open at session end",
            }
        )
    return rows


def _pnl_rows(bt: _Backtest, trades: list[_Trade], unrealized: dict[str, float], end_day: date) -> list[dict[str, Any]]:
    """Per ET trading day and strategy: realized, commissions, fills; open P&L on the last day."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}

    def cell(day: str, strategy: str) -> dict[str, Any]:
        return cells.setdefault(
            (day, strategy),
            {
                "day": day,
                "strategy": strategy,
                "realized": 0.0,
                "commissions": 0.0,
                "unrealized": 0.0,
                "fills": 0,
                "trades_closed": 0,
            },
        )

    cell(end_day.isoformat(), bt.config.trading.strategy.name)
    for record in bt.fills:
        row = cell(trading_day(record.fill.ts_event).isoformat(), record.owner)
        row["realized"] += record.realized
        row["commissions"] += record.fill.commission
        row["fills"] += 1
    for trade in trades:
        if trade.exit_ns is not None:
            cell(trading_day(trade.exit_ns).isoformat(), trade.owner)["trades_closed"] += 1
    for key, value in unrealized.items():
        cell(end_day.isoformat(), bt.owner[key])["unrealized"] += value
    rows = [cells[k] for k in sorted(cells)]
    for row in rows:
        row["total"] = row["realized"] + row["unrealized"]
    return rows


def _summary(
    bt: _Backtest, trades: list[_Trade], unrealized: dict[str, float], wall_s: float, open_positions: dict[str, int]
) -> dict[str, Any]:
    decisions: Counter[str] = Counter()
    approvals = 0
    for record in bt.signals:
        if record.decision is None:
            decisions[SESSION_END] += 1
        elif record.decision.approved:
            approvals += 1
        else:
            decisions[record.decision.reason_code] += 1
    closed = [t for t in trades if t.exit_ns is not None]
    wins = [t.realized for t in closed if t.realized > 0]
    losses = [t.realized for t in closed if t.realized <= 0]
    gross_loss = -sum(losses)
    unrealized_total = sum(unrealized.values())
    equity = bt.config.trading.risk.account_equity
    orders = bt.store.order_summary()
    realized_store = bt.store.realized_pnl().get("total", 0.0)
    stored = bt.store.positions()
    return {
        "session_date": bt.spec.session_date,
        "seed": bt.spec.seed,
        "sim_start_ns": bt.spec.sim_start_ns,
        "sim_end_ns": bt.spec.sim_end_ns,
        "step_ns": bt.spec.step_ns,
        "symbols": bt.symbols,
        "strategies": ([bt.legacy.config.name] if bt.legacy else []) + [s.config.name for s in bt.strategies],
        "alt_data_events": bt.alt_delivered,
        "signals_by_strategy": {k: bt.signals_by_strategy[k] for k in sorted(bt.signals_by_strategy)},
        "strategy_rejections": {
            s.config.name: dict(sorted(s.rejections.items(), key=lambda kv: (-kv[1], kv[0]))[:8]) for s in bt.strategies
        },
        "events": bt.events,
        "steps": bt.steps,
        "snapshots": bt.snapshots,
        "router_ticks": bt.ticks,
        "signals": len(bt.signals),
        "entry_signals": sum(1 for r in bt.signals if not r.signal.is_exit),
        "exit_signals": sum(1 for r in bt.signals if r.signal.is_exit),
        "duplicate_signals": bt.duplicate_signals,
        "approvals": approvals,
        "denials": {k: decisions[k] for k in sorted(decisions)},
        "breaker_alerts": {k: bt.breaker_alerts[k] for k in sorted(bt.breaker_alerts)},
        "trading_state": bt.gate.state.value,
        "orders": sum(orders.values()),
        "orders_by_status": {k: orders[k] for k in sorted(orders)},
        "duplicate_places": bt.venue.broker.duplicate_places,
        "fills": len(bt.fills),
        "rejected_fills": bt.rejected_fills,
        "rejected_pnl_fills": bt.rejected_pnl_fills,
        "trades": len(trades),
        "trades_closed": len(closed),
        "open_positions": open_positions,
        "realized_pnl": bt.realized,
        "unrealized_pnl": unrealized_total,
        "total_pnl": bt.realized + unrealized_total,
        "return_pct": (bt.realized + unrealized_total) / equity * 100,
        "win_rate": len(wins) / len(closed) if closed else None,
        "profit_factor": sum(wins) / gross_loss if gross_loss > 0 else None,
        "max_drawdown": bt.max_drawdown,
        "max_drawdown_pct": bt.max_drawdown_pct,
        "ledger_matches_store": (
            abs(realized_store - bt.realized) < 1e-6
            and {k: p.quantity for k, p in bt.positions.items()} == {k: p.quantity for k, p in stored.items()}
        ),
        "timing": {
            "wall_s": wall_s,
            "events_per_s": bt.events / wall_s if wall_s > 0 else None,
            "steps_per_s": bt.steps / wall_s if wall_s > 0 else None,
        },
    }


def _write_outputs(bt: _Backtest, out_dir: Path, wall_s: float) -> BacktestResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    unrealized = bt.unrealized(bt.final_marks)
    trades = _trades(bt)
    end_day = trading_day(bt.clock.now_ns())
    open_positions = {k: p.quantity for k, p in sorted(bt.store.positions().items())}
    tables = {
        "fills": _table(FILLS_SCHEMA, _fill_rows(bt)),
        "trades": _table(TRADES_SCHEMA, _trade_rows(trades, unrealized)),
        "signals": _table(SIGNALS_SCHEMA, _signal_rows(bt)),
        "pnl": _table(PNL_SCHEMA, _pnl_rows(bt, trades, unrealized, end_day)),
    }
    files = {}
    for name in PARQUET_FILES:
        files[name] = out_dir / f"{name}.parquet"
        _write_parquet(tables[name], files[name])
    summary = _summary(bt, trades, unrealized, wall_s, open_positions)
    files["summary"] = out_dir / "summary.json"
    files["summary"].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return BacktestResult(out_dir=out_dir, summary=summary, files=files, open_positions=open_positions)


# --- entry points ------------------------------------------------------------------------------
def run_backtest(
    config: QuanticityConfig,
    spec: RunSpec,
    out_dir: Path,
    redis_url: str | None = None,
    progress: bool = False,
) -> BacktestResult:
    """Replay ``spec``'s synthetic session through the library, write the outputs, return the summary.

    ``redis_url`` selects the Redis that backs the ExecutionStore and the signal de-duplication;
    its database is **flushed** at the start (the run must begin with no orders or positions).
    Without it a private redis-server (no AOF) is started in a temporary directory and removed at
    the end. ``spec.speed`` is ignored: a backtest is always unpaced.
    """
    out_dir = Path(out_dir)
    embedded: EmbeddedRedis | None = None
    scratch: Path | None = None
    if redis_url is None:
        scratch = Path(tempfile.mkdtemp(prefix="qbacktest-redis-"))
        embedded = EmbeddedRedis(scratch, appendonly=False)
        redis_url = embedded.start()
    client = connect(redis_url)
    try:
        client.flushdb()
        started = time.perf_counter()
        bt = _Backtest(config, spec, client)
        if progress:
            _run_with_progress(bt)
        else:
            bt.run()
        wall_s = time.perf_counter() - started
        return _write_outputs(bt, out_dir, wall_s)
    finally:
        client.close()
        if embedded is not None:
            # a scratch server whose data is discarded: kill it rather than wait for a SHUTDOWN SAVE
            embedded.kill()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_with_progress(bt: _Backtest) -> None:
    """Run with a rich progress bar (simulated ET time, events, signals, fills)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("backtest", total=bt.spec.steps, info="")

        def on_step(run: _Backtest) -> None:
            if run.steps % PROGRESS_EVERY_STEPS and run.steps != run.spec.steps:
                return
            sim = datetime.fromtimestamp(run.clock.now_ns() / NS, tz=UTC).astimezone(ET).strftime("%H:%M:%S ET")
            info = (
                f"{sim} ev {run.events:,} sig {len(run.signals)} fills {len(run.fills)} "
                f"P&L {run.realized:+,.0f} realized"
            )
            bar.update(task, completed=run.steps, info=info)

        bt.run(on_step)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``6.5h`` → simulated seconds (as ``quanticity run`` reads them)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--duration: {text!r} is not a duration like 90s, 30m or 6.5h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m research.backtest", description="Deterministic single-process backtest of one session."
    )
    parser.add_argument("--config-dir", type=Path, default=None, help="directory of the YAML config (default: config/)")
    parser.add_argument("--date", type=date.fromisoformat, default=None, help="session date (default: last session)")
    parser.add_argument("--start", type=dtime.fromisoformat, default=None, help="ET start time (default: config)")
    parser.add_argument("--duration", type=parse_duration, default=None, help="simulated length, e.g. 2h (full)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the synthetic market (default: config)")
    parser.add_argument("--symbols", default=None, help="comma-separated subset of the universe (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: var/backtests/<run>)")
    parser.add_argument("--redis-url", default=None, help="Redis to use (flushed!); default: a private one")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def _symbol_overrides(config_dir: Path | None, symbols: str | None) -> dict[str, dict[str, Any]]:
    """Universe override of ``--symbols``, split into 0DTE / long-dated like ``quanticity run`` does."""
    if not symbols:
        return {}
    chosen = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    base = load_config(config_dir).system.universe
    return {
        "system": {
            "universe": {
                "zero_dte": [s for s in chosen if s in base.zero_dte],
                "long_dated": [s for s in chosen if s not in base.zero_dte],
            }
        }
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: plan the session from the config and flags, run it, print the summary."""
    from rich.console import Console
    from rich.table import Table

    from quanticity.config import ConfigError

    args = _parser().parse_args(argv)
    console = Console()
    try:
        config = load_config(args.config_dir, overrides=_symbol_overrides(args.config_dir, args.symbols))
    except ConfigError as exc:
        print(f"configuration error\n{exc}", file=sys.stderr)
        return 2
    update: dict[str, Any] = {"speed": 0.0}
    if args.date is not None:
        update["date"] = args.date
    if args.start is not None:
        update["start"] = args.start
    section = config.system.session.model_copy(update=update)
    seed = args.seed if args.seed is not None else config.system.system.seed
    try:
        spec = plan_session(section, seed, speed=0.0, duration_s=args.duration, wall=SimulatedClock(0))
    except ValueError as exc:
        print(f"session error: {exc}", file=sys.stderr)
        return 2
    length = f"{args.duration / 3600:g}h" if args.duration else "full"
    out = args.out or Path("var/backtests") / f"{spec.session_date}_seed{seed}_{length}"
    console.print(
        f"[bold]Backtest[/] {spec.session_date}, seed {seed}, {spec.steps:,} steps, "
        f"{len(config.system.universe.symbols)} symbols → {out}"
    )
    result = run_backtest(config, spec, out, redis_url=args.redis_url, progress=args.progress)
    summary = result.summary
    table = Table(title="Backtest summary", show_header=False)
    timing = summary["timing"]
    rows = [
        ("market events", f"{summary['events']:,} ({timing['events_per_s']:,.0f}/s)"),
        ("steps", f"{summary['steps']:,} ({timing['steps_per_s']:,.0f}/s)"),
        ("signals", f"{summary['signals']} ({summary['entry_signals']} entries, {summary['exit_signals']} exits)"),
        ("approvals", str(summary["approvals"])),
        ("denials", ", ".join(f"{k} {v}" for k, v in summary["denials"].items()) or "-"),
        ("orders", ", ".join(f"{k} {v}" for k, v in summary["orders_by_status"].items()) or "0"),
        ("fills", str(summary["fills"])),
        ("trades", f"{summary['trades']} ({summary['trades_closed']} closed)"),
        ("realized P&L", f"{summary['realized_pnl']:+,.2f}"),
        ("unrealized P&L", f"{summary['unrealized_pnl']:+,.2f}"),
        ("return", f"{summary['return_pct']:+.3f} %"),
        ("win rate", "-" if summary["win_rate"] is None else f"{summary['win_rate']:.1%}"),
        ("profit factor", "-" if summary["profit_factor"] is None else f"{summary['profit_factor']:.2f}"),
        ("max drawdown", f"{summary['max_drawdown']:,.2f} ({summary['max_drawdown_pct']:.3f} %)"),
        ("open positions", ", ".join(f"{k} x{v}" for k, v in summary["open_positions"].items()) or "none"),
        ("wall time", f"{timing['wall_s']:.1f} s"),
        ("output", str(result.out_dir)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
