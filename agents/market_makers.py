"""Market makers: a quote ladder around a reservation price that thins out as volatility and
inventory grow.

Liquidity withdrawal is what turns a drop into a cascade: each step every maker cancels and
re-quotes; its half spread widens with realised volatility, its size per level shrinks as
``exp(-vol_sensitivity * vol)`` and with any scripted withdrawal. Inventory moves the ladder and
thins one side (Avellaneda–Stoikov's reservation price, in its simplest linear form): with
``skew = inventory / limit`` clipped to [-1, 1], the ladder is centred on
``r = fair * (1 - inventory_skew * skew)``, so a long maker lowers both its bid and its ask
(it sells cheaper to unload, buys only at a discount), and the side that adds to inventory
shrinks to ``limit_quote_share`` of its size at the limit instead of vanishing. With
``inventory_skew = 0`` and ``limit_quote_share = 0`` the ladder is centred on the index and the
adding side is not quoted at the limit. Makers carry margin and can be liquidated.
"""

from __future__ import annotations

import numpy as np

from agents.account import AccountAgent
from simulator.venue import kernels
from simulator.venue.book import BUY, SELL


class MarketMaker(AccountAgent):
    """One market maker; ``step_all`` quotes for all makers in one pass per market."""

    @classmethod
    def step_all(cls, model, also_cancel=None) -> None:
        """Cancel and re-quote every maker's ladder: the compiled ladder (``agents/_nb_makers``),
        bit for bit the quotes of ``step_all_reference``.

        ``also_cancel``: other accounts whose resting orders are pulled first too (the
        arbitrageurs' stale basis quotes, so that none blocks a maker's post-only order). On a
        one-market venue the cancel and the new ladder are one compiled call
        (``Venue.requote``); equity does not depend on the book, so it is the same ladder.
        """
        k = _kernels()
        if k is None:
            return cls.step_all_reference(model, also_cancel)
        cfg = model.maker_config
        accounts = model.maker_accounts
        venue = model.venue
        if len(accounts) == 0:
            if also_cancel is not None:
                venue.cancel_orders(also_cancel)
            return
        cancel = accounts if also_cancel is None else _cancel_rows(model, accounts, also_cancel)
        if venue.n_markets == 1:  # cancel, equity, ladder and post: one compiled call
            fair, base_lots, half = _market_scalars(model, 0)
            venue.requote_by(0, cancel, k.requote_ladder, (
                accounts, 0, fair, float(cfg.inventory_limit), float(cfg.leverage), base_lots, half,
                float(cfg.level_spacing), int(cfg.levels), float(cfg.inventory_skew), float(cfg.limit_quote_share)))
            return
        venue.cancel_orders(cancel)
        equity = venue.equity(accounts)
        for m in range(venue.n_markets):
            fair, base_lots, half = _market_scalars(model, m)
            owners, sides, prices, lots = k.maker_ladder(
                accounts, equity, venue.ledger.qty, m, fair, int(venue.contract_values[m]),
                float(cfg.inventory_limit), float(cfg.leverage), base_lots, half, float(cfg.level_spacing),
                int(cfg.levels), bool(venue.inverse[m]), float(cfg.inventory_skew), float(cfg.limit_quote_share))
            if len(lots):
                venue.post_quotes(m, owners, sides, prices, lots)

    @classmethod
    def step_all_reference(cls, model, also_cancel=None) -> None:
        """``step_all`` in numpy only (the reference the compiled ladder is tested against):
        ``also_cancel``'s orders are cancelled, then the makers'."""
        cfg = model.maker_config  # capital and depth scaled to the population
        accounts = model.maker_accounts
        venue = model.venue
        if also_cancel is not None:
            venue.cancel_orders(also_cancel)
        if len(accounts) == 0:
            return
        venue.cancel_orders(accounts)
        equity = venue.equity(accounts)
        for m in range(venue.n_markets):
            fair, base_lots, half = _market_scalars(model, m)
            inv = venue.exposure_cash(venue.ledger.qty[accounts, m], m, fair)  # cash, signed
            owners, sides, prices, lots = ladder(
                accounts, equity, inv, fair, cfg.inventory_limit, cfg.leverage, base_lots, half, cfg.level_spacing,
                cfg.levels, cfg.inventory_skew, cfg.limit_quote_share)
            if len(lots):
                venue.post_quotes(m, owners, sides, prices, lots)


def _cancel_rows(model, accounts, also_cancel) -> np.ndarray:
    """The makers' rows and ``also_cancel`` in one int64 array (kept on the model while the
    two arrays stay the same objects)."""
    key = (id(accounts), id(also_cancel))
    cached = getattr(model, "_maker_cancel_rows", None)
    if cached is None or cached[0] != key:
        rows = np.concatenate([np.asarray(accounts, dtype=np.int64), np.asarray(also_cancel, dtype=np.int64)])
        cached = model._maker_cancel_rows = (key, rows)
    return cached[1]


def _market_scalars(model, m: int) -> tuple[float, float, float]:
    """(fair price in ticks, lots per level, half spread) of market ``m`` this step: the same
    numpy arithmetic for the compiled and the reference ladder."""
    cfg = model.maker_config
    spec = model.venue.markets[m]
    fair = model.spot_ticks(m)  # makers hedge on spot: they see the real index
    vol = model.realised_vol()[m]
    half = cfg.half_spread + cfg.spread_vol_multiplier * vol
    size_quote = cfg.level_notional * np.exp(-cfg.vol_sensitivity * vol) * (1 - model.liquidity_withdrawn())
    return float(fair), float(size_quote / spec.lot_quote(fair)), float(half)


def ladder(accounts, equity, inventory, fair, inventory_limit, leverage, base_lots, half, spacing, levels,
           inventory_skew, limit_quote_share):
    """The makers' quotes in one market, in numpy.

    Args:
        accounts, equity: the makers' ledger rows and equity (cash units).
        inventory: each maker's signed inventory in cash (``Venue.exposure_cash``).
        fair: the index in ticks. base_lots: lots per level before inventory. half, spacing:
            the near level's distance and the distance between levels (fractions).
        inventory_limit, leverage: the inventory limit is ``inventory_limit * equity * leverage``.
        inventory_skew: how far the reservation price moves at the limit (fraction of fair).
        limit_quote_share: share of ``base_lots`` still quoted on the adding side at the limit.

    Returns:
        (owners, sides, prices, lots): all bids, maker by maker and near to far, then all asks;
        sides without size are left out.
    """
    equity = np.asarray(equity)
    alive = equity > 0
    limit = inventory_limit * np.clip(equity, 0, None) * leverage
    skew = np.clip(inventory / np.maximum(limit, 1), -1, 1)
    r = fair * (1 - inventory_skew * skew)  # the reservation price: below fair when long
    keep = 1 - limit_quote_share  # the share of size the limit takes off the adding side
    bid_lots = np.floor(base_lots * np.where(alive, 1 - np.clip(skew, 0, 1) * keep, 0)).astype(np.int64)
    ask_lots = np.floor(base_lots * np.where(alive, 1 - np.clip(-skew, 0, 1) * keep, 0)).astype(np.int64)
    offs = half + np.arange(levels) * spacing
    bid = np.floor(r[:, None] * (1 - offs[None, :])).astype(np.int64)
    ask = np.maximum(np.ceil(r[:, None] * (1 + offs[None, :])).astype(np.int64), bid[:, :1] + 1)
    owners, sides, prices, lots = [], [], [], []
    for side, px, size in ((BUY, bid, bid_lots), (SELL, ask, ask_lots)):
        q = np.broadcast_to(size[:, None], px.shape)
        ok = q > 0
        owners.append(np.broadcast_to(np.asarray(accounts)[:, None], q.shape)[ok])
        sides.append(np.full(int(ok.sum()), side, dtype=np.int64))
        prices.append(px[ok])
        lots.append(q[ok])
    return tuple(np.concatenate(a).astype(np.int64) for a in (owners, sides, prices, lots))


def _kernels():
    """The compiled ladder (``agents._nb_makers``), or None without numba."""
    return kernels.load("agents._nb_makers")
