"""Market specification: tick, lot, fees, leverage cap and maintenance tiers of one perp."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.venue.margin import MarginTiers
from simulator.venue.settlement import SETTLEMENTS


@dataclass(frozen=True)
class MarketSpec:
    """One perpetual market, linear or inverse (``simulator.venue.settlement``).

    Args:
        name: symbol, e.g. ``"BTC-PERP"``.
        tick_size: quote currency per tick (price granularity).
        lot_size: linear: base units per lot; inverse: the contract's face value in the quote
            currency (BitMEX XBTUSD: 1 USD per contract).
        cash_unit: linear: quote currency per ledger cash unit (1e-6 = micro-USD); inverse:
            settlement coin per cash unit (1e-8 = one satoshi).
        settlement: ``linear`` (value ``q P cv``) or ``inverse`` (value ``-q K / P``).
        quote_per_coin: inverse only: quote currency per settlement coin used by ``cash`` to
            convert quote amounts (capital, fund, tier floors) to coin, once; the world sets
            it to the opening index price.
        max_leverage: the venue's leverage cap for initial margin.
        taker_fee_ppm, maker_fee_ppm: trading fees in parts per million of notional.
        tiers: maintenance margin tiers (floors in cash units).
    """

    name: str = "BTC-PERP"
    tick_size: float = 0.1
    lot_size: float = 0.001
    cash_unit: float = 1e-6
    max_leverage: float = 50.0
    taker_fee_ppm: int = 450
    maker_fee_ppm: int = 150
    tiers: MarginTiers = field(default_factory=MarginTiers)
    settlement: str = "linear"
    quote_per_coin: float = 1.0

    def __post_init__(self):
        if self.settlement not in SETTLEMENTS:
            raise ValueError(f"{self.name}: settlement {self.settlement!r}; allowed: {SETTLEMENTS}")

    @property
    def inverse(self) -> bool:
        return self.settlement == "inverse"

    @property
    def contract_value(self) -> int:
        """The market's integer contract constant; must be a whole number.

        Linear: cash units per lot per tick, ``cv = lot_size * tick_size / cash_unit``.
        Inverse: ``K = lot_size / (tick_size * cash_unit)``, so that ``q`` contracts at ``P``
        ticks are worth ``q * K / P`` cash units of the coin.
        """
        if self.inverse:
            cv, formula = self.lot_size / (self.tick_size * self.cash_unit), "lot_size / (tick_size * cash_unit)"
        else:
            cv, formula = self.lot_size * self.tick_size / self.cash_unit, "lot_size * tick_size / cash_unit"
        # inverse: K is ~1e8 or more, so a whole number means to well under a unit
        tolerance = 1e-6 + 1e-13 * cv if self.inverse else 1e-9 * cv
        if cv < 1 or abs(cv - round(cv)) > tolerance:
            raise ValueError(f"{self.name}: {formula} = {cv} must be a whole number >= 1")
        return int(round(cv))

    @property
    def cash_per_quote(self) -> float:
        """Ledger cash units per unit of the quote currency (inverse: at ``quote_per_coin``)."""
        if self.inverse:
            return 1 / (self.cash_unit * self.quote_per_coin)
        return 1 / self.cash_unit

    def lot_quote(self, price_ticks):
        """Quote-currency value of one lot at ``price_ticks`` (linear ``lot_size * P * tick``;
        inverse: the contract's face value ``lot_size``, whatever the price)."""
        if self.inverse:
            return self.lot_size + 0 * np.asarray(price_ticks, dtype=float)
        return self.lot_size * price_ticks * self.tick_size

    def lots_for_quote(self, quote, price_ticks) -> np.ndarray:
        """Whole lots (rounded) worth ``quote`` in the quote currency at ``price_ticks``."""
        if type(quote) in _SCALARS and type(price_ticks) in _SCALARS and not self.inverse:
            # one agent's size per step: the same float operations, rounded half to even like np.round
            return np.int64(round(float(quote) / (float(price_ticks) * self.tick_size) / self.lot_size))
        if self.inverse:
            return np.round(np.asarray(quote, dtype=float) / self.lot_size + 0 * np.asarray(price_ticks)).astype(np.int64)
        return self.to_lots(np.asarray(quote, dtype=float) / (price_ticks * self.tick_size))

    def to_ticks(self, price) -> np.ndarray:
        return np.maximum(np.round(np.asarray(price, dtype=float) / self.tick_size), 1).astype(np.int64)

    def to_price(self, ticks):
        return np.asarray(ticks, dtype=float) * self.tick_size

    def to_lots(self, base_qty) -> np.ndarray:
        return np.round(np.asarray(base_qty, dtype=float) / self.lot_size).astype(np.int64)

    def cash(self, quote_amount) -> np.ndarray:
        """Quote-currency amounts (e.g. USD) to ledger cash units; an inverse market converts them
        to its coin at ``quote_per_coin`` first."""
        if self.inverse:
            quote_amount = np.asarray(quote_amount, dtype=float) / self.quote_per_coin
        return np.round(np.asarray(quote_amount, dtype=float) / self.cash_unit).astype(np.int64)


_SCALARS = (int, float, np.float64, np.int64)
