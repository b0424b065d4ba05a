"""``book``: close a case's positions into the order book with IOC orders.

Self-contained: imports only ``simulator.venue`` helpers and ``waterfall.base``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.venue.book import BUY, SELL
from simulator.venue.margin import bankruptcy_prices
from simulator.venue.waterfall.base import Cases, Stage


@dataclass
class BookStage(Stage):
    """Close into the order book with IOC orders.

    Args:
        partial: close only enough to get back above maintenance (plus ``partial_buffer``).
        price_band: worst fill allowed, as a fraction away from mark (None: no band).
        limit_at_bankruptcy: never fill worse than the bankruptcy price (BitMEX, Bybit,
            Binance place the liquidation order at the bankruptcy price).
    """

    name: ClassVar[str] = "book"
    partial: bool = False
    partial_buffer: float = 0.1
    price_band: float | None = None
    limit_at_bankruptcy: bool = False

    def run(self, venue, cases: Cases) -> None:
        led = venue.ledger
        if self.partial:
            eq = venue.equity()[cases.accounts].astype(float)
            mm = venue.maintenance()[cases.accounts].sum(axis=1).astype(float)
            frac = np.where(eq > 0, np.clip(1 - eq / np.maximum(mm, 1) + self.partial_buffer, 0, 1), 1.0)
        else:
            frac = np.ones(len(cases.accounts))
        for m in range(venue.n_markets):
            sel = np.flatnonzero(led.qty[cases.accounts, m] != 0)
            if len(sel) == 0:
                continue
            acc = cases.accounts[sel]
            q = led.qty[acc, m]
            size = np.minimum(np.ceil(np.abs(q) * frac[sel]).astype(np.int64), np.abs(q))
            sides = np.where(q > 0, SELL, BUY)
            p_b = bankruptcy_prices(led, venue.marks, acc, m)
            mark = float(venue.marks[m])
            band = np.inf if self.price_band is None else self.price_band
            limit = np.where(sides == SELL, mark * (1 - band), mark * (1 + band))
            if self.limit_at_bankruptcy:
                limit = np.where(sides == SELL, np.maximum(limit, np.ceil(p_b)), np.minimum(limit, np.floor(p_b)))
            limit = np.where(sides == SELL, np.clip(limit, 0, None), np.clip(limit, None, 2**62))
            # whole ticks inside the band: a sell limit rounds up, a buy limit down
            limit = np.where(sides == SELL, np.ceil(limit), np.floor(limit))
            limit = np.nan_to_num(limit, nan=0.0, posinf=2**62).astype(np.int64)
            fills = venue.books[m].submit(acc, sides, size, limit)
            venue.settle(m, fills, fees=False)
            if len(fills):
                filled = np.zeros(len(acc), dtype=np.int64)
                value = np.zeros(len(acc), dtype=np.int64)
                np.add.at(filled, fills.order_index, fills.qty)
                np.add.at(value, fills.order_index, fills.qty * fills.price)
                hit = filled > 0
                cases.liquidated_notional[sel[hit]] += value[hit] * venue.contract_values[m]
                venue.events.add(
                    "liquidation", amount=0, stage=self.name, account=acc[hit], market=m,
                    qty=filled[hit] * sides[hit], price=value[hit] / filled[hit], bankruptcy_price=p_b[hit],
                )
        if self.partial:
            back = venue.equity()[cases.accounts] >= venue.maintenance()[cases.accounts].sum(axis=1)
            cases.restored |= cases.open(venue) & back
        cases.record_outcome(venue, self.name)
