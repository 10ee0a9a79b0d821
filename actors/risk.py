"""RiskGate actor: consumes ``signals:stream`` in order, judges, and hands approvals to the router.

The stream cursor advances only after the router has acknowledged the intent, so a gate killed
mid-way re-judges the same signal after its restart; the intent's reference is derived from the
signal id, so the router recognises the replay and sends nothing twice.
"""

from __future__ import annotations

import threading
import time

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.common import ROUTER, STALL_LIMIT_S, ActorShell, StreamFollower
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.execution.store import ExecutionStore
from quanticity.messages import Direction, OrderIntent, Signal, TradingState, decode
from quanticity.risk.gate import Exposure, RiskGate
from quanticity.risk.store import RedisRiskStore
from quanticity.session import RunSpec

ROUTER_TIMEOUT_S = 10.0


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class RiskGateActor(ActorShell):
    """Shell over :class:`RiskGate`; a background thread drains the signal stream."""

    kind = "risk"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.store = RedisRiskStore(self.redis)
        self.gate = RiskGate(
            config.trading.risk, self.store, limit_offset=config.trading.execution.limit_offset_of_spread
        )
        self.gate.restore_rate_window(self.clock.now_ns())
        self.execution = ExecutionStore(self.redis)
        self.decisions: dict[str, int] = {}
        self._exposure_cache: tuple[int, Exposure] | None = None
        self._stop = threading.Event()
        self.follower = StreamFollower(
            self.redis, keys.SIGNALS_STREAM, keys.RISK_CURSOR, self._handle, self.log, "risk-consumer"
        )

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
        exposure = self._exposure()
        breaker = self.gate.daily_loss_check(exposure, now)
        if breaker is not None:
            self._alert(breaker, exposure)
        decision, intent = self.gate.evaluate(signal, exposure, now)
        self.store.audit(decision)
        self.decisions[decision.reason_code] = self.decisions.get(decision.reason_code, 0) + 1
        self.events += 1
        if intent is not None:
            self._deliver(intent)
        self.latency.add(time.perf_counter() - started)

    def _alert(self, level: str, exposure: Exposure) -> None:
        pnl = exposure.realized_pnl + exposure.unrealized_pnl
        text = f"daily loss breaker {level}: P&L {pnl:+,.2f}; trading {self.gate.state.value}"
        self.redis.xadd(keys.ALERTS, {"level": level, "text": text, "ts": time.time_ns()}, maxlen=10_000)
        self.log.warning(text, extra={"level": level})

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

    def _exposure(self) -> Exposure:
        """The book as the gate sees it; rebuilt only when the router changed positions or P&L."""
        version = self.execution.version()
        if self._exposure_cache is not None and self._exposure_cache[0] == version:
            return self._exposure_cache[1]
        exposure = self._read_exposure()
        self._exposure_cache = (version, exposure)
        return exposure

    def _read_exposure(self) -> Exposure:
        positions = self.execution.positions()
        by_direction: dict[Direction, int] = {}
        for position in positions.values():
            by_direction[position.direction] = by_direction.get(position.direction, 0) + 1
        realized = self.execution.realized_pnl().get("total", 0.0)
        return Exposure(
            open_by_direction=by_direction,
            position_qty={k: p.quantity for k, p in positions.items()},
            realized_pnl=realized,
            unrealized_pnl=sum(p.unrealized for p in positions.values()),
            premium_at_risk=sum(p.avg_price * p.quantity * 100 for p in positions.values()),
        )

    # --- control --------------------------------------------------------------------------
    def set_state(self, state: str, reason: str) -> str:
        """Change the trading state (admin, overseer); persisted before it takes effect."""
        self.gate.set_state(TradingState(state), reason, self.clock.now_ns())
        return self.gate.state.value

    def trading_state(self) -> str:
        """Current trading state."""
        return self.gate.state.value

    def cancel(self, order_ref: str) -> str | None:
        """Cancels are allowed in every state, HALTED included."""
        router = self.peers.get(ROUTER)
        if router is None:
            return None
        status = ray.get(router.cancel.remote(order_ref), timeout=ROUTER_TIMEOUT_S)
        return status.value if status else None

    def stop(self) -> None:
        """Stop consuming (used at the end of a session)."""
        self._stop.set()
        self.follower.stop()

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        if self.follower.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"signal consumer stalled for {self.follower.stalled_for_s():.0f} s")
        return super().ping()

    def stats(self) -> dict[str, float]:
        return {
            "approved": self.gate.approved,
            "denied": self.gate.denied,
            **{f"decision_{k}": float(v) for k, v in self.decisions.items()},
        }
