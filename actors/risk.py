"""RiskGate actor: consumes ``signals:stream`` in order, judges, and hands approvals to the router.

The stream cursor advances only after the router has acknowledged the intent, so a gate killed
mid-way re-judges the same signal after its restart; the intent's reference is derived from the
signal id, so the router recognises the replay and sends nothing twice.

Three threads share the gate (one lock around it): the signal consumer; a follower of
``trades:fills`` that feeds the P&L book (``pnl:*``, resumed from its own cursor); and a monitor
loop that samples the underlyings' quotes for the correlation rule, marks the book when the
router revalued its positions, and runs the daily-loss and drawdown breakers even when no signal
arrives. The logic of all three lives in :mod:`quanticity.risk` (:class:`~quanticity.risk.desk.RiskDesk`).

High-risk entries (``ops.admin.approvals``) are parked instead of delivered and released or denied
when an admin decides or their deadline passes (:class:`~quanticity.risk.approvals.ApprovalDesk`);
the monitor pass (the lock-step stage, in lock-step) settles them.

In lock-step mode (``RunSpec.lockstep``) none of the threads runs: the feed calls :meth:`step`
once per feed step, which books the fills, samples the step's quotes, runs the breakers and drains
the signal stream to its end at the step's simulated time — the backtest's canonical order.
"""

from __future__ import annotations

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
from quanticity.messages import CancelRequest, OrderIntent, Quote, Signal, TradingState, decode
from quanticity.risk.account import AccountMonitor
from quanticity.risk.approvals import ApprovalDesk
from quanticity.risk.desk import MALFORMED_SIGNAL, Judgement, RiskDesk
from quanticity.risk.gate import Exposure, RiskGate
from quanticity.risk.store import RedisRiskStore
from quanticity.session import RunSpec
from quanticity.store.alerts import append_alert

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
        self.desk = RiskDesk(self.gate, self.account, self.execution)
        self.desk.symbols.update(config.system.universe.symbols)
        # high-risk entries wait for an admin (ops.admin.approvals); parked ones live in Redis
        self.approvals = ApprovalDesk(self.redis, config.ops.admin.approvals, config.trading.risk.account_equity)
        self._parked_now: set[str] = set()  # lock-step: refs parked in this drain, not to be delivered
        self.decisions: dict[str, int] = {}
        self._gate_lock = threading.Lock()  # the gate's state is shared by the signal and monitor threads
        self._stop = threading.Event()
        self.monitor_loop_ns = time.time_ns()
        self.lockstep_steps = 0
        # the book is the authority on which fills it holds: resume the fills stream after its cursor
        self.redis.set(keys.PNL_CURSOR, snapshot.cursor)
        # Lock-step: the feed drives every stage through step(); no follower or monitor thread runs,
        # so nothing is judged at a wall-clock-dependent moment.
        self.fills: StreamFollower | None = None
        self.follower: StreamFollower | None = None
        if not spec.lockstep:
            self.fills = StreamFollower(
                self.redis, keys.FILLS_STREAM, keys.PNL_CURSOR, self._on_fill, self.log, "risk-pnl"
            )
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
            self._malformed(entry_id, str(exc))
            return
        with self._gate_lock:
            judgement = self._park_if_high_risk(self.desk.judge(signal, self.clock.now_ns(), entry_id))
        self._record(judgement)
        if judgement.intent is not None:
            self._deliver(judgement.intent)
        self.latency.add(time.perf_counter() - started)

    def _park_if_high_risk(self, judgement: Judgement) -> Judgement:
        """An approved entry the approval rule calls high-risk is parked instead of delivered: the
        judgement becomes ``PENDING_APPROVAL`` without an intent (see :mod:`quanticity.risk.approvals`)."""
        intent = judgement.intent
        why = self.approvals.why(intent) if intent is not None else None
        if intent is None or why is None:
            return judgement
        decision = self.approvals.park(intent, why, judgement.now_ns)
        self.log.warning("entry parked for approval", extra={"order_ref": intent.order_ref, "why": why})
        return Judgement(judgement.entry_id, judgement.signal, judgement.now_ns, decision, None, judgement.alerts)

    def _settle_approvals(self, now_ns: int) -> None:
        """Release the parked entries an admin approved (re-checked by the gate), deny the rejected and
        the timed-out ones; every outcome is audited. The lock is not held while delivering."""
        malformed = self.approvals.malformed
        with self._gate_lock:
            settled = self.approvals.settle(self.gate, now_ns)
        skipped = self.approvals.malformed - malformed
        if skipped:
            self.errors += skipped
            self.log.error("unusable approval decision(s) skipped", extra={"count": skipped})
        for settlement in settled:
            decision = settlement.decision
            self.store.audit(decision)
            self.decisions[decision.reason_code] = self.decisions.get(decision.reason_code, 0) + 1
            self.log.warning(
                "parked entry settled",
                extra={"order_ref": decision.order_ref, "reason": decision.reason_code, "detail": decision.detail},
            )
            if settlement.intent is not None:
                self._deliver(settlement.intent)

    def _malformed(self, entry_id: str, error: str) -> None:
        self.errors += 1
        self.decisions[MALFORMED_SIGNAL] = self.decisions.get(MALFORMED_SIGNAL, 0) + 1
        self.log.error("malformed signal skipped", extra={"entry": entry_id, "error": error})

    def _record(self, judgement: Judgement) -> None:
        """Alerts of the breakers that tripped, the audit trail and the decision counters."""
        for alert in judgement.alerts:
            self._alert(alert.level, alert.text)
        decision = judgement.decision
        self.store.audit(decision)
        self.decisions[decision.reason_code] = self.decisions.get(decision.reason_code, 0) + 1
        self.events += 1

    # --- lock-step ----------------------------------------------------------------------------
    def step(self, now_ns: int, quotes: dict[str, Quote]) -> int:
        """Lock-step stage of one feed step (see :mod:`quanticity.lockstep`): book the fills so far,
        sample ``quotes``, mark the book, run the breakers, then judge every signal enqueued so far
        at ``now_ns``, each approval acknowledged by the router before the next. Returns signals judged."""
        if not self.spec.lockstep:
            raise RuntimeError("step: this run is not in lock-step mode (the stream followers judge)")
        started = time.perf_counter()
        with self._gate_lock:
            self.desk.book_fills(self.redis, self._fill_rejected)
            for alert in self.desk.monitor(now_ns, quotes):
                self._alert(alert.level, alert.text)
            malformed = self.desk.malformed
            judged = self.desk.drain_signals(self.redis, now_ns, self._deliver_unless_parked, self._record_or_park)
            self._parked_now.clear()
            if self.desk.malformed != malformed:
                self._malformed("lock-step drain", f"{self.desk.malformed - malformed} unreadable signal(s)")
        self._settle_approvals(now_ns)
        self.lockstep_steps += 1
        self.monitor_loop_ns = time.time_ns()
        self.latency.add(time.perf_counter() - started)
        return judged

    def _record_or_park(self, judgement: Judgement) -> None:
        """Lock-step ``on_judged``: park a high-risk entry (remembered so the drain does not deliver it)."""
        parked = self._park_if_high_risk(judgement)
        if judgement.intent is not None and parked.intent is None:
            self._parked_now.add(judgement.intent.order_ref)
        self._record(parked)

    def _deliver_unless_parked(self, intent: OrderIntent) -> None:
        if intent.order_ref not in self._parked_now:
            self._deliver(intent)

    def _alert(self, level: str, text: str) -> None:
        append_alert(self.redis, level, text, time.time_ns(), "risk")
        self.log.warning(text, extra={"level": level})

    # --- P&L and monitor ----------------------------------------------------------------------
    def _on_fill(self, entry_id: str, fields: dict[str, str]) -> None:
        outcome = self.account.on_fill_record(entry_id, fields)
        if outcome.startswith("rejected"):
            self._fill_rejected(entry_id, outcome)

    def _fill_rejected(self, entry_id: str, outcome: str) -> None:
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
        symbols = sorted(self.desk.symbols)
        raws = self.redis.mget([keys.raw_quote_last(s) for s in symbols])
        self.desk.observe_quotes((s, raw) for s, raw in zip(symbols, raws, strict=True) if raw)
        self.desk.mark_book(now)
        with self._gate_lock:
            for alert in self.desk.breakers(self.desk.exposure(now), now):
                self._alert(alert.level, alert.text)
        self._settle_approvals(now)

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
        for follower in (self.follower, self.fills):
            if follower is not None:
                follower.stop()
        self.account.flush(self.clock.now_ns())

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        if self.follower is not None and self.follower.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"signal consumer stalled for {self.follower.stalled_for_s():.0f} s")
        if self.fills is not None and self.fills.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"fills follower stalled for {self.fills.stalled_for_s():.0f} s")
        monitor_stalled_s = (time.time_ns() - self.monitor_loop_ns) / 1e9
        # in lock-step the feed drives the monitor pass: an idle feed (session over) is not a stall
        if not self.spec.lockstep and not self._stop.is_set() and monitor_stalled_s > STALL_LIMIT_S:
            raise RuntimeError(f"risk monitor stalled for {monitor_stalled_s:.0f} s")
        return super().ping()

    def stats(self) -> dict[str, float]:
        figures = self.account.figures(self.clock.now_ns())
        return {
            "approved": self.gate.approved,
            "denied": self.gate.denied,
            "correlation_unknown": self.gate.correlation_unknown,
            "approvals_parked": self.approvals.parked,
            "approvals_released": self.approvals.released,
            "lockstep_steps": self.lockstep_steps,
            "day_pnl": figures.day_pnl,
            "equity": figures.equity,
            "drawdown_pct": self.gate.drawdown_pct(Exposure(equity=figures.equity, equity_peak=figures.equity_peak))
            or 0.0,
            **self.account.stats(),
            **{f"decision_{k}": float(v) for k, v in self.decisions.items()},
        }
