"""Test helpers that start a whole Quanticity system on the shared local Ray."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from quanticity.clock import SimulatedClock
from quanticity.config import QuanticityConfig, load_config
from quanticity.config.loader import deep_merge
from quanticity.session import RunSpec, plan_session

SESSION_DAY = date(2026, 11, 20)


def system_config(
    tmp_path: Path,
    symbols: tuple[str, ...] = ("SPY", "QQQ", "AAPL"),
    ops: dict[str, Any] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
    venue: str = "sim",
    **trading: Any,
) -> QuanticityConfig:
    """A small, fast, aggressive configuration in its own Ray namespace (actor names never clash).

    The overseer and the admin actor are off unless ``ops`` (merged over ``config/ops.yaml``)
    enables them; ``extra`` maps a config file stem to more overrides (e.g. the loopback twins'
    channels from :meth:`supervisors.twins.LoopbackTwins.overrides`). ``venue`` is ``system.yaml →
    venue.kind``: ``sim`` (default: the embedded SimFeed + SimBroker) or ``tws`` (the TWS simulator and
    UW/AV twins through ib_async and the fetcher; use a paced :func:`session_spec` with it).
    """
    zero_dte = [s for s in symbols if s in ("SPX", "SPY", "QQQ", "IWM")]
    strategy = {
        "imbalance_threshold": 0.2,
        "momentum_bps": 2.0,
        "cooldown_s": 120.0,
        "min_confidence": 0,
        **trading.pop("strategy", {}),
    }
    overrides = {
        "system": {
            "system": {"namespace": f"t{uuid.uuid4().hex[:10]}", "log_level": "WARNING"},
            "universe": {"zero_dte": zero_dte, "long_dated": [s for s in symbols if s not in zero_dte]},
            "session": {"date": SESSION_DAY.isoformat(), "speed": 0, "step_ms": 1000},
            "supervisor": {"heartbeat_interval_s": 0.3, "ping_timeout_s": 3.0, "hung_after_missed": 3},
            "feed": {"flush_ms": 5, "max_steps_per_flush": 20, "router_tick_every_s": 5, "checkpoint_every_s": 30},
            "venue": {"kind": venue},
        },
        "trading": {"strategy": strategy, "analytics": {"checkpoint_every_s": 10}, **trading},
        "distribution": {"log_dir": str(tmp_path / "channels")},
        "ops": {"overseer_enabled": False, "admin_enabled": False, **(ops or {})},
    }
    for stem, values in (extra or {}).items():
        overrides[stem] = deep_merge(overrides.get(stem, {}), values)
    return load_config(overrides=overrides)


def session_spec(
    config: QuanticityConfig,
    minutes: float = 30,
    start: str = "10:00",
    seed: int = 11,
    speed: float = 0.0,
    lead_s: float = 0.0,
) -> RunSpec:
    """A session of ``minutes`` simulated minutes from ``start``; unpaced unless ``speed`` (tws needs one).

    ``lead_s`` starts the paced clock that many wall seconds from now, so the actors are up and
    subscribed before the market opens instead of catching up on a burst of missed steps.
    """
    from datetime import time as time_of_day

    section = config.system.session.model_copy(update={"start": time_of_day.fromisoformat(start), "speed": speed})
    wall = SimulatedClock(time.time_ns() + int(lead_s * 1e9))
    return plan_session(section, seed=seed, duration_s=minutes * 60, speed=speed, wall=wall)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds (the actor system works asynchronously); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
