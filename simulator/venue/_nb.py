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
def _settle_fill(wallet, qty, cost, market, b, s, lots, value):
    """One fill of ``lots`` whose buyer's value is ``value`` (the seller's is ``-value``)."""
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
def trade(wallet, qty, cost, market, buyers, sellers, qtys, prices, cv):
    """Settle fills one at a time in order (``Ledger.trade``'s definition), linear value."""
    for i in range(len(qtys)):
        b = buyers[i]
        s = sellers[i]
        lots = qtys[i]
        if b == s or lots == 0:
            continue
        _settle_fill(wallet, qty, cost, market, b, s, lots, lots * prices[i] * cv)


@njit
def trade_values(wallet, qty, cost, market, buyers, sellers, qtys, values):
    """``trade`` with each fill's buyer value given (inverse markets: ``-floor(q K / P)``)."""
    for i in range(len(qtys)):
        b = buyers[i]
        s = sellers[i]
        lots = qtys[i]
        if b == s or lots == 0:
            continue
        _settle_fill(wallet, qty, cost, market, b, s, lots, values[i])


@njit
def _below_maintenance(a, wallet, qty, cost, marks, cv, inverse, floors, mmr, deductions, n_tiers):
    """One account, exact integers (the definition): ``equity < sum_m MM_m`` with ``MM_m > 0``
    in total, or flat with a negative wallet. A linear market's exposure is ``q * M * cv``, an
    inverse one's ``sign(q) * floor(|q| K / M)`` and its value minus that
    (``simulator.venue.settlement``)."""
    eq = wallet[a]
    mm = 0
    has = False
    for m in range(qty.shape[1]):
        lots = qty[a, m]
        if inverse[m]:
            notional = muldiv(abs(lots), cv[m], marks[m])
            eq += (-notional if lots > 0 else notional) - cost[a, m]
        else:
            px = marks[m] * cv[m]
            eq += lots * px - cost[a, m]
            notional = abs(lots) * px
        if lots != 0:
            has = True
        t = 0
        for k in range(1, n_tiers[m]):  # the tier whose floor is the largest <= N
            if floors[m, k] <= notional:
                t = k
        mm += -muldiv(-notional, mmr[m, t], PPM) - deductions[m, t]
    return (eq < mm and mm > 0) or (wallet[a] < 0 and not has)


@njit
def liquidatable(wallet, qty, cost, marks, cv, inverse, floors, mmr, deductions, n_tiers, venue):
    """Cross margin, venue rows excluded: ``_below_maintenance`` of every account, exactly, for
    ledgers with inverse markets (linear-only ledgers run ``_nb_scan.liquidatable``, which gives
    the same answers).

    Two passes so that the common case needs no integer division: (1) with no branch on the
    account, every account with a position whose equity clears a float bound on any margin it
    could owe, and every flat account with a wallet >= 0 and equity >= the flat margin, is not
    liquidatable. The bound: an inverse position's notional ``floor(|q| K / M)`` is at most
    ``x = |q| x (K / M)`` in floats (within 1e-15 relative), its value is within 1 of ``-sign(q) x``;
    equity is taken ``1e-12 x (|integer part| + sum x) + 1`` per inverse market below its float
    value, and the margin ``sum_m N_m x max_rate_m x (1 + 1e-12) + sum_m (1 - min_deduction_m)``
    above any tier's ``ceil(N r / PPM) - d``. (2) Every other account gets the exact integers.
    """
    n, m_count = qty.shape
    px = np.zeros(m_count, np.int64)  # linear: cash per lot at mark
    kpm = np.zeros(m_count)  # inverse: K / M, cash per lot in floats
    rate_max = np.empty(m_count)
    slack = 1.0
    flat_mm = np.int64(0)  # the margin of an account with no position (notional 0 everywhere)
    for m in range(m_count):
        if inverse[m]:
            kpm[m] = cv[m] / marks[m]
            slack += 1.0  # the floor in the value
        else:
            px[m] = marks[m] * cv[m]
        r_hi = mmr[m, 0]
        d_lo = min(deductions[m, 0], 0)
        t0 = 0
        for k in range(1, n_tiers[m]):
            r_hi = max(r_hi, mmr[m, k])
            d_lo = min(d_lo, deductions[m, k])
            if floors[m, k] <= 0:
                t0 = k
        rate_max[m] = r_hi / PPM
        slack += 1.0 - float(d_lo)
        flat_mm -= deductions[m, t0]
    out = np.zeros(n, dtype=np.bool_)
    # (1) candidates
    if m_count == 1 and inverse[0]:  # one inverse market: a loop the compiler vectorises
        k0 = kpm[0]
        rm = rate_max[0] * (1 + 1e-12)
        for a in range(n):
            lots = qty[a, 0]
            eq = wallet[a] - cost[a, 0]
            x = float(abs(lots)) * k0
            eq_i = float(eq)
            low = eq_i - np.sign(float(lots)) * x - 1e-12 * (abs(eq_i) + x)
            clear = low > x * rm + slack
            flat_ok = (lots == 0) & (wallet[a] >= 0) & ((eq >= flat_mm) | (flat_mm <= 0))
            out[a] = not ((clear & (lots != 0)) | flat_ok)
    else:
        for a in range(n):
            eq = wallet[a]  # the integer part: wallet, linear values, minus every cost
            v_inv = 0.0
            x_sum = 0.0
            bound = 0.0
            held = np.int64(0)
            for m in range(m_count):
                lots = qty[a, m]
                held |= lots
                if inverse[m]:
                    x = float(abs(lots)) * kpm[m]
                    v_inv -= np.sign(float(lots)) * x
                    x_sum += x
                    bound += x * rate_max[m]
                    eq -= cost[a, m]
                else:
                    eq += lots * px[m] - cost[a, m]
                    bound += float(abs(lots) * px[m]) * rate_max[m]
            eq_i = float(eq)
            low = eq_i + v_inv - 1e-12 * (abs(eq_i) + x_sum) - 1e-12 * abs(eq_i + v_inv)
            clear = low > bound * (1 + 1e-12) + slack
            flat_ok = (held == 0) & (wallet[a] >= 0) & ((eq >= flat_mm) | (flat_mm <= 0))
            out[a] = not ((clear & (held != 0)) | flat_ok)
    # (2) the rest, exactly
    for a in range(n):
        if out[a]:
            out[a] = not venue[a] and _below_maintenance(a, wallet, qty, cost, marks, cv, inverse, floors, mmr,
                                                         deductions, n_tiers)
    return out


@njit
def match_side(price, qty, owner, oid, incoming_buy, owners, sides, qtys, limits, side,
                f_taker, f_maker, f_qty, f_price, f_index, f_oid, k):
    """Match the incoming orders of ``side`` (in batch order) against one book side; fills are
    written from slot ``k``; returns (next slot, lots left per resting order)."""
    nb = len(qty)
    left = qty.copy()
    j = 0
    for i in range(len(qtys)):
        if sides[i] != side:
            continue
        want = qtys[i]
        lim = limits[i]
        while want > 0 and j < nb:
            p = price[j]
            if incoming_buy:
                if p > lim:
                    break
            elif p < lim:
                break
            if left[j] <= 0:
                j += 1
                continue
            take = min(want, left[j])
            f_taker[k] = owners[i]
            f_maker[k] = owner[j]
            f_qty[k] = take
            f_price[k] = p
            f_index[k] = i
            f_oid[k] = oid[j]
            k += 1
            want -= take
            left[j] -= take
            if left[j] == 0:
                j += 1
    return k, left


@njit
def match(book_price, book_qty, book_owner, book_oid, incoming_buy, index, owners, qtys, limits):
    """Match incoming orders one after the other against one side of the book (priority order).

    Each order takes what rests at or better than its limit, from the front, until it is
    filled; one fill per (incoming order, resting order) pair, in execution order. Returns the
    fills (taker, maker, qty, price, order_index, maker_order_id) and the resting lots left.
    """
    cap = len(qtys) + len(book_qty)
    f_taker = np.empty(cap, np.int64)
    f_maker = np.empty(cap, np.int64)
    f_qty = np.empty(cap, np.int64)
    f_price = np.empty(cap, np.int64)
    f_index = np.empty(cap, np.int64)
    f_oid = np.empty(cap, np.int64)
    sides = np.zeros(len(qtys), np.int64)  # one side: every order is matched
    k, left = match_side(book_price, book_qty, book_owner, book_oid, incoming_buy, owners, sides, qtys, limits, 0,
                         f_taker, f_maker, f_qty, f_price, f_index, f_oid, 0)
    for r in range(k):
        f_index[r] = index[f_index[r]]  # position in this batch -> the caller's order index
    return f_taker[:k], f_maker[:k], f_qty[:k], f_price[:k], f_index[:k], f_oid[:k], left


@njit
def ledger_totals(wallet, qty, cost, marks, cv):
    """One pass: (sum of wallets, sum of unrealised PnL at mark, net lots per market, long lots
    per market); each sum wraps exactly like numpy's int64 ``sum``."""
    n, m_count = qty.shape
    w = np.int64(0)
    u = np.int64(0)
    net = np.zeros(m_count, np.int64)
    oi = np.zeros(m_count, np.int64)
    for a in range(n):
        w += wallet[a]
        for m in range(m_count):
            lots = qty[a, m]
            u += lots * (marks[m] * cv[m]) - cost[a, m]
            net[m] += lots
            if lots > 0:
                oi[m] += lots
    return w, u, net, oi
