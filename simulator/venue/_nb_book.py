"""Order-book and resting-quote kernels, compiled (numba, ``cache=True``), exact int64.

The market makers cancel and re-quote every step: a few dozen orders, where numpy's per-call
overhead (not the arithmetic) was the cost. Each kernel computes exactly what the numpy code
kept next to its caller computes (``OrderBook.cancel_owners_reference``,
``OrderBook.postable_reference``, ``_Side.insert_reference``,
``OrderBook.resting_lots_of_reference``, ``Venue.quote_margin_ok_reference``); the tests
compare them bit for bit. Imported lazily through ``kernels.book()``.
"""

from __future__ import annotations

import numba
import numpy as np

PPM = 1_000_000
BUY = 1
SELL = -1
from simulator.venue._nb import match_side as _match_side
from simulator.venue._nb import trade as _trade
from simulator.venue._nb_scan import notional_at, value_at

njit = numba.njit(cache=True, nogil=True)


@njit
def cancel(price, qty, owner, oid, owners):
    """Drop the resting orders whose owner is in ``owners``; returns the kept columns and the
    number dropped."""
    n = len(qty)
    keep = np.empty(n, np.bool_)
    k = 0
    for i in range(n):
        hit = False
        for o in owners:
            if owner[i] == o:
                hit = True
                break
        keep[i] = not hit
        if not hit:
            k += 1
    if k == n:
        return price, qty, owner, oid, 0
    p2 = np.empty(k, np.int64)
    q2 = np.empty(k, np.int64)
    o2 = np.empty(k, np.int64)
    d2 = np.empty(k, np.int64)
    j = 0
    for i in range(n):
        if keep[i]:
            p2[j] = price[i]
            q2[j] = qty[i]
            o2[j] = owner[i]
            d2[j] = oid[i]
            j += 1
    return p2, q2, o2, d2, n - k


@njit
def postable(sides, prices, qtys, has_bid, best_bid, has_ask, best_ask):
    """Which post-only orders rest: positive size and price, not crossing the book, and, when
    the batch crosses itself, not crossing the orders of the batch accepted before them."""
    n = len(qtys)
    ok = np.empty(n, np.bool_)
    max_buy = np.int64(0)
    min_sell = np.int64(0)
    any_buy = False
    any_sell = False
    for i in range(n):
        s = sides[i]
        p = prices[i]
        crosses = (s == BUY and has_ask and p >= best_ask) or (s == SELL and has_bid and p <= best_bid)
        ok[i] = (not crosses) and qtys[i] > 0 and p > 0
        if ok[i] and s == BUY:
            max_buy = p if not any_buy else max(max_buy, p)
            any_buy = True
        elif ok[i] and s == SELL:
            min_sell = p if not any_sell else min(min_sell, p)
            any_sell = True
    if any_buy and any_sell and max_buy >= min_sell:
        bb, ba = best_bid, best_ask
        hb, ha = has_bid, has_ask
        for i in range(n):
            ok[i] = False
            q = qtys[i]
            p = prices[i]
            if q <= 0 or p <= 0:
                continue
            if sides[i] == BUY and ((not ha) or p < ba):
                ok[i] = True
                bb = p if not hb else max(bb, p)
                hb = True
            elif sides[i] == SELL and ((not hb) or p > bb):
                ok[i] = True
                ba = p if not ha else min(ba, p)
                ha = True
    return ok


@njit
def insert(price, qty, owner, oid, new_price, new_qty, new_owner, new_oid, is_bid):
    """Merge new orders into one side kept in priority order (bids highest price first, asks
    lowest first, then order id): the result of re-sorting everything, without re-sorting."""
    m = len(new_qty)
    key_new = np.empty(m, np.int64)
    for i in range(m):
        key_new[i] = -new_price[i] if is_bid else new_price[i]
    # new orders by (key, oid): a stable sort on the key, then oid breaks the remaining ties
    order = np.argsort(key_new, kind="mergesort")
    for a in range(1, m):  # insertion pass on oid within equal keys (ids are usually ascending)
        b = a
        while b > 0 and key_new[order[b - 1]] == key_new[order[b]] and new_oid[order[b - 1]] > new_oid[order[b]]:
            order[b - 1], order[b] = order[b], order[b - 1]
            b -= 1
    n = len(qty)
    t = n + m
    p2 = np.empty(t, np.int64)
    q2 = np.empty(t, np.int64)
    o2 = np.empty(t, np.int64)
    d2 = np.empty(t, np.int64)
    i = 0
    j = 0
    for k in range(t):
        take_old = False
        if j >= m:
            take_old = True
        elif i < n:
            ko = -price[i] if is_bid else price[i]
            kn = key_new[order[j]]
            take_old = ko < kn or (ko == kn and oid[i] < new_oid[order[j]])
        if take_old:
            p2[k] = price[i]
            q2[k] = qty[i]
            o2[k] = owner[i]
            d2[k] = oid[i]
            i += 1
        else:
            r = order[j]
            p2[k] = new_price[r]
            q2[k] = new_qty[r]
            o2[k] = new_owner[r]
            d2[k] = new_oid[r]
            j += 1
    return p2, q2, o2, d2


@njit
def resting_lots(owner, qty, accounts):
    """Resting lots of each of ``accounts`` (sorted, unique) on one side."""
    out = np.zeros(len(accounts), np.int64)
    for i in range(len(qty)):
        k = np.searchsorted(accounts, owner[i])
        if k < len(accounts) and accounts[k] == owner[i]:
            out[k] += qty[i]
    return out


@njit
def _muldiv(x, num, den):
    return (x // den) * num + ((x % den) * num) // den


@njit
def _round_half_even(x):
    r = np.floor(x)
    d = x - r
    if d > 0.5 or (d == 0.5 and r % 2 != 0):
        r += 1.0
    return np.int64(r)


@njit
def quote_margin(market, owners, sides, qtys, accounts, inverse, buys, sells, wallet, qty, cost, marks, cv,
                 leverage, guard, guard_leverage, fee_ppm, inv_market):
    """``Venue.quote_margin_ok`` in one pass: per new order, does the owner's equity less the
    maker fee cover the initial margin of its worst case once the order's side fills up to
    it (cumulative per owner and side, in the given order), or does the order not add
    exposure? ``accounts`` are the sorted unique owners, ``inverse`` each order's index in it,
    ``buys``/``sells`` their resting lots per market, ``leverage`` their leverage rows,
    ``inv_market`` per market True for an inverse contract (``value_at``, ``notional_at``)."""
    nu, m_count = buys.shape
    n = len(qtys)
    run = np.zeros((nu, 2), np.int64)
    lev_ppm = np.empty((nu, m_count), np.int64)
    equity = np.empty(nu, np.int64)
    for a in range(nu):
        acc = accounts[a]
        u = np.int64(0)
        for m in range(m_count):
            lev = leverage[a, m]
            if guard:
                lev = min(lev, guard_leverage)
            lev_ppm[a, m] = max(_round_half_even(lev * PPM), 1)
            u += value_at(qty[acc, m], marks[m], cv[m], inv_market[m]) - cost[acc, m]
        equity[a] = wallet[acc] + u
    mark_value = marks[market] * cv[market]
    ok = np.empty(n, np.bool_)
    for i in range(n):
        a = inverse[i]
        acc = accounts[a]
        s = sides[i]
        col = 1 if s == BUY else 0
        run[a, col] += qtys[i]
        rest = buys[a, market] if s == BUY else sells[a, market]
        side_lots = rest + run[a, col]
        q0 = qty[acc, market]
        exposure = abs(q0 + s * side_lots)
        im = np.int64(0)
        for m in range(m_count):
            if m == market:
                lots = exposure
            else:
                q = qty[acc, m]
                lots = max(abs(q + buys[a, m]), abs(q - sells[a, m]))
            notional = notional_at(lots, marks[m], cv[m], inv_market[m])
            lp = lev_ppm[a, m]
            d = notional // lp
            r = notional % lp
            im += d * PPM + -((-(r * PPM)) // lp)
        if inv_market[market]:  # settlement.fill_notional: floor(side_lots K / P), no abs
            fee = -_muldiv(-_muldiv(side_lots, cv[market], marks[market]), fee_ppm, PPM)
        else:
            fee = -_muldiv(-(side_lots * mark_value), fee_ppm, PPM)
        ok[i] = exposure <= abs(q0) or equity[a] - fee >= im
    return ok


@njit
def order_margin(market, owners, sides, qtys, reduce_only, has_reduce_only, wallet, qty, cost, marks, cv, leverage,
                 guard, guard_leverage, taker_fee_ppm, inv_market):
    """``Venue.submit_orders``' checks in one pass: a reduce-only order is cut to the position it
    reduces; an order that grows a position is refused when the owner's equity less the taker
    fee is below the initial margin of all its positions after it (``inv_market``: per market,
    True for an inverse contract). Returns (lots to send, accepted, refused count among
    orders with lots > 0)."""
    n = len(qtys)
    m_count = qty.shape[1]
    out_q = np.empty(n, np.int64)
    ok = np.empty(n, np.bool_)
    refused_count = 0
    for i in range(n):
        a = owners[i]
        s = sides[i]
        q = qtys[i]
        pos = qty[a, market]
        pos_sign = 1 if pos > 0 else (-1 if pos < 0 else 0)
        if has_reduce_only and reduce_only[i]:
            q = min(q, abs(pos)) if pos_sign == -s else 0
        out_q[i] = q
        new_pos = pos + s * q
        good = q > 0
        if abs(new_pos) > abs(pos):
            im = np.int64(0)
            u = np.int64(0)
            for m in range(m_count):
                lots = new_pos if m == market else qty[a, m]
                u += value_at(qty[a, m], marks[m], cv[m], inv_market[m]) - cost[a, m]
                lev = leverage[a, m]
                if guard:
                    lev = min(lev, guard_leverage)
                lp = max(_round_half_even(lev * PPM), 1)
                notional = notional_at(lots, marks[m], cv[m], inv_market[m])
                d = notional // lp
                r = notional % lp
                im += d * PPM + -((-(r * PPM)) // lp)
            fee = -_muldiv(-notional_at(q, marks[market], cv[market], inv_market[market]), taker_fee_ppm, PPM)
            if wallet[a] + u - fee < im:
                if good:
                    refused_count += 1
                good = False
        ok[i] = good
    return out_q, ok, refused_count


@njit
def pay_fees(wallet, taker, maker, qty, price, cv, taker_fee_ppm, maker_fee_ppm, fee_pool, inverse):
    """Taker and maker fees of fills, ``ceil(value x rate / PPM)`` each with ``value`` the fill's
    ``qty x price x cv`` (``inverse``: ``floor(qty K / price)``, ``settlement.fill_notional``;
    a negative rate is a rebate, paid by the pool), moved to the fee pool (``Venue.settle``)."""
    for i in range(len(qty)):
        value = _muldiv(qty[i], cv, price[i]) if inverse else qty[i] * price[i] * cv
        t = -_muldiv(-value, taker_fee_ppm, PPM)
        mk = -_muldiv(-value, maker_fee_ppm, PPM)
        wallet[taker[i]] -= t
        wallet[fee_pool] += t
        wallet[maker[i]] -= mk
        wallet[fee_pool] += mk


@njit
def _keep_left(price, owner, oid, left):
    n = 0
    for j in range(len(left)):
        if left[j] > 0:
            n += 1
    p2 = np.empty(n, np.int64)
    q2 = np.empty(n, np.int64)
    o2 = np.empty(n, np.int64)
    d2 = np.empty(n, np.int64)
    n = 0
    for j in range(len(left)):
        if left[j] > 0:
            p2[n] = price[j]
            q2[n] = left[j]
            o2[n] = owner[j]
            d2[n] = oid[j]
            n += 1
    return p2, q2, o2, d2


@njit
def submit(bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid, owners, sides, qtys,
           limits):
    """``OrderBook.submit`` of IOC orders (no resting remainder) in one call: buys take asks,
    sells take bids, each in batch order from the front of the queue up to its limit; the fills
    come back in arrival order (by incoming order, then queue position) with both sides of the
    book as left (a side that filled anything loses its emptied orders)."""
    n = len(qtys)
    cap_b = n + len(ask_qty)
    cap_s = n + len(bid_qty)
    cols = np.empty((6, cap_b + cap_s), np.int64)
    f_taker, f_maker, f_qty, f_price, f_index, f_oid = cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]
    has_buy = False
    has_sell = False
    for i in range(n):
        if sides[i] == BUY:
            has_buy = True
        elif sides[i] == SELL:
            has_sell = True
    kb = 0
    if has_buy and len(ask_qty) > 0:
        kb, ask_left = _match_side(ask_price, ask_qty, ask_owner, ask_oid, True, owners, sides, qtys, limits, BUY,
                                   f_taker, f_maker, f_qty, f_price, f_index, f_oid, 0)
        if kb > 0:
            ask_price, ask_qty, ask_owner, ask_oid = _keep_left(ask_price, ask_owner, ask_oid, ask_left)
    ks = kb
    if has_sell and len(bid_qty) > 0:
        ks, bid_left = _match_side(bid_price, bid_qty, bid_owner, bid_oid, False, owners, sides, qtys, limits, SELL,
                                   f_taker, f_maker, f_qty, f_price, f_index, f_oid, kb)
        if ks > kb:
            bid_price, bid_qty, bid_owner, bid_oid = _keep_left(bid_price, bid_owner, bid_oid, bid_left)
    # merge the two runs (each already in arrival order) by incoming order index
    out = np.empty((7, ks), np.int64)
    a = 0
    b = kb
    for r in range(ks):
        if b >= ks or (a < kb and f_index[a] <= f_index[b]):
            src = a
            a += 1
            out[2, r] = BUY
        else:
            src = b
            b += 1
            out[2, r] = SELL
        out[0, r] = f_taker[src]
        out[1, r] = f_maker[src]
        out[3, r] = f_qty[src]
        out[4, r] = f_price[src]
        out[5, r] = f_index[src]
        out[6, r] = f_oid[src]
    return out, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid


@njit
def post_quotes(market, owners, sides, prices, qtys, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty,
                ask_owner, ask_oid, accounts, buys, sells, wallet, qty, cost, marks, cv, leverage, guard,
                guard_leverage, fee_ppm, next_oid, inv_market):
    """``Venue.post_quotes`` on one book in one call: drop what the book would not rest
    (``postable``), refuse what fails the quote margin check (``quote_margin``), post the rest
    (``OrderBook.post``: ids in batch order, ``postable`` again, merged into the sides).
    ``accounts`` are the sorted unique owners; ``buys``/``sells`` their resting lots in the
    other markets (this market's column is filled here from the book). Returns (order ids,
    -1 where dropped or refused; refused count; next order id; the two sides)."""
    n = len(qtys)
    out = np.full(n, -1, np.int64)
    ok = postable(sides, prices, qtys, len(bid_qty) > 0, bid_price[0] if len(bid_qty) else 0,
                  len(ask_qty) > 0, ask_price[0] if len(ask_qty) else 0)
    buys[:, market] = resting_lots(bid_owner, bid_qty, accounts)
    sells[:, market] = resting_lots(ask_owner, ask_qty, accounts)
    sel = np.flatnonzero(ok)
    refused = 0
    if len(sel):
        o_s = owners[sel]
        inverse = np.searchsorted(accounts, o_s)
        fits = quote_margin(market, o_s, sides[sel], qtys[sel], accounts, inverse, buys, sells, wallet, qty, cost,
                            marks, cv, leverage, guard, guard_leverage, fee_ppm, inv_market)
        for j in range(len(sel)):
            if not fits[j]:
                refused += 1
                ok[sel[j]] = False
    post = np.flatnonzero(ok)
    m = len(post)
    if m == 0:
        return out, refused, next_oid, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid
    p_sides, p_prices, p_qtys, p_owners = sides[post], prices[post], qtys[post], owners[post]
    oids = next_oid + np.arange(m)
    next_oid += m
    ok2 = postable(p_sides, p_prices, p_qtys, len(bid_qty) > 0, bid_price[0] if len(bid_qty) else 0,
                   len(ask_qty) > 0, ask_price[0] if len(ask_qty) else 0)
    nb = 0
    na = 0
    for j in range(m):
        if ok2[j]:
            out[post[j]] = oids[j]
            if p_sides[j] == BUY:
                nb += 1
            elif p_sides[j] == SELL:
                na += 1
    if nb:
        kb = np.flatnonzero(ok2 & (p_sides == BUY))
        bid_price, bid_qty, bid_owner, bid_oid = insert(bid_price, bid_qty, bid_owner, bid_oid, p_prices[kb],
                                                        p_qtys[kb], p_owners[kb], oids[kb], True)
    if na:
        ka = np.flatnonzero(ok2 & (p_sides == SELL))
        ask_price, ask_qty, ask_owner, ask_oid = insert(ask_price, ask_qty, ask_owner, ask_oid, p_prices[ka],
                                                        p_qtys[ka], p_owners[ka], oids[ka], False)
    return out, refused, next_oid, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid


@njit
def depth_within(bid_price, bid_qty, ask_price, ask_qty, bid_floor, ask_cap):
    """Lots resting at bids ``>= bid_floor`` and at asks ``<= ask_cap`` (float bounds, each
    price compared as a float, as numpy compares int64 with a float):
    ``OrderBook.depth_within``'s sums."""
    bid = np.int64(0)
    for i in range(len(bid_qty)):
        if float(bid_price[i]) >= bid_floor:
            bid += bid_qty[i]
    ask = np.int64(0)
    for i in range(len(ask_qty)):
        if float(ask_price[i]) <= ask_cap:
            ask += ask_qty[i]
    return bid, ask


@njit
def submit_settle(market, owners, sides, qtys, limits, reduce_only, has_reduce_only, wallet, qty, cost, marks, cv,
                  leverage, guard, guard_leverage, taker_fee_ppm, maker_fee_ppm, inv_market, fee_pool, bid_price,
                  bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid):
    """``Venue.submit_orders`` of a linear market in one call: the margin checks
    (``order_margin``), the accepted orders matched (``submit``), the fills put on the ledger
    in order (``_nb.trade``) and their fees paid (``pay_fees``), the same kernels in the same
    order as the separate calls. Returns (fills as ``submit``'s 7 rows, refused count, whether
    any order was accepted, the two sides of the book as left, ``_columns`` each)."""
    out_q, ok, refused = order_margin(market, owners, sides, qtys, reduce_only, has_reduce_only, wallet, qty, cost,
                                      marks, cv, leverage, guard, guard_leverage, taker_fee_ppm, inv_market)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return (np.empty((7, 0), np.int64), refused, False, _columns(bid_price, bid_qty, bid_owner, bid_oid),
                _columns(ask_price, ask_qty, ask_owner, ask_oid))
    fills, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid = submit(
        bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid, owners[idx], sides[idx],
        out_q[idx], limits[idx])
    _settle_fills(fills, market, wallet, qty, cost, cv[market], True, taker_fee_ppm, maker_fee_ppm, fee_pool)
    return (fills, refused, True, _columns(bid_price, bid_qty, bid_owner, bid_oid),
            _columns(ask_price, ask_qty, ask_owner, ask_oid))


@njit
def _settle_fills(fills, market, wallet, qty, cost, cv, fees, taker_fee_ppm, maker_fee_ppm, fee_pool):
    """``Venue.settle`` of ``submit``'s fills in a linear market: the ledger (``_nb.trade``,
    buyer and seller from the taker's side), then with ``fees`` the fees (``pay_fees``)."""
    n = fills.shape[1]
    if n == 0:
        return
    taker, maker, taker_side = fills[0], fills[1], fills[2]
    buyers = np.empty(n, np.int64)
    sellers = np.empty(n, np.int64)
    for i in range(n):
        if taker_side[i] == BUY:
            buyers[i] = taker[i]
            sellers[i] = maker[i]
        else:
            buyers[i] = maker[i]
            sellers[i] = taker[i]
    _trade(wallet, qty, cost, market, buyers, sellers, fills[3], fills[4], cv)
    if fees:
        pay_fees(wallet, taker, maker, fills[3], fills[4], cv, taker_fee_ppm, maker_fee_ppm, fee_pool, False)


@njit
def ioc_settle(market, owners, sides, qtys, limits, wallet, qty, cost, cv, bid_price, bid_qty, bid_owner, bid_oid,
               ask_price, ask_qty, ask_owner, ask_oid):
    """IOC orders of the venue's own rows in a linear market (``OrderBook.submit`` then
    ``Venue.settle`` without fees, no margin check): (fills, the two sides as left, ``_columns``
    each)."""
    fills, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid = submit(
        bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid, owners, sides, qtys, limits)
    _settle_fills(fills, market, wallet, qty, cost, cv[market], False, 0, 0, 0)
    return fills, _columns(bid_price, bid_qty, bid_owner, bid_oid), _columns(ask_price, ask_qty, ask_owner, ask_oid)


@njit
def post_quotes_one_market(owners, sides, prices, qtys, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty,
                           ask_owner, ask_oid, wallet, qty, cost, marks, cv, leverage, guard, guard_leverage, fee_ppm,
                           next_oid, inv_market):
    """``post_quotes`` on the book of a one-market venue, the owners' set-up included: their
    sorted unique ids, no resting lots in other books, their leverage rows (``leverage`` is
    every account's). Returns ``post_quotes``' results with the two sides as ``_columns`` (no
    order ids and nothing refused without new orders)."""
    if len(qtys) == 0:
        return (np.empty(0, np.int64), 0, next_oid, _columns(bid_price, bid_qty, bid_owner, bid_oid),
                _columns(ask_price, ask_qty, ask_owner, ask_oid))
    accounts = _unique(owners)
    buys = np.zeros((len(accounts), 1), np.int64)
    sells = np.zeros((len(accounts), 1), np.int64)
    lev = np.empty((len(accounts), leverage.shape[1]), np.float64)
    for i in range(len(accounts)):
        lev[i] = leverage[accounts[i]]
    out, refused, next_oid, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid = post_quotes(
        0, owners, sides, prices, qtys, bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid,
        accounts, buys, sells, wallet, qty, cost, marks, cv, lev, guard, guard_leverage, fee_ppm, next_oid,
        inv_market)
    return (out, refused, next_oid, _columns(bid_price, bid_qty, bid_owner, bid_oid),
            _columns(ask_price, ask_qty, ask_owner, ask_oid))


@njit
def _unique(a):
    """``np.unique`` of a 1-d int64 array (sorted unique values), without numba's generic path."""
    if len(a) == 0:
        return a.copy()
    b = np.sort(a)
    k = 1
    for i in range(1, len(b)):
        if b[i] != b[k - 1]:
            b[k] = b[i]
            k += 1
    return b[:k].copy()


@njit
def cancel_both(bid_price, bid_qty, bid_owner, bid_oid, ask_price, ask_qty, ask_owner, ask_oid, owners):
    """``cancel`` on both sides of a book (bids, then asks): the kept orders of each side
    (``_columns``) and the number of orders dropped."""
    n = 0
    if len(bid_qty):
        bid_price, bid_qty, bid_owner, bid_oid, d = cancel(bid_price, bid_qty, bid_owner, bid_oid, owners)
        n += d
    if len(ask_qty):
        ask_price, ask_qty, ask_owner, ask_oid, d = cancel(ask_price, ask_qty, ask_owner, ask_oid, owners)
        n += d
    return _columns(bid_price, bid_qty, bid_owner, bid_oid), _columns(ask_price, ask_qty, ask_owner, ask_oid), n


@njit
def _columns(price, qty, owner, oid):
    """One side of a book as one (4, orders) array: price, qty, owner, oid rows. A kernel
    returns a side this way, one array instead of four (each array handed back to Python
    costs a box and an unpickle of its type)."""
    out = np.empty((4, len(qty)), np.int64)
    out[0] = price
    out[1] = qty
    out[2] = owner
    out[3] = oid
    return out


@njit
def requote_one_market(cancel_owners, owners, sides, prices, qtys, bid_price, bid_qty, bid_owner, bid_oid, ask_price,
                       ask_qty, ask_owner, ask_oid, wallet, qty, cost, marks, cv, leverage, guard, guard_leverage,
                       fee_ppm, next_oid, inv_market):
    """A re-quote on the book of a one-market venue in one call: ``cancel_both`` of
    ``cancel_owners`` (``OrderBook.cancel_owners``), then ``post_quotes_one_market`` of the new
    orders: the same kernels in the same order as the two calls.
    Returns ``post_quotes_one_market``'s results."""
    if len(bid_qty):
        bid_price, bid_qty, bid_owner, bid_oid, _ = cancel(bid_price, bid_qty, bid_owner, bid_oid, cancel_owners)
    if len(ask_qty):
        ask_price, ask_qty, ask_owner, ask_oid, _ = cancel(ask_price, ask_qty, ask_owner, ask_oid, cancel_owners)
    return post_quotes_one_market(owners, sides, prices, qtys, bid_price, bid_qty, bid_owner, bid_oid, ask_price,
                                  ask_qty, ask_owner, ask_oid, wallet, qty, cost, marks, cv, leverage, guard,
                                  guard_leverage, fee_ppm, next_oid, inv_market)
