"""The arbitrageurs' resting basis ladder, compiled (numba, ``cache=True``).

``Arbitrageur.quote_all`` computes the per-market ladder (prices and the size of each level) in
numpy exactly as ``agents.arbitrageurs.basis_ladder`` does and hands it to ``arb_quotes``, which
does the per-arbitrageur work: the capital room (the same float operations in the same order as
``agents.arbitrageurs._room``) and each level's size, so the quotes are bit for bit those of the
numpy version. Imported lazily (``agents.arbitrageurs``).
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.venue._nb_book import post_quotes_one_market
from simulator.venue._nb_scan import equity_of

BUY = 1
SELL = -1
njit = numba.njit(cache=True, nogil=True)


@njit
def arb_quotes(accounts, equity, qty, market, leverage, capital_use, lot_cash, index, threshold, spacing, want,
               before):
    """Every arbitrageur's bids (near to far) then asks, in account order; empty levels left
    out; level ``k`` at ``floor(index * (1 - threshold - k * spacing))`` /
    ``ceil(index * (1 + threshold + k * spacing))`` (``basis_ladder``'s operations). Returns
    (owners, sides, prices, lots)."""
    n = len(accounts)
    levels = len(want)
    bid = np.empty(levels, np.int64)
    ask = np.empty(levels, np.int64)
    for k in range(levels):
        step = float(k) * spacing
        bid[k] = np.int64(np.floor(index * (1 - threshold - step)))
        ask[k] = np.int64(np.ceil(index * (1 + threshold + step)))
    room = np.empty((n, 2), np.int64)
    count = 0
    for i in range(n):
        cap = np.int64(np.floor(float(max(equity[i], 0)) * leverage * capital_use / lot_cash))
        pos = qty[accounts[i], market]
        room[i, 0] = cap - pos
        room[i, 1] = cap + pos
        for s in range(2):
            for k in range(levels):
                if min(max(room[i, s] - before[k], 0), want[k]) > 0:
                    count += 1
    owners = np.empty(count, np.int64)
    sides = np.empty(count, np.int64)
    prices = np.empty(count, np.int64)
    lots = np.empty(count, np.int64)
    j = 0
    for i in range(n):
        for s in range(2):
            for k in range(levels):
                size = min(max(room[i, s] - before[k], 0), want[k])
                if size <= 0:
                    continue
                owners[j] = accounts[i]
                sides[j] = BUY if s == 0 else SELL
                prices[j] = bid[k] if s == 0 else ask[k]
                lots[j] = size
                j += 1
    return owners, sides, prices, lots


@njit
def post_ladder(accounts, market, leverage, capital_use, lot_cash, index, threshold, spacing, want, before, bid_price,
                bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid, wallet, qty, cost, marks, cv,
                leverage_all, guard, guard_leverage, fee_ppm, next_oid, inv_market):
    """The arbitrageurs' whole basis ladder on a one-market venue in one call
    (``Venue.requote_by`` with ``post_only``): their equity (``Venue.equity``), ``arb_quotes``,
    then ``_nb_book.post_quotes_one_market`` of the ladder, the same kernels in the same order
    as the three calls."""
    equity = equity_of(wallet, qty, cost, marks, cv, accounts, inv_market)
    owners, sides, prices, lots = arb_quotes(accounts, equity, qty, market, leverage, capital_use, lot_cash, index,
                                             threshold, spacing, want, before)
    return post_quotes_one_market(owners, sides, prices, lots, bid_price, bid_qty, bid_owner, bid_oid, ask_price,
                                  ask_qty, ask_owner, ask_oid, wallet, qty, cost, marks, cv, leverage_all, guard,
                                  guard_leverage, fee_ppm, next_oid, inv_market)
