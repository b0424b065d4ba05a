"""What a position is worth in the ledger's cash: linear or inverse (coin-margined) contracts.

Every money computation that values lots at a price goes through this module (ledger, margin,
funding, fees, waterfall, the compiled kernels' inputs), so a market's settlement is decided in
one place. Prices are integer ticks, cash is the ledger's integer unit, ``cv`` is the market's
integer contract constant.

* **linear** (USD-margined, e.g. Binance BTCUSDT): one lot is ``lot_size`` of the base asset,
  cash is the quote currency. A position's value is ``V(q, P) = q * P * cv`` with
  ``cv = lot_size * tick_size / cash_unit``.
* **inverse** (coin-margined, e.g. BitMEX XBTUSD: one contract = 1 USD, margin and PnL in BTC):
  one lot is ``lot_size`` units of the quote currency (the contract's USD face value) and cash
  is the settlement coin (1 cash unit = 1e-8 coin, a satoshi). A long of ``q`` contracts owes
  ``q * lot_size`` USD worth of coin at ``P``: ``V(q, P) = -q * K / P`` with
  ``K = lot_size / (tick_size * cash_unit)`` (for XBTUSD with a 0.5 USD tick, 2e8). Then
  ``cost = V(q, entry)`` and the unrealised PnL ``V(q, mark) - cost = q * K * (1/entry -
  1/mark)``, BitMEX's inverse PnL ``contracts * multiplier * (1/entry - 1/exit)``.

Rounding (inverse): every value is ``-sign(q) * floor(|q| * K / P)`` (the magnitude floored,
BitMEX's per-execution rounding of the cost in satoshis). A fill's value is computed once and
applied with opposite signs to its two sides, so trading never creates or destroys a satoshi.
The same rounding values a position at the mark, so closing a whole position at the mark
realises exactly its equity at mark. Per-account mark values are rounded, so the sum over
accounts of ``V(q_a, M)`` is not ``V(sum q_a, M)``; the conservation identity values each
market's *net* position instead (``Ledger.conservation_residual``), which is 0 because
``sum(qty) == 0`` per market.

Exact: ``floor(|q| K / P)`` is ``muldiv(|q|, K, P)``, whose widest product is ``P * K`` (below
2**63 for any real price and contract, checked by ``check_inverse_range``).
"""

from __future__ import annotations

import numpy as np

from simulator.venue.fixedpoint import muldiv

SETTLEMENTS = ("linear", "inverse")
INT64_MAX = 2**63 - 1


def inverse_exposure(qty, prices, k):
    """``sign(q) * floor(|q| * K / P)``: the signed coin value of ``q`` inverse contracts at ``P``
    ticks (long positive), exact int64; broadcasts."""
    qty = np.asarray(qty, dtype=np.int64)
    return np.sign(qty) * muldiv(np.abs(qty), np.asarray(k, dtype=np.int64), np.asarray(prices, dtype=np.int64))


def exposure(qty, prices, cv, inverse=None) -> np.ndarray:
    """Signed notional of ``qty[A, M]`` lots at ``prices[M]`` (long positive), int64 cash.

    Linear ``q * P * cv``; inverse ``sign(q) * floor(|q| K / P)``. ``inverse`` is a per-market
    boolean mask (None: every market linear).
    """
    prices = np.asarray(prices, dtype=np.int64)
    cv = np.asarray(cv)
    out = qty * (prices * cv)[None, :]
    if inverse is not None and inverse.any():
        out[:, inverse] = inverse_exposure(qty[:, inverse], prices[inverse][None, :], cv[inverse][None, :])
    return out


def value(qty, prices, cv, inverse=None) -> np.ndarray:
    """Signed value ``V(q, P)`` of ``qty[A, M]`` at ``prices[M]`` (what ``cost`` holds at entry),
    int64 cash: the exposure for linear markets, minus it for inverse ones."""
    out = exposure(qty, prices, cv, inverse)
    if inverse is not None and inverse.any():
        out[:, inverse] = -out[:, inverse]
    return out


def fill_values(qty, price, cv: int, inverse: bool) -> np.ndarray:
    """The buyer's ``V`` of fills of ``qty`` lots at ``price`` ticks in one market (the seller's is
    its negative): ``q * P * cv`` or ``-floor(q * K / P)``, int64."""
    if inverse:
        return -muldiv(np.asarray(qty, dtype=np.int64), int(cv), np.asarray(price, dtype=np.int64))
    return qty * price * cv


def fill_notional(qty, price, cv: int, inverse: bool) -> np.ndarray:
    """``|V|`` of fills (what fees are charged on), int64."""
    if inverse:
        return muldiv(np.asarray(qty, dtype=np.int64), int(cv), np.asarray(price, dtype=np.int64))
    return qty * price * cv


def exposure_float(lots, price, cv, inverse: bool):
    """Float signed notional of ``lots`` at ``price`` ticks, for agents' sizing (not settlement):
    ``lots * price * cv`` (evaluated left to right) or ``lots * K / price``."""
    if inverse:
        return lots * cv / price
    return lots * price * cv


def entry_prices(qty, cost, cv, inverse=None) -> np.ndarray:
    """Entry price in ticks per account and market (float, NaN where flat):
    linear ``cost / (q cv)``, inverse ``-q K / cost``."""
    cv = np.asarray(cv)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(qty != 0, cost / (qty * cv), np.nan)
        if inverse is not None and inverse.any():
            q, c = qty[:, inverse], cost[:, inverse]
            out[:, inverse] = np.where(q != 0, -q * cv[inverse].astype(float) / c, np.nan)
    return out


def check_inverse_range(k: int, max_price_ticks: float, name: str = "market") -> None:
    """Raise ``ValueError`` unless ``P * K`` fits int64 up to ``max_price_ticks`` (the widest
    product of the exact inverse division)."""
    if k * max_price_ticks >= INT64_MAX:
        raise ValueError(f"{name}: inverse contract constant K = {k} times a price of {max_price_ticks:g} ticks "
                         f"overflows int64; use a larger tick or a smaller contract")
