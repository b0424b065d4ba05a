"""Market specification: tick, lot, fees, leverage cap and maintenance tiers of one perp."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.venue.margin import MarginTiers


@dataclass(frozen=True)
class MarketSpec:
    """One linear perpetual market.

    Args:
        name: symbol, e.g. ``"BTC-PERP"``.
        tick_size: quote currency per tick (price granularity).
        lot_size: base units per lot (size granularity).
        cash_unit: quote currency per ledger cash unit (1e-6 = micro-USD).
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

    @property
    def contract_value(self) -> int:
        """Cash units per lot per tick; must be a whole number."""
        cv = self.lot_size * self.tick_size / self.cash_unit
        if cv < 1 or abs(cv - round(cv)) > 1e-9 * cv:
            raise ValueError(
                f"{self.name}: lot_size * tick_size / cash_unit = {cv} must be a whole number >= 1"
            )
        return int(round(cv))

    def to_ticks(self, price) -> np.ndarray:
        return np.maximum(np.round(np.asarray(price, dtype=float) / self.tick_size), 1).astype(np.int64)

    def to_price(self, ticks):
        return np.asarray(ticks, dtype=float) * self.tick_size

    def to_lots(self, base_qty) -> np.ndarray:
        return np.round(np.asarray(base_qty, dtype=float) / self.lot_size).astype(np.int64)

    def cash(self, quote_amount) -> np.ndarray:
        """Quote currency (e.g. USD) to ledger cash units."""
        return np.round(np.asarray(quote_amount, dtype=float) / self.cash_unit).astype(np.int64)
