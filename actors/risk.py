"""RiskGate actor: consumes ``signals:stream`` in order, judges, and hands approvals to the router.

The stream cursor advances only after the router has acknowledged the intent, so a gate killed
mid-way re-judges the same signal after its restart; the intent's reference is derived from the
signal id, so the router recognises the replay and sends nothing twice.

Three threads share the gate (one lock around it): the signal consumer; a follower of
``trades:fills`` that feeds the P&L book (``pnl:*``, resumed from its own cursor); and a monitor
loop that samples the underlyings' quotes for the correlation rule, marks the book when the
router revalued its positions, and runs the daily-loss and drawdown breakers even when no signal
arrives. The logic of all three lives in :mod:`quanticity.risk`.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import ray
import redis
from ray.exceptions import GetTimeoutError, RayActorError

from actors.common import ROUTER, STALL_LIMIT_S, ActorShell, StreamFollower
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.execution.pnl_store import RedisPnLStore
from quanticity.execution.store import ExecutionStore
from quanticity.messages import CancelRequest, Direction, OrderIntent, Signal, TradingState, decode
from quanticity.risk.account import AccountMonitor
from quanticity.risk.gate import Exposure, RiskGate
from quanticity.risk.store import RedisRiskStore
from quanticity.session import RunSpec

ROUTER_TIMEOUT_S = 10.0
MONITOR_EVERY_S = 0.2
"""Wall seconds between monitor passes (quotes, marks, breakers): 20 simulated seconds at 100x."""


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class RiskGateActor(ActorShell):
    """Shell over :class:`RiskGate`; a background thread drains the signal stream."""

    kind = "risk"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.store = RedisRiskStore(self.redis)
        self.pnl_store = RedisPnLStore(self.redis)
        snapshot = self.pnl_store.load()
        for problem in snapshot.problems:
            self.errors += 1
            self.log.error("P&L state reset", extra={"problem": problem})
        self.account = AccountMonitor(
            config.trading.risk, snapshot, self.pnl_store, self.store, self.store.load_correlation()
        )
        self.gate = RiskGate(
            config.trading.risk,
            self.store,
            limit_offset=config.trading.execution.limit_offset_of_spread,
            correlation=self.account,
        )
        self.gate.restore_rate_window(self.clock.now_ns())
        self.execution = ExecutionStore(self.redis)
        self.decisions: dict[str, int] = {}
        self._exposure_cache: tuple[int, Exposure] | None = None
        self._gate_lock = threading.Lock()  # the gate's state is shared by the signal and monitor threads
        self._symbols = set(config.system.universe.symbols)
        self._marks_version = -1
        self._stop = threading.Event()
        self.monitor_loop_ns = time.time_ns()
        # the book is the authority on which fills it holds: resume the fills stream after its cursor
        self.redis.set(keys.PNL_CURSOR, snapshot.cursor)
        self.fills = StreamFollower(self.redis, keys.FILLS_STREAM, keys.PNL_CURSOR, self._on_fill, self.log, "risk-pnl")
        self.follower = StreamFollower(
            self.redis, keys.SIGNALS_STREAM, keys.RISK_CURSOR, self._handle, self.log, "risk-consumer"
        )
        self._monitor = threading.Thread(target=self._monitor_run, name="risk-monitor", daemon=True)
        self._monitor.start()

    def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            signal = decode(fields["signal"], Signal)
        except (KeyError, ValueError) as exc:
            self.errors += 1
            self.decisions["MALFORMED_SIGNAL"] = self.decisions.get("MALFORMED_SIGNAL", 0) + 1
            self.log.error("malformed signal skipped", extra={"entry": entry_id, "error": str(exc)})
            return
        now = self.clock.now_ns()
        self._symbols.add(signal.contract.underlying)
        with self._gate_lock:
            exposure = self._exposure(now)
            self._breakers(exposure, now)
            decision, intent = self.gate.evaluate(signal, exposure, now)
        self.store.audit(decision)
        self.decisions[decision.reason_code] = self.decisions.get(decision.reason_code, 0) + 1
        self.events += 1
        if intent is not None:
            self._deliver(intent)
        self.latency.add(time.perf_counter() - started)

    def _breakers(self, exposure: Exposure, now: int) -> None:
        """Daily-loss and drawdown breakers (caller holds the gate lock); alerts when one trips."""
        level = self.gate.daily_loss_check(exposure, now)
        if level is not None:
            pnl = exposure.day_pnl if exposure.day_pnl is not None else 0.0
            self._alert(level, f"daily loss breaker {level}: today's P&L {pnl:+,.2f}; trading {self.gate.state.value}")
        if self.gate.drawdown_check(exposure, now) is not None:
            self._alert("DRAWDOWN", f"drawdown breaker: {self.gate.state_reason}; trading {self.gate.state.value}")

    def _alert(self, level: str, text: str) -> None:
        self.redis.xadd(keys.ALERTS, {"level": level, "text": text, "ts": time.time_ns()}, maxlen=10_000)
        self.log.warning(text, extra={"level": level})

    # --- P&L and monitor ----------------------------------------------------------------------
    def _on_fill(self, entry_id: str, fields: dict[str, str]) -> None:
        outcome = self.account.on_fill_record(entry_id, fields)
        if outcome.startswith("rejected"):
            self.errors += 1
            self.log.error("fill not booked in the P&L book", extra={"entry": entry_id, "error": outcome})

    def _monitor_run(self) -> None:
        while not self._stop.is_set():
            self.monitor_loop_ns = time.time_ns()
            try:
                self._monitor_pass(self.clock.now_ns())
            except redis.RedisError as exc:  # Redis restarting: the next pass catches up
                self.errors += 1
                self.log.warning("risk monitor pass failed", extra={"error": str(exc)})
            except Exception:  # a bug must not silence the breakers for good: log, count, go on
                self.errors += 1
                self.log.exception("risk monitor pass failed")
            self._stop.wait(MONITOR_EVERY_S)

    def _monitor_pass(self, now: int) -> None:
        """Sample underlying quotes, mark the book when the router revalued, run the breakers."""
        symbols = sorted(self._symbols)
        for symbol, raw in zip(symbols, self.redis.mget([keys.raw_quote_last(s) for s in symbols]), strict=True):
            if raw:
                self.account.on_quote(symbol, raw)
        version = self.execution.version()
        if version != self._marks_version:
            positions = self.execution.positions()
            self._symbols.update(p.contract.underlying for p in positions.values())
            self.account.on_marks({k: p.mark for k, p in positions.items() if p.mark > 0}, now)
            self._marks_version = version
        with self._gate_lock:
            self._breakers(self._exposure(now), now)

    def _deliver(self, intent: OrderIntent) -> None:
        """Hand the intent to the router until it acknowledges; safe to repeat (idempotent ref)."""
        while not self._stop.is_set():
            router = self.peers.get(ROUTER)
            if router is not None:
                try:
                    ray.get(router.submit.remote(intent), timeout=ROUTER_TIMEOUT_S)
                    return
                except (RayActorError, GetTimeoutError) as exc:
                    self.peers.forget(ROUTER)
                    self.log.warning(
                        "router unavailable; will retry",
                        extra={"order_ref": intent.order_ref, "error": type(exc).__name__},
                    )
                except Exception as exc:  # the router refused (e.g. not reconciled yet): retry later
                    self.log.warning(
                        "router refused; will retry", extra={"order_ref": intent.order_ref, "error": str(exc)}
                    )
            time.sleep(0.1)

    def _exposure(self, now: int) -> Exposure:
        """The book as the gate sees it: positions rebuilt only when the router changed them or its
        P&L; today's P&L, equity and peak from the gate's own P&L book on every call."""
        version = self.execution.version()
        if self._exposure_cache is None or self._exposure_cache[0] != version:
            self._exposure_cache = (version, self._read_exposure())
        figures = self.account.figures(now)
        return dataclasses.replace(
            self._exposure_cache[1], day_pnl=figures.day_pnl, equity=figures.equity, equity_peak=figures.equity_peak
        )

    def _read_exposure(self) -> Exposure:
        positions = self.execution.positions()
        by_direction: dict[Direction, int] = {}
        held: dict[Direction, set[str]] = {}
        for position in positions.values():
            by_direction[position.direction] = by_direction.get(position.direction, 0) + 1
            held.setdefault(position.direction, set()).add(position.contract.underlying)
        realized = self.execution.realized_pnl().get("total", 0.0)
        return Exposure(
            open_by_direction=by_direction,
            held_underlyings={d: frozenset(u) for d, u in held.items()},
            position_qty={k: p.quantity for k, p in positions.items()},
            realized_pnl=realized,
            unrealized_pnl=sum(p.unrealized for p in positions.values()),
            premium_at_risk=sum(p.avg_price * p.quantity * 100 for p in positions.values()),
        )

    # --- control --------------------------------------------------------------------------
    def set_state(self, state: str, reason: str) -> str:
        """Change the trading state (admin, overseer); persisted before it takes effect."""
        with self._gate_lock:
            self.gate.set_state(TradingState(state), reason, self.clock.now_ns())
            return self.gate.state.value

    def trading_state(self) -> str:
        """Current trading state."""
        return self.gate.state.value

    def cancel(self, order_ref: str) -> str | None:
        """Cancels are allowed in every state, HALTED included (and audited)."""
        now = self.clock.now_ns()
        request = CancelRequest(ts_event=now, ts_init=now, order_ref=order_ref, reason="cancel requested")
        self.store.audit(self.gate.evaluate_cancel(request, now))
        router = self.peers.get(ROUTER)
        if router is None:
            return None
        status = ray.get(router.cancel.remote(order_ref), timeout=ROUTER_TIMEOUT_S)
        return status.value if status else None

    def stop(self) -> None:
        """Stop consuming (used at the end of a session)."""
        self._stop.set()
        self.follower.stop()
        self.fills.stop()
        self.account.flush(self.clock.now_ns())

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        if self.follower.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"signal consumer stalled for {self.follower.stalled_for_s():.0f} s")
        if self.fills.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"fills follower stalled for {self.fills.stalled_for_s():.0f} s")
        monitor_stalled_s = (time.time_ns() - self.monitor_loop_ns) / 1e9
        if not self._stop.is_set() and monitor_stalled_s > STALL_LIMIT_S:
            raise RuntimeError(f"risk monitor stalled for {monitor_stalled_s:.0f} s")
        return super().ping()

    def stats(self) -> dict[str, float]:
        figures = self.account.figures(self.clock.now_ns())
        return {
            "approved": self.gate.approved,
            "denied": self.gate.denied,
            "correlation_unknown": self.gate.correlation_unknown,
            "day_pnl": figures.day_pnl,
            "equity": figures.equity,
            "drawdown_pct": self.gate.drawdown_pct(Exposure(equity=figures.equity, equity_peak=figures.equity_peak))
            or 0.0,
            **self.account.stats(),
            **{f"decision_{k}": float(v) for k, v in self.decisions.items()},
        }
