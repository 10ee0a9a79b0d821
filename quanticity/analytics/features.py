"""Per-symbol market state and the features the strategies read.

``SymbolFeatures`` keeps the book, a window of trade prices and mids and the latest option chain
of one symbol, validates every event (a crossed book, a non-positive price or a NaN greek is
rejected and counted, never stored), and decides when a :class:`FeatureSnapshot` is worth
forwarding: when the mid moved materially since the last one, or when the cadence is due.
The full metric set of SPEC §6 builds on this state.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from datetime import UTC, date, datetime
from typing import Any

from quanticity.config.models import AnalyticsSection
from quanticity.messages import BookSnapshot, FeatureSnapshot, MarketBatch, OptionQuote, Quote, Right, Trade

NS = 1_000_000_000
SECONDS_PER_TRADING_YEAR = 252 * 6.5 * 3600


def book_imbalance(bids: tuple[tuple[float, int], ...], asks: tuple[tuple[float, int], ...], depth: int) -> float:
    """(bid size − ask size) / (bid size + ask size) over the first ``depth`` levels, in [−1, 1]."""
    bid = sum(size for _, size in bids[:depth])
    ask = sum(size for _, size in asks[:depth])
    total = bid + ask
    return 0.0 if total <= 0 else (bid - ask) / total


def reject_reason(event: Quote | Trade | BookSnapshot | OptionQuote) -> str | None:
    """Why an event is unusable (a short reason code), or None when it is valid."""
    if isinstance(event, Quote):
        if not (math.isfinite(event.bid) and math.isfinite(event.ask)) or event.bid <= 0 or event.ask <= 0:
            return "quote_non_positive_price"
        if event.bid >= event.ask:
            return "quote_crossed"
        if event.bid_size < 0 or event.ask_size < 0:
            return "quote_negative_size"
    elif isinstance(event, Trade):
        if not math.isfinite(event.price) or event.price <= 0:
            return "trade_non_positive_price"
        if event.size <= 0:
            return "trade_impossible_size"
    elif isinstance(event, BookSnapshot):
        if not event.bids or not event.asks:
            return "book_empty_side"
        if any(p <= 0 or s < 0 for p, s in event.bids + event.asks):
            return "book_bad_level"
        if event.bids[0][0] >= event.asks[0][0]:
            return "book_crossed"
    elif isinstance(event, OptionQuote):
        values = (event.bid, event.ask, event.iv, event.delta, event.gamma, event.vega, event.theta)
        if not all(math.isfinite(v) for v in values):
            return "option_non_finite"
        if event.bid < 0 or event.ask <= 0 or event.bid > event.ask:
            return "option_bad_quote"
    return None


class SymbolFeatures:
    """Incremental market state of one symbol.

    ``min_dte`` selects the expiry the strategies trade: 0 for the 0/1DTE index products, 14 for
    the single names (SPEC §7), falling back to the nearest listed expiry.
    """

    def __init__(self, symbol: str, config: AnalyticsSection, min_dte: int = 0) -> None:
        self.symbol = symbol
        self.config = config
        self.min_dte = min_dte
        self.bid = math.nan
        self.ask = math.nan
        self.last_price = math.nan
        self.imbalance_l1 = 0.0
        self.imbalance_l5 = 0.0
        self.last_event_ns = 0
        self.trade_prices: deque[tuple[int, float]] = deque(maxlen=config.realized_vol_window)
        self.mids: deque[float] = deque(maxlen=config.momentum_window)
        self.chain: dict[str, OptionQuote] = {}
        self.events = 0
        self.rejected: Counter[str] = Counter()
        self._last_forward_ns = 0
        self._last_forward_mid = math.nan
        self._trigger_ts_init = 0  # ts_init of the latest batch: the tick that makes a snapshot due

    # --- ingestion ------------------------------------------------------------------------
    def on_batch(self, batch: MarketBatch) -> None:
        """Apply every valid event of ``batch``; count and drop the invalid ones."""
        if batch.symbol != self.symbol:
            self.rejected["wrong_symbol"] += batch.event_count
            return
        for quote in batch.quotes:
            if self._accept(quote):
                self.bid, self.ask = quote.bid, quote.ask
                self.mids.append((quote.bid + quote.ask) / 2)
        for book in batch.books:
            if self._accept(book):
                self.imbalance_l1 = book_imbalance(book.bids, book.asks, 1)
                self.imbalance_l5 = book_imbalance(book.bids, book.asks, 5)
                if math.isnan(self.bid):
                    self.bid, self.ask = book.bids[0][0], book.asks[0][0]
        for trade in batch.trades:
            if self._accept(trade):
                self.last_price = trade.price
                self.trade_prices.append((trade.ts_event, trade.price))
        for option in batch.options:
            if self._accept(option):
                self.chain[option.contract.key] = option
        if batch.event_count:
            self._trigger_ts_init = batch.ts_init

    def _accept(self, event: Quote | Trade | BookSnapshot | OptionQuote) -> bool:
        reason = reject_reason(event)
        if reason is not None:
            self.rejected[reason] += 1
            return False
        self.events += 1
        self.last_event_ns = max(self.last_event_ns, event.ts_event)
        return True

    # --- features -------------------------------------------------------------------------
    @property
    def mid(self) -> float:
        """Mid of the last valid quote (NaN before the first)."""
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> float:
        """Quoted spread in basis points of the mid."""
        return (self.ask - self.bid) / self.mid * 1e4 if self.mid > 0 else math.inf

    def realized_vol(self) -> float:
        """Annualised realized volatility of trade-to-trade log returns over the window.

        Scaled by the elapsed trading time the window covers, so it is comparable with an
        implied vol whatever the trade rate; 0 with fewer than 3 trades.
        """
        if len(self.trade_prices) < 3:
            return 0.0
        prices = [p for _, p in self.trade_prices]
        returns = [math.log(b / a) for a, b in zip(prices, prices[1:], strict=False)]
        elapsed_s = (self.trade_prices[-1][0] - self.trade_prices[0][0]) / NS
        if elapsed_s <= 0:
            return 0.0
        variance = sum(r * r for r in returns)
        return math.sqrt(variance * SECONDS_PER_TRADING_YEAR / elapsed_s)

    def momentum_bps(self) -> float:
        """Change of the mid over the momentum window, in basis points."""
        if len(self.mids) < 2 or self.mids[0] <= 0:
            return 0.0
        return (self.mids[-1] / self.mids[0] - 1) * 1e4

    def first_otm(self, right: Right, now_ns: int) -> OptionQuote | None:
        """First out-of-the-money contract of the traded expiry (see ``min_dte``)."""
        spot = self.mid
        if not self.chain or not math.isfinite(spot):
            return None
        today = datetime.fromtimestamp(now_ns / NS, tz=UTC).date()
        expiries = sorted({q.contract.expiry for q in self.chain.values() if q.contract.expiry >= today.isoformat()})
        if not expiries:
            return None
        wanted = [e for e in expiries if (date.fromisoformat(e) - today).days >= self.min_dte]
        expiry = (wanted or expiries)[0]
        candidates = [q for q in self.chain.values() if q.contract.expiry == expiry and q.contract.right is right]
        if right is Right.CALL:
            otm = [q for q in candidates if q.contract.strike > spot]
            return min(otm, key=lambda q: q.contract.strike) if otm else None
        otm = [q for q in candidates if q.contract.strike < spot]
        return max(otm, key=lambda q: q.contract.strike) if otm else None

    def snapshot_due(self, now_ns: int) -> bool:
        """True when the mid moved materially since the last forward, or the cadence is due — but
        never sooner than ``min_forward_interval_s`` after the last forward (strategies re-deciding
        within a second gain nothing and the fan-out costs Ray calls). Live actors and backtests both
        ask here, so both forward the same snapshots."""
        if not math.isfinite(self.mid):
            return False
        if self._last_forward_ns and now_ns - self._last_forward_ns < self.config.min_forward_interval_s * NS:
            return False
        if now_ns - self._last_forward_ns >= self.config.forward_every_s * NS:
            return True
        last = self._last_forward_mid
        return not math.isfinite(last) or abs(self.mid / last - 1) * 1e4 >= self.config.material_change_bps

    def snapshot(self, now_ns: int, ts_init: int) -> FeatureSnapshot:
        """Build the snapshot and mark it forwarded (resets the material-change reference)."""
        snap = FeatureSnapshot(
            ts_event=now_ns,
            ts_init=ts_init,
            symbol=self.symbol,
            mid=self.mid,
            spread_bps=self.spread_bps,
            imbalance_l1=self.imbalance_l1,
            imbalance_l5=self.imbalance_l5,
            realized_vol=self.realized_vol(),
            last_price=self.last_price if math.isfinite(self.last_price) else self.mid,
            momentum_bps=self.momentum_bps(),
            computed_at=now_ns,
            valid_until=now_ns + int(self.config.snapshot_ttl_s * NS),
            origin_ts_init=self._trigger_ts_init or ts_init,
            atm_call=self.first_otm(Right.CALL, now_ns),
            atm_put=self.first_otm(Right.PUT, now_ns),
        )
        self._last_forward_ns = now_ns
        self._last_forward_mid = self.mid
        return snap

    # --- checkpoint -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint (the chain is rebuilt from the next refresh)."""
        return {
            "bid": self.bid,
            "ask": self.ask,
            "last_price": self.last_price,
            "imbalance_l1": self.imbalance_l1,
            "imbalance_l5": self.imbalance_l5,
            "last_event_ns": self.last_event_ns,
            "trade_prices": list(self.trade_prices),
            "mids": list(self.mids),
            "events": self.events,
            "rejected": dict(self.rejected),
            "last_forward_ns": self._last_forward_ns,
            "last_forward_mid": self._last_forward_mid,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self.bid, self.ask = float(state["bid"]), float(state["ask"])
        self.last_price = float(state["last_price"])
        self.imbalance_l1, self.imbalance_l5 = float(state["imbalance_l1"]), float(state["imbalance_l5"])
        self.last_event_ns = int(state["last_event_ns"])
        self.trade_prices.extend((int(t), float(p)) for t, p in state["trade_prices"])
        self.mids.extend(float(m) for m in state["mids"])
        self.events = int(state["events"])
        self.rejected.update({k: int(v) for k, v in state["rejected"].items()})
        self._last_forward_ns = int(state["last_forward_ns"])
        self._last_forward_mid = float(state["last_forward_mid"])
