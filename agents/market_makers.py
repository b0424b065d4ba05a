"""Market makers: a quote ladder around the index that thins out as volatility and inventory grow.

Liquidity withdrawal is what turns a drop into a cascade: each step every maker cancels and
re-quotes; its half spread widens with realised volatility, its size per level shrinks as
``exp(-vol_sensitivity * vol)`` and with any scripted withdrawal, and the side that would add
to an inventory beyond its limit is not quoted. Makers carry margin and can be liquidated.
"""

from __future__ import annotations

import numpy as np

from agents.account import AccountAgent
from simulator.venue import kernels
from simulator.venue.book import BUY, SELL


class MarketMaker(AccountAgent):
    """One market maker; ``step_all`` quotes for all makers in one pass per market."""

    @classmethod
    def step_all(cls, model) -> None:
        """Cancel and re-quote every maker's ladder: the compiled ladder (``agents/_nb_makers``),
        bit for bit the quotes of ``step_all_reference``."""
        k = _kernels()
        if k is None:
            return cls.step_all_reference(model)
        cfg = model.maker_config
        accounts = model.maker_accounts
        if len(accounts) == 0:
            return
        venue = model.venue
        venue.cancel_orders(accounts)
        equity = venue.equity(accounts)
        vol = model.realised_vol()
        withdraw = model.liquidity_withdrawn()
        qty = venue.ledger.qty
        for m, spec in enumerate(venue.markets):
            fair = model.spot_ticks(m)
            half = cfg.half_spread + cfg.spread_vol_multiplier * vol[m]
            size_quote = cfg.level_notional * np.exp(-cfg.vol_sensitivity * vol[m]) * (1 - withdraw)
            base_lots = size_quote / spec.lot_quote(fair)
            owners, sides, prices, lots = k.maker_ladder(
                accounts, equity, qty, m, float(fair), int(venue.contract_values[m]), float(cfg.inventory_limit),
                float(cfg.leverage), float(base_lots), float(half), float(cfg.level_spacing), int(cfg.levels),
                bool(venue.inverse[m]))
            if len(lots):
                venue.post_quotes(m, owners, sides, prices, lots)

    @classmethod
    def step_all_reference(cls, model) -> None:
        """``step_all`` in numpy only (the reference the compiled ladder is tested against)."""
        cfg = model.maker_config  # capital and depth scaled to the population
        accounts = model.maker_accounts
        if len(accounts) == 0:
            return
        venue = model.venue
        venue.cancel_orders(accounts)
        equity = venue.equity(accounts)
        alive = equity > 0
        vol = model.realised_vol()
        withdraw = model.liquidity_withdrawn()
        lv = np.arange(cfg.levels)
        owners, sides, prices, qtys, markets = [], [], [], [], []
        for m, spec in enumerate(venue.markets):
            fair = model.spot_ticks(m)  # makers hedge on spot: they see the real index
            inv = venue.exposure_cash(venue.ledger.qty[accounts, m], m, fair)  # cash, signed
            limit = cfg.inventory_limit * np.clip(equity, 0, None) * cfg.leverage
            skew = np.clip(inv / np.maximum(limit, 1), -1, 1)
            half = cfg.half_spread + cfg.spread_vol_multiplier * vol[m]
            size_quote = cfg.level_notional * np.exp(-cfg.vol_sensitivity * vol[m]) * (1 - withdraw)
            base_lots = size_quote / spec.lot_quote(fair)
            # inventory skews size, not price: every maker quotes the same ladder, so makers
            # never cross each other, and the side that adds to inventory thins to nothing
            bid_lots = np.floor(base_lots * np.where(alive, 1 - np.clip(skew, 0, 1), 0)).astype(np.int64)
            ask_lots = np.floor(base_lots * np.where(alive, 1 - np.clip(-skew, 0, 1), 0)).astype(np.int64)
            offs = half + lv * cfg.level_spacing
            bid = np.floor(fair * (1 - offs)).astype(np.int64)
            ask = np.maximum(np.ceil(fair * (1 + offs)).astype(np.int64), bid[0] + 1)
            for side, px, size in ((BUY, bid, bid_lots), (SELL, ask, ask_lots)):
                q = np.broadcast_to(size[:, None], (len(accounts), len(px)))
                ok = q > 0
                owners.append(np.broadcast_to(accounts[:, None], q.shape)[ok])
                sides.append(np.full(int(ok.sum()), side))
                prices.append(np.broadcast_to(px[None, :], q.shape)[ok])
                qtys.append(q[ok])
                markets.append(np.full(int(ok.sum()), m))
        if not owners:
            return
        owners, sides, prices, qtys, markets = map(np.concatenate, (owners, sides, prices, qtys, markets))
        for m in range(venue.n_markets):
            k = markets == m
            venue.post_quotes(m, owners[k], sides[k], prices[k], qtys[k])


def _kernels():
    """The compiled ladder (``agents._nb_makers``), or None without numba."""
    return kernels.load("agents._nb_makers")
