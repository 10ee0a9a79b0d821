"""A TWS/Gateway simulator on 127.0.0.1 that speaks the real TWS API wire protocol (SPEC §11).

The real ``ib_async.IB`` client connects to it exactly as to Trader Workstation: handshake and
start-up sync, contract details and option parameters, L1 market data with model greeks, depth
with the 3-line limit (error 309), tick-by-tick, orders (LMT/MKT/STP/TRAIL, OCA) with partial
fills, commissions, executions, positions and account values, account P&L (reqPnL /
reqPnLSingle, from the account's own positions, fills and marks, updated every simulated second),
really-delayed market data (type 3/4: the delayed tick types carrying what was live 15 simulated
minutes earlier; depth and tick-by-tick refused with 354), TWS error codes, message pacing
(error 100) and scripted faults. It is backed by the deterministic
:class:`~quanticity.sim.market.SyntheticMarket`, which moves only when stepped.

Usage (in-process, as the tests do)::

    from ib_async import IB, Stock
    from quanticity.config import load_config
    from quanticity.sim.tws import TwsSimulator

    sim = TwsSimulator.from_config(load_config(), seed=7, symbols=["SPY", "QQQ"])
    port = await sim.start()                      # port 0 → a free port
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=201)
    [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    ticker = ib.reqMktData(spy, "106,104,233")
    sim.advance(5.0)                              # five simulated seconds of market
    ...
    sim.drop_connections(201)                     # a fault: the socket closes
    await sim.stop()

Standalone: ``python -m quanticity.sim.tws --port 7497 --seed 7 --speed 60``.

Modules: :mod:`.protocol` (framing), :mod:`.ids` (message ids, ticks, error codes),
:mod:`.contracts` (security master), :mod:`.marketdata` (subscriptions, delayed history),
:mod:`.orders` (order/fill engine, positions, cash, P&L), :mod:`.pnl` (P&L subscriptions),
:mod:`.wire` (order/account message layouts),
:mod:`.session` (one connection), :mod:`.faults`, :mod:`.server`.
"""

from quanticity.sim.tws.config import SERVER_VERSION, TwsSimConfig
from quanticity.sim.tws.ids import ErrorCode, In
from quanticity.sim.tws.marketdata import BadData
from quanticity.sim.tws.server import TwsSimulator

__all__ = ["SERVER_VERSION", "BadData", "ErrorCode", "In", "TwsSimConfig", "TwsSimulator"]
