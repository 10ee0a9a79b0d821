"""Every metric of SPEC §6 for one symbol, kept up to date as market events arrive.

``AnalyticsEngine`` is what a SymbolAnalytics actor holds (and what a backtest holds): it feeds
each event of a :class:`~quanticity.messages.MarketBatch` to the incremental state of every metric
family, recomputes the option-chain metrics (implied vols from mids, greeks, dealer exposures,
zero-gamma, max pain, 25Δ risk reversal, IV rank) whenever a new chain arrives, and renders
snapshots that carry ``computed_at`` / ``valid_until`` so consumers can refuse stale inputs.

Metric families and their kernels:
- ``book`` — :mod:`quanticity.analytics.book` (imbalance L1/L5, spread, depth, liquidity grade);
- ``vpin`` — :mod:`quanticity.analytics.vpin` (bucket volume from the session's running ADV);
- ``volatility`` — :mod:`quanticity.analytics.volatility` (realized vol, regime);
- ``flow`` — :mod:`quanticity.analytics.flow` (net premium, momentum, bursts, sweeps, blocks,
  odd lots, volume/OI);
- ``chain`` — :mod:`quanticity.analytics.iv`, :mod:`~quanticity.analytics.bsm`,
  :mod:`~quanticity.analytics.exposure`, :mod:`~quanticity.analytics.chain`;
- ``moc`` — :mod:`quanticity.analytics.moc` (afternoon flow asymmetry, dark/lit, book);
- ``divergence`` — values an outside source (Unusual Whales) supplied next to ours.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import numpy as np

from quanticity.analytics.book import BookState
from quanticity.analytics.bsm import bsm_greeks
from quanticity.analytics.chain import Chain
from quanticity.analytics.exposure import dealer_exposures, max_pain, zero_gamma_level
from quanticity.analytics.features import SymbolFeatures
from quanticity.analytics.flow import FlowWindow, PrintDetector
from quanticity.analytics.iv import implied_vol, reason_counts
from quanticity.analytics.moc import MocAccumulator, moc_window_ns
from quanticity.analytics.volatility import IVHistory, RealizedVolState, risk_reversal_25d, vol_close_values, vol_regime
from quanticity.analytics.vpin import VpinState
from quanticity.calendar import ET, NyseCalendar
from quanticity.config.models import AnalyticsSection
from quanticity.messages import AltDataEvent, FeatureSnapshot, MarketBatch, OptionTrade, Right, Trade

NS = 1_000_000_000
GRADE_SCORE = {"A": 3.0, "B": 2.0, "C": 1.0, "D": 0.0}
REGIME_CODE = {"NORMAL": 0.0, "ELEVATED": 1.0, "SHOCK": 2.0}
MOC_DIRECTION = {"BUY": 1.0, "SELL": -1.0, "NONE": 0.0}


def warm_up_chain_kernels(rate: float = 0.04, div_yield: float = 0.0) -> float:
    """Run every chain kernel once on a six-contract chain; returns its total GEX.

    numba loads (or, on a fresh checkout, compiles) a kernel on its first call in each process.
    An analytics actor that meets its first chain at the open would do that for a dozen kernels
    while the session's first batches queue behind it — with 19 such processes on 2 cores, long
    enough for the supervisor to count missed pings and restart them as hung. Called from the
    actor's constructor, the cost lands in start-up, before the market opens.
    """
    strike = np.array([95.0, 100.0, 105.0, 95.0, 100.0, 105.0])
    is_call = np.array([True, True, True, False, False, False])
    t_years = np.full(6, 0.05)
    spot = 100.0
    greeks = bsm_greeks(spot, strike, t_years, rate, div_yield, np.full(6, 0.2), is_call)
    solved = implied_vol(greeks.price, spot, strike, t_years, rate, div_yield, is_call)
    chain, _ = Chain.from_arrays(
        strike=strike,
        t_years=t_years,
        is_call=is_call,
        iv=solved.iv,
        oi=np.full(6, 100.0),
        spot=spot,
        rate=rate,
        div_yield=div_yield,
        bid=greeks.price * 0.98,
        ask=greeks.price * 1.02,
    )
    exposures = dealer_exposures(chain, min_oi=5)
    zero_gamma_level(chain, min_oi=5)
    max_pain(chain, min_oi=5)
    calls, puts = is_call, ~is_call
    risk_reversal_25d(
        strike[calls], greeks.delta[calls], solved.iv[calls], strike[puts], greeks.delta[puts], solved.iv[puts]
    )
    return float(exposures.gex)


def _finite(value: float) -> float | None:
    """JSON-friendly: NaN/inf become None (Redis snapshots are JSON)."""
    return float(value) if value is not None and math.isfinite(value) else None


class AnalyticsEngine:
    """Incremental analytics of one symbol (see the module docstring)."""

    def __init__(
        self,
        symbol: str,
        config: AnalyticsSection,
        *,
        min_dte: int = 0,
        rate: float = 0.045,
        div_yield: float = 0.0,
        session_date: date | None = None,
    ) -> None:
        self.symbol = symbol
        self.config = config
        self.rate = rate
        self.div_yield = div_yield
        self.features = SymbolFeatures(symbol, config, min_dte=min_dte)
        self.book = BookState(max_age_s=config.book_max_age_s)
        self.vpin = VpinState(adv=None, n_buckets=config.vpin_buckets)
        self.rv = RealizedVolState()
        self.flow = FlowWindow(window_s=config.flow_window_s)
        self.prints = PrintDetector("option", block_size=config.block_contracts)
        self.equity_prints = PrintDetector("equity")
        self.iv_history = IVHistory()
        self.vol_close_rejected = 0
        self.session_date = session_date
        start, end = moc_window_ns(session_date) if session_date else (0, 0)
        self.moc = MocAccumulator(start, end)
        calendar = NyseCalendar()
        open_ = calendar.session_open(session_date) if session_date and calendar.is_session(session_date) else None
        self.session_open_ns = int(open_.timestamp() * NS) if open_ else 0
        self._adv_mark = 0
        self.session_volume = 0.0
        self.contract_volume: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.chain_dirty = False
        self.chain_metrics: dict[str, Any] = {}
        self.external: dict[str, dict[str, Any]] = {}

    # --- ingestion ------------------------------------------------------------------------
    def on_batch(self, batch: MarketBatch) -> None:
        """Apply one batch: basics (with validation), then every metric family's state."""
        self.features.on_batch(batch)
        if batch.symbol != self.symbol:
            return
        for book in batch.books:
            self.book.update_snapshot(book)
        for trade in batch.trades:
            self._on_trade(trade)
        for option_trade in batch.option_trades:
            self._on_option_trade(option_trade)
        if batch.options:
            self.chain_dirty = True

    def _on_trade(self, trade: Trade) -> None:
        if not (math.isfinite(trade.price) and trade.price > 0 and trade.size > 0):
            return  # already rejected and counted by SymbolFeatures
        self.vpin.update(trade.price, trade.size)
        self.rv.update(trade.ts_event, trade.price)
        side = 1 if trade.price >= self.features.ask else (-1 if trade.price <= self.features.bid else 0)
        self.moc.update(trade.ts_event, trade.price, trade.size, side, trade.dark)
        if self.equity_prints.update(trade.ts_event, trade.price, trade.size, side, self.symbol).odd_lot:
            self.counts["equity_odd_lots"] += 1
        self.session_volume += trade.size
        self.counts["dark_volume" if trade.dark else "lit_volume"] += trade.size
        self._refresh_adv(trade.ts_event)

    def _on_option_trade(self, trade: OptionTrade) -> None:
        is_call = trade.contract.right is Right.CALL
        key = trade.contract.key
        side = self.flow.update(trade.ts_event, trade.price, trade.size, trade.bid, trade.ask, is_call, key)
        if not (math.isfinite(trade.price) and trade.price > 0 and trade.size > 0):
            self.counts["option_trades_rejected"] += 1
            return
        event = self.prints.update(trade.ts_event, trade.price, trade.size, side, key)
        self.counts["option_prints"] += 1
        self.counts["blocks"] += int(event.block)
        self.counts["sweeps"] += int(event.new_sweep)
        self.contract_volume[key] += trade.size

    def _refresh_adv(self, now_ns: int) -> None:
        """VPIN's bucket size from the session's running volume, once 30 minutes have traded.

        ADV is estimated as volume so far / fraction of the 6.5 h session elapsed; a configured
        ADV (live deployments know it) would replace this.
        """
        if not self.session_open_ns:
            return
        elapsed = (now_ns - self.session_open_ns) / NS
        mark = int(elapsed // 1800)
        if mark > self._adv_mark:
            self._adv_mark = mark
            self.vpin.set_adv(self.session_volume / (elapsed / (6.5 * 3600)))

    # --- chain metrics --------------------------------------------------------------------
    def refresh_chain(self, now_ns: int) -> dict[str, Any]:
        """Recompute every chain metric from the latest quotes (IV from mids, greeks, exposures …)."""
        spot = self.features.mid
        chain, rejected = Chain.from_quotes(self.features.chain.values(), spot, self.rate, self.div_yield, now_ns)
        self.chain_dirty = False
        if len(chain) == 0 or not math.isfinite(spot):
            self.chain_metrics = {"contracts": 0, "rejected": rejected}
            return self.chain_metrics
        mid = (chain.bid + chain.ask) / 2
        solved = implied_vol(mid, spot, chain.strike, chain.t_years, self.rate, self.div_yield, chain.is_call)
        iv = np.where(np.isfinite(solved.iv), solved.iv, chain.iv)
        greeks = bsm_greeks(spot, chain.strike, chain.t_years, self.rate, self.div_yield, iv, chain.is_call)
        solved_chain, _ = Chain.from_arrays(
            strike=chain.strike,
            t_years=chain.t_years,
            is_call=chain.is_call,
            iv=iv,
            oi=chain.oi,
            spot=spot,
            rate=self.rate,
            div_yield=self.div_yield,
            expiry=chain.expiry,
            bid=chain.bid,
            ask=chain.ask,
        )
        exposures = dealer_exposures(solved_chain, min_oi=self.config.min_open_interest)
        flip = zero_gamma_level(solved_chain, min_oi=self.config.min_open_interest)
        pains = max_pain(solved_chain, min_oi=self.config.min_open_interest)
        front = chain.expiry_idx == 0
        calls, puts = front & chain.is_call, front & ~chain.is_call
        skew = risk_reversal_25d(
            chain.strike[calls], greeks.delta[calls], iv[calls], chain.strike[puts], greeks.delta[puts], iv[puts]
        )
        atm = int(np.argmin(np.abs(chain.strike - spot) + (~front) * 1e12))
        atm_iv = float(iv[atm])
        day = datetime.fromtimestamp(now_ns / NS, tz=UTC).astimezone(ET).date()
        self.iv_history.update(day.isoformat(), atm_iv)
        rank = self.iv_history.value(atm_iv)
        oi_by_key = dict(
            zip(
                [q.contract.key for q in self.features.chain.values()],
                [q.open_interest for q in self.features.chain.values()],
                strict=True,
            )
        )
        unusual = sorted(
            (
                (v / oi_by_key[k], k)
                for k, v in self.contract_volume.items()
                if oi_by_key.get(k, 0) > 0 and v / oi_by_key[k] > self.config.unusual_volume_oi
            ),
            reverse=True,
        )[:5]
        self.chain_metrics = {
            "contracts": len(chain),
            "rejected": {k: v for k, v in rejected.items() if v},
            "iv_unsolved": {k: v for k, v in reason_counts(solved).items() if v and k != "OK"},
            "gex": exposures.gex,
            "dex": exposures.dex,
            "vanna_exposure": exposures.vanna_ex,
            "charm_exposure": exposures.charm_ex,
            "call_gex": exposures.call_gex,
            "put_gex": exposures.put_gex,
            "max_abs_gex_strike": exposures.max_abs_gex_strike,
            "call_wall": exposures.call_wall,
            "put_wall": exposures.put_wall,
            "zero_gamma": flip,
            "gex_by_strike": {f"{row['strike']:.2f}": float(row["gex"]) for row in exposures.by_strike},
            "max_pain": {str(k): float(v) for k, v in pains.items()},
            "rr25": skew.rr25,
            "atm_iv": atm_iv,
            "iv_rank": rank.rank,
            "iv_percentile": rank.percentile,
            "unusual": [{"contract": k, "volume_oi": r} for r, k in unusual],
        }
        return self.chain_metrics

    # --- outputs --------------------------------------------------------------------------
    def metrics(self, now_ns: int) -> dict[str, dict[str, Any]]:
        """Every metric family as a JSON-ready snapshot with ``computed_at`` / ``valid_until``."""
        if self.chain_dirty:
            self.refresh_chain(now_ns)
        valid_until = now_ns + int(self.config.snapshot_ttl_s * NS)
        stamp = {"computed_at": now_ns, "valid_until": valid_until}
        book = self.book.value(now_ns)
        vpin = self.vpin.value()
        rv = self.rv.value()
        regime = vol_regime(rv_ratio=rv.ratio)
        flow = self.flow.value()
        moc = self.moc.predict(book.imbalance_l5 if math.isfinite(book.imbalance_l5) else 0.0)
        lit, dark = self.counts["lit_volume"], self.counts["dark_volume"]
        out = {
            "book": {
                **stamp,
                "mid": book.mid,
                "spread_bps": book.spread_bps,
                "imbalance_l1": book.imbalance_l1,
                "imbalance_l5": book.imbalance_l5,
                "bid_depth": book.bid_depth,
                "ask_depth": book.ask_depth,
                "microprice": book.microprice,
                "ofi_window": book.ofi_window,
                "liquidity_grade": book.grade,
            },
            "vpin": {
                **stamp,
                "vpin": vpin.vpin,
                "state": vpin.state,
                "cdf": vpin.cdf,
                "buckets": vpin.buckets,
                "bucket_volume": vpin.bucket_volume,
            },
            "volatility": {
                **stamp,
                "realized_vol": rv.rv,
                "rv_mean": rv.rv_mean,
                "rv_ratio": rv.ratio,
                "regime": regime.regime.value,
                "regime_source": regime.source,
            },
            "flow": {
                **stamp,
                "net_premium": flow.net,
                "momentum": flow.momentum,
                "gross_premium": flow.gross,
                "call_bought": flow.call_bought,
                "call_sold": flow.call_sold,
                "put_bought": flow.put_bought,
                "put_sold": flow.put_sold,
                "burst": flow.burst,
                "sweeps": self.counts["sweeps"],
                "blocks": self.counts["blocks"],
                "option_prints": self.counts["option_prints"],
                "equity_odd_lots": self.counts["equity_odd_lots"],
                "dark_share": dark / (dark + lit) if dark + lit else None,
            },
            "chain": {**stamp, **self.chain_metrics},
            "moc": {
                **stamp,
                "direction": moc.direction,
                "confidence": moc.confidence,
                "size_shares": moc.size_shares,
                "flow_asymmetry": moc.flow_asymmetry,
                "dark_lit_divergence": moc.dark_lit_divergence,
                "passes": moc.passes(),
            },
            "rejected": {**stamp, **self.rejected()},
        }
        if self.external:
            out["divergence"] = {**stamp, **self.external}
        return {name: _json_ready(values) for name, values in out.items()}

    def scalars(self, metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
        """The numbers strategies read, flattened into the feature snapshot (NaN where unknown)."""
        chain, book, vol = metrics["chain"], metrics["book"], metrics["volatility"]

        def num(value: Any) -> float:
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan

        return {
            "gex": num(chain.get("gex")),
            "dex": num(chain.get("dex")),
            "zero_gamma": num(chain.get("zero_gamma")),
            "max_abs_gex_strike": num(chain.get("max_abs_gex_strike")),
            "call_wall": num(chain.get("call_wall")),
            "put_wall": num(chain.get("put_wall")),
            "rr25": num(chain.get("rr25")),
            "atm_iv": num(chain.get("atm_iv")),
            "iv_rank": num(chain.get("iv_rank")),
            "vpin": num(metrics["vpin"].get("vpin")),
            "liquidity_grade": GRADE_SCORE.get(book["liquidity_grade"], 0.0),
            "realized_vol": num(vol.get("realized_vol")),
            "regime": REGIME_CODE.get(vol["regime"], 1.0),
            "net_premium": num(metrics["flow"].get("net_premium")),
            "flow_momentum": num(metrics["flow"].get("momentum")),
            "moc_direction": MOC_DIRECTION.get(metrics["moc"]["direction"], 0.0),
            "moc_confidence": num(metrics["moc"].get("confidence")),
            "moc_flow_asymmetry": num(metrics["moc"].get("flow_asymmetry")),
            "moc_dark_lit_divergence": num(metrics["moc"].get("dark_lit_divergence")),
            "imbalance_l5": num(book.get("imbalance_l5")),
        }

    def snapshot(self, now_ns: int, ts_init: int) -> tuple[FeatureSnapshot, dict[str, dict[str, Any]]]:
        """The feature snapshot for the strategies plus the metric snapshots for Redis."""
        metrics = self.metrics(now_ns)
        base = self.features.snapshot(now_ns, ts_init)
        return msgspec.structs.replace(base, metrics=self.scalars(metrics)), metrics

    def on_vol_close(self, event: AltDataEvent) -> bool:
        """A prior session's closing ATM IV (``VOL_CLOSE`` history) into the IV-rank history.

        IV rank needs ``min_days`` of closes; a fresh deployment gets them from this history (UW's
        historical IV live, the simulator's prior sessions in a simulation). A malformed event is
        counted under ``vol_close_rejected`` and dropped. Returns whether it was recorded.
        """
        if event.symbol != self.symbol:
            return False
        try:
            day, atm_iv, _ = vol_close_values(event)
        except ValueError:
            self.vol_close_rejected += 1
            return False
        self.iv_history.update(day.isoformat(), atm_iv)
        return True

    def rejected(self) -> dict[str, int]:
        """Every rejection counter of every family, prefixed by family."""
        out: dict[str, int] = {f"event_{k}": v for k, v in self.features.rejected.items()}
        for family, counts in (
            ("book", self.book.rejected),
            ("vpin", self.vpin.rejected),
            ("flow", self.flow.rejected),
            ("moc", self.moc.rejected),
            ("rv", self.rv.rejected),
        ):
            out.update({f"{family}_{k}": int(v) for k, v in counts.items()})
        if self.vol_close_rejected:
            out["history_vol_close_rejected"] = self.vol_close_rejected
        return out

    # --- outside sources ------------------------------------------------------------------
    def record_external(self, metric: str, value: float, source: str, ts_ns: int) -> dict[str, Any]:
        """Keep an outside value (e.g. Unusual Whales' GEX) next to ours and their divergence.

        ``metric`` names one of our chain scalars (``gex``, ``dex``, ``zero_gamma``, ``iv_rank``,
        ``rr25`` …). Divergence = (theirs − ours) / |ours| (NaN when ours is unknown or zero); the
        overseer reads it.
        """
        ours = self.chain_metrics.get(metric)
        ours_f = float(ours) if isinstance(ours, int | float) and math.isfinite(ours) else math.nan
        theirs = float(value)
        divergence = (theirs - ours_f) / abs(ours_f) if math.isfinite(ours_f) and ours_f != 0 else math.nan
        record = {"ours": ours_f, "theirs": theirs, "source": source, "divergence": divergence, "ts": ts_ns}
        self.external[metric] = record
        return record

    # --- checkpoint -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint of every family (the chain is rebuilt from the next refresh)."""
        return {
            "features": self.features.state(),
            "book": self.book.state(),
            "vpin": self.vpin.state(),
            "rv": self.rv.state(),
            "flow": self.flow.state(),
            "moc": self.moc.state(),
            "iv_history": self.iv_history.state(),
            "session_volume": self.session_volume,
            "contract_volume": dict(self.contract_volume),
            "counts": dict(self.counts),
            "adv_mark": self._adv_mark,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self.features.restore(state["features"])
        self.book.restore(state["book"])
        self.vpin.restore(state["vpin"])
        self.rv.restore(state["rv"])
        self.flow.restore(state["flow"])
        self.moc.restore(state["moc"])
        self.iv_history.restore(state["iv_history"])
        self.session_volume = float(state["session_volume"])
        self.contract_volume = Counter({k: int(v) for k, v in state["contract_volume"].items()})
        self.counts = Counter({k: int(v) for k, v in state["counts"].items()})
        self._adv_mark = int(state.get("adv_mark", 0))


def _json_ready(values: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python numbers, recursively."""
    if isinstance(values, dict):
        return {k: _json_ready(v) for k, v in values.items()}
    if isinstance(values, list | tuple):
        return [_json_ready(v) for v in values]
    if isinstance(values, bool | str) or values is None:
        return values
    if isinstance(values, int | np.integer):
        return int(values)
    if isinstance(values, float | np.floating):
        return _finite(float(values))
    return values
