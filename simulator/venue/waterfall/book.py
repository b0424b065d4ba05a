"""``book``: close the cases into the order book with IOC orders (every venue)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from simulator.venue.book import BUY, SELL
from simulator.venue.margin import bankruptcy_prices, liquidation_prices
from simulator.venue.settlement import fill_notional
from simulator.venue.waterfall.stage import Stage


@dataclass
class BookStage(Stage):
    """Close into the order book with IOC orders.

    Args:
        partial: close only enough to get back above maintenance (plus ``partial_buffer``);
            a case brought back above maintenance is *restored* and later stages leave it.
        price_band: worst fill allowed, as a fraction away from mark (None: no band).
        limit_at_bankruptcy: never fill worse than the bankruptcy price (BitMEX, Bybit and
            Binance place the liquidation order at the bankruptcy price).
        slice_share: Hyperliquid's partial liquidation: a position worth more than
            ``slice_above`` at mark is liquidated ``slice_share`` of it at a time (None: off).
        slice_above: cash value of a position above which it is sliced.
        slice_cooldown_seconds: after a slice, the account's liquidation orders are for the
            whole position for this long. A step is one block of the venue's clock: an account
            sliced in this step is not sent to the book again until the next step (later stages
            may still take it), so the slice leaves the market one step to absorb it.
    """

    name: ClassVar[str] = "book"
    partial: bool = False
    partial_buffer: float = 0.1
    price_band: float | None = None
    limit_at_bankruptcy: bool = False
    slice_share: float | None = None
    slice_above: int = 0
    slice_cooldown_seconds: float = 30.0
    _sliced_at: dict = field(default_factory=dict, repr=False)

    def close(self, venue, cases) -> None:
        led = venue.ledger
        pending = cases.pending(venue)
        if not pending.any():
            return
        slices_done: set[int] = set()  # accounts partially liquidated in this block (any market)
        if self.partial:
            eq = venue.equity(cases.accounts).astype(float)
            mm = venue.maintenance(cases.accounts).sum(axis=1).astype(float)
            frac = np.where(eq > 0, np.clip(1 - eq / np.maximum(mm, 1) + self.partial_buffer, 0, 1), 1.0)
        else:
            frac = np.ones(len(cases.accounts))
        for m in range(venue.n_markets):
            sel = np.flatnonzero(pending & (led.qty[cases.accounts, m] != 0))
            if len(sel) == 0:
                continue
            acc = cases.accounts[sel]
            q = led.qty[acc, m]
            size = np.minimum(np.ceil(np.abs(q) * frac[sel]).astype(np.int64), np.abs(q))
            sliced = np.zeros(len(acc), dtype=bool)
            if self.slice_share is not None:
                size, sliced = self._slice(venue, m, acc, q, size)
                go = size > 0
                if not go.all():
                    sel, acc, q, size, sliced = sel[go], acc[go], q[go], size[go], sliced[go]
                    if len(sel) == 0:
                        continue
            sides = np.where(q > 0, SELL, BUY)
            book = venue.books[m]
            if not ((len(book.bids.qty) and (sides == SELL).any()) or (len(book.asks.qty) and (sides == BUY).any())):
                fills = None  # no order has a resting order to meet: nothing can fill, nothing to price
            else:
                p_b = bankruptcy_prices(led, venue.marks, acc, m)
                p_liq = liquidation_prices(led, venue.marks, acc, m, venue.tiers, venue.maintenance(acc))
                equity = venue.equity(acc)
                limit = self._limits(float(venue.marks[m]), sides, p_b)
                fills = book.submit(acc, sides, size, limit)
                venue.settle(m, fills, fees=False)
            if fills is not None and len(fills):
                filled = np.zeros(len(acc), dtype=np.int64)
                value = np.zeros(len(acc), dtype=np.int64)
                np.add.at(filled, fills.order_index, fills.qty)
                np.add.at(value, fills.order_index, fills.qty * fills.price)
                hit = filled > 0
                slices_done.update(acc[hit & sliced].tolist())
                if venue.inverse[m]:
                    cash = np.zeros(len(acc), dtype=np.int64)
                    np.add.at(cash, fills.order_index,
                              fill_notional(fills.qty, fills.price, int(venue.contract_values[m]), True))
                    cases.liquidated_notional[sel[hit]] += cash[hit]
                else:
                    cases.liquidated_notional[sel[hit]] += value[hit] * venue.contract_values[m]
                venue.events.add(
                    "liquidation", amount=0, stage=self.name, account=acc[hit], market=m,
                    qty=filled[hit] * sides[hit], price=value[hit] / filled[hit], bankruptcy_price=p_b[hit],
                    liquidation_price=p_liq[hit], equity=equity[hit],
                )
            left = led.qty[acc, m] != 0
            if left.any():
                other_side_empty = np.where(sides == SELL, book.best_bid() is None, book.best_ask() is None)
                cases.book_reason[sel[left]] = np.where(other_side_empty[left], "book_exhausted", "price_band")
        for a in slices_done:
            self._sliced_at[a] = venue.time
        if self.partial or self.slice_share is not None:
            back = venue.equity(cases.accounts) >= venue.maintenance(cases.accounts).sum(axis=1)
            cases.restored |= cases.open(venue) & back
        cases.update(venue, self.name, covering=False)
        cases.record_flat(venue, self.name)

    def _slice(self, venue, m: int, acc, q, size) -> tuple[np.ndarray, np.ndarray]:
        """Order sizes under the slice rule: a slice of a large position outside a cooldown, the
        whole position inside one, nothing for an account partially liquidated earlier in this
        step (block). Returns (sizes, mask of the orders that are slices); the cooldown starts
        where a slice fills (``close``)."""
        now = venue.time
        worth = fill_notional(np.abs(q), np.full(len(q), int(venue.marks[m])), int(venue.contract_values[m]),
                              bool(venue.inverse[m]))
        size = size.copy()
        sliced = np.zeros(len(acc), dtype=bool)
        for k, a in enumerate(acc.tolist()):
            since = self._sliced_at.get(a)
            if since is not None and since == now:
                size[k] = 0  # partially liquidated in this block: the next order waits for the next one
            elif since is not None and now - since < self.slice_cooldown_seconds:
                size[k] = abs(int(q[k]))
            elif worth[k] > self.slice_above:
                size[k] = min(size[k], max(1, int(np.ceil(abs(int(q[k])) * self.slice_share))))
                sliced[k] = size[k] < abs(int(q[k]))
        return size, sliced

    def _limits(self, mark: float, sides, p_b) -> np.ndarray:
        """Worst acceptable price per order, whole ticks inside the band."""
        band = np.inf if self.price_band is None else self.price_band
        limit = np.where(sides == SELL, mark * (1 - band), mark * (1 + band))
        if self.limit_at_bankruptcy:
            limit = np.where(sides == SELL, np.maximum(limit, np.ceil(p_b)), np.minimum(limit, np.floor(p_b)))
        limit = np.where(sides == SELL, np.clip(limit, 0, None), np.clip(limit, None, 2**62))
        limit = np.where(sides == SELL, np.ceil(limit), np.floor(limit))  # a sell limit rounds up
        return np.nan_to_num(limit, nan=0.0, posinf=2**62).astype(np.int64)
