"""Whole-ledger scans, compiled (numba, ``cache=True``): the maintenance scan and the per-step
ledger totals, laid out so the compiler can keep everything in registers.

Same results as ``_nb.liquidatable`` and ``_nb.ledger_totals`` (and so as their numpy
references), bit for bit; faster because the maintenance scan settles most accounts with a
branch-free float bound and divides integers only near the boundary, and because the totals
sum column by column with no store inside the loop. Imported lazily through ``kernels.scan()``.
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.venue._nb import liquidatable as _liquidatable_inverse

PPM = 1_000_000
njit = numba.njit(cache=True, nogil=True)


@njit
def _below_exact(a, wallet, qty, cost, px, fl, rates, ded, n_tiers, width, venue):
    """One account, exact integers: ``equity < sum_m MM_m`` with ``MM_m > 0`` in total, or
    flat with a negative wallet; venue rows never."""
    eq = wallet[a]
    mm = np.int64(0)
    held = np.int64(0)
    for m in range(qty.shape[1]):
        lots = qty[a, m]
        eq += lots * px[m] - cost[a, m]
        held |= lots
        notional = abs(lots) * px[m]
        base = m * width
        t = base + n_tiers[m] - 1
        while t > base and fl[t] > notional:
            t -= 1
        r = rates[t]
        # ceil(notional * r / PPM), split so r * (notional % PPM) cannot overflow (equal to
        # ``-muldiv(-notional, r, PPM)`` for notional >= 0)
        hi = notional // PPM
        lo = notional - hi * PPM
        mm += hi * r + (lo * r + (PPM - 1)) // PPM - ded[t]
    return ((eq < mm and mm > 0) or (wallet[a] < 0 and held == 0)) and not venue[a]


@njit
def liquidatable(wallet, qty, cost, marks, cv, floors, mmr, deductions, n_tiers, venue):
    """Accounts below maintenance (``scan_with_totals``' flags)."""
    return scan_with_totals(wallet, qty, cost, marks, cv, floors, mmr, deductions, n_tiers, venue)[0]


@njit
def scan_with_totals(wallet, qty, cost, marks, cv, floors, mmr, deductions, n_tiers, venue):
    """Accounts below maintenance (cross margin, venue rows excluded): ``equity < sum_m MM_m``
    with a position, or flat with a negative wallet. ``MM = ceil(N * mmr_t / PPM) - ded_t``
    for the tier ``t`` whose floor is the largest ``<= N``.

    Exact, in three passes so that the common case is cheap (integer division is slow here):
    (1) with no branch, every account whose equity clears the float bound
    ``sum_m N_m x max_rate_m / PPM + slack`` (above every tier's margin), and every flat account
    with a wallet >= 0 and equity >= the flat margin, is settled as not liquidatable; (2) the
    rest get their own tier's margin in floats and are settled when equity is outside a band
    around it far wider than float rounding (``2 x markets + 1e-9 x magnitude``); (3) what is
    left gets the exact integer computation (``_below_exact``).

    The first pass also sums what ``ledger_totals`` sums (a linear ledger), so a quiet step's
    conservation check needs no second pass. Returns (flags, totals): ``totals`` is one int64
    array, (sum of wallets, sum of unrealised PnL at mark, net lots per market..., long lots
    per market...), each sum wrapping exactly like ``ledger_totals``' (int64 addition wraps
    the same in any order).
    """
    n, m_count = qty.shape
    totals = np.zeros(2 + 2 * m_count, np.int64)
    width = floors.shape[1]
    fl = floors.ravel()
    rates = mmr.ravel()
    ded = deductions.ravel()
    px = np.empty(m_count, np.int64)
    rate_max = np.empty(m_count)
    slack = 1.0  # cash units: each market's ceil adds < 1, a negative deduction its size
    flat_mm = np.int64(0)  # the margin of an account with no position: -sum of tier-0 deductions
    for m in range(m_count):
        px[m] = marks[m] * cv[m]
        r_hi = rates[m * width]
        d_lo = min(ded[m * width], 0)
        for k in range(1, n_tiers[m]):
            r_hi = max(r_hi, rates[m * width + k])
            d_lo = min(d_lo, ded[m * width + k])
        rate_max[m] = r_hi / PPM
        slack += 1.0 - float(d_lo)
        flat_mm -= ded[m * width]
    out = np.empty(n, dtype=np.bool_)
    # (1) candidates
    if m_count == 1:  # one market: a loop the compiler vectorises
        p = px[0]
        rm = rate_max[0]
        s_w = np.int64(0)
        s_u = np.int64(0)
        s_net = np.int64(0)
        s_long = np.int64(0)
        for a in range(n):
            lots = qty[a, 0]
            u = lots * p - cost[a, 0]
            eq = wallet[a] + u
            s_w += wallet[a]
            s_u += u
            s_net += lots
            s_long += max(lots, 0)
            clear = float(eq) * (1 - 1e-12) > float(abs(lots) * p) * rm * (1 + 1e-12) + slack
            flat_ok = (lots == 0) & (wallet[a] >= 0) & ((eq >= flat_mm) | (flat_mm <= 0))
            out[a] = not ((clear & ((lots != 0) | (wallet[a] >= 0))) | flat_ok)
        totals[0] = s_w
        totals[1] = s_u
        totals[2] = s_net
        totals[3] = s_long
    else:
        for a in range(n):
            eq = wallet[a]
            totals[0] += wallet[a]
            bound = 0.0
            held = np.int64(0)
            for m in range(m_count):
                lots = qty[a, m]
                u = lots * px[m] - cost[a, m]
                eq += u
                totals[1] += u
                totals[2 + m] += lots
                totals[2 + m_count + m] += max(lots, 0)
                bound += float(abs(lots) * px[m]) * rate_max[m]
                held |= lots
            clear = float(eq) * (1 - 1e-12) > bound * (1 + 1e-12) + slack
            flat_ok = (held == 0) & (wallet[a] >= 0) & ((eq >= flat_mm) | (flat_mm <= 0))
            out[a] = not ((clear & ((held != 0) | (wallet[a] >= 0))) | flat_ok)
    for a in range(n):
        if not out[a]:
            continue
        # (2) the account's own tiers in floats
        eq = wallet[a]
        mm_f = 0.0
        scale = 0.0
        held = np.int64(0)
        for m in range(m_count):
            lots = qty[a, m]
            eq += lots * px[m] - cost[a, m]
            held |= lots
            notional = abs(lots) * px[m]
            base = m * width
            t = base + n_tiers[m] - 1
            while t > base and fl[t] > notional:
                t -= 1
            term = float(notional) * (rates[t] / PPM)
            mm_f += term - float(ded[t])
            scale += term + abs(float(ded[t]))
        eq_f = float(eq)
        band = 2.0 * m_count + 1e-9 * (scale + abs(eq_f))
        if held != 0 and eq_f < mm_f - band and mm_f > band:
            out[a] = not venue[a]
        elif held != 0 and (eq_f > mm_f + band or mm_f < -band):
            out[a] = False
        else:  # (3)
            out[a] = _below_exact(a, wallet, qty, cost, px, fl, rates, ded, n_tiers, width, venue)
    return out, totals


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


@njit
def value_at(q, price, cv, inverse):
    """``V(q, P)`` of one position, int64 (``simulator.venue.settlement``): linear ``q P cv``;
    inverse ``-sign(q) floor(|q| K / P)``, split as ``muldiv`` does (``|q| = a P + r`` gives
    ``a K + r K // P``) so only ``r K < P K < 2**63`` is multiplied at full width."""
    if not inverse:
        return q * (price * cv)
    a = abs(q)
    e = (a // price) * cv + ((a % price) * cv) // price
    return -e if q > 0 else e


@njit
def notional_at(lots, price, cv, inverse):
    """``|V(lots, P)|`` (``Ledger.notional``: what margin is charged on), int64."""
    if not inverse:
        return abs(lots) * (price * cv)
    a = abs(lots)
    return (a // price) * cv + ((a % price) * cv) // price


@njit
def equity_of(wallet, qty, cost, marks, cv, accounts, inverse):
    """Cross-margin equity ``wallet + sum_m (V(q, mark) - cost)`` of ``accounts`` (``inverse``:
    per market, True for an inverse contract), int64 wrapping like numpy:
    ``Ledger.equity(marks, accounts)`` without its temporaries, for the few rows a step values
    many times (makers, venue rows)."""
    m_count = qty.shape[1]
    out = np.empty(len(accounts), np.int64)
    for i in range(len(accounts)):
        a = accounts[i]
        u = np.int64(0)
        for m in range(m_count):
            u += value_at(qty[a, m], marks[m], cv[m], inverse[m]) - cost[a, m]
        out[i] = wallet[a] + u
    return out


@njit
def quiet_scan(wallet, qty, cost, marks, cv, inverse, any_inverse, floors, mmr, deductions, n_tiers, venue, holders):
    """A liquidation pass's first scan in one call: the accounts below maintenance (the rows
    ``np.flatnonzero`` of ``liquidatable``'s flags gives; ``_nb.liquidatable`` on a ledger with
    an inverse market) and whether any of ``holders`` (the inventory holders) has equity below
    zero (``equity_of``). When nobody is flagged nothing moves before the pass ends, so the
    second answer is the pass's closing check. The third is ``scan_with_totals``' totals on a
    linear ledger followed by the holders' equity (empty with an inverse market): in a quiet
    step, the values the step's record takes."""
    if any_inverse:
        flags = _liquidatable_inverse(wallet, qty, cost, marks, cv, inverse, floors, mmr, deductions, n_tiers, venue)
        totals = np.zeros(0, np.int64)
    else:
        flags, totals = scan_with_totals(wallet, qty, cost, marks, cv, floors, mmr, deductions, n_tiers, venue)
    flagged = np.flatnonzero(flags).astype(np.int64)
    eq = equity_of(wallet, qty, cost, marks, cv, holders, inverse)
    broke = False
    for i in range(len(eq)):
        if eq[i] < 0:
            broke = True
    if any_inverse:
        return flagged, broke, totals
    out = np.empty(len(totals) + len(eq), np.int64)
    out[: len(totals)] = totals
    out[len(totals) :] = eq
    return flagged, broke, out
