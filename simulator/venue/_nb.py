"""numba kernels behind ``simulator.venue.kernels`` (imported lazily: numba is slow to import)."""

from __future__ import annotations

import numba
import numpy as np

PPM = 1_000_000
njit = numba.njit(cache=True, nogil=True)


@njit
def muldiv(x, num, den):
    q = x // den
    r = x % den
    return q * num + (r * num) // den

@njit
def trade(wallet, qty, cost, market, buyers, sellers, qtys, prices, cv):
    """Settle fills one at a time in order (``Ledger.trade``'s definition)."""
    for i in range(len(qtys)):
        b = buyers[i]
        s = sellers[i]
        lots = qtys[i]
        if b == s or lots == 0:
            continue
        value = lots * prices[i] * cv
        for side in range(2):
            if side == 0:
                a = b
                dq = lots
                dv = value
            else:
                a = s
                dq = -lots
                dv = -value
            q = qty[a, market]
            c = cost[a, market]
            if q == 0 or (q > 0) == (dq > 0):  # opens or grows
                cost[a, market] = c + dv
            else:
                aq = abs(q)
                adq = abs(dq)
                if adq > aq:  # flips: the closing part is |q|/|dq| of the value
                    close_value = muldiv(dv, aq, adq)
                    wallet[a] += -close_value - c
                    cost[a, market] = dv - close_value
                else:  # reduces: the closed share of cost goes
                    closed_cost = muldiv(c, adq, aq)
                    wallet[a] += -dv - closed_cost
                    cost[a, market] = c - closed_cost
            qty[a, market] = q + dq

@njit
def liquidatable(wallet, qty, cost, marks, cv, floors, mmr, deductions, n_tiers, venue):
    """Cross margin: ``equity < sum_m MM_m`` with a position, or flat with a negative wallet;
    venue rows excluded. One pass over the accounts."""
    n, m_count = qty.shape
    out = np.zeros(n, dtype=np.bool_)
    for a in range(n):
        if venue[a]:
            continue
        eq = wallet[a]
        mm = 0
        has = False
        for m in range(m_count):
            lots = qty[a, m]
            px = marks[m] * cv[m]
            eq += lots * px - cost[a, m]
            if lots != 0:
                has = True
            notional = abs(lots) * px
            t = 0
            for k in range(1, n_tiers[m]):  # the tier whose floor is the largest <= N
                if floors[m, k] <= notional:
                    t = k
            mm += -muldiv(-notional, mmr[m, t], PPM) - deductions[m, t]
        if (eq < mm and mm > 0) or (wallet[a] < 0 and not has):
            out[a] = True
    return out
