"""AnalyticsEngine: every SPEC §6 family from a simulated session, bad input counted, checkpoints."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from quanticity.analytics.engine import AnalyticsEngine, warm_up_chain_kernels
from quanticity.config import load_config
from quanticity.messages import (
    MarketBatch,
    OptionContract,
    OptionQuote,
    OptionTrade,
    Quote,
    Right,
)
from quanticity.sim.market import SyntheticMarket

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 20)
OPEN_NS = int(dt.datetime(2026, 11, 20, 14, 30, tzinfo=dt.UTC).timestamp() * 1e9)
FAMILIES = {"book", "vpin", "volatility", "flow", "chain", "moc", "rejected"}


@pytest.fixture(scope="module")
def session():  # noqa: ANN201
    config = load_config()
    market = SyntheticMarket(config.market, ["SPY"], DAY, 5, OPEN_NS, 1_000_000_000)
    engine = AnalyticsEngine("SPY", config.trading.analytics, rate=0.045, div_yield=0.013, session_date=DAY)
    for _ in range(2400):  # 40 simulated minutes
        engine.on_batch(market.step(0)["SPY"])
    return config, market, engine


def test_every_family_is_computed_with_validity(session) -> None:  # noqa: ANN001
    _, market, engine = session
    metrics = engine.metrics(market.now_ns)
    assert set(metrics) >= FAMILIES
    for name, values in metrics.items():
        assert values["computed_at"] == market.now_ns, name
        assert values["valid_until"] > values["computed_at"], name
    json.dumps(metrics, allow_nan=False)  # NaN never reaches Redis: unknown values are null
    chain = metrics["chain"]
    assert chain["contracts"] > 100
    assert chain["zero_gamma"] is None or abs(chain["zero_gamma"] / market.spot("SPY") - 1) < 0.1
    assert chain["max_abs_gex_strike"] in {float(k) for k in chain["gex_by_strike"]}
    by_strike = {float(k): v for k, v in chain["gex_by_strike"].items()}
    assert abs(by_strike[chain["max_abs_gex_strike"]]) == max(abs(v) for v in by_strike.values())
    assert set(chain["max_pain"]) and all(v > 0 for v in chain["max_pain"].values())
    assert 0 < chain["atm_iv"] < 1
    assert metrics["book"]["liquidity_grade"] in {"A", "B", "C", "D"}
    assert metrics["flow"]["option_prints"] > 0 and metrics["flow"]["sweeps"] >= 0
    assert 0.2 < metrics["flow"]["dark_share"] < 0.5  # the simulator prints ~35 % dark
    assert metrics["volatility"]["regime"] in {"NORMAL", "ELEVATED", "SHOCK"}
    assert metrics["vpin"]["state"] in {"ok", "thin", "no_adv"}  # thin until 50 buckets of ADV/50 traded


def test_feature_snapshot_carries_the_scalars(session) -> None:  # noqa: ANN001
    _, market, engine = session
    snap, metrics = engine.snapshot(market.now_ns, 0)
    assert snap.metrics["gex"] == pytest.approx(metrics["chain"]["gex"])
    assert snap.metrics["liquidity_grade"] in (0.0, 1.0, 2.0, 3.0)
    assert set(snap.metrics) >= {"gex", "zero_gamma", "vpin", "net_premium", "rr25", "iv_rank", "moc_confidence"}


def test_bad_events_are_rejected_and_counted_never_raised(session) -> None:  # noqa: ANN001
    config, market, _ = session
    engine = AnalyticsEngine("SPY", config.trading.analytics, session_date=DAY)
    t = market.now_ns
    contract = OptionContract("SPY", "2026-11-20", 590.0, Right.CALL)
    batch = MarketBatch(
        ts_event=t,
        ts_init=t,
        symbol="SPY",
        quotes=(Quote(ts_event=t, ts_init=t, symbol="SPY", bid=10.0, ask=9.0, bid_size=1, ask_size=1),),
        options=(
            OptionQuote(
                ts_event=t,
                ts_init=t,
                contract=contract,
                bid=1.0,
                ask=1.1,
                iv=math.inf,
                delta=0.5,
                gamma=0.1,
                vega=0.1,
                theta=-0.1,
                underlying_price=590,
                open_interest=10,
                volume=1,
            ),
        ),
        option_trades=(OptionTrade(ts_event=t, ts_init=t, contract=contract, price=-1.0, size=5, bid=1.0, ask=1.1),),
    )
    engine.on_batch(batch)
    rejected = engine.rejected()
    assert rejected["event_quote_crossed"] == 1 and rejected["event_option_non_finite"] == 1
    assert rejected["flow_bad_price"] == 1
    assert engine.metrics(t)["rejected"]["event_quote_crossed"] == 1


def test_checkpoint_round_trip(session) -> None:  # noqa: ANN001
    config, market, engine = session
    state = json.loads(json.dumps(engine.state()))
    clone = AnalyticsEngine("SPY", config.trading.analytics, rate=0.045, div_yield=0.013, session_date=DAY)
    clone.restore(state)
    assert json.dumps(clone.state(), sort_keys=True) == json.dumps(engine.state(), sort_keys=True)  # NaN-safe
    later = market.step(0)["SPY"]
    engine.on_batch(later)
    clone.on_batch(later)
    a, b = engine.metrics(market.now_ns), clone.metrics(market.now_ns)
    for family in ("book", "volatility", "flow", "moc"):
        assert a[family] == b[family], family


def test_external_values_are_recorded_with_divergence(session) -> None:  # noqa: ANN001
    _, market, engine = session
    engine.metrics(market.now_ns)
    ours = engine.chain_metrics["gex"]
    record = engine.record_external("gex", ours + 0.2 * abs(ours), "unusual_whales", market.now_ns)
    assert record["ours"] == ours and record["divergence"] == pytest.approx(0.2)
    assert engine.metrics(market.now_ns)["divergence"]["gex"]["source"] == "unusual_whales"
    unknown = engine.record_external("no_such_metric", 1.0, "unusual_whales", market.now_ns)
    assert math.isnan(unknown["divergence"])


def test_kernel_warm_up_runs_the_chain_kernels() -> None:
    """The warm-up chain is symmetric: call and put gamma at each strike cancel in the GEX."""
    gex = warm_up_chain_kernels()
    assert math.isfinite(gex) and abs(gex) < 1e-6
