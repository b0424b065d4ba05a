"""The market makers' quote ladder, compiled (numba, ``cache=True``).

``MarketMaker.step_all`` computes the per-market scalars (half spread, size per level) in numpy
exactly as the reference does and hands them to ``maker_ladder``, which does the per-maker
float arithmetic with the same operations in the same order, so the quotes are bit for bit
those of ``agents.market_makers.ladder``. Imported lazily (``agents.market_makers``).
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.venue._nb_book import requote_one_market
from simulator.venue._nb_scan import equity_of

BUY = 1
SELL = -1
njit = numba.njit(cache=True, nogil=True)


@njit
def maker_ladder(accounts, equity, qty, market, fair, cv, inventory_limit, leverage, base_lots, half, spacing,
                 levels, inverse, inventory_skew, limit_quote_share):
    """The makers' quotes in one market (``agents.market_makers.ladder``'s arithmetic): each
    maker's ladder is centred on its reservation price ``fair * (1 - inventory_skew * skew)``;
    inventory thins the side that would add to it down to ``limit_quote_share`` at the limit.
    Returns (owners, sides, prices, lots): all bids, maker by maker and near to far, then all
    asks. ``inverse``: the market is inverse, its inventory is ``q K / fair`` cash
    (``Venue.exposure_cash``)."""
    n = len(accounts)
    bid = np.empty((n, levels), np.int64)
    ask = np.empty((n, levels), np.int64)
    bid_lots = np.empty(n, np.int64)
    ask_lots = np.empty(n, np.int64)
    keep = 1 - limit_quote_share
    count = 0
    for i in range(n):
        eq = equity[i]
        if inverse:
            inv = float(qty[accounts[i], market] * cv) / fair
        else:
            inv = float(qty[accounts[i], market]) * fair * float(cv)
        limit = inventory_limit * float(max(eq, 0)) * leverage
        skew = inv / max(limit, 1.0)
        skew = min(max(skew, -1.0), 1.0)
        r = fair * (1 - inventory_skew * skew)
        for k in range(levels):
            offs = half + float(k) * spacing
            bid[i, k] = np.int64(np.floor(r * (1 - offs)))
        for k in range(levels):
            offs = half + float(k) * spacing
            ask[i, k] = max(np.int64(np.ceil(r * (1 + offs))), bid[i, 0] + 1)
        if eq > 0:
            bid_lots[i] = np.int64(np.floor(base_lots * (1 - min(max(skew, 0.0), 1.0) * keep)))
            ask_lots[i] = np.int64(np.floor(base_lots * (1 - min(max(-skew, 0.0), 1.0) * keep)))
        else:
            bid_lots[i] = np.int64(np.floor(base_lots * 0.0))
            ask_lots[i] = np.int64(np.floor(base_lots * 0.0))
        if bid_lots[i] > 0:
            count += levels
        if ask_lots[i] > 0:
            count += levels
    owners = np.empty(count, np.int64)
    sides = np.empty(count, np.int64)
    prices = np.empty(count, np.int64)
    lots = np.empty(count, np.int64)
    j = 0
    for s in range(2):
        for i in range(n):
            size = bid_lots[i] if s == 0 else ask_lots[i]
            if size <= 0:
                continue
            for k in range(levels):
                owners[j] = accounts[i]
                sides[j] = BUY if s == 0 else SELL
                prices[j] = bid[i, k] if s == 0 else ask[i, k]
                lots[j] = size
                j += 1
    return owners, sides, prices, lots


@njit
def requote_ladder(cancel_owners, accounts, market, fair, inventory_limit, leverage, base_lots, half, spacing, levels,
                   inventory_skew, limit_quote_share, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty,
                   ask_owner, ask_oid, wallet, qty, cost, marks, cv, leverage_all, guard, guard_leverage, fee_ppm,
                   next_oid, inv_market):
    """The makers' whole re-quote on a one-market venue in one call (``Venue.requote_by``):
    their equity (``Venue.equity``), ``maker_ladder``, then ``_nb_book.requote_one_market``
    of the ladder, the same kernels in the same order as the three calls."""
    equity = equity_of(wallet, qty, cost, marks, cv, accounts, inv_market)
    owners, sides, prices, lots = maker_ladder(accounts, equity, qty, market, fair, cv[market], inventory_limit,
                                               leverage, base_lots, half, spacing, levels, inv_market[market],
                                               inventory_skew, limit_quote_share)
    return requote_one_market(cancel_owners, owners, sides, prices, lots, bid_price, bid_qty, bid_owner, bid_oid,
                              ask_price, ask_qty, ask_owner, ask_oid, wallet, qty, cost, marks, cv, leverage_all,
                              guard, guard_leverage, fee_ppm, next_oid, inv_market)
