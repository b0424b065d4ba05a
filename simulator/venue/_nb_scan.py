"""Whole-ledger scans, compiled (numba, ``cache=True``): the maintenance scan and the per-step
ledger totals, laid out so the compiler can keep everything in registers.

Same results as ``_nb.liquidatable`` and ``_nb.ledger_totals`` (and so as their numpy
references), bit for bit; faster because a ceiling division of a non-negative notional needs
no sign branches (an unsigned division by a constant compiles to a multiply) and the per-market price is computed once, and because the totals sum
column by column with no store inside the loop. Imported lazily through ``kernels.scan()``.
"""

from __future__ import annotations

import numba
import numpy as np

PPM = 1_000_000
njit = numba.njit(cache=True, nogil=True)


@njit
def liquidatable(wallet, qty, cost, marks, cv, floors, mmr, deductions, n_tiers, venue):
    """Accounts below maintenance (cross margin, venue rows excluded): ``equity < sum_m MM_m``
    with a position, or flat with a negative wallet. ``MM = ceil(N * mmr_t / PPM) - ded_t``
    for the tier ``t`` whose floor is the largest ``<= N``."""
    n, m_count = qty.shape
    out = np.empty(n, dtype=np.bool_)
    px = np.empty(m_count, np.int64)
    for m in range(m_count):
        px[m] = marks[m] * cv[m]
    width = floors.shape[1]
    fl = floors.ravel()
    rates = mmr.ravel()
    ded = deductions.ravel()
    for a in range(n):
        eq = wallet[a]
        mm = np.int64(0)
        has = False
        for m in range(m_count):
            lots = qty[a, m]
            p = px[m]
            eq += lots * p - cost[a, m]
            has |= lots != 0
            notional = abs(lots) * p
            base = m * width
            t = base + n_tiers[m] - 1
            while t > base and fl[t] > notional:
                t -= 1
            r = rates[t]
            # ceil(notional * r / PPM), split so r * (notional % PPM) cannot overflow; both
            # operands are >= 0, so an unsigned division by the constant (a multiply) is exact
            # (equal to ``-muldiv(-notional, r, PPM)``)
            hi = np.int64(np.uint64(notional) // np.uint64(PPM))
            lo = notional - hi * PPM
            mm += hi * r + np.int64(np.uint64(lo * r + (PPM - 1)) // np.uint64(PPM)) - ded[t]
        # no branch on the outcome: it is unpredictable in a crash
        out[a] = (((eq < mm) & (mm > 0)) | ((wallet[a] < 0) & (not has))) & (not venue[a])
    return out


@njit
def ledger_totals(wallet, qty, cost, marks, cv):
    """(sum of wallets, sum of unrealised PnL at mark, net lots per market, long lots per
    market), each sum wrapping exactly like numpy's int64 ``sum``."""
    n, m_count = qty.shape
    w = np.int64(0)
    for a in range(n):
        w += wallet[a]
    u = np.int64(0)
    net = np.zeros(m_count, np.int64)
    oi = np.zeros(m_count, np.int64)
    for m in range(m_count):
        p = marks[m] * cv[m]
        s_net = np.int64(0)
        s_long = np.int64(0)
        s_u = np.int64(0)
        for a in range(n):
            lots = qty[a, m]
            s_u += lots * p - cost[a, m]
            s_net += lots
            s_long += max(lots, 0)
        u += s_u
        net[m] = s_net
        oi[m] = s_long
    return w, u, net, oi
