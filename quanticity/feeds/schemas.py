"""Field-level wire schemas of the Unusual Whales and Alpha Vantage responses the fetcher reads.

One table per response record, naming every field with how it travels on the wire and what a
sane value is. The parser (:mod:`quanticity.feeds.parse`) turns a record into typed values with
it, and the loopback twins (:mod:`quanticity.sim.uw_data`, :mod:`quanticity.sim.av_server`)
generate records from the same names, so the twin and the client can never drift apart
silently — and ``tests/unit/test_loopback_uw_av.py`` checks the UW tables against the official
OpenAPI file (``unusual-whales-openapi.yaml``), field names and JSON types, so neither can drift
from the real API either.

UW's convention is that numbers are JSON strings (``"562.86"``) and counts are JSON integers;
Alpha Vantage sends nearly everything as strings. ``Wire.NUMSTR`` accepts a numeric string or
a JSON number (UW is not perfectly consistent), never a boolean, never NaN or ±inf.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Wire(enum.StrEnum):
    """How a field is encoded in the JSON body."""

    NUMSTR = "numstr"  # a decimal number as a string ("4.05"); parsed to float
    INT = "int"  # a JSON integer (an integral numeric string is tolerated); parsed to int
    NUMBER = "number"  # a JSON number; parsed to float
    STR = "str"
    BOOL = "bool"
    DATE = "date"  # "YYYY-MM-DD"
    TIMESTAMP = "timestamp"  # ISO-8601 date-time string ("2023-12-13 05:00:41.481000+00:00")
    LIST = "list"
    OBJECT = "object"


class Check(enum.StrEnum):
    """Value constraint applied after decoding a numeric field."""

    ANY = "any"  # finite
    POSITIVE = "positive"  # finite and > 0 (prices, strikes)
    NON_NEGATIVE = "non_negative"  # finite and ≥ 0 (sizes, volumes, IVs)
    SIGNED_UNIT = "signed_unit"  # finite and in [-1, 1] (sentiment scores)


@dataclass(frozen=True)
class Field:
    """One field of a record: its wire encoding, constraint, and whether it must be present."""

    wire: Wire
    check: Check = Check.ANY
    required: bool = False
    choices: frozenset[str] | None = None


@dataclass(frozen=True)
class RecordSchema:
    """The fields of one response record; ``openapi`` names the UW component schema it mirrors."""

    name: str
    fields: dict[str, Field]
    openapi: str | None = None


NUM = Field(Wire.NUMSTR)
NUM_NN = Field(Wire.NUMSTR, Check.NON_NEGATIVE)
PRICE = Field(Wire.NUMSTR, Check.POSITIVE, required=True)
PRICE_OPT = Field(Wire.NUMSTR, Check.POSITIVE)
INT = Field(Wire.INT)
COUNT = Field(Wire.INT, Check.NON_NEGATIVE)
STR = Field(Wire.STR)
STR_REQ = Field(Wire.STR, required=True)
BOOL = Field(Wire.BOOL)
DATE = Field(Wire.DATE)
DATE_REQ = Field(Wire.DATE, required=True)
TS = Field(Wire.TIMESTAMP)
TS_REQ = Field(Wire.TIMESTAMP, required=True)
LIST = Field(Wire.LIST)
OBJECT = Field(Wire.OBJECT)
OPTION_TYPE = Field(Wire.STR, required=True, choices=frozenset({"call", "put"}))


def _fields(names: str, field: Field) -> dict[str, Field]:
    return {name: field for name in names.split()}


# --- Unusual Whales --------------------------------------------------------------------------
_EXPOSURE_MOVES = " ".join(
    f"{greek}_per_one_percent_move_{kind}" for greek in ("charm", "gamma", "vanna") for kind in ("dir", "oi", "vol")
)

UW_SPOT_EXPOSURES = RecordSchema(
    "uw.spot_exposures",
    {**_fields(_EXPOSURE_MOVES, NUM), "price": PRICE, "time": TS_REQ},
    openapi="Spot GEX exposures per 1min",
)
_GREEKS_BY_SIDE = "call_charm call_delta call_gamma call_vanna put_charm put_delta put_gamma put_vanna"
UW_GREEK_EXPOSURE = RecordSchema(
    "uw.greek_exposure", {**_fields(_GREEKS_BY_SIDE, NUM), "date": DATE_REQ}, openapi="Greek Exposure"
)
UW_GREEK_EXPOSURE_STRIKE = RecordSchema(
    "uw.greek_exposure_strike",
    {**_fields(_GREEKS_BY_SIDE, NUM), "strike": PRICE},
    openapi="Greek Exposure By Strike",
)
UW_FLOW_ALERT = RecordSchema(
    "uw.flow_alerts",
    {
        "alert_rule": STR_REQ,
        "all_opening_trades": BOOL,
        "created_at": TS_REQ,
        "expiry": DATE_REQ,
        "expiry_count": COUNT,
        "has_floor": BOOL,
        "has_multileg": BOOL,
        "has_singleleg": BOOL,
        "has_sweep": BOOL,
        "issue_type": STR,
        "open_interest": COUNT,
        "option_chain": STR_REQ,
        "price": PRICE,
        "strike": PRICE,
        "ticker": STR_REQ,
        "total_ask_side_prem": NUM_NN,
        "total_bid_side_prem": NUM_NN,
        "total_premium": NUM_NN,
        "total_size": COUNT,
        "trade_count": COUNT,
        "type": OPTION_TYPE,
        "underlying_price": PRICE,
        "volume": COUNT,
        "volume_oi_ratio": NUM_NN,
    },
    openapi="Flow Alert",
)
UW_NET_PREM_TICKS = RecordSchema(
    "uw.net_prem_ticks",
    {
        **_fields("call_volume call_volume_ask_side call_volume_bid_side put_volume", COUNT),
        **_fields("put_volume_ask_side put_volume_bid_side", COUNT),
        **_fields("net_call_volume net_put_volume", INT),
        **_fields("net_call_premium net_put_premium net_delta", NUM),
        "date": DATE_REQ,
        "tape_time": TS_REQ,
    },
    openapi="Net Prem Tick response.",
)
UW_OPTION_CONTRACTS = RecordSchema(
    "uw.option_contracts",
    {
        **_fields("ask_volume bid_volume cross_volume floor_volume mid_volume multi_leg_volume", COUNT),
        **_fields("no_side_volume open_interest prev_oi stock_multi_leg_volume sweep_volume volume", COUNT),
        **_fields("avg_price high_price low_price last_price nbbo_ask nbbo_bid total_premium", NUM_NN),
        "implied_volatility": NUM_NN,
        "option_symbol": STR_REQ,
    },
    openapi="Option contracts",
)
UW_DARKPOOL = RecordSchema(
    "uw.darkpool",
    {
        "canceled": BOOL,
        "executed_at": TS_REQ,
        "ext_hour_sold_codes": STR,
        "market_center": STR,
        "nbbo_ask": PRICE_OPT,
        "nbbo_ask_quantity": COUNT,
        "nbbo_bid": PRICE_OPT,
        "nbbo_bid_quantity": COUNT,
        "premium": NUM_NN,
        "price": PRICE,
        "sale_cond_codes": STR,
        "size": Field(Wire.INT, Check.POSITIVE, required=True),
        "ticker": STR_REQ,
        "tracking_id": INT,
        "trade_code": STR,
        "trade_settlement": STR,
        "volume": COUNT,
    },
    openapi="Darkpool Trade",
)
UW_MAX_PAIN = RecordSchema("uw.max_pain", {"expiry": DATE_REQ, "max_pain": PRICE}, openapi="Max Pain")
UW_IV_RANK = RecordSchema(
    "uw.iv_rank",
    {"close": PRICE, "date": DATE_REQ, "iv_rank_1y": NUM_NN, "updated_at": TS, "volatility": NUM_NN},
    openapi="IV Rank",
)
UW_OI_CHANGE = RecordSchema(
    "uw.oi_change",
    {
        **_fields("avg_price last_ask last_bid last_fill percentage_of_total prev_total_premium", NUM_NN),
        "oi_change": NUM,
        **_fields("curr_oi last_oi prev_ask_volume prev_bid_volume prev_mid_volume", COUNT),
        **_fields("prev_multi_leg_volume prev_neutral_volume prev_stock_multi_leg_volume rnk trades volume", COUNT),
        "oi_diff_plain": INT,
        "curr_date": DATE_REQ,
        "last_date": DATE,
        "option_symbol": STR_REQ,
        "underlying_symbol": STR,
    },
    openapi="OI Change",
)
UW_CONGRESS = RecordSchema(
    "uw.congress_trades",
    {
        "amounts": STR,
        "filed_at_date": DATE,
        "is_active": BOOL,
        "issuer": STR,
        "member_type": STR,
        "name": STR_REQ,
        "notes": STR,
        "politician_id": STR,
        "reporter": STR,
        "ticker": STR,
        "transaction_date": DATE_REQ,
        "txn_type": STR_REQ,
    },
    openapi="Senate Stock",
)
UW_INSIDER = RecordSchema(
    "uw.insider_transactions",
    {
        "amount": INT,
        **_fields("date_excercisable expiration_date", DATE),
        "filing_date": DATE,
        "transaction_date": DATE_REQ,
        **_fields("director_indirect formtype natureofownership officer_title owner_name", STR),
        **_fields("security_ad_code security_title", STR),
        "ticker": STR_REQ,
        "transaction_code": STR_REQ,
        "ids": LIST,
        **_fields("is_10b5_1 is_director is_officer is_ten_percent_owner", BOOL),
        "price": PRICE_OPT,
        "price_excercisable": PRICE_OPT,
        **_fields("shares_owned_after shares_owned_before transactions", COUNT),
    },
    openapi="Insider Trade Agg",
)
UW_EARNINGS = RecordSchema(
    "uw.earnings",
    {
        **_fields("actual_eps street_mean_est expected_move expected_move_perc", NUM),
        **_fields("long_straddle_1d long_straddle_1w short_straddle_1d short_straddle_1w", NUM),
        **_fields("post_earnings_move_1d post_earnings_move_1w post_earnings_move_2w post_earnings_move_3d", NUM),
        **_fields("pre_earnings_move_1d pre_earnings_move_1w pre_earnings_move_2w pre_earnings_move_3d", NUM),
        "ending_fiscal_quarter": DATE,
        "report_date": DATE_REQ,
        "report_time": STR,
        "source": STR,
    },
    openapi="Historical Ticker Earnings",
)
UW_NEWS = RecordSchema(
    "uw.news_headlines",
    {
        "created_at": TS_REQ,
        "headline": STR_REQ,
        "source": STR_REQ,
        "is_major": BOOL,
        "meta": OBJECT,
        "sentiment": STR,
        "tags": LIST,
        "tickers": LIST,
    },
    openapi="Headline News",
)

UW_SCHEMAS: dict[str, RecordSchema] = {
    schema.name: schema
    for schema in (
        UW_SPOT_EXPOSURES,
        UW_GREEK_EXPOSURE,
        UW_GREEK_EXPOSURE_STRIKE,
        UW_FLOW_ALERT,
        UW_NET_PREM_TICKS,
        UW_OPTION_CONTRACTS,
        UW_DARKPOOL,
        UW_MAX_PAIN,
        UW_IV_RANK,
        UW_OI_CHANGE,
        UW_CONGRESS,
        UW_INSIDER,
        UW_EARNINGS,
        UW_NEWS,
    )
}
"""Record schemas of the UW endpoints whose ``data`` is a list of objects."""

UW_OPTION_CHAINS = "uw.option_chains"
"""``/stock/{ticker}/option-chains``: ``data`` is a list of OCC option symbols, not objects."""

OCC_SYMBOL = r"^[A-Z][A-Z0-9.]{0,5}\d{6}[CP]\d{8}$"
"""An OCC option symbol: root, YYMMDD expiry, C/P, strike × 1000 in eight digits."""


# --- Alpha Vantage ---------------------------------------------------------------------------
AV_OPTION = RecordSchema(
    "av.realtime_options",
    {
        "contractID": STR_REQ,
        "symbol": STR_REQ,
        "expiration": DATE_REQ,
        "strike": PRICE,
        "type": OPTION_TYPE,
        **_fields("last mark bid ask", Field(Wire.NUMSTR, Check.NON_NEGATIVE, required=True)),
        **_fields("bid_size ask_size volume open_interest", Field(Wire.NUMSTR, Check.NON_NEGATIVE)),
        "date": DATE,
        "implied_volatility": Field(Wire.NUMSTR, Check.NON_NEGATIVE, required=True),
        "delta": Field(Wire.NUMSTR, Check.SIGNED_UNIT, required=True),
        **_fields("gamma theta vega rho", Field(Wire.NUMSTR, required=True)),
    },
)
"""One contract of ``REALTIME_OPTIONS`` with ``require_greeks=true`` (|delta| ≤ 1: it is a probability-like
hedge ratio; a value outside is a vendor fault, not a market)."""

AV_GREEKS = ("implied_volatility", "delta", "gamma", "theta", "vega", "rho")
"""The model outputs of an AV contract: a bad one costs that contract, not the chain (see the parser)."""

AV_BAR = RecordSchema(
    "av.time_series",
    {
        **{name: PRICE for name in ("1. open", "2. high", "3. low", "4. close")},
        "5. volume": Field(Wire.NUMSTR, Check.NON_NEGATIVE, required=True),
    },
)
"""One bar of ``TIME_SERIES_INTRADAY`` (keys as AV spells them)."""

AV_NEWS_ITEM = RecordSchema(
    "av.news_sentiment",
    {
        "title": STR_REQ,
        "url": STR_REQ,
        "time_published": STR_REQ,
        "authors": LIST,
        "summary": STR,
        "source": STR,
        "category_within_source": STR,
        "source_domain": STR,
        "topics": LIST,
        "overall_sentiment_score": Field(Wire.NUMBER, Check.SIGNED_UNIT, required=True),
        "overall_sentiment_label": STR,
        "ticker_sentiment": LIST,
        "banner_image": STR,
    },
)
"""One article of ``NEWS_SENTIMENT``'s ``feed``."""

AV_MACRO_POINT = RecordSchema("av.macro", {"date": DATE_REQ, "value": NUM})
"""One observation of a macro series (CPI, TREASURY_YIELD, …); AV writes a missing value as ``"."``."""
