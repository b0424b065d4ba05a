"""The leveraged traders' decision pass, compiled (numba, ``cache=True``).

``LeveragedTrader.step_all`` draws its random numbers exactly as the numpy reference does
(same generator calls, same order, same shapes) and hands them to these kernels, which do the
per-trader arithmetic in one pass each with the same float operations in the same order, so
the orders sent are bit for bit those of ``LeveragedTrader.step_all_reference``. Imported
lazily (``agents.traders._kernels``).
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.venue._nb_book import submit_settle
from simulator.venue._nb_scan import value_at

njit = numba.njit(cache=True, nogil=True)


@njit
def watched(draw, probability, accounts, market, qty, with_stops):
    """Slots that act this step (``draw < probability``) plus, when stops are set, every slot
    holding a position; returns (slots, whether each acts)."""
    n = len(draw)
    idx = np.empty(n, np.int64)
    acting = np.empty(n, np.bool_)
    k = 0
    for i in range(n):
        act = draw[i] < probability
        if act or (with_stops and qty[accounts[i], market[i]] != 0):
            idx[k] = i
            acting[k] = act
            k += 1
    return idx[:k], acting[:k]


@njit
def watched_equity(draw, probability, accounts, market, with_stops, wallet, qty, cost, marks, cv, inverse):
    """``watched`` and, for the slots it returns, their accounts and the accounts' equity
    (``equity_of``), in one call: (slots, whether each acts, accounts, equity)."""
    idx, acting = watched(draw, probability, accounts, market, qty, with_stops)
    acc = accounts[idx]
    return idx, acting, acc, equity_of(wallet, qty, cost, marks, cv, acc, inverse)


@njit
def equity_of(wallet, qty, cost, marks, cv, accounts, inverse):
    """Cross-margin equity of ``accounts`` (``Ledger.equity``; ``inverse``: per market, True
    for an inverse contract)."""
    m_count = qty.shape[1]
    out = np.empty(len(accounts), np.int64)
    for i in range(len(accounts)):
        a = accounts[i]
        e = wallet[a]
        u = np.int64(0)
        for m in range(m_count):
            u += value_at(qty[a, m], marks[m], cv[m], inverse[m]) - cost[a, m]
        out[i] = e + u
    return out


@njit
def decide(idx, acting, equity, coin_draw, size_draw, accounts, market, strategy, slot_leverage, isolated,
           size_share, qty, cost, marks, cv, account_leverage, trend_sign, deviation_sign, long_share,
           fraction, stop_loss, has_stop_loss, take_profit, has_take_profit, inverse, mixed):
    """Per watched slot: (lots, side, reduce-only) of the order it sends (lots 0: none).

    A slot closes its whole position on a stop-loss / take-profit or when it acts against its
    position (hedgers never reverse); a flat slot that acts opens ``equity x leverage x use /
    lot price`` lots on its strategy's side; only accounts with equity > 0 trade.

    ``inverse`` (per market) and ``mixed`` (any market inverse) repeat the float valuation of
    ``Venue.value_cash`` / ``Venue.lot_cash``: on such a ledger a value is a float before the
    cost is taken off (an inverse lot is ``K / P`` cash), on an all-linear one an integer.
    """
    n = len(idx)
    lots = np.zeros(n, np.int64)
    side_out = np.zeros(n, np.int64)
    close_out = np.zeros(n, np.bool_)
    for j in range(n):
        i = idx[j]
        a = accounts[i]
        m = market[i]
        pos = qty[a, m]
        c = cost[a, m]
        eq = equity[j]
        has = pos != 0
        stop = False
        if has:
            if not mixed:
                uf = float(pos * marks[m] * cv[m] - c)
            elif inverse[m]:
                uf = -(float(pos * cv[m]) / float(marks[m])) - float(c)
            else:
                uf = float(pos * marks[m] * cv[m]) - float(c)
            margin = abs(c) / slot_leverage[i]
            if margin < 1.0:
                margin = 1.0
            if has_stop_loss and uf <= (-stop_loss) * margin:
                stop = True
            if has_take_profit and uf >= take_profit * margin:
                stop = True
        coin = 1 if coin_draw[j] < long_share else -1
        s = strategy[i]
        if s == 0:
            t = trend_sign[m]
            side = np.int64(t) if t != 0 else coin
        elif s == 1:
            d = deviation_sign[m]
            side = np.int64(d) if d != 0 else coin
        elif s == 2:
            side = coin
        elif s == 3:
            side = -1
        else:
            side = 0
        pos_sign = 1 if pos > 0 else (-1 if pos < 0 else 0)
        reverse = acting[j] and has and s != 3 and pos_sign != side
        close = (stop or reverse) and eq > 0
        opening = acting[j] and not has and eq > 0
        if close:
            lots[j] = abs(pos)
            side_out[j] = -pos_sign
            close_out[j] = True
        else:
            side_out[j] = side
            if opening:
                price = float(cv[m]) / float(marks[m]) if inverse[m] else float(marks[m] * cv[m])
                lev = min(slot_leverage[i], account_leverage[a, m])
                use = (0.98 if isolated[i] else fraction) * size_draw[j] * size_share[i]
                size = float(max(eq, 0)) * lev * use
                lots[j] = np.int64(np.floor(size / price))
    return lots, side_out, close_out


@njit
def send_decided(send, accounts, order_side, lots, close, limit_buy, limit_sell, market, wallet, qty, cost, marks, cv,
                 leverage, guard, guard_leverage, taker_fee_ppm, maker_fee_ppm, inv_market, fee_pool, bid_price, bid_qty,
                 bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid):
    """The decided orders ``send`` (positions in ``decide``'s output, in arrival order) as
    market orders with their price protection (``limit_buy`` / ``limit_sell``) and reduce-only
    flags, in one call with ``_nb_book.submit_settle`` (``Venue.submit_by``): the orders
    ``traders._send_orders`` gathers for a one-market venue, submitted as
    ``Venue.submit_orders`` submits them. Returns ``submit_settle``'s results."""
    n = len(send)
    owners = np.empty(n, np.int64)
    sides = np.empty(n, np.int64)
    qtys = np.empty(n, np.int64)
    limits = np.empty(n, np.int64)
    reduce_only = np.empty(n, np.bool_)
    for j in range(n):
        i = send[j]
        owners[j] = accounts[i]
        sides[j] = order_side[i]
        qtys[j] = lots[i]
        limits[j] = limit_buy if order_side[i] == 1 else limit_sell
        reduce_only[j] = close[i]
    return submit_settle(market, owners, sides, qtys, limits, reduce_only, True, wallet, qty, cost, marks, cv,
                         leverage, guard, guard_leverage, taker_fee_ppm, maker_fee_ppm, inv_market, fee_pool,
                         bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid)
