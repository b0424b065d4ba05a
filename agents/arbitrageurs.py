"""Arbitrageurs: trade the perp against the index when the basis pays, within their capital.

Their spot hedge sits outside the venue, so on the venue they simply hold the perp leg: they
sell the perp when it trades rich to the index and buy it when it is cheap, with a limit at the
index plus the threshold so that they only take the mispriced part of the book. Inside the band
they hold: a carry position is closed only by trading the other way when the basis flips.
"""

from __future__ import annotations

import numpy as np

from agents.account import AccountAgent
from simulator.venue.book import BUY, SELL


class Arbitrageur(AccountAgent):
    """One basis arbitrageur; ``step_all`` decides for all of them per market."""

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
            lot_cash = venue.lot_cash(m, index)
            pos = venue.ledger.qty[acc, m]
            cap_lots = np.floor(np.clip(equity, 0, None) * cfg.leverage * 0.9 / lot_cash).astype(np.int64)
            trade_lots = int(spec.lots_for_quote(cfg.max_trade_notional, index))
            room = cap_lots + sign * pos
            lots = np.clip(np.minimum(room, trade_lots), 0, None)
            go = lots > 0
            if go.any():
                order = model.arb_rng.permutation(int(go.sum()))
                venue.submit_orders(m, acc[go][order], np.full(int(go.sum()), side), lots[go][order], limit)
