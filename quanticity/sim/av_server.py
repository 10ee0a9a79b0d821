"""Loopback twin of the Alpha Vantage API on 127.0.0.1 (SPEC §11).

``GET /query?function=…&apikey=…`` like the real service, answering in its shapes and with its
habits: errors and throttling arrive as **HTTP 200** — ``{"Error Message": …}`` for a bad call
or key, ``{"Note": …}`` when over the premium limit (600 requests/minute, GCRA with a small
burst on the twin's clock). Functions served:

- ``REALTIME_OPTIONS`` (``symbol``, ``require_greeks=true`` adds IV and greeks), BSM-priced
  from the same chain as the UW twin;
- ``TIME_SERIES_INTRADAY`` (``symbol``, ``interval`` 1/5/15/30/60min, ``outputsize``);
- technical indicators ``RSI``, ``SMA``, ``EMA``, ``MACD``, ``BBANDS``, ``ATR``, ``ADX``, ``VWAP``;
- ``NEWS_SENTIMENT`` (``tickers``; ETFs get an empty feed — the fetcher's config skips them);
- macro series ``REAL_GDP``, ``TREASURY_YIELD``, ``FEDERAL_FUNDS_RATE``, ``CPI``, ``INFLATION``,
  ``UNEMPLOYMENT``, ``NONFARM_PAYROLL``, ``RETAIL_SALES``, ``DURABLES``.

Faults on command: :meth:`AvServer.inject` / ``POST /_sim/faults`` with kinds ``429``, ``500``,
``malformed``, ``slow``, ``nan`` (a crossed quote / NaN value), ``nan_greeks`` (one contract of
an options chain with ``field`` — a greek, ``delta`` by default — saying ``value``: ``"NaN"``,
``"inf"``, an out-of-range ``"1.7"`` …), ``note``, ``information``, ``error_message``.

Standalone: ``python -m quanticity.sim.av_server --port 8702 --apikey dev-key``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from quanticity.calendar import ET
from quanticity.clock import NS_PER_SECOND, Clock, LiveClock
from quanticity.config.models import UnderlyingSpec
from quanticity.sim.rest_twin import FaultKind, FaultQueue, GcraLimiter, RequestLog
from quanticity.sim.twin_common import LoopbackServer
from quanticity.sim.uw_data import UwData, num

log = logging.getLogger(__name__)

NOTE = (
    "Thank you for using Alpha Vantage! Please consider spreading out your free API requests more sparingly "
    "(1 request per second). You may subscribe to any of the premium plans to lift the limit."
)
INFORMATION = "We have detected your API key as invalid or rate limited. Please visit the premium page."
BAD_CALL = "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/)."
ETFS = frozenset({"SPY", "QQQ", "IWM", "SPX", "DIA"})
INDICATOR_LINES: dict[str, tuple[str, ...]] = {
    "RSI": ("RSI",),
    "SMA": ("SMA",),
    "EMA": ("EMA",),
    "MACD": ("MACD_Signal", "MACD", "MACD_Hist"),
    "BBANDS": ("Real Upper Band", "Real Middle Band", "Real Lower Band"),
    "ATR": ("ATR",),
    "ADX": ("ADX",),
    "VWAP": ("VWAP",),
}
MACRO: dict[str, tuple[str, str, str, float]] = {
    "REAL_GDP": ("Real Gross Domestic Product", "quarterly", "billions of dollars", 22000.0),
    "TREASURY_YIELD": ("10-Year Treasury Constant Maturity Rate", "monthly", "percent", 4.2),
    "FEDERAL_FUNDS_RATE": ("Effective Federal Funds Rate", "monthly", "percent", 4.3),
    "CPI": ("Consumer Price Index for all Urban Consumers", "monthly", "index 1982-1984=100", 315.0),
    "INFLATION": ("Inflation - US Consumer Prices", "annual", "percent", 3.0),
    "UNEMPLOYMENT": ("Unemployment Rate", "monthly", "percent", 4.1),
    "NONFARM_PAYROLL": ("Total Nonfarm Payroll", "monthly", "thousands of persons", 158000.0),
    "RETAIL_SALES": ("Advance Retail Sales: Retail Trade", "monthly", "millions of dollars", 610000.0),
    "DURABLES": ("Manufacturer New Orders: Durable Goods", "monthly", "millions of dollars", 285000.0),
}
INTERVALS = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}
GREEKS = ("implied_volatility", "delta", "gamma", "theta", "vega", "rho")
"""The greeks ``REALTIME_OPTIONS`` adds with ``require_greeks=true`` (what ``nan_greeks`` may spoil)."""


class AvServer(LoopbackServer):
    """The Alpha Vantage twin (module docstring). ``clock`` drives rate limiting and data."""

    def __init__(
        self,
        apikey: str,
        *,
        seed: int = 7,
        clock: Clock | None = None,
        underlyings: Mapping[str, UnderlyingSpec] | None = None,
        requests_per_minute: int = 600,
        burst: int = 30,
    ) -> None:
        super().__init__()
        if not apikey:
            raise ValueError("apikey: the twin needs the key clients must present")
        self.apikey = apikey
        self.clock = clock or LiveClock()
        self.data = UwData(seed, underlyings)
        self.limiter = GcraLimiter(requests_per_minute, burst, self.clock)
        self.faults = FaultQueue()
        self.requests = RequestLog()

    def inject(self, kind: FaultKind | str, count: int = 1, function: str | None = None, **options: Any) -> None:
        """Fail the next ``count`` requests (of ``function`` if given) with ``kind``.

        ``nan_greeks`` spoils ``field`` (a greek, default ``delta``) of contract ``index`` 0 with
        ``value`` (default ``"NaN"``); it only bites ``REALTIME_OPTIONS`` answers, so pass that
        ``function`` unless every request is an options chain.
        """
        greek = options.get("field")
        if greek is not None and greek not in GREEKS:
            raise ValueError(f"field: {greek!r} is not one of {list(GREEKS)}")
        if "value" in options and not isinstance(options["value"], str):
            raise ValueError(f"value: {options['value']!r} must be a string (Alpha Vantage sends numbers as text)")
        self.faults.add(kind, count, f"function={function}" if function else None, **options)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/query", self._query)
        app.router.add_post("/_sim/faults", self._control_faults)
        app.router.add_get("/_sim/requests", self._control_requests)
        return app

    async def _query(self, request: web.Request) -> web.StreamResponse:
        response = await self._serve(request)
        self.requests.add(self.clock.now_ns(), request.path_qs, response.status)
        return response

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        if params.get("apikey") != self.apikey:
            return web.json_response({"Error Message": "the parameter apikey is invalid or missing."})
        allowed, _ = self.limiter.check()
        if not allowed:
            return web.json_response({"Note": NOTE})
        function = params.get("function", "")
        fault = self.faults.take(f"function={function}")
        simple = {
            FaultKind.HTTP_429: lambda: web.json_response({"Note": NOTE}, status=429, headers={"Retry-After": "5"}),
            FaultKind.HTTP_500: lambda: web.Response(status=500, text="Internal Server Error"),
            FaultKind.MALFORMED: lambda: web.Response(text='{"data": [{"strike": "1', content_type="application/json"),
            FaultKind.AV_NOTE: lambda: web.json_response({"Note": NOTE}),
            FaultKind.AV_INFORMATION: lambda: web.json_response({"Information": INFORMATION}),
            FaultKind.AV_ERROR: lambda: web.json_response({"Error Message": BAD_CALL}),
        }
        if fault is not None and fault.kind in simple:
            return simple[fault.kind]()
        if fault is not None and fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
        body = self.respond(function, params, self.clock.now_ns())
        if fault is not None and fault.kind is FaultKind.NAN:
            body = _corrupt(body)
        elif fault is not None and fault.kind is FaultKind.NAN_GREEKS:
            body = _spoil_greek(body, fault.field or "delta", fault.value)
        return web.json_response(body)

    def respond(self, function: str, params: Mapping[str, str], now_ns: int) -> dict[str, Any]:
        """The body Alpha Vantage would send for ``function`` with ``params`` at ``now_ns``."""
        symbol = params.get("symbol", "")
        if function == "REALTIME_OPTIONS" and symbol:
            return self._options(symbol, params.get("require_greeks") == "true", now_ns)
        if function == "TIME_SERIES_INTRADAY" and symbol and params.get("interval") in INTERVALS:
            return self._intraday(symbol, params["interval"], params.get("outputsize") == "full", now_ns)
        if function in INDICATOR_LINES and symbol:
            return self._indicator(function, symbol, params.get("interval", "daily"), now_ns)
        if function == "NEWS_SENTIMENT":
            return self._news(params.get("tickers", ""), now_ns)
        if function in MACRO:
            return self._macro(function, now_ns)
        return {"Error Message": BAD_CALL}

    def _options(self, symbol: str, greeks: bool, now_ns: int) -> dict[str, Any]:
        rows = []
        today = self.data.today(now_ns).isoformat()
        for c in self.data.chain(symbol, now_ns):
            half = max(0.01, round(c.mid * 0.015, 2))
            row = {
                "contractID": c.occ,
                "symbol": symbol,
                "expiration": c.expiry.isoformat(),
                "strike": num(c.strike),
                "type": "call" if c.is_call else "put",
                "last": num(c.mid),
                "mark": num(c.mid),
                "bid": num(max(c.mid - half, 0.0)),
                "bid_size": str(10 + c.open_interest % 90),
                "ask": num(c.mid + half),
                "ask_size": str(10 + c.open_interest % 70),
                "volume": str(c.open_interest // 7),
                "open_interest": str(c.open_interest),
                "date": today,
            }
            if greeks:
                row |= {
                    "implied_volatility": num(c.iv, 5),
                    "delta": num(c.delta, 5),
                    "gamma": num(c.gamma, 5),
                    "theta": num(c.theta, 5),
                    "vega": num(c.vega, 5),
                    "rho": num(c.rho, 5),
                }
            rows.append(row)
        return {"endpoint": "Realtime Options", "message": "success", "data": rows}

    def _bars(self, symbol: str, minutes: int, count: int, now_ns: int) -> list[tuple[str, float, float]]:
        """``(ET timestamp text, price, vol-ish)`` of the ``count`` bars ending at or before now."""
        step = minutes * 60 * NS_PER_SECOND
        end = now_ns - now_ns % step
        out = []
        for k in range(count, 0, -1):
            t = end - (k - 1) * step
            text = datetime.fromtimestamp(t / NS_PER_SECOND, tz=ET).strftime("%Y-%m-%d %H:%M:%S")
            out.append((text, self.data.spot(symbol, t), float(self.data.rng("bar", symbol, t).uniform(0.5, 1.5))))
        return out

    def _intraday(self, symbol: str, interval: str, full: bool, now_ns: int) -> dict[str, Any]:
        bars = self._bars(symbol, INTERVALS[interval], 300 if full else 100, now_ns)
        series = {}
        for text, price, noise in bars:
            spread = price * 0.001 * noise
            series[text] = {
                "1. open": num(price - spread / 2, 4),
                "2. high": num(price + spread, 4),
                "3. low": num(price - spread, 4),
                "4. close": num(price, 4),
                "5. volume": str(int(noise * 100000)),
            }
        last = bars[-1][0] if bars else ""
        meta = {
            "1. Information": f"Intraday ({interval}) open, high, low, close prices and volume",
            "2. Symbol": symbol,
            "3. Last Refreshed": last,
            "4. Interval": interval,
            "5. Output Size": "Full size" if full else "Compact",
            "6. Time Zone": "US/Eastern",
        }
        return {"Meta Data": meta, f"Time Series ({interval})": series}

    def _indicator(self, function: str, symbol: str, interval: str, now_ns: int) -> dict[str, Any]:
        minutes = INTERVALS.get(interval, 60 * 24)
        bars = self._bars(symbol, minutes, 50, now_ns)
        series = {}
        for i, (text, price, noise) in enumerate(bars):
            values = {
                "RSI": (50 + 20 * math.sin(i / 5),),
                "SMA": (price,),
                "EMA": (price * (1 + 0.0005 * noise),),
                "MACD": (0.1 * math.sin(i / 7), 0.12 * math.sin(i / 6), 0.02 * math.sin(i / 6)),
                "BBANDS": (price * 1.02, price, price * 0.98),
                "ATR": (price * 0.01 * noise,),
                "ADX": (25 + 10 * math.sin(i / 9),),
                "VWAP": (price * (1 - 0.0003 * noise),),
            }[function]
            series[text] = {line: num(v, 4) for line, v in zip(INDICATOR_LINES[function], values, strict=True)}
        meta = {
            "1: Symbol": symbol,
            "2: Indicator": function,
            "3: Last Refreshed": bars[-1][0],
            "4: Interval": interval,
        }
        return {"Meta Data": meta, f"Technical Analysis: {function}": series}

    def _news(self, tickers: str, now_ns: int) -> dict[str, Any]:
        wanted = [t for t in tickers.split(",") if t and t not in ETFS]
        feed = []
        if wanted or not tickers:
            for item in self.data.news_headlines(wanted or ["AAPL"], now_ns, limit=10):
                score = {"positive": 0.35, "negative": -0.35, "neutral": 0.02}[item["sentiment"]]
                published = datetime.fromisoformat(item["created_at"]).astimezone(UTC).strftime("%Y%m%dT%H%M%S")
                feed.append(
                    {
                        "title": item["headline"],
                        "url": f"https://news.invalid/{published}",
                        "time_published": published,
                        "authors": ["Synthetic Desk"],
                        "summary": item["headline"] + ".",
                        "banner_image": "",
                        "source": "Synthetic Wire",
                        "category_within_source": "n/a",
                        "source_domain": "news.invalid",
                        "topics": [{"topic": "Earnings", "relevance_score": "0.5"}],
                        "overall_sentiment_score": score,
                        "overall_sentiment_label": item["sentiment"].capitalize(),
                        "ticker_sentiment": [
                            {
                                "ticker": t,
                                "relevance_score": "0.8",
                                "ticker_sentiment_score": f"{score:.6f}",
                                "ticker_sentiment_label": item["sentiment"].capitalize(),
                            }
                            for t in item["tickers"]
                        ],
                    }
                )
        return {
            "items": str(len(feed)),
            "sentiment_score_definition": "x <= -0.35: Bearish; -0.35 < x <= -0.15: Somewhat-Bearish; ...",
            "relevance_score_definition": "0 < x <= 1, with a higher score indicating higher relevance.",
            "feed": feed,
        }

    def _macro(self, function: str, now_ns: int) -> dict[str, Any]:
        name, interval, unit, level = MACRO[function]
        step_days = {"quarterly": 91, "monthly": 30, "annual": 365}[interval]
        today = self.data.today(now_ns)
        rng = self.data.rng("macro", function)
        points = []
        for k in range(24):
            day = (today - timedelta(days=step_days * (k + 1))).replace(day=1)
            value = "." if k == 23 else num(level * (1 + 0.01 * float(rng.normal())), 3)  # AV's "no value"
            points.append({"date": day.isoformat(), "value": value})
        return {"name": name, "interval": interval, "unit": unit, "data": points}

    async def _control_faults(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            options: dict[str, Any] = {"delay_s": float(spec.get("delay_s", 2.0))}
            options |= {k: spec[k] for k in ("field", "value") if k in spec}
            self.inject(spec["kind"], int(spec.get("count", 1)), spec.get("function"), **options)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"pending": self.faults.pending()})

    async def _control_requests(self, request: web.Request) -> web.Response:
        entries = self.requests.entries()
        return web.json_response({"total": len(entries), "max_per_minute": self.requests.max_in_window(60.0)})


def _corrupt(body: dict[str, Any]) -> dict[str, Any]:
    """A crossed quote in an options chain, else a NaN-ish value in the first data point."""
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = dict(data[0])
        if "bid" in first and "ask" in first:
            first["bid"], first["ask"] = num(float(first["ask"]) + 1.0), first["ask"]
        else:
            first["value"] = "NaN"
        return body | {"data": [first, *data[1:]]}
    for key, series in body.items():
        if key.startswith(("Time Series", "Technical Analysis")) and series:
            ts = next(iter(series))
            point = dict(series[ts])
            point[next(iter(point))] = "NaN"
            return body | {key: {**series, ts: point}}
    return body


def _spoil_greek(body: dict[str, Any], greek: str, value: str) -> dict[str, Any]:
    """``body`` with ``greek`` of its first options contract saying ``value`` (other bodies unchanged)."""
    data = body.get("data")
    if not (isinstance(data, list) and data and isinstance(data[0], dict) and greek in data[0]):
        return body
    return body | {"data": [{**data[0], greek: value}, *data[1:]]}


async def _serve_forever(server: AvServer, host: str, port: int) -> None:
    bound = await server.start(host, port)
    print(f"Alpha Vantage twin on http://{host}:{bound}/query", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m quanticity.sim.av_server --port 8702``."""
    parser = argparse.ArgumentParser(description="Loopback Alpha Vantage twin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8702)
    parser.add_argument("--apikey", default="av-loopback-key")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(AvServer(args.apikey, seed=args.seed), args.host, args.port))


if __name__ == "__main__":
    main()
