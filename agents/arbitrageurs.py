"""Arbitrageurs: trade the perp against the index when the basis pays, within their capital.

Their spot hedge sits outside the venue, so on the venue they simply hold the perp leg. As
takers they sell the perp when it trades rich to the index and buy it when it is cheap, with a
limit at the index plus the threshold so that they only take the mispriced part of the book.
As makers they stand ready to do the same passively: each step they rest a small ladder of bids
from ``index * (1 - threshold)`` down and of asks from ``index * (1 + threshold)`` up
(``quote_levels`` levels ``quote_spacing`` apart, ``quote_notional`` each), cut to the capital
room the taker path uses. So a book whose makers have stopped bidding still has a bid at a
price that reflects the basis. Inside the band they hold: a carry position is closed only by
trading the other way when the basis flips.
"""

from __future__ import annotations

import functools

import numpy as np

from agents.account import AccountAgent
from simulator.venue import kernels
from simulator.venue.book import BUY, SELL

#: Share of capital x leverage an arbitrageur's position may reach (taker trades and quotes).
CAPITAL_USE = 0.9


class Arbitrageur(AccountAgent):
    """One basis arbitrageur; ``step_all`` decides for all of them per market."""

    @classmethod
    def quoting_accounts(cls, model):
        """The arbitrageurs whose resting quotes are pulled at the start of a step, before the
        makers re-quote (``MarketMaker.step_all``'s ``also_cancel``), so that no stale quote
        blocks a maker's post-only order; None when they do not quote."""
        if model.arb_config.quote_levels and len(model.arb_accounts):
            return model.arb_accounts
        return None

    @classmethod
    def step_all(cls, model) -> None:
        cfg = model.arb_config  # capital and trade size scaled to the population
        acc = model.arb_accounts
        if len(acc) == 0:
            return
        venue = model.venue
        equity = None  # valued once, at the first market outside the band (the usual step has none)
        for m, spec in enumerate(venue.markets):
            book = venue.books[m]
            index = model.spot_ticks(m)  # the real spot price, not the venue's oracle
            bid, ask = book.best_bid(), book.best_ask()
            if ask is not None and ask < index * (1 - cfg.threshold):
                side, limit, sign = BUY, int(index * (1 - cfg.threshold)), -1
            elif bid is not None and bid > index * (1 + cfg.threshold):
                side, limit, sign = SELL, int(np.ceil(index * (1 + cfg.threshold))), 1
            else:
                continue  # inside the band the carry position is simply held
            if equity is None:
                equity = venue.equity(acc)
            room = _room(venue, m, acc, equity, index, cfg.leverage)[0 if side == BUY else 1]
            trade_lots = int(spec.lots_for_quote(cfg.max_trade_notional, index))
            lots = np.clip(np.minimum(room, trade_lots), 0, None)
            go = lots > 0
            if go.any():
                order = model.arb_rng.permutation(int(go.sum()))
                venue.submit_orders(m, acc[go][order], np.full(int(go.sum()), side), lots[go][order], limit)
        if cfg.quote_levels:
            cls.quote_all(model)

    @classmethod
    def quote_all(cls, model) -> None:
        """Rest every arbitrageur's passive basis ladder in every market: the compiled ladder
        (``agents/_nb_arbs``), bit for bit the quotes of ``quote_all_reference``."""
        k = _kernels()
        if k is None:
            return cls.quote_all_reference(model)
        cfg = model.arb_config
        acc = model.arb_accounts
        venue = model.venue
        if venue.n_markets == 1:  # equity, ladder and post: one compiled call
            index = model.spot_ticks(0)
            want, before = _level_sizes(int(venue.markets[0].lots_for_quote(cfg.quote_notional, index)),
                                        cfg.quote_levels, cfg.quote_growth)
            venue.requote_by(0, None, k.post_ladder, (
                acc, 0, float(cfg.leverage), CAPITAL_USE, float(venue.lot_cash(0, index)), float(index),
                float(cfg.threshold), float(cfg.quote_spacing), want, before), post_only=True)
            return
        equity = venue.equity(acc)
        qty = venue.ledger.qty
        for m, spec in enumerate(venue.markets):
            index = model.spot_ticks(m)
            level_lots = int(spec.lots_for_quote(cfg.quote_notional, index))
            want, before = _level_sizes(level_lots, cfg.quote_levels, cfg.quote_growth)
            owners, sides, prices, lots = k.arb_quotes(
                acc, equity, qty, m, float(cfg.leverage), CAPITAL_USE, float(venue.lot_cash(m, index)), float(index),
                float(cfg.threshold), float(cfg.quote_spacing), want, before)
            if len(lots):
                venue.post_quotes(m, owners, sides, prices, lots)

    @classmethod
    def quote_all_reference(cls, model) -> None:
        """``quote_all`` in numpy only (the reference the compiled ladder is tested against)."""
        cfg = model.arb_config
        acc = model.arb_accounts
        venue = model.venue
        equity = venue.equity(acc)
        for m, spec in enumerate(venue.markets):
            index = model.spot_ticks(m)
            buy_room, sell_room = _room(venue, m, acc, equity, index, cfg.leverage)
            level_lots = int(spec.lots_for_quote(cfg.quote_notional, index))
            owners, sides, prices, lots = basis_ladder(acc, buy_room, sell_room, index, cfg.threshold,
                                                       cfg.quote_spacing, cfg.quote_levels, level_lots,
                                                       cfg.quote_growth)
            if len(lots):
                venue.post_quotes(m, owners, sides, prices, lots)


def _room(venue, m: int, acc, equity, index: float, leverage: float) -> tuple[np.ndarray, np.ndarray]:
    """Lots each arbitrageur may still buy and sell in market ``m`` before its position reaches
    ``CAPITAL_USE`` of equity x leverage (valued at the index)."""
    lot_cash = venue.lot_cash(m, index)
    pos = venue.ledger.qty[acc, m]
    cap_lots = np.floor(np.clip(equity, 0, None) * leverage * CAPITAL_USE / lot_cash).astype(np.int64)
    return cap_lots - pos, cap_lots + pos


@functools.lru_cache(maxsize=64)
def _level_sizes(level_lots: int, levels: int, growth: float) -> tuple[np.ndarray, np.ndarray]:
    """Lots wanted at each level (``level_lots x growth^k``) and what the nearer levels hold;
    the lot size changes only when the index moves a lot, so it is kept (read-only arrays)."""
    k = np.arange(levels)
    want = np.floor(level_lots * growth ** k).astype(np.int64)
    before = np.concatenate(([0], np.cumsum(want)[:-1])).astype(np.int64)
    want.flags.writeable = before.flags.writeable = False
    return want, before


def ladder_levels(index: float, threshold: float, spacing: float, levels: int, level_lots: int,
                  growth: float = 1.0):
    """The ladder's levels in one market: (bid ticks, ask ticks, lots wanted, lots the nearer
    levels hold), level ``k`` = 0 nearest."""
    k = np.arange(levels)
    want, before = _level_sizes(level_lots, levels, growth)
    bid = np.floor(index * (1 - threshold - k * spacing)).astype(np.int64)
    ask = np.ceil(index * (1 + threshold + k * spacing)).astype(np.int64)
    return bid, ask, want, before


def basis_ladder(accounts, buy_room, sell_room, index: float, threshold: float, spacing: float, levels: int,
                 level_lots: int, growth: float = 1.0):
    """The arbitrageurs' resting quotes in one market.

    Level ``k`` (0 = nearest) bids ``floor(index * (1 - threshold - k * spacing))`` and asks
    ``ceil(index * (1 + threshold + k * spacing))`` ticks, ``level_lots`` each, until the side's
    room is used up: a side's levels hold ``min(level_lots, room left)`` lots.

    Returns:
        (owners, sides, prices, lots): each arbitrageur's bids near to far, then its asks, in
        account order; empty levels are left out.
    """
    bid, ask, want, before = ladder_levels(index, threshold, spacing, levels, level_lots, growth)
    owners, sides, prices, lots = [], [], [], []
    for a, rooms in zip(np.asarray(accounts).tolist(), zip(np.asarray(buy_room).tolist(), np.asarray(sell_room).tolist())):
        for side, px, room in ((BUY, bid, rooms[0]), (SELL, ask, rooms[1])):
            size = np.clip(room - before, 0, want)
            ok = size > 0
            owners.append(np.full(int(ok.sum()), a, dtype=np.int64))
            sides.append(np.full(int(ok.sum()), side, dtype=np.int64))
            prices.append(px[ok])
            lots.append(size[ok].astype(np.int64))
    if not owners:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(4))
    return tuple(np.concatenate(a).astype(np.int64) for a in (owners, sides, prices, lots))


def _kernels():
    """The compiled basis ladder (``agents._nb_arbs``), or None without numba."""
    return kernels.load("agents._nb_arbs")
