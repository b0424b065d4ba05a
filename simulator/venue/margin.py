"""Margin: notional, initial and tiered maintenance margin, bankruptcy and liquidation prices.

All functions take whole ledger arrays and return arrays: one numpy pass per check.
Money results are exact int64 cash units; prices are float ticks (reported, not settled).

Tiered maintenance margin (DESIGN.md §3), the form Binance and Hyperliquid publish:
``MM = N * mmr_t - deduction_t`` for the tier ``t`` whose floor is the largest ``<= N``, with
``deduction_t = deduction_{t-1} + floor_t * (mmr_t - mmr_{t-1})``, which makes MM continuous
across tier boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from simulator.venue import settlement
from simulator.venue.fixedpoint import PPM, muldiv, muldiv_ceil


@dataclass(frozen=True)
class MarginTiers:
    """Maintenance tiers for one market.

    Args:
        floors: notional floor of each tier in cash units, ascending, first 0.
        mmr_ppm: maintenance margin rate of each tier in parts per million, non-decreasing.
    """

    floors: tuple[int, ...] = (0,)
    mmr_ppm: tuple[int, ...] = (5_000,)

    def __post_init__(self):
        if len(self.floors) != len(self.mmr_ppm) or not self.floors:
            raise ValueError("floors and mmr_ppm must have the same, non-zero length")
        if self.floors[0] != 0 or any(b <= a for a, b in zip(self.floors, self.floors[1:])):
            raise ValueError("floors must start at 0 and increase")
        if any(r <= 0 or r >= PPM for r in self.mmr_ppm) or any(b < a for a, b in zip(self.mmr_ppm, self.mmr_ppm[1:])):
            raise ValueError("mmr_ppm must be in (0, 1e6) and non-decreasing")

    @cached_property
    def deductions(self) -> np.ndarray:
        """Deduction per tier in cash units (floored to whole units); read-only."""
        d = [0]
        for t in range(1, len(self.floors)):
            d.append(d[-1] + int(muldiv(self.floors[t], self.mmr_ppm[t] - self.mmr_ppm[t - 1], PPM)))
        out = np.array(d, dtype=np.int64)
        out.flags.writeable = False
        return out

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(floors, rates) as int64 arrays, made once."""
        return np.asarray(self.floors, dtype=np.int64), np.asarray(self.mmr_ppm, dtype=np.int64)

    def maintenance(self, notional) -> np.ndarray:
        """Maintenance margin for non-negative notionals (cash units), int64, rounded up."""
        notional = np.asarray(notional, dtype=np.int64)
        floors, rates = self._arrays
        tier = np.searchsorted(floors, notional, side="right") - 1
        return muldiv_ceil(notional, rates[tier], PPM) - self.deductions[tier]

    def rate_at(self, notional) -> np.ndarray:
        tier = np.searchsorted(np.asarray(self.floors, dtype=np.int64), np.asarray(notional), side="right") - 1
        return np.asarray(self.mmr_ppm, dtype=np.int64)[tier]


def notional(qty, marks, contract_values, inverse=None) -> np.ndarray:
    """``|V(qty, mark)|`` per account and market, int64 cash units: linear ``|qty| * mark * cv``,
    inverse ``floor(|qty| K / mark)`` (``inverse``: per-market mask; None: all linear)."""
    if inverse is not None and inverse.any():
        return np.abs(settlement.exposure(qty, marks, contract_values, inverse))
    return np.abs(qty) * (np.asarray(marks, dtype=np.int64) * np.asarray(contract_values))[None, :]


def maintenance_margin(qty, marks, contract_values, tiers: list[MarginTiers], inverse=None) -> np.ndarray:
    """Maintenance margin per account and market, int64."""
    n = notional(qty, marks, contract_values, inverse)
    return np.stack([tiers[m].maintenance(n[:, m]) for m in range(n.shape[1])], axis=1)


def initial_margin(qty, marks, contract_values, leverage, inverse=None) -> np.ndarray:
    """``N / leverage`` per account and market, rounded up; ``leverage`` broadcasts [A, M]."""
    n = notional(qty, marks, contract_values, inverse)
    lev_ppm = np.round(np.asarray(leverage, dtype=float) * PPM).astype(np.int64)
    return _ceil_div_lev(n, np.broadcast_to(np.maximum(lev_ppm, 1), n.shape))


def _ceil_div_lev(n, lev_ppm):
    # exact ceil(n * 1e6 / lev_ppm) elementwise; lev_ppm varies per element
    q, r = np.divmod(n, lev_ppm)
    return q * PPM + -((-(r * PPM)) // lev_ppm)


def below_maintenance(equity, mm) -> np.ndarray:
    """Cross margin trigger: ``equity < sum_m MM_m`` for accounts with a position."""
    total = mm.sum(axis=1)
    return (equity < total) & (total > 0)


def bankruptcy_price(ledger, marks, account: int, market: int) -> float:
    """Mark (ticks) of ``market`` at which ``account``'s equity is exactly zero.

    Other markets held at their marks (``other`` = wallet + their unrealised PnL). Linear:
    ``other + q P cv - cost = 0``, ``P_b = (cost - other) / (q cv)``. Inverse:
    ``other - q K / P - cost = 0``, ``P_b = q K / (other - cost)``; an isolated long of
    leverage ``L`` entered at ``E`` (``other = |cost| / L``, ``cost = -q K / E``) goes bankrupt
    at ``E / (1 + 1/L)``, a short at ``E / (1 - 1/L)`` (BitMEX's inverse formulas).
    """
    return float(bankruptcy_prices(ledger, marks, np.array([account]), market)[0])


def bankruptcy_prices(ledger, marks, accounts, market: int) -> np.ndarray:
    """Vectorised ``bankruptcy_price`` for many accounts in one market (NaN where flat, and for
    an inverse position that no price can bankrupt)."""
    accounts = np.asarray(accounts, dtype=np.int64)
    u = ledger.unrealised_of(marks, accounts)
    q = ledger.qty[accounts, market]
    other = ledger.wallet[accounts] + u.sum(axis=1) - u[:, market]
    with np.errstate(divide="ignore", invalid="ignore"):
        if ledger.inverse[market]:
            p = q.astype(float) * float(ledger.contract_values[market]) / (other - ledger.cost[accounts, market])
            return np.where((q != 0) & (p > 0), p, np.nan)
        return np.where(q != 0, (ledger.cost[accounts, market] - other) / (q * ledger.contract_values[market]), np.nan)


def liquidation_price(ledger, marks, account: int, market: int, tiers: MarginTiers) -> float:
    """Mark at which equity equals maintenance margin for this position (others held at mark).

    Linear: solves ``other + q*P*cv - cost = |q|*P*cv*mmr - deduction`` in the tier that contains
    the solution (tiers are scanned; the solution's notional must fall in its tier). Inverse
    (notional ``|q| K / P``): ``other - q K / P - cost = |q| K mmr / P - deduction``, so
    ``P = (q + |q| mmr) K / (other - cost + deduction)``; isolated at leverage ``L`` from ``E``:
    long ``E (1 + mmr) / (1 + 1/L)``, short ``E (1 - mmr) / (1 - 1/L)``.
    """
    q = int(ledger.qty[account, market])
    if q == 0:
        return float("nan")
    if ledger.inverse[market]:
        mm = np.zeros((1, ledger.n_markets), dtype=np.int64)
        return float(liquidation_prices(ledger, marks, [account], market, {market: tiers}, mm)[0])
    cv = int(ledger.contract_values[market])
    u = ledger.unrealised_of(marks, [account])[0]
    other = int(ledger.wallet[account]) + int(u.sum()) - int(u[market])
    cost = int(ledger.cost[account, market])
    deductions = tiers.deductions
    sign = 1 if q > 0 else -1
    for t in range(len(tiers.floors)):
        r = tiers.mmr_ppm[t] / PPM
        denom = q * cv - sign * q * cv * r  # (q - |q| r) * cv
        price = (cost - other - deductions[t]) / denom
        n = abs(q) * price * cv
        upper = tiers.floors[t + 1] if t + 1 < len(tiers.floors) else float("inf")
        if tiers.floors[t] <= n < upper:
            return float(price)
    return float("nan")


def liquidation_prices(ledger, marks, accounts, market: int, tiers, mm) -> np.ndarray:
    """Vectorised liquidation price of ``accounts`` in ``market``: the mark at which cross
    equity equals total maintenance margin, the other markets held at their marks (their
    maintenance ``mm[:, other]`` fixed). NaN where flat or where no tier holds a solution."""
    accounts = np.asarray(accounts, dtype=np.int64)
    q = ledger.qty[accounts, market].astype(float)
    cv = float(ledger.contract_values[market])
    u = ledger.unrealised_of(marks, accounts)
    other = (ledger.wallet[accounts] + u.sum(axis=1) - u[:, market]).astype(float)
    mm_other = (np.asarray(mm).sum(axis=1) - np.asarray(mm)[:, market]).astype(float)
    cost = ledger.cost[accounts, market].astype(float)
    t = tiers[market]
    inverse = bool(ledger.inverse[market])
    # every tier at once (rows), element by element the operations of a tier-by-tier loop; each
    # account takes the first tier whose solution lies inside it
    floors, rates = t._arrays
    r = (rates / PPM)[:, None]
    ded = t.deductions[:, None]
    lower = floors[:, None]
    upper = np.append(floors[1:].astype(float), np.inf)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if inverse:
            price = (q + np.abs(q) * r) * cv / (other - cost + ded - mm_other)
            n = np.abs(q) * cv / price
        else:
            denom = (q - np.abs(q) * r) * cv
            price = (cost - other + mm_other - ded) / denom
            n = np.abs(q) * price * cv
    ok = (q != 0) & (price > 0) & (n >= lower) & (n < upper)
    first = ok.argmax(axis=0)
    cols = np.arange(len(accounts))
    return np.where(ok[first, cols], price[first, cols], np.nan)
