"""One API client connection to the simulated TWS: handshake, pacing, request dispatch.

A session owns nothing the account owns (orders, positions, subscriptions live in the server's
engine and hub); it parses each request with :class:`~.protocol.FieldReader` — a malformed
request gets a 321 error naming the field, never a crash — and writes the answers. Requests a
fault script silences are read and counted but never answered, the way a stuck TWS behaves.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from quanticity.sim.tws import wire
from quanticity.sim.tws.config import SERVER_VERSION
from quanticity.sim.tws.contracts import Listing, read_contract
from quanticity.sim.tws.ids import ErrorCode, In, Out, error_text
from quanticity.sim.tws.marketdata import SubscriptionRefused
from quanticity.sim.tws.orders import OrderRejected, OrderRequest
from quanticity.sim.tws.protocol import FieldReader, FrameDecoder, ProtocolError, encode_fields, parse_version_range

if TYPE_CHECKING:
    from quanticity.sim.tws.server import TwsSimulator

__all__ = ["ClientSession"]

log = logging.getLogger("quanticity.sim.tws")
ACCOUNT_SUMMARY_TAGS = (
    "NetLiquidation",
    "TotalCashValue",
    "AvailableFunds",
    "BuyingPower",
    "ExcessLiquidity",
    "GrossPositionValue",
)


class ClientSession:
    """The server side of one socket."""

    def __init__(
        self,
        server: TwsSimulator,
        session_id: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        monotonic: Callable[[], float],
    ) -> None:
        self.server = server
        self.session_id = session_id
        self.client_id: int | None = None
        self.market_data_type = 1
        self.positions_subscribed = False
        self.account_subscribed = False
        self.messages_received = 0
        self._reader = reader
        self._writer = writer
        self._monotonic = monotonic
        self._recent: collections.deque[float] = collections.deque()
        self._closed = False
        self._handlers: dict[int, Callable[[FieldReader], None]] = {
            In.REQ_MKT_DATA: self._req_mkt_data,
            In.CANCEL_MKT_DATA: self._cancel_mkt_data,
            In.PLACE_ORDER: self._place_order,
            In.CANCEL_ORDER: self._cancel_order,
            In.REQ_OPEN_ORDERS: lambda r: self._open_orders(all_clients=False),
            In.REQ_ALL_OPEN_ORDERS: lambda r: self._open_orders(all_clients=True),
            In.REQ_AUTO_OPEN_ORDERS: lambda r: None,  # binding manual TWS orders: nothing to bind here
            In.REQ_ACCT_DATA: self._req_account_updates,
            In.REQ_EXECUTIONS: self._req_executions,
            In.REQ_IDS: lambda r: self.send([Out.NEXT_VALID_ID, 1, self.server.next_valid_id()]),
            In.REQ_CONTRACT_DATA: self._req_contract_details,
            In.REQ_MKT_DEPTH: self._req_mkt_depth,
            In.CANCEL_MKT_DEPTH: self._cancel_mkt_depth,
            In.REQ_MANAGED_ACCTS: lambda r: self.send([Out.MANAGED_ACCTS, 1, self.server.config.account]),
            In.REQ_CURRENT_TIME: lambda r: self.send([Out.CURRENT_TIME, 1, self.server.now_ns // 1_000_000_000]),
            In.REQ_GLOBAL_CANCEL: lambda r: self.server.global_cancel(),
            In.REQ_MARKET_DATA_TYPE: self._req_market_data_type,
            In.REQ_POSITIONS: self._req_positions,
            In.CANCEL_POSITIONS: self._cancel_positions,
            In.REQ_ACCOUNT_SUMMARY: self._req_account_summary,
            In.CANCEL_ACCOUNT_SUMMARY: lambda r: None,  # summaries are one-shot here: nothing to stop
            In.REQ_ACCOUNT_UPDATES_MULTI: self._req_account_updates_multi,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: lambda r: None,
            In.REQ_SEC_DEF_OPT_PARAMS: self._req_sec_def_opt_params,
            In.REQ_TICK_BY_TICK_DATA: self._req_tick_by_tick,
            In.CANCEL_TICK_BY_TICK_DATA: self._cancel_tick_by_tick,
            In.REQ_COMPLETED_ORDERS: self._req_completed_orders,
            In.REQ_PNL: self._req_pnl,
            In.CANCEL_PNL: lambda r: self._cancel_pnl(r, single=False),
            In.REQ_PNL_SINGLE: self._req_pnl_single,
            In.CANCEL_PNL_SINGLE: lambda r: self._cancel_pnl(r, single=True),
        }

    # --- transport ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, fields: list[object]) -> None:
        """Queue one message (never blocks: the account's events must not wait on a slow socket)."""
        if not self._closed:
            self._writer.write(encode_fields(fields))

    def error(self, req_id: int, code: int, text: str) -> None:
        """An error/notice message (version 2, with the advanced-reject field of version ≥ 166)."""
        self.send([Out.ERR_MSG, 2, req_id, int(code), text, ""])

    def close(self) -> None:
        """Drop the connection now (the client sees the socket close)."""
        if not self._closed:
            self._closed = True
            self._writer.close()

    async def run(self) -> None:
        """Serve the connection until the peer leaves, breaks the protocol or is dropped."""
        decoder = FrameDecoder()
        try:
            while not self._closed:
                data = await self._reader.read(65536)
                if not data:
                    break
                for fields in decoder.feed(data):
                    self._on_message(fields)
                    if self._closed:
                        break
                await self._writer.drain()
        except ProtocolError as exc:
            log.warning("session %d: protocol error, closing: %s", self.session_id, exc)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("session %d: connection lost: %s", self.session_id, exc)
        finally:
            self.close()
            self.server.session_closed(self)

    # --- dispatch -------------------------------------------------------------------------
    def _on_message(self, fields: list[str]) -> None:
        if fields[0] == "API":
            self._handshake(fields[1])
            return
        if not self._within_pacing():
            return
        try:
            msg_id = int(fields[0])
        except ValueError:
            raise ProtocolError(f"message id: {fields[0]!r} is not an integer") from None
        self.messages_received += 1
        if self.client_id is None:
            if msg_id != In.START_API:
                raise ProtocolError(f"message {msg_id} before startApi")
            self._start_api(FieldReader(fields))
            return
        if msg_id in self.server.faults.silenced:
            self.server.faults.swallowed[msg_id] = self.server.faults.swallowed.get(msg_id, 0) + 1
            log.info("session %d: request %d silenced by the fault script", self.session_id, msg_id)
            return
        handler = self._handlers.get(msg_id)
        if handler is None:
            log.info("session %d: request %d is not simulated; ignored", self.session_id, msg_id)
            self.server.stats["unsupported_requests"] += 1
            return
        try:
            handler(FieldReader(fields))
        except ProtocolError as exc:
            self.server.stats["malformed_requests"] += 1
            log.warning("session %d: malformed request %d: %s", self.session_id, msg_id, exc)
            self.error(-1, ErrorCode.ORDER_MESSAGE_ERROR, error_text(ErrorCode.ORDER_MESSAGE_ERROR, detail=str(exc)))

    def _within_pacing(self) -> bool:
        """TWS's message-rate limit: more than ``max_msgs_per_s`` in one second → error 100, drop."""
        now = self._monotonic()
        recent = self._recent
        recent.append(now)
        while recent and now - recent[0] > 1.0:
            recent.popleft()
        limit = self.server.config.max_msgs_per_s
        if len(recent) <= limit:
            return True
        self.server.stats["pacing_violations"] += 1
        log.warning("session %d: %d messages within 1 s (limit %d); dropping", self.session_id, len(recent), limit)
        self.error(
            -1, ErrorCode.MAX_RATE_EXCEEDED, error_text(ErrorCode.MAX_RATE_EXCEEDED, limit=limit, received=len(recent))
        )
        self.close()
        return False

    def _handshake(self, version_text: str) -> None:
        lo, hi = parse_version_range(version_text)
        if not lo <= SERVER_VERSION <= hi:
            raise ProtocolError(f"client versions {lo}..{hi} do not include server version {SERVER_VERSION}")
        self.send([SERVER_VERSION, wire.ib_time(self.server.now_ns)])

    def _start_api(self, reader: FieldReader) -> None:
        reader.int("version")
        client_id = reader.int("clientId")
        if not self.server.register_client(self, client_id):
            self.error(
                -1, ErrorCode.NOT_CONNECTED_CLIENT_ID_IN_USE, error_text(ErrorCode.NOT_CONNECTED_CLIENT_ID_IN_USE)
            )
            self.close()
            return
        self.client_id = client_id
        self.send([Out.NEXT_VALID_ID, 1, self.server.next_valid_id()])
        self.send([Out.MANAGED_ACCTS, 1, self.server.config.account])
        for code in (ErrorCode.MARKET_DATA_FARM_OK, ErrorCode.HMDS_FARM_OK, ErrorCode.SEC_DEF_FARM_OK):
            self.error(-1, code, error_text(code))

    # --- contracts and market data --------------------------------------------------------
    def _resolve(self, req_id: int, reader: FieldReader) -> tuple[Listing | None, str]:
        query = read_contract(reader)
        if query.sec_type.upper() == "BAG":
            raise ProtocolError("contract.secType: 'BAG' combos are not simulated")
        listing = self.server.contracts.resolve(query)
        if listing is None:
            self.error(req_id, ErrorCode.NO_SECURITY_DEFINITION, error_text(ErrorCode.NO_SECURITY_DEFINITION))
        return listing, query.exchange

    def _req_contract_details(self, reader: FieldReader) -> None:
        reader.int("version")
        req_id = reader.int("reqId")
        query = read_contract(reader)
        found = self.server.contracts.match(query)
        if not found:
            self.error(req_id, ErrorCode.NO_SECURITY_DEFINITION, error_text(ErrorCode.NO_SECURITY_DEFINITION))
            return
        for listing in found:
            self.send(self.server.contracts.details_message(req_id, listing, query.exchange))
        self.send([Out.CONTRACT_DATA_END, 1, req_id])

    def _req_sec_def_opt_params(self, reader: FieldReader) -> None:
        req_id = reader.int("reqId")
        symbol = reader.str("underlyingSymbol")
        reader.str("futFopExchange")
        reader.str("underlyingSecType")
        con_id = reader.int("underlyingConId")
        under = self.server.contracts.underlying(symbol)
        if under is None or (con_id and con_id != under.con_id):
            self.error(req_id, ErrorCode.NO_SECURITY_DEFINITION, error_text(ErrorCode.NO_SECURITY_DEFINITION))
            return
        expirations, strikes = self.server.contracts.option_parameters(symbol)
        for exchange in ("SMART", "CBOE"):
            self.send(
                [
                    Out.SECURITY_DEFINITION_OPTION_PARAMETER,
                    req_id,
                    exchange,
                    under.con_id,
                    symbol,
                    "100",
                    len(expirations),
                    *expirations,
                    len(strikes),
                    *strikes,
                ]
            )
        self.send([Out.SECURITY_DEFINITION_OPTION_PARAMETER_END, req_id])

    def _req_market_data_type(self, reader: FieldReader) -> None:
        reader.int("version")
        kind = reader.int("marketDataType")
        if kind not in (1, 2, 3, 4):
            raise ProtocolError(f"marketDataType: {kind} must be 1, 2, 3 or 4")
        self.market_data_type = kind

    def _req_mkt_data(self, reader: FieldReader) -> None:
        reader.int("version")
        req_id = reader.int("reqId")
        listing, _ = self._resolve(req_id, reader)
        if reader.bool("deltaNeutralContract"):
            reader.skip(3, "deltaNeutralContract")
        generic = reader.str("genericTickList")
        snapshot = reader.bool("snapshot")
        if listing is None:
            return
        try:
            if snapshot:
                self.server.snapshot(self, req_id, listing)
            else:
                self.server.hub.add_l1(self, req_id, listing, generic)
        except SubscriptionRefused as exc:
            self.error(req_id, exc.code, str(exc))

    def _cancel_mkt_data(self, reader: FieldReader) -> None:
        reader.int("version")
        self.server.hub.cancel_l1(self, reader.int("reqId"))

    def _req_mkt_depth(self, reader: FieldReader) -> None:
        reader.int("version")
        req_id = reader.int("reqId")
        listing, exchange = self._resolve(req_id, reader)
        rows = reader.int("numRows")
        smart = reader.bool("isSmartDepth")
        if listing is None:
            return
        try:
            self.server.hub.add_depth(self, req_id, listing, rows, smart, exchange or "SMART")
        except SubscriptionRefused as exc:
            self.server.stats["depth_refused"] += 1
            self.error(req_id, exc.code, str(exc))

    def _cancel_mkt_depth(self, reader: FieldReader) -> None:
        reader.int("version")
        self.server.hub.cancel_depth(self, reader.int("reqId"))

    def _req_tick_by_tick(self, reader: FieldReader) -> None:
        req_id = reader.int("reqId")
        listing, _ = self._resolve(req_id, reader)
        kind = reader.str("tickType")
        if listing is None:
            return
        try:
            self.server.hub.add_tick_by_tick(self, req_id, listing, kind)
        except SubscriptionRefused as exc:
            self.error(req_id, exc.code, str(exc))

    def _cancel_tick_by_tick(self, reader: FieldReader) -> None:
        self.server.hub.cancel_tick_by_tick(self, reader.int("reqId"))

    # --- orders ---------------------------------------------------------------------------
    def _place_order(self, reader: FieldReader) -> None:
        order_id = reader.int("orderId")
        listing, _ = self._resolve(order_id, reader)
        reader.skip(2, "secIdType/secId")
        action = reader.str("action")
        quantity = reader.float("totalQuantity")
        order_type = reader.str("orderType")
        lmt = reader.str("lmtPrice")
        aux = reader.str("auxPrice")
        tif = reader.str("tif")
        oca_group = reader.str("ocaGroup")
        account = reader.str("account")
        reader.skip(2, "openClose/origin")
        order_ref = reader.str("orderRef")
        transmit = reader.bool("transmit")
        reader.skip(
            7, "parentId … hidden"
        )  # parentId blockOrder sweepToFill displaySize triggerMethod outsideRth hidden
        reader.skip(7, "sharesAllocation … faPercentage")
        reader.skip(1, "faProfile")  # present below server version 177
        reader.skip(4, "modelCode … exemptCode")
        oca_type = reader.int("ocaType")
        reader.skip(17, "rule80A … deltaNeutralAuxPrice")
        # rule80A settlingFirm allOrNone minQty percentOffset eTradeOnly firmQuoteOnly nbboPriceCap
        # auctionStrategy startingPrice stockRefPrice delta stockRangeLower stockRangeUpper
        # overridePercentageConstraints volatility volatilityType — then the delta-neutral type/aux:
        dn_type = reader.str("deltaNeutralOrderType")
        reader.skip(1, "deltaNeutralAuxPrice")
        if dn_type:
            reader.skip(8, "deltaNeutral*")
        reader.skip(2, "continuousUpdate/referencePriceType")
        trail_stop = reader.str("trailStopPrice")
        trailing_pct = reader.str("trailingPercent")
        if listing is None:
            return
        if account and account != self.server.config.account:
            self.error(
                order_id,
                ErrorCode.ORDER_REJECTED,
                error_text(ErrorCode.ORDER_REJECTED, reason=f"account {account!r} unknown"),
            )
            return
        request = OrderRequest(
            action=action.upper(),
            total_quantity=quantity,
            order_type=order_type.upper(),
            lmt_price=_optional_float(lmt, "lmtPrice"),
            aux_price=_optional_float(aux, "auxPrice"),
            tif=tif,
            oca_group=oca_group,
            oca_type=oca_type,
            order_ref=order_ref,
            account=account or self.server.config.account,
            trailing_percent=_optional_float(trailing_pct, "trailingPercent"),
            trail_stop_price=_optional_float(trail_stop, "trailStopPrice"),
            transmit=transmit,
        )
        assert self.client_id is not None
        try:
            self.server.engine.place(self.client_id, order_id, listing, request, self.server.now_ns)
        except OrderRejected as exc:
            self.server.stats["orders_rejected"] += 1
            self.error(order_id, exc.code, str(exc))

    def _cancel_order(self, reader: FieldReader) -> None:
        reader.int("version")
        order_id = reader.int("orderId")
        assert self.client_id is not None
        try:
            self.server.engine.cancel(self.client_id, order_id, self.server.now_ns)
        except OrderRejected as exc:
            self.error(order_id, exc.code, str(exc))

    def _open_orders(self, all_clients: bool) -> None:
        account = self.server.config.account
        for order in self.server.engine.open_orders(None if all_clients else self.client_id):
            self.send(wire.open_order(order, account))
            self.send(wire.order_status(order))
        self.send([Out.OPEN_ORDER_END, 1])

    def _req_completed_orders(self, reader: FieldReader) -> None:
        reader.bool("apiOnly")
        account = self.server.config.account
        for order in self.server.engine.completed_orders():
            self.send(wire.completed_order(order, account))
        self.send([Out.COMPLETED_ORDERS_END])

    def _req_executions(self, reader: FieldReader) -> None:
        reader.int("version")
        req_id = reader.int("reqId")
        client_filter = reader.int("filter.clientId")
        reader.str("filter.acctCode")
        since = reader.str("filter.time")
        symbol = reader.str("filter.symbol")
        sec_type = reader.str("filter.secType")
        reader.str("filter.exchange")
        side = reader.str("filter.side")
        account = self.server.config.account
        wanted_client = client_filter or self.client_id
        since_text = since.replace("-", " ")[:17] if since else ""
        for record in self.server.engine.executions:
            if record.client_id != wanted_client:
                continue
            if symbol and record.listing.symbol != symbol.upper():
                continue
            if sec_type and record.listing.sec_type != sec_type.upper():
                continue
            if side and record.side != {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper()):
                continue
            if since_text and wire.ib_time(record.time_ns)[:17] < since_text:
                continue
            self.send(wire.execution(req_id, record, account))
            self.send(wire.commission_report(record))
        self.send([Out.EXECUTION_DATA_END, 1, req_id])

    # --- account --------------------------------------------------------------------------
    def _req_positions(self, reader: FieldReader) -> None:
        self.positions_subscribed = True
        account = self.server.config.account
        for pos in self.server.engine.positions.values():
            self.send(wire.position(account, pos))
        self.send([Out.POSITION_END, 1])

    def _cancel_positions(self, reader: FieldReader) -> None:
        self.positions_subscribed = False

    def _req_account_updates(self, reader: FieldReader) -> None:
        reader.int("version")
        subscribe = reader.bool("subscribe")
        code = reader.str("acctCode")
        account = self.server.config.account
        if code and code != account:
            self.error(
                -1,
                ErrorCode.ORDER_MESSAGE_ERROR,
                error_text(ErrorCode.ORDER_MESSAGE_ERROR, detail=f"acctCode {code!r}"),
            )
            return
        self.account_subscribed = subscribe
        if subscribe:
            self.server.send_account_update(self)
            self.send([Out.ACCT_DOWNLOAD_END, 1, account])

    def _req_account_summary(self, reader: FieldReader) -> None:
        reader.int("version")
        req_id = reader.int("reqId")
        reader.str("groupName")
        tags = {t.strip() for t in reader.str("tags").split(",") if t.strip()}
        account = self.server.config.account
        values = self.server.account_values()
        for tag in ACCOUNT_SUMMARY_TAGS:
            if not tags or tag in tags or "$LEDGER" in tags or "$LEDGER:ALL" in tags:
                self.send([Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, values[tag], "USD"])
        self.send([Out.ACCOUNT_SUMMARY_END, 1, req_id])

    def _pnl_request_valid(self, req_id: int, account: str, model: str) -> bool:
        """reqPnL/reqPnLSingle name the account (and optionally a model); TWS answers 321 otherwise."""
        if account != self.server.config.account:
            detail = f"cause - Invalid account code {account!r}"
        elif model:
            detail = f"cause - Invalid model code {model!r}"
        else:
            return True
        self.server.stats["pnl_refused"] += 1
        self.error(req_id, ErrorCode.ORDER_MESSAGE_ERROR, error_text(ErrorCode.ORDER_MESSAGE_ERROR, detail=detail))
        return False

    def _req_pnl(self, reader: FieldReader) -> None:
        req_id = reader.int("reqId")
        account = reader.str("account")
        model = reader.str("modelCode")
        if self._pnl_request_valid(req_id, account, model):
            try:
                self.server.subscribe_pnl(self, req_id, None)
            except SubscriptionRefused as exc:
                self.error(req_id, exc.code, str(exc))

    def _req_pnl_single(self, reader: FieldReader) -> None:
        req_id = reader.int("reqId")
        account = reader.str("account")
        model = reader.str("modelCode")
        con_id = reader.int("conId")
        if not self._pnl_request_valid(req_id, account, model):
            return
        if con_id <= 0 or self.server.contracts.by_id(con_id) is None:
            self.server.stats["pnl_refused"] += 1
            detail = f"cause - Invalid conId {con_id}"
            self.error(req_id, ErrorCode.ORDER_MESSAGE_ERROR, error_text(ErrorCode.ORDER_MESSAGE_ERROR, detail=detail))
            return
        try:
            self.server.subscribe_pnl(self, req_id, con_id)
        except SubscriptionRefused as exc:
            self.error(req_id, exc.code, str(exc))

    def _cancel_pnl(self, reader: FieldReader, single: bool) -> None:
        self.server.pnl.cancel(self, reader.int("reqId"), single)

    def _req_account_updates_multi(self, reader: FieldReader) -> None:
        reader.int("version")
        req_id = reader.int("reqId")
        code = reader.str("account")
        model = reader.str("modelCode")
        account = self.server.config.account
        if code in ("", account):
            for tag, value in self.server.account_values().items():
                self.send([Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model, tag, value, "USD"])
        self.send([Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id])


def _optional_float(text: str, name: str) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ProtocolError(f"{name}: {text!r} is not a number") from None
