"""Synthetic Unusual Whales data in the documented shapes, deterministic from a seed.

What the loopback UW twin serves (SPEC §11). Every record carries exactly the fields of its
OpenAPI schema (:mod:`quanticity.feeds.schemas` lists them; the tests check both against the
official file) with UW's wire types: numbers as strings, counts as integers, dates ISO.

Values come from three places so they hang together:

- the underlyings of ``config/market.yaml`` (spot, vol, strike step): a smooth deterministic
  path per symbol and ET day around the configured spot;
- :func:`quanticity.sim.altdata.alt_data_events` for dark-pool prints, congress and insider
  trades, flow alerts and earnings dates (the same events the simulated feed publishes);
- :func:`quanticity.analytics.bsm.bsm_greeks` for option prices, IVs and greeks;
- with a ``market`` attached (the venue host of a ``tws`` run passes its
  :class:`~quanticity.sim.market.SyntheticMarket`), the *current* values of the symbols that market
  simulates come from it: the newest spot-exposure price is its spot, and the option chain and
  per-contract quotes (NBBO, IV, open interest, volume) are its quotes — the same numbers the TWS
  simulator streams. UW and IBKR then agree as two real feeds do, so the overseer's UW-vs-IBKR
  divergence checks stay quiet unless one side is actually wrong.

The flow-alert, dark-pool, congress, insider and earnings records carry each simulated event's
direction, dollar amount and date in their documented fields (dark-pool ``premium`` and insider
shares × ``price`` to the cent, congress in its STOCK Act band), so the fetcher's alt-data bridge
(:mod:`quanticity.feeds.altdata`) turns them back into the same events.

Without a market, a response depends only on (seed, endpoint, symbol, the twin's clock to the
minute), so two requests in the same minute see the same data, like a cache in front of the real API.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

import numpy as np

from quanticity.analytics.bsm import bsm_greeks
from quanticity.calendar import ET, NyseCalendar
from quanticity.clock import NS_PER_SECOND
from quanticity.config.loader import DEFAULT_CONFIG_DIR, read_yaml
from quanticity.config.models import MarketFile, UnderlyingSpec
from quanticity.feeds.altdata import congress_amount_range
from quanticity.messages import AltDataEvent, AltDataKind, OptionContract, OptionQuote, Right
from quanticity.sim.altdata import alt_data_events

RATE = 0.045
HEADLINES = (
    ("{t} beats estimates as revenue climbs", "positive"),
    ("{t} shares slide after guidance cut", "negative"),
    ("Analysts reiterate neutral rating on {t}", "neutral"),
    ("{t} announces buyback program", "positive"),
    ("Regulators open inquiry into {t}", "negative"),
    ("Fed minutes keep rate path unchanged", "neutral"),
)
WS_FAMILIES = ("price", "gex", "gex_strike", "gex_strike_expiry", "option_trades", "flow-alerts", "news")


def num(value: float, places: int = 2) -> str:
    """UW's number-as-string."""
    return f"{value:.{places}f}"


def ts_text(ts_ns: int) -> str:
    """UW's timestamp text: ``2023-12-13 05:00:41.481000+00:00``."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=UTC).isoformat(sep=" ", timespec="microseconds")


def occ(root: str, expiry: date, is_call: bool, strike: float) -> str:
    """OCC option symbol, e.g. ``SPY250117C00590000``."""
    return f"{root}{expiry:%y%m%d}{'C' if is_call else 'P'}{round(strike * 1000):08d}"


def default_underlyings() -> dict[str, UnderlyingSpec]:
    """The underlyings of the repository's ``config/market.yaml``."""
    return dict(MarketFile.model_validate(read_yaml(DEFAULT_CONFIG_DIR / "market.yaml")).underlyings)


@dataclass(frozen=True)
class Contract:
    """One listed option with its BSM quote."""

    symbol: str
    expiry: date
    strike: float
    is_call: bool
    mid: float
    iv: float
    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float
    open_interest: int

    @property
    def occ(self) -> str:
        return occ(self.symbol, self.expiry, self.is_call, self.strike)


class MarketView(Protocol):
    """What the twin reads of a simulated market (:class:`~quanticity.sim.market.SyntheticMarket`)."""

    @property
    def symbols(self) -> list[str]:
        """Symbols the market simulates."""
        ...

    def spot(self, symbol: str) -> float:
        """Current spot of ``symbol``."""
        ...

    def chain(self, symbol: str) -> list[OptionContract]:
        """Contracts listed on ``symbol``."""
        ...

    def option_quote(self, contract: OptionContract, ts_init_ns: int | None = None) -> OptionQuote:
        """Current quote of ``contract``."""
        ...


class UwData:
    """Deterministic synthetic data per (seed, symbol, minute); the methods return ``data`` lists."""

    def __init__(
        self,
        seed: int = 7,
        underlyings: Mapping[str, UnderlyingSpec] | None = None,
        calendar: NyseCalendar | None = None,
        market: MarketView | None = None,
    ) -> None:
        self.seed = int(seed)
        self.underlyings = dict(underlyings) if underlyings is not None else default_underlyings()
        self.calendar = calendar or NyseCalendar()
        self.market = market
        self._market_spots: dict[tuple[str, int], float] = {}  # (symbol, minute) → the market's spot then
        self._alt = functools.lru_cache(maxsize=256)(self._alt_events)
        self._day_shape = functools.lru_cache(maxsize=4096)(self._day_shape_uncached)
        self._expiries = functools.lru_cache(maxsize=64)(self._expiries_uncached)

    # --- building blocks -------------------------------------------------------------------
    def rng(self, *parts: str | int) -> np.random.Generator:
        """A generator seeded from the twin's seed and ``parts`` (crc32 of strings: stable across processes)."""
        words = [self.seed] + [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))

    def spec(self, symbol: str) -> UnderlyingSpec:
        """The configured underlying, or a deterministic stand-in for any other ticker."""
        if symbol in self.underlyings:
            return self.underlyings[symbol]
        return UnderlyingSpec(spot=20.0 + zlib.crc32(symbol.encode()) % 480, vol=0.3, strike_step=1.0)

    def spot(self, symbol: str, ts_ns: int) -> float:
        """A smooth path around the configured spot: a daily level plus an intraday wave, to the cent."""
        spec = self.spec(symbol)
        moment = datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=ET)
        day_z, phase = self._day_shape(symbol, moment.date().toordinal())
        minutes = moment.hour * 60 + moment.minute
        wave = math.sin(2 * math.pi * minutes / 390.0 + phase)
        return round(spec.spot * math.exp(spec.vol * (0.03 * day_z + 0.004 * wave)), 2)

    def simulates(self, symbol: str) -> bool:
        """True when the attached market simulates ``symbol`` (its current values come from the market)."""
        return self.market is not None and symbol in self.market.symbols

    def _market_spot(self, symbol: str, ts_ns: int) -> float:
        """The market's spot now, remembered per minute so later responses show the same history."""
        assert self.market is not None
        spot = round(float(self.market.spot(symbol)), 2)
        if len(self._market_spots) > 100_000:
            self._market_spots.clear()
        self._market_spots[(symbol, ts_ns // (60 * NS_PER_SECOND))] = spot
        return spot

    def _market_quotes(self, symbol: str, ts_ns: int) -> list[OptionQuote]:
        assert self.market is not None
        return [self.market.option_quote(c, ts_init_ns=ts_ns) for c in self.market.chain(symbol)]

    def _day_shape_uncached(self, symbol: str, ordinal: int) -> tuple[float, float]:
        day_z, phase = self.rng("spot", symbol, ordinal).normal(size=2)
        return float(day_z), float(phase)

    def today(self, ts_ns: int) -> date:
        """The ET calendar date of ``ts_ns``."""
        return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=ET).date()

    def expiries(self, ts_ns: int) -> list[date]:
        """Four expiries: the next three sessions from today and one about a month out."""
        return list(self._expiries(self.today(ts_ns)))

    def _expiries_uncached(self, today: date) -> tuple[date, ...]:
        sessions = self.calendar.sessions_between(today, today + timedelta(days=45))
        return tuple(sessions[:3] + sessions[20:21])

    def chain(self, symbol: str, ts_ns: int, strikes_each_side: int = 4) -> list[Contract]:
        """BSM-priced contracts around the spot, for every expiry."""
        spec = self.spec(symbol)
        spot = self.spot(symbol, ts_ns)
        today = self.today(ts_ns)
        center = round(spot / spec.strike_step) * spec.strike_step
        strikes = [center + k * spec.strike_step for k in range(-strikes_each_side, strikes_each_side + 1)]
        rows = [(e, k, c) for e in self.expiries(ts_ns) for k in strikes if k > 0 for c in (True, False)]
        strike_arr = np.array([k for _, k, _ in rows])
        moneyness = np.log(strike_arr / spot)
        iv = np.maximum(spec.vol * (1 + 0.8 * moneyness**2 - 0.3 * moneyness), 0.05)
        t_years = np.array([max((e - today).days, 0.25) / 365.0 for e, _, _ in rows])
        greeks = bsm_greeks(spot, strike_arr, t_years, RATE, spec.dividend_yield, iv, np.array([c for *_, c in rows]))
        out = []
        for i, (expiry, strike, is_call) in enumerate(rows):
            near = math.exp(-abs(moneyness[i]) * 20)
            open_interest = int(
                2000 + 30000 * near * (0.75 + 0.5 * (zlib.crc32(f"{symbol}{expiry}{strike}".encode()) / 2**32))
            )
            out.append(
                Contract(
                    symbol,
                    expiry,
                    strike,
                    is_call,
                    max(float(greeks.price[i]), 0.01),
                    float(iv[i]),
                    float(greeks.delta[i]),
                    float(greeks.gamma[i]),
                    float(greeks.theta[i]) / 365.0,
                    float(greeks.vega[i]) / 100.0,
                    float(greeks.rho[i]) / 100.0,
                    open_interest,
                )
            )
        return out

    def _alt_events(self, symbols: tuple[str, ...], day: date) -> tuple[AltDataEvent, ...]:
        return tuple(alt_data_events(list(symbols), day, self.seed, self.calendar))

    def events(self, kind: AltDataKind, symbols: list[str], ts_ns: int, limit: int = 50) -> list[AltDataEvent]:
        """The newest ``limit`` alternative-data events of ``kind`` up to ``ts_ns``, newest first."""
        found = [
            e
            for e in self._alt(tuple(sorted(symbols)), self.today(ts_ns))
            if e.kind is kind and (e.ts_event <= ts_ns or kind is AltDataKind.EARNINGS)
        ]
        return sorted(found, key=lambda e: e.ts_event, reverse=True)[:limit]

    # --- REST endpoints (record lists) -----------------------------------------------------
    def spot_exposures(self, symbol: str, ts_ns: int, minutes: int = 30) -> list[dict[str, Any]]:
        """``/stock/{ticker}/spot-exposures``: per-minute spot GEX/DEX/VEX, oldest first."""
        start = ts_ns - (minutes - 1) * 60 * NS_PER_SECOND
        live = self._market_spot(symbol, ts_ns) if self.simulates(symbol) else None
        out = []
        for i in range(minutes):
            t = start + i * 60 * NS_PER_SECOND
            rng = self.rng("spot_exposures", symbol, t // (60 * NS_PER_SECOND))
            scale = self.spec(symbol).spot * 1e6
            row = {
                f"{greek}_per_one_percent_move_{kind}": num(rng.normal(0.0, scale * mult))
                for greek, mult in (("charm", 50.0), ("gamma", 1.0), ("vanna", 5.0))
                for kind in ("dir", "oi", "vol")
            }
            price = self.spot(symbol, t)
            if live is not None:  # the market's spot of that minute if seen, else now's (it has no history)
                price = live if t == ts_ns else self._market_spots.get((symbol, t // (60 * NS_PER_SECOND)), live)
            row.update(price=num(price), time=ts_text(t))
            out.append(row)
        return out

    def greek_exposure(self, symbol: str, ts_ns: int, days: int = 5) -> list[dict[str, Any]]:
        """``/stock/{ticker}/greek-exposure``: daily totals, calls positive / puts negative for gamma & delta."""
        sessions = self.calendar.sessions_between(self.today(ts_ns) - timedelta(days=14), self.today(ts_ns))[-days:]
        scale = self.spec(symbol).spot * 1e5
        out = []
        for day in sessions:
            rng = self.rng("greek_exposure", symbol, day.toordinal())
            mag = np.abs(rng.normal(1.0, 0.3, size=8)) * scale
            out.append(
                {
                    "call_charm": num(mag[0] * 10, 4),
                    "call_delta": num(mag[1] * 20, 4),
                    "call_gamma": num(mag[2], 4),
                    "call_vanna": num(mag[3] * 1e3, 4),
                    "date": day.isoformat(),
                    "put_charm": num(-mag[4] * 10, 4),
                    "put_delta": num(-mag[5] * 20, 4),
                    "put_gamma": num(-mag[6], 4),
                    "put_vanna": num(mag[7] * 1e3, 4),
                }
            )
        return out

    def greek_exposure_strike(self, symbol: str, ts_ns: int) -> list[dict[str, Any]]:
        """``/stock/{ticker}/greek-exposure/strike``: exposure per strike from the BSM chain × open interest."""
        per_strike: dict[float, dict[str, float]] = {}
        for c in self.chain(symbol, ts_ns):
            side = "call" if c.is_call else "put"
            sign = 1.0 if c.is_call else -1.0
            row = per_strike.setdefault(c.strike, {})
            oi = c.open_interest * 100
            for greek, value in (("gamma", sign * c.gamma), ("delta", c.delta), ("vanna", c.vega), ("charm", c.theta)):
                row[f"{side}_{greek}"] = row.get(f"{side}_{greek}", 0.0) + value * oi
        out = []
        for strike in sorted(per_strike):
            row = per_strike[strike]
            out.append(
                {
                    name: num(row.get(name, 0.0), 4)
                    for name in sorted(
                        f"{s}_{g}" for s in ("call", "put") for g in ("charm", "delta", "gamma", "vanna")
                    )
                }
                | {"strike": num(strike)}
            )
        return out

    def flow_alerts(self, symbols: list[str], ts_ns: int, limit: int = 50) -> list[dict[str, Any]]:
        """``/option-trades/flow-alerts`` and ``/stock/{ticker}/flow-alerts``: from the simulated flow-alert events."""
        out = []
        for event in self.events(AltDataKind.FLOW_ALERT, symbols, ts_ns, limit):
            rng = self.rng("flow_alert", event.detail.get("id", ""))
            spec = self.spec(event.symbol)
            underlying = self.spot(event.symbol, event.ts_event)
            is_call = event.direction > 0
            strike = round(underlying * (1 + (0.02 if is_call else -0.02)) / spec.strike_step) * spec.strike_step
            expiry = self.expiries(event.ts_event)[int(rng.integers(0, 4))]
            price = round(float(rng.uniform(0.5, 15.0)), 2)
            size = max(1, int(event.amount / (price * 100)))
            ask_share = float(rng.uniform(0.6, 1.0))
            out.append(
                {
                    "alert_rule": str(rng.choice(["RepeatedHits", "RepeatedHitsAscendingFill", "FloorTradeLargeCap"])),
                    "all_opening_trades": bool(rng.random() < 0.3),
                    "created_at": ts_text(event.ts_event),
                    "expiry": expiry.isoformat(),
                    "expiry_count": 1,
                    "has_floor": bool(rng.random() < 0.1),
                    "has_multileg": False,
                    "has_singleleg": True,
                    "has_sweep": bool(rng.random() < 0.4),
                    "issue_type": "ETF" if event.symbol in ("SPY", "QQQ", "IWM") else "Common Stock",
                    "open_interest": int(rng.integers(100, 20000)),
                    "option_chain": occ(event.symbol, expiry, is_call, strike),
                    "price": num(price),
                    "strike": num(strike),
                    "ticker": event.symbol,
                    "total_ask_side_prem": num(event.amount * ask_share),
                    "total_bid_side_prem": num(event.amount * (1 - ask_share)),
                    "total_premium": num(event.amount),
                    "total_size": size,
                    "trade_count": int(rng.integers(1, 40)),
                    "type": "call" if is_call else "put",
                    "underlying_price": num(underlying),
                    "volume": size + int(rng.integers(0, 5000)),
                    "volume_oi_ratio": num(float(rng.uniform(0.05, 3.0)), 6),
                }
            )
        return out

    def net_prem_ticks(self, symbol: str, ts_ns: int) -> list[dict[str, Any]]:
        """``/stock/{ticker}/net-prem-ticks``: one row per minute of today's session up to now."""
        today = self.today(ts_ns)
        if not self.calendar.is_session(today):
            return []
        open_ns = int(self.calendar.session_open(today).timestamp()) * NS_PER_SECOND
        close_ns = int(self.calendar.session_close(today).timestamp()) * NS_PER_SECOND
        end = min(ts_ns, close_ns)
        rng = self.rng("net_prem_ticks", symbol, today.toordinal())
        out = []
        t = open_ns
        while t + 60 * NS_PER_SECOND <= end:
            calls, puts = (int(x) for x in rng.integers(50, 2000, size=2))
            c_ask, p_ask = int(calls * rng.uniform(0.3, 0.7)), int(puts * rng.uniform(0.3, 0.7))
            c_bid, p_bid = calls - c_ask, puts - p_ask
            out.append(
                {
                    "call_volume": calls,
                    "call_volume_ask_side": c_ask,
                    "call_volume_bid_side": c_bid,
                    "date": today.isoformat(),
                    "net_call_premium": num((c_ask - c_bid) * float(rng.uniform(50, 300))),
                    "net_call_volume": c_ask - c_bid,
                    "net_delta": num(float(rng.normal(0, 30000)), 6),
                    "net_put_premium": num((p_ask - p_bid) * float(rng.uniform(50, 300))),
                    "net_put_volume": p_ask - p_bid,
                    "put_volume": puts,
                    "put_volume_ask_side": p_ask,
                    "put_volume_bid_side": p_bid,
                    "tape_time": ts_text(t),
                }
            )
            t += 60 * NS_PER_SECOND
        return out

    def option_chains(self, symbol: str, ts_ns: int) -> list[str]:
        """``/stock/{ticker}/option-chains``: the OCC symbols listed today."""
        if self.simulates(symbol):
            assert self.market is not None
            return [contract_occ(c) for c in self.market.chain(symbol)]
        return [c.occ for c in self.chain(symbol, ts_ns)]

    def option_contracts(self, symbol: str, ts_ns: int) -> list[dict[str, Any]]:
        """``/stock/{ticker}/option-contracts``: per-contract quote, IV and the day's volume split."""
        if self.simulates(symbol):
            return [market_contract_record(q) for q in self._market_quotes(symbol, ts_ns)]
        out = []
        for c in self.chain(symbol, ts_ns):
            rng = self.rng("option_contracts", c.occ, ts_ns // (60 * NS_PER_SECOND))
            half = max(0.01, round(c.mid * 0.015, 2))
            volume = int(c.open_interest * rng.uniform(0.05, 0.8))
            ask_v, bid_v = int(volume * 0.45), int(volume * 0.4)
            mid_v = volume - ask_v - bid_v
            out.append(
                {
                    "ask_volume": ask_v,
                    "avg_price": num(c.mid, 4),
                    "bid_volume": bid_v,
                    "cross_volume": 0,
                    "floor_volume": int(volume * 0.02),
                    "high_price": num(c.mid * 1.1),
                    "implied_volatility": num(c.iv, 6),
                    "last_price": num(c.mid),
                    "low_price": num(max(c.mid * 0.9, 0.01)),
                    "mid_volume": mid_v,
                    "multi_leg_volume": int(volume * 0.1),
                    "nbbo_ask": num(c.mid + half),
                    "nbbo_bid": num(max(c.mid - half, 0.0)),
                    "no_side_volume": 0,
                    "open_interest": c.open_interest,
                    "option_symbol": c.occ,
                    "prev_oi": int(c.open_interest * 0.95),
                    "stock_multi_leg_volume": 0,
                    "sweep_volume": int(volume * 0.05),
                    "total_premium": num(volume * c.mid * 100),
                    "volume": volume,
                }
            )
        return out

    def darkpool(self, symbol: str, ts_ns: int, limit: int = 50) -> list[dict[str, Any]]:
        """``/darkpool/{ticker}``: the simulated dark-pool prints, newest first."""
        out = []
        for event in self.events(AltDataKind.DARK_POOL, [symbol], ts_ns, limit):
            rng = self.rng("darkpool", event.detail.get("id", ""))
            mid = self.spot(symbol, event.ts_event)
            price = round(mid * (1 + 0.001 * event.direction), 4)
            size = max(100, int(event.amount / price))
            out.append(
                {
                    "canceled": False,
                    "executed_at": ts_text(event.ts_event),
                    "ext_hour_sold_codes": None,
                    "market_center": "L",
                    "nbbo_ask": num(mid + 0.01),
                    "nbbo_ask_quantity": int(rng.integers(100, 5000)),
                    "nbbo_bid": num(mid - 0.01),
                    "nbbo_bid_quantity": int(rng.integers(100, 5000)),
                    "premium": num(event.amount),  # the print's value, exactly the simulated amount
                    "price": num(price, 4),
                    "sale_cond_codes": None,
                    "size": size,
                    "ticker": symbol,
                    "tracking_id": zlib.crc32(event.detail.get("id", "").encode()) * 1000,
                    "trade_code": None,
                    "trade_settlement": "regular_settlement",
                    "volume": int(rng.integers(1_000_000, 50_000_000)),
                }
            )
        return out

    def max_pain(self, symbol: str, ts_ns: int) -> list[dict[str, Any]]:
        """``/stock/{ticker}/max-pain``: one strike per expiry, near the spot."""
        spec = self.spec(symbol)
        spot = self.spot(symbol, ts_ns)
        rng = self.rng("max_pain", symbol, self.today(ts_ns).toordinal())
        return [
            {
                "expiry": e.isoformat(),
                "max_pain": num(round(spot * (1 + rng.normal(0, 0.01)) / spec.strike_step) * spec.strike_step),
            }
            for e in self.expiries(ts_ns)
        ]

    def iv_rank(self, symbol: str, ts_ns: int, days: int = 5) -> list[dict[str, Any]]:
        """``/stock/{ticker}/iv-rank``: the last sessions' close, IV and 1-year IV rank."""
        today = self.today(ts_ns)
        sessions = self.calendar.sessions_between(today - timedelta(days=14), today)[-days:]
        spec = self.spec(symbol)
        out = []
        for day in sessions:
            rng = self.rng("iv_rank", symbol, day.toordinal())
            close_ns = int(datetime.combine(day, time(16, 0), tzinfo=ET).timestamp()) * NS_PER_SECOND
            out.append(
                {
                    "close": num(self.spot(symbol, min(close_ns, ts_ns))),
                    "date": day.isoformat(),
                    "iv_rank_1y": num(float(rng.uniform(0.05, 0.95)), 4),
                    "updated_at": ts_text(min(close_ns + 35 * 60 * NS_PER_SECOND, ts_ns)),
                    "volatility": num(spec.vol * float(rng.uniform(0.8, 1.2)), 4),
                }
            )
        return out

    def oi_change(self, symbol: str, ts_ns: int, limit: int = 20) -> list[dict[str, Any]]:
        """``/stock/{ticker}/oi-change``: the contracts whose open interest moved most since the last session."""
        today = self.today(ts_ns)
        last = self.calendar.previous_session(self.calendar.session_on_or_before(today))
        rows = []
        for c in self.chain(symbol, ts_ns):
            rng = self.rng("oi_change", c.occ, today.toordinal())
            last_oi = int(c.open_interest * rng.uniform(0.5, 1.0))
            rows.append((c, last_oi, rng))
        rows.sort(key=lambda r: r[0].open_interest - r[1], reverse=True)
        out = []
        for rank, (c, last_oi, rng) in enumerate(rows[:limit], start=1):
            diff = c.open_interest - last_oi
            volume = int(abs(diff) * rng.uniform(1.0, 1.5)) + 1
            out.append(
                {
                    "avg_price": num(c.mid, 6),
                    "curr_date": self.calendar.session_on_or_before(today).isoformat(),
                    "curr_oi": c.open_interest,
                    "last_ask": num(c.mid * 1.01),
                    "last_bid": num(c.mid * 0.99),
                    "last_date": last.isoformat(),
                    "last_fill": num(c.mid),
                    "last_oi": last_oi,
                    "oi_change": num(diff / max(last_oi, 1), 6),
                    "oi_diff_plain": diff,
                    "option_symbol": c.occ,
                    "percentage_of_total": num(float(rng.uniform(0, 0.2)), 6),
                    "prev_ask_volume": int(volume * 0.5),
                    "prev_bid_volume": int(volume * 0.3),
                    "prev_mid_volume": int(volume * 0.2),
                    "prev_multi_leg_volume": int(volume * 0.1),
                    "prev_neutral_volume": 0,
                    "prev_stock_multi_leg_volume": 0,
                    "prev_total_premium": num(volume * c.mid * 100),
                    "rnk": rank,
                    "trades": int(rng.integers(1, 500)),
                    "underlying_symbol": symbol,
                    "volume": volume,
                }
            )
        return out

    def congress_trades(self, symbols: list[str], ts_ns: int, limit: int = 50) -> list[dict[str, Any]]:
        """``/congress/recent-trades``: the simulated congress trades of ``symbols``, newest first."""
        names = ("Nancy Pelosi", "Dan Crenshaw", "Josh Gottheimer", "Tommy Tuberville", "Ro Khanna")
        out = []
        for event in self.events(AltDataKind.CONGRESS, symbols, ts_ns, limit):
            rng = self.rng("congress", event.detail.get("id", ""))
            name = names[int(rng.integers(0, len(names)))]
            traded = date.fromisoformat(event.when)
            out.append(
                {
                    "amounts": congress_amount_range(event.amount),
                    "filed_at_date": (traded + timedelta(days=int(rng.integers(5, 40)))).isoformat(),
                    "is_active": True,
                    "issuer": "not-disclosed",
                    "member_type": "house" if rng.random() < 0.6 else "senate",
                    "name": name,
                    "notes": "",
                    "politician_id": f"{zlib.crc32(name.encode()):08x}",
                    "reporter": name.split()[0] + " " + name.split()[-1][0] + ".",
                    "ticker": event.symbol,
                    "transaction_date": traded.isoformat(),
                    "txn_type": "Buy" if event.direction > 0 else "Sell",
                }
            )
        return out

    def insider_transactions(self, symbols: list[str], ts_ns: int, limit: int = 50) -> list[dict[str, Any]]:
        """``/insider/transactions``: the simulated insider trades of ``symbols``, newest first."""
        out = []
        for event in self.events(AltDataKind.INSIDER, symbols, ts_ns, limit):
            rng = self.rng("insider", event.detail.get("id", ""))
            shares = max(1, int(event.amount / self.spot(event.symbol, event.ts_event)))
            # the average price of the shares, to 10 places so |amount| × price is the simulated dollar
            # amount to the cent (the bridge's inverse; a 2-place price would be off by up to shares/200 $)
            price = event.amount / shares
            before = int(shares * rng.uniform(5, 50))
            out.append(
                {
                    "amount": shares * event.direction,
                    "date_excercisable": None,
                    "director_indirect": None,
                    "expiration_date": None,
                    "filing_date": event.when,
                    "formtype": "4",
                    "ids": [event.detail.get("id", "")],
                    "is_10b5_1": bool(rng.random() < 0.5),
                    "is_director": bool(rng.random() < 0.3),
                    "is_officer": True,
                    "is_ten_percent_owner": False,
                    "natureofownership": "D",
                    "officer_title": "CFO" if rng.random() < 0.5 else "CEO",
                    "owner_name": "SYNTHETIC INSIDER",
                    "price": num(price, 10),
                    "price_excercisable": None,
                    "security_ad_code": None,
                    "security_title": "Common Stock",
                    "shares_owned_after": before + shares * event.direction,
                    "shares_owned_before": before,
                    "ticker": event.symbol,
                    "transaction_code": "P" if event.direction > 0 else "S",
                    "transaction_date": event.when,
                    "transactions": 1,
                }
            )
        return out

    def earnings(self, symbol: str, ts_ns: int, quarters: int = 4) -> list[dict[str, Any]]:
        """``/earnings/{ticker}``: the next report (from the simulated earnings date) and past quarters."""
        upcoming = self.events(AltDataKind.EARNINGS, [symbol], ts_ns, 1)
        next_report = date.fromisoformat(upcoming[0].when) if upcoming else self.today(ts_ns) + timedelta(days=30)
        out = []
        for q in range(quarters + 1):
            report = next_report - timedelta(days=91 * q)
            rng = self.rng("earnings", symbol, report.toordinal())
            estimate = float(rng.uniform(0.5, 5.0))
            moves = {
                f"{p}_earnings_move_{h}": num(float(rng.normal(0, 0.04)), 4)
                for p in ("post", "pre")
                for h in ("1d", "1w", "2w", "3d")
            }
            out.append(
                {
                    "actual_eps": None if q == 0 else num(estimate * float(rng.uniform(0.8, 1.2))),
                    "ending_fiscal_quarter": (report - timedelta(days=40)).isoformat(),
                    "expected_move": num(self.spec(symbol).spot * 0.04),
                    "expected_move_perc": num(0.04, 4),
                    "long_straddle_1d": num(float(rng.normal(0, 0.2)), 4),
                    "long_straddle_1w": num(float(rng.normal(0, 0.2)), 4),
                    **moves,
                    "report_date": report.isoformat(),
                    "report_time": "postmarket" if rng.random() < 0.6 else "premarket",
                    "short_straddle_1d": num(float(rng.normal(0, 0.2)), 4),
                    "short_straddle_1w": num(float(rng.normal(0, 0.2)), 4),
                    "source": "company",
                    "street_mean_est": num(estimate),
                }
            )
        return out

    def news_headlines(self, symbols: list[str], ts_ns: int, limit: int = 20) -> list[dict[str, Any]]:
        """``/news/headlines``: one synthetic headline every 15 minutes, newest first."""
        slot = ts_ns // (15 * 60 * NS_PER_SECOND)
        out = []
        for k in range(limit):
            rng = self.rng("news", slot - k)
            symbol = symbols[int(rng.integers(0, len(symbols)))] if symbols else "SPY"
            text, sentiment = HEADLINES[int(rng.integers(0, len(HEADLINES)))]
            out.append(
                {
                    "created_at": ts_text((slot - k) * 15 * 60 * NS_PER_SECOND),
                    "headline": text.format(t=symbol),
                    "source": "Synthetic Wire",
                    "is_major": bool(rng.random() < 0.2),
                    "meta": {},
                    "sentiment": sentiment,
                    "tags": ["synthetic"],
                    "tickers": [symbol] if "{t}" in text else [],
                }
            )
        return out

    # --- WebSocket payloads ----------------------------------------------------------------
    def ws_payload(self, channel: str, ts_ns: int, n: int) -> dict[str, Any]:
        """The ``n``-th synthetic message of ``channel`` at ``ts_ns`` (documented payload shapes)."""
        family, _, ticker = channel.partition(":")
        symbol = ticker or "SPY"
        rng = self.rng("ws", channel, n)
        spot = self.spot(symbol, ts_ns)
        ms = ts_ns // 1_000_000
        if family == "price":
            return {"close": num(spot), "time": ms, "vol": int(rng.integers(1_000, 10_000_000))}
        if family == "gex":
            return {"ticker": symbol, "timestamp": ms, "price": num(spot)} | {
                f"{g}_per_one_percent_move_{k}": num(float(rng.normal(0, 1e8)))
                for g in ("gamma", "charm", "vanna")
                for k in ("oi", "vol", "dir")
            }
        if family in ("gex_strike", "gex_strike_expiry"):
            strike = round(spot) + int(rng.integers(-5, 6))
            row = {"ticker": symbol, "timestamp": ms, "strike": num(strike), "price": num(spot)}
            row |= {
                f"{s}_{g}_{k}": num(float(rng.normal(0, 1e5)))
                for s in ("call", "put")
                for g in ("gamma", "charm", "vanna")
                for k in ("oi", "vol")
            }
            if family == "gex_strike_expiry":
                row["expiry"] = self.expiries(ts_ns)[0].isoformat()
            return row
        if family == "option_trades":
            contract = self.chain(symbol, ts_ns, strikes_each_side=2)[int(rng.integers(0, 20))]
            size = int(rng.choice([1, 2, 5, 10, 25, 100]))
            return {
                "id": f"{zlib.crc32(f'{channel}{n}'.encode()):08x}",
                "underlying_symbol": symbol,
                "executed_at": ms,
                "nbbo_bid": num(contract.mid * 0.99),
                "nbbo_ask": num(contract.mid * 1.01),
                "size": size,
                "price": num(contract.mid),
                "option_symbol": contract.occ,
                "expiry": contract.expiry.isoformat(),
                "option_type": "call" if contract.is_call else "put",
                "strike": num(contract.strike, 10),
                "premium": num(contract.mid * size * 100),
                "underlying_price": num(spot, 4),
                "implied_volatility": num(contract.iv, 8),
                "delta": num(contract.delta, 8),
                "gamma": num(contract.gamma, 8),
                "open_interest": contract.open_interest,
            }
        if family == "flow-alerts":
            alert = self.flow_alerts([symbol], ts_ns, limit=1) or self.flow_alerts(["SPY", "QQQ"], ts_ns, limit=1)
            base = alert[0] if alert else {"ticker": symbol, "option_chain": occ(symbol, self.today(ts_ns), True, spot)}
            return {
                "ticker": base["ticker"],
                "option_chain": base["option_chain"],
                "price": float(rng.uniform(0.5, 10)),
                "total_premium": int(rng.integers(25_000, 2_000_000)),
                "executed_at": ms,
                "has_sweep": bool(rng.random() < 0.4),
            }
        if family == "news":
            text, _ = HEADLINES[int(rng.integers(0, len(HEADLINES)))]
            when = datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {
                "headline": text.format(t=symbol),
                "timestamp": when,
                "source": "social-media",
                "tickers": [symbol],
                "is_trump_ts": False,
            }
        raise ValueError(f"channel: {channel!r} is not a UW socket channel ({', '.join(WS_FAMILIES)})")


def contract_occ(contract: OptionContract) -> str:
    """The OCC symbol of a platform contract (root = the underlying)."""
    return occ(contract.underlying, date.fromisoformat(contract.expiry), contract.right is Right.CALL, contract.strike)


def market_contract_record(quote: OptionQuote) -> dict[str, Any]:
    """An ``option-contracts`` record of a simulated market's quote: its NBBO, IV, open interest and volume."""
    mid = (quote.bid + quote.ask) / 2
    volume = int(quote.volume)
    ask_v, bid_v = int(volume * 0.45), int(volume * 0.4)
    return {
        "ask_volume": ask_v,
        "avg_price": num(mid, 4),
        "bid_volume": bid_v,
        "cross_volume": 0,
        "floor_volume": int(volume * 0.02),
        "high_price": num(mid * 1.1),
        "implied_volatility": num(quote.iv, 6),
        "last_price": num(mid),
        "low_price": num(max(mid * 0.9, 0.01)),
        "mid_volume": volume - ask_v - bid_v,
        "multi_leg_volume": int(volume * 0.1),
        "nbbo_ask": num(quote.ask),
        "nbbo_bid": num(quote.bid),
        "no_side_volume": 0,
        "open_interest": int(quote.open_interest),
        "option_symbol": contract_occ(quote.contract),
        "prev_oi": int(quote.open_interest * 0.95),
        "stock_multi_leg_volume": 0,
        "sweep_volume": int(volume * 0.05),
        "total_premium": num(volume * mid * 100),
        "volume": volume,
    }


RestHandler = Callable[[UwData, str | None, int, Mapping[str, str], list[str]], list[Any]]


def _limit(params: Mapping[str, str], default: int) -> int:
    try:
        return max(1, min(500, int(params.get("limit", default))))
    except ValueError:
        return default


REST_ROUTES: dict[str, tuple[str, RestHandler]] = {
    "/api/stock/{ticker}/spot-exposures": ("uw.spot_exposures", lambda d, s, t, p, u: d.spot_exposures(s or "", t)),
    "/api/stock/{ticker}/greek-exposure": ("uw.greek_exposure", lambda d, s, t, p, u: d.greek_exposure(s or "", t)),
    "/api/stock/{ticker}/greek-exposure/strike": (
        "uw.greek_exposure_strike",
        lambda d, s, t, p, u: d.greek_exposure_strike(s or "", t),
    ),
    "/api/option-trades/flow-alerts": (
        "uw.flow_alerts",
        lambda d, s, t, p, u: d.flow_alerts([p["ticker_symbol"]] if p.get("ticker_symbol") else u, t, _limit(p, 50)),
    ),
    "/api/stock/{ticker}/flow-alerts": (
        "uw.flow_alerts",
        lambda d, s, t, p, u: d.flow_alerts([s or ""], t, _limit(p, 50)),
    ),
    "/api/stock/{ticker}/net-prem-ticks": ("uw.net_prem_ticks", lambda d, s, t, p, u: d.net_prem_ticks(s or "", t)),
    "/api/stock/{ticker}/option-chains": ("uw.option_chains", lambda d, s, t, p, u: d.option_chains(s or "", t)),
    "/api/stock/{ticker}/option-contracts": (
        "uw.option_contracts",
        lambda d, s, t, p, u: d.option_contracts(s or "", t),
    ),
    "/api/darkpool/{ticker}": ("uw.darkpool", lambda d, s, t, p, u: d.darkpool(s or "", t, _limit(p, 50))),
    "/api/stock/{ticker}/max-pain": ("uw.max_pain", lambda d, s, t, p, u: d.max_pain(s or "", t)),
    "/api/stock/{ticker}/iv-rank": ("uw.iv_rank", lambda d, s, t, p, u: d.iv_rank(s or "", t)),
    "/api/stock/{ticker}/oi-change": ("uw.oi_change", lambda d, s, t, p, u: d.oi_change(s or "", t, _limit(p, 20))),
    "/api/congress/recent-trades": (
        "uw.congress_trades",
        lambda d, s, t, p, u: d.congress_trades([p["ticker"]] if p.get("ticker") else u, t, _limit(p, 50)),
    ),
    "/api/insider/transactions": (
        "uw.insider_transactions",
        lambda d, s, t, p, u: d.insider_transactions(
            [p["ticker_symbol"]] if p.get("ticker_symbol") else u, t, _limit(p, 50)
        ),
    ),
    "/api/earnings/{ticker}": ("uw.earnings", lambda d, s, t, p, u: d.earnings(s or "", t)),
    "/api/news/headlines": ("uw.news_headlines", lambda d, s, t, p, u: d.news_headlines(u, t, _limit(p, 20))),
}
"""Route (aiohttp pattern) → (parser name the fetcher uses for it, data builder)."""
