"""Auto-deleveraging: rank the opposite side and allocate the lots to close.

A ranking turns the opposite side's positions into scores (highest is deleveraged first) or,
for ``pro_rata`` and ``max_leverage``, allocates directly. Every function works on arrays of
candidate accounts in one market and returns integer lots per candidate summing to the need
(or to everything available when the side holds less).
"""

from __future__ import annotations

import numpy as np

from simulator.venue.fixedpoint import largest_remainder

RANKINGS = ("pnl_x_leverage", "binance", "hyperliquid", "random", "pro_rata", "max_leverage", "profit_bands")


def scores(ranking: str, *, qty, cost, wallet, equity, mark, cv, mm, cash_per_usd, rng,
           percentile: float = 0.5, mark_high: float = 0.0, mark_low: float = 0.0,
           value=None, entry=None) -> np.ndarray:
    """Queue score per candidate (higher = deleveraged first).

    Args are per candidate in one market: ``qty`` signed lots, ``cost`` cash, ``wallet`` and
    ``equity`` of the whole account in cash, ``mm`` the account's maintenance margin in cash;
    ``mark`` ticks and ``cv`` the contract value (scalars). ``profit_bands`` also reads
    ``percentile`` and the mark's running extremes ``mark_high`` / ``mark_low`` (ticks).
    ``value`` (the positions' signed value ``V`` at mark, cash) and ``entry`` (entry prices,
    ticks) are given for an inverse market, whose value is not ``qty * mark * cv``.
    """
    if ranking == "profit_bands":
        return profit_bands(qty=qty, cost=cost, equity=equity, mark=mark, cv=cv, percentile=percentile,
                            mark_high=mark_high, mark_low=mark_low, value=value, entry=entry)
    qty = qty.astype(float)
    if value is None:
        notional = np.abs(qty) * mark * cv
        u = qty * mark * cv - cost
    else:
        notional = np.abs(value)
        u = value - cost
    equity = equity.astype(float)
    if ranking == "pnl_x_leverage":
        # BitMEX: PnL% = U/|cost|; effective leverage = notional / (qty*M - qty*P_b) = notional / equity
        pnl_pct = u / np.maximum(np.abs(cost), 1)
        eff_lev = np.where(equity > 0, notional / np.maximum(equity, 1), np.inf)
        return np.where(pnl_pct > 0, pnl_pct * eff_lev, pnl_pct / eff_lev)
    if ranking == "binance":
        w_usd = wallet / cash_per_usd
        ratio = mm / np.where(equity > 0, equity, 1)
        s = np.maximum(0, u / cash_per_usd) / np.maximum(1, w_usd) * ratio
        return np.where(equity > 0, s, 0.0)
    if ranking == "hyperliquid":
        if entry is None:
            entry = cost / np.where(qty != 0, qty * cv, 1)
        price_ratio = np.where(qty > 0, mark / entry, entry / mark)
        return price_ratio * notional / np.maximum(equity, 1)
    if ranking == "random":
        # dYdX v4 (deleveraging.go): a pseudo-random start among the opposite side, then in
        # order (here: ledger order), wrapping around
        n = len(qty)
        start = int(rng.integers(n)) if n else 0
        return -((np.arange(n) - start) % max(n, 1)).astype(float)
    raise ValueError(f"ranking {ranking!r} has no queue score; allowed: {RANKINGS}")


def profit_bands(*, qty, cost, equity, mark, cv, percentile, mark_high, mark_low, value=None, entry=None) -> np.ndarray:
    """The seed article's reference engine: "highly profitable positions with low leverage
    ratios first", among "traders whose unrealized PnL exceeds predefined percentile bands and
    whose entry timing aligns with recent market momentum".

    * **Band**: profitable positions (``U > 0``) whose PnL% ``U / |cost|`` is at or above the
      ``percentile`` quantile (numpy's linear interpolation) of PnL% over every candidate (the
      whole opposite side in the market, profitable or not). Band first, then the rest of the
      profitable side by the same order; positions not in profit come last (the ADL stage
      gives them no lots: this ranking never deleverages a losing position).
    * Within a group: **lowest** effective leverage first (position notional at mark / account
      equity; equity <= 0 counts as infinite leverage).
    * Ties: entry closest to the recent momentum peak first, distance ``|entry - extreme| /
      extreme`` where the extreme is the mark's running high for shorts (they entered at the
      top of the move that made them money) and running low for longs. The venue keeps no
      price history: the extremes are the mark's since the last settlement
      (``PriceState.mark_high`` / ``mark_low``). Full ties: ledger order.

    The score is the queue position reversed (``n - position``), so ``queue_quantile`` and
    ``allocate_queue`` read the same order as every other queue ranking.
    """
    n = len(qty)
    if n == 0:
        return np.zeros(0)
    qty = qty.astype(float)
    cost = cost.astype(float)
    notional = np.abs(qty) * mark * cv if value is None else np.abs(value)
    u = (qty * mark * cv if value is None else value) - cost
    pnl_pct = u / np.maximum(np.abs(cost), 1)
    profitable = u > 0
    band = profitable & (pnl_pct >= np.quantile(pnl_pct, percentile))
    group = np.where(band, 0, np.where(profitable, 1, 2))
    equity = equity.astype(float)
    eff_lev = np.where(equity > 0, notional / np.maximum(equity, 1), np.inf)
    if entry is None:
        entry = cost / np.where(qty != 0, qty * cv, 1)
    extreme = np.where(qty < 0, float(mark_high), float(mark_low))
    distance = np.abs(entry - extreme) / np.maximum(extreme, 1)
    order = np.lexsort((np.arange(n), distance, eff_lev, group))
    score = np.empty(n)
    score[order] = n - np.arange(n)
    return score


def queue_quantile(score) -> np.ndarray:
    """Queue position as a quantile, 1 = front of the queue, toward 0 at the back: the ADL
    indicator lights venues show traders (5 lights = top quintile)."""
    n = len(score)
    if n == 0:
        return np.zeros(0)
    pos = np.empty(n)
    pos[np.argsort(-np.asarray(score, dtype=float), kind="stable")] = np.arange(n)
    return 1.0 - pos / n


def allocate_queue(score, lots, need: int) -> np.ndarray:
    """Take whole positions down the queue (highest score first, ties by position) until ``need``."""
    order = np.argsort(-score, kind="stable")
    cum = np.cumsum(lots[order])
    before = cum - lots[order]
    take_sorted = np.clip(need - before, 0, lots[order])
    take = np.zeros_like(lots)
    take[order] = take_sorted
    return take


def allocate_pro_rata(lots, profitable, need: int) -> np.ndarray:
    """Reduce every profitable position by the same fraction; if they hold too little, every
    position (profitable first) is reduced by the same fraction of what is left."""
    take = np.zeros_like(lots)
    pool = profitable & (lots > 0)
    first = min(need, int(lots[pool].sum()))
    if first > 0:
        take[pool] = largest_remainder(first, lots[pool])
    rest = need - first
    others = (lots > 0) & ~pool
    if rest > 0 and others.any():
        take[others] = largest_remainder(min(rest, int(lots[others].sum())), lots[others])
    return take


def allocate_max_leverage(lots, equity, unit_value: float, need: int) -> np.ndarray:
    """Water-filling (Campbell et al.): cut the most levered first until leverages equalise.

    Leverage of candidate j is ``lots_j * unit_value / equity_j``. Find the level L with
    ``sum_j max(0, lots_j - L * equity_j / unit_value) = need``; accounts with no equity are
    cut first and entirely.
    """
    lots = lots.astype(np.int64)
    need = min(need, int(lots.sum()))
    take = np.zeros_like(lots)
    if need <= 0:
        return take
    broke = equity <= 0
    if broke.any():
        take[broke] = allocate_queue(lots[broke].astype(float), lots[broke], need)
        need -= int(take.sum())
        if need == 0:
            return take
    ok = ~broke & (lots > 0)
    cap = equity[ok].astype(float) / unit_value  # lots allowed per unit of leverage

    def excess(level):
        return np.maximum(0.0, lots[ok] - level * cap)

    lo, hi = 0.0, float((lots[ok] / cap).max()) if ok.any() else 0.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if excess(mid).sum() > need:
            lo = mid
        else:
            hi = mid
    ideal = excess(hi)
    base = np.floor(ideal).astype(np.int64)
    left = need - int(base.sum())
    if left > 0:
        # the lots still missing go to the highest leverage among those with room
        room = lots[ok] - base
        lev = (lots[ok] - base) / cap
        order = np.lexsort((-(ideal - base), -lev))
        order = order[room[order] > 0]
        base[order[:left]] += 1
    take[ok] = base
    return take
