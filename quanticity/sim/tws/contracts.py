"""The simulator's security master: contract ids, contract details and option parameters.

Listings come from the synthetic market: one underlying per simulated symbol (``IND`` for SPX,
``STK`` otherwise) and its session's option chain. Contract ids are assigned in a fixed order
(symbols as the market lists them, then each chain in the market's order), so the same market
configuration always yields the same ids. A symbol added at run time
(:meth:`ContractBook.list_symbol`) takes the next free ids; a removed one is delisted (no longer
found by description) but keeps its ids, so re-adding it gives the same contracts back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from quanticity.messages import OptionContract
from quanticity.sim.market import SyntheticMarket
from quanticity.sim.tws.ids import Out
from quanticity.sim.tws.protocol import FieldReader

__all__ = ["ContractBook", "ContractQuery", "Listing", "read_contract"]

INDEX_SYMBOLS = frozenset({"SPX"})
PRIMARY_EXCHANGE = {"SPY": "ARCA", "IWM": "ARCA", "QQQ": "NASDAQ", "SPX": "CBOE"}
NASDAQ_LISTED = frozenset({"AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "COST", "NFLX", "HOOD"})
STOCK_EXCHANGES = "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,ISLAND,DRCTEDGE,BEX,BATS,EDGEA,BYX,IEX,LTSE,MEMX,PEARL"
OPTION_EXCHANGES = "SMART,AMEX,CBOE,PHLX,PSE,ISE,BOX,BATS,NASDAQOM,CBOE2,MIAX,GEMINI,EDGX,MERCURY,PEARL,EMERALD"
FIRST_CON_ID = 100_001


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """One tradable contract the simulator knows."""

    con_id: int
    symbol: str
    sec_type: str  # STK, IND or OPT
    expiry: str = ""  # YYYYMMDD for options
    strike: float = 0.0
    right: str = ""  # C or P
    multiplier: str = ""
    primary_exchange: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    min_tick: float = 0.01
    under_con_id: int = 0
    option: OptionContract | None = None

    def contract_fields(self, exchange: str = "SMART") -> list[object]:
        """The 11 contract fields (conId … tradingClass, no primaryExchange) of positions and executions."""
        return [
            self.con_id,
            self.symbol,
            self.sec_type,
            self.expiry,
            self.strike if self.sec_type == "OPT" else 0.0,
            self.right,
            self.multiplier,
            exchange,
            self.currency,
            self.local_symbol,
            self.trading_class,
        ]

    @property
    def multiplier_value(self) -> float:
        """Contract multiplier as a number (1 for stocks)."""
        return float(self.multiplier) if self.multiplier else 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class ContractQuery:
    """The contract fields of a client request (conId … tradingClass)."""

    con_id: int
    symbol: str
    sec_type: str
    expiry: str
    strike: float
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str


def read_contract(reader: FieldReader, with_primary: bool = True) -> ContractQuery:
    """Read the contract block ib_async writes (``primaryExchange`` is absent in a few requests)."""
    con_id = reader.int("contract.conId")
    symbol = reader.str("contract.symbol")
    sec_type = reader.str("contract.secType")
    expiry = reader.str("contract.lastTradeDateOrContractMonth")
    strike = reader.float("contract.strike")
    right = reader.str("contract.right")
    multiplier = reader.str("contract.multiplier")
    exchange = reader.str("contract.exchange")
    primary = reader.str("contract.primaryExchange") if with_primary else ""
    return ContractQuery(
        con_id=con_id,
        symbol=symbol,
        sec_type=sec_type,
        expiry=expiry,
        strike=strike,
        right=right,
        multiplier=multiplier,
        exchange=exchange,
        primary_exchange=primary,
        currency=reader.str("contract.currency"),
        local_symbol=reader.str("contract.localSymbol"),
        trading_class=reader.str("contract.tradingClass"),
    )


def _right(text: str) -> str:
    return {"CALL": "C", "PUT": "P"}.get(text.upper(), text.upper())


def _occ_symbol(symbol: str, expiry: dt.date, right: str, strike: float) -> str:
    """OCC option symbol, e.g. ``SPY   250103C00590000``."""
    return f"{symbol:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"


class ContractBook:
    """Every contract of the simulated market, by id and by description."""

    def __init__(self, market: SyntheticMarket) -> None:
        self._by_id: dict[int, Listing] = {}
        self._underlyings: dict[str, Listing] = {}
        self._options: dict[str, list[Listing]] = {}
        self._by_option: dict[OptionContract, Listing] = {}
        self._delisted: dict[str, tuple[Listing, list[Listing]]] = {}
        self._next_id = FIRST_CON_ID
        for symbol in market.symbols:
            self.list_symbol(symbol, market.chain(symbol))

    def list_symbol(self, symbol: str, chain: list[OptionContract]) -> Listing:
        """List ``symbol`` and its ``chain`` (a symbol added to the market at run time); returns the underlying.

        New ids continue after the highest one issued, so the start-up ids never change. A symbol
        delisted earlier gets its old listings back: ids a client qualified (or holds positions
        in) stay valid, as they would at a real exchange. Listing a listed symbol is a no-op.
        """
        if symbol in self._underlyings:
            return self._underlyings[symbol]
        restored = self._delisted.pop(symbol, None)
        if restored is not None:
            under, listed = restored
            self._underlyings[symbol] = under
            self._options[symbol] = listed
            self._by_option.update({o.option: o for o in listed if o.option is not None})
            return under
        sec_type = "IND" if symbol in INDEX_SYMBOLS else "STK"
        primary = PRIMARY_EXCHANGE.get(symbol, "NASDAQ" if symbol in NASDAQ_LISTED else "NYSE")
        under = Listing(
            con_id=self._take_id(),
            symbol=symbol,
            sec_type=sec_type,
            primary_exchange=primary,
            local_symbol=symbol,
            trading_class=symbol if sec_type == "STK" else "",
        )
        self._add(under)
        self._underlyings[symbol] = under
        listed: list[Listing] = []
        for contract in chain:
            expiry = dt.date.fromisoformat(contract.expiry)
            option = Listing(
                con_id=self._take_id(),
                symbol=symbol,
                sec_type="OPT",
                expiry=f"{expiry:%Y%m%d}",
                strike=float(contract.strike),
                right=contract.right.value,
                multiplier="100",
                local_symbol=_occ_symbol(symbol, expiry, contract.right.value, contract.strike),
                trading_class=symbol,
                min_tick=0.01,
                under_con_id=under.con_id,
                option=contract,
            )
            self._add(option)
            self._by_option[contract] = option
            listed.append(option)
        self._options[symbol] = listed
        return under

    def delist(self, symbol: str) -> bool:
        """Stop listing ``symbol`` (removed from the market): lookups by description no longer find it.

        Lookups by contract id still do, so orders and positions in its contracts keep resolving
        (they simply get no more quotes). Returns False when ``symbol`` was not listed.
        """
        under = self._underlyings.pop(symbol, None)
        if under is None:
            return False
        listed = self._options.pop(symbol, [])
        for option in listed:
            if option.option is not None:
                self._by_option.pop(option.option, None)
        self._delisted[symbol] = (under, listed)
        return True

    @property
    def symbols(self) -> list[str]:
        """Symbols listed now, in listing order."""
        return list(self._underlyings)

    def _take_id(self) -> int:
        con_id = self._next_id
        self._next_id += 1
        return con_id

    def _add(self, listing: Listing) -> None:
        self._by_id[listing.con_id] = listing

    # --- lookups --------------------------------------------------------------------------
    def by_id(self, con_id: int) -> Listing | None:
        """The listing with ``con_id``, if any."""
        return self._by_id.get(con_id)

    def underlying(self, symbol: str) -> Listing | None:
        """The underlying listing of ``symbol``, if simulated."""
        return self._underlyings.get(symbol)

    def option(self, contract: OptionContract) -> Listing | None:
        """The listing of a platform option contract, if listed this session."""
        return self._by_option.get(contract)

    def options(self, symbol: str) -> list[Listing]:
        """The session's option listings of ``symbol``."""
        return list(self._options.get(symbol, []))

    def match(self, query: ContractQuery) -> list[Listing]:
        """Every listing the query describes (TWS semantics: an empty field matches anything)."""
        if query.con_id:
            found = self._by_id.get(query.con_id)
            return [found] if found is not None else []
        symbol = query.symbol.upper()
        sec_type = query.sec_type.upper()
        candidates: list[Listing] = []
        if sec_type in ("", "STK", "IND"):
            under = self._underlyings.get(symbol)
            if under is not None and sec_type in ("", under.sec_type):
                candidates.append(under)
        if sec_type in ("", "OPT"):
            candidates.extend(self._matching_options(symbol, query))
        if query.currency and query.currency.upper() != "USD":
            return []
        if query.local_symbol:
            candidates = [c for c in candidates if c.local_symbol == query.local_symbol]
        return candidates

    def _matching_options(self, symbol: str, query: ContractQuery) -> list[Listing]:
        out = []
        right = _right(query.right) if query.right else ""
        for listing in self._options.get(symbol, []):
            if query.expiry and not listing.expiry.startswith(query.expiry):
                continue
            if query.strike and abs(listing.strike - query.strike) > 1e-6:
                continue
            if right and listing.right != right:
                continue
            if query.multiplier and query.multiplier != listing.multiplier:
                continue
            if query.trading_class and query.trading_class != listing.trading_class:
                continue
            out.append(listing)
        return out

    def resolve(self, query: ContractQuery) -> Listing | None:
        """The one listing an order or subscription names; None when it names none or several."""
        found = self.match(query)
        return found[0] if len(found) == 1 else None

    def option_parameters(self, symbol: str) -> tuple[list[str], list[float]]:
        """Sorted expirations (YYYYMMDD) and strikes of ``symbol``'s chain (reqSecDefOptParams)."""
        listed = self._options.get(symbol, [])
        return sorted({o.expiry for o in listed}), sorted({o.strike for o in listed})

    # --- wire -----------------------------------------------------------------------------
    def details_message(self, req_id: int, listing: Listing, exchange: str) -> list[object]:
        """A contractDetails message (server version ≥ 164 layout: no version field)."""
        is_option = listing.sec_type == "OPT"
        under = self._by_id.get(listing.under_con_id) if is_option else None
        long_name = f"{listing.symbol} {'OPTION' if is_option else 'INC'}" if listing.sec_type != "IND" else "S&P 500"
        order_types = "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,DAY,DEACT,GAT,GTC,GTD,LMT,MKT,OCA,STP,TRAIL"
        return [
            Out.CONTRACT_DATA,
            req_id,
            listing.symbol,
            listing.sec_type,
            listing.expiry,
            listing.strike if is_option else 0.0,
            listing.right,
            exchange or "SMART",
            listing.currency,
            listing.local_symbol,
            listing.trading_class or listing.symbol,  # marketName
            listing.trading_class,
            listing.con_id,
            listing.min_tick,
            listing.multiplier,
            order_types,
            OPTION_EXCHANGES if is_option else STOCK_EXCHANGES,
            1,  # priceMagnifier
            listing.under_con_id,
            long_name,
            listing.primary_exchange,
            listing.expiry[:6] if is_option else "",  # contractMonth
            "Funds" if listing.symbol in ("SPY", "QQQ", "IWM") else "",
            "",
            "",
            "US/Eastern",
            "",  # tradingHours (not simulated)
            "",  # liquidHours
            "",
            "",
            0,  # secIdList count
            1,  # aggGroup
            under.symbol if under else "",
            under.sec_type if under else "",
            "26" if is_option else "26,26",  # marketRuleIds
            listing.expiry,
            "ETF" if listing.symbol in ("SPY", "QQQ", "IWM") else ("COMMON" if listing.sec_type == "STK" else ""),
            1,  # minSize
            1,  # sizeIncrement
            1,  # suggestedSizeIncrement
        ]
