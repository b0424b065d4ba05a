"""A limit order book for one market, price-time priority, owners on every order.

Resting orders live in numpy arrays per side, kept in priority order (best price first, then
arrival). Matching a batch of incoming orders is one pass: a scalar scan over the *incoming*
orders decides how many lots each takes (each stops at its limit price), then the lots are
mapped onto the resting queue with ``searchsorted`` on cumulative sizes. So the cost grows with
the number of orders that arrive, never with the number of accounts.

The book knows nothing of money: it returns fills (taker, maker, qty, price) and the venue
settles them on the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.venue import kernels

BUY, SELL = 1, -1
NO_LIMIT_BUY = np.iinfo(np.int64).max
NO_LIMIT_SELL = 0


@dataclass
class Fills:
    """Fills produced by one matching call, in execution order."""

    taker: np.ndarray  # owner account of the incoming order
    maker: np.ndarray  # owner account of the resting order
    taker_side: np.ndarray  # BUY or SELL, the incoming order's side
    qty: np.ndarray
    price: np.ndarray
    order_index: np.ndarray  # index of the incoming order in its batch
    maker_order_id: np.ndarray

    @classmethod
    def empty(cls) -> "Fills":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, z, z, z)

    @classmethod
    def concat(cls, parts: list["Fills"]) -> "Fills":
        parts = [p for p in parts if len(p.qty)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.qty)

    @property
    def buyer(self) -> np.ndarray:
        return np.where(self.taker_side == BUY, self.taker, self.maker)

    @property
    def seller(self) -> np.ndarray:
        return np.where(self.taker_side == BUY, self.maker, self.taker)


class _Side:
    """Resting orders of one side, in priority order."""

    def __init__(self, side: int):
        self.side = side
        z = np.zeros(0, dtype=np.int64)
        self.price, self.qty, self.owner, self.oid = z, z.copy(), z.copy(), z.copy()

    def _priority_key(self, price, oid):
        # bids: highest price first; asks: lowest first; then order id (arrival)
        return (oid, -price if self.side == BUY else price)

    def insert(self, price, qty, owner, oid) -> None:
        k = kernels.book()
        if k is None:
            return self.insert_reference(price, qty, owner, oid)
        i64 = kernels.i64
        self.price, self.qty, self.owner, self.oid = k.insert(
            self.price, self.qty, self.owner, self.oid, i64(price), i64(qty), i64(owner), i64(oid), self.side == BUY)

    def insert_reference(self, price, qty, owner, oid) -> None:
        """``insert`` in numpy: append and re-sort (the reference of the merge kernel)."""
        self.price = np.concatenate([self.price, price])
        self.qty = np.concatenate([self.qty, qty])
        self.owner = np.concatenate([self.owner, owner])
        self.oid = np.concatenate([self.oid, oid])
        order = np.lexsort(self._priority_key(self.price, self.oid))
        self._take(order)

    def _take(self, idx) -> None:
        self.price, self.qty = self.price[idx], self.qty[idx]
        self.owner, self.oid = self.owner[idx], self.oid[idx]

    def remove(self, keep: np.ndarray) -> None:
        self._take(np.flatnonzero(keep))

    def lots_at_or_better(self, limit) -> np.ndarray:
        """Cumulative resting lots an incoming order with ``limit`` may take."""
        cum = np.concatenate([[0], np.cumsum(self.qty)])
        if self.side == SELL:  # asks ascending; a buy with limit L takes asks <= L
            k = np.searchsorted(self.price, limit, side="right")
        else:  # bids descending; a sell with limit L takes bids >= L
            k = np.searchsorted(-self.price, -np.asarray(limit), side="right")
        return cum[k]


class OrderBook:
    """Price-time priority book for one market.

    Prices are integer ticks, sizes integer lots, owners ledger account ids.
    """

    def __init__(self):
        self.bids = _Side(BUY)
        self.asks = _Side(SELL)
        self._next_oid = 0
        #: False: match with the numpy reference, one side after the other (what the compiled
        #: matchers are tested against)
        self.compiled = True

    # ------------------------------------------------------------------ queries
    def best_bid(self) -> int | None:
        return int(self.bids.price[0]) if len(self.bids.price) else None

    def best_ask(self) -> int | None:
        return int(self.asks.price[0]) if len(self.asks.price) else None

    def mid(self) -> float | None:
        bb, ba = self.best_bid(), self.best_ask()
        if bb is None or ba is None:
            return None
        return (bb + ba) / 2

    def depth_within(self, fraction: float, reference: float | None = None) -> tuple[int, int]:
        """Lots resting within ``fraction`` of ``reference`` (default mid): (bid lots, ask lots)."""
        ref = self.mid() if reference is None else reference
        if ref is None:
            ref = self.best_bid() or self.best_ask()
            if ref is None:
                return 0, 0
        k = kernels.book()
        if k is not None:
            b, a = self.bids, self.asks
            bid, ask = k.depth_within(b.price, b.qty, a.price, a.qty, float(ref * (1 - fraction)), float(ref * (1 + fraction)))
            return int(bid), int(ask)
        return self.depth_within_reference(fraction, ref)

    def depth_within_reference(self, fraction: float, reference: float) -> tuple[int, int]:
        """``depth_within`` around ``reference`` in numpy (the reference of the compiled sums)."""
        bid = int(self.bids.qty[self.bids.price >= reference * (1 - fraction)].sum())
        ask = int(self.asks.qty[self.asks.price <= reference * (1 + fraction)].sum())
        return bid, ask

    def orders_of(self, owner: int) -> int:
        return int((self.bids.owner == owner).sum() + (self.asks.owner == owner).sum())

    def resting_lots(self, side: int) -> int:
        return int((self.bids if side == BUY else self.asks).qty.sum())

    # ---------------------------------------------------------------- mutations
    def cancel_owners(self, owners) -> int:
        """Cancel every resting order of the given accounts; returns how many were cancelled."""
        k = kernels.book()
        if k is None:
            return self.cancel_owners_reference(owners)
        owners = kernels.i64_1d(owners)
        b, a = self.bids, self.asks
        if not (len(b.qty) or len(a.qty)):
            return 0
        bid_cols, ask_cols, n = k.cancel_both(b.price, b.qty, b.owner, b.oid, a.price, a.qty, a.owner, a.oid, owners)
        if n:
            b.price, b.qty, b.owner, b.oid = bid_cols
            a.price, a.qty, a.owner, a.oid = ask_cols
        return int(n)

    def cancel_owners_reference(self, owners) -> int:
        """``cancel_owners`` in numpy (the reference of the compiled kernel)."""
        owners = np.atleast_1d(np.asarray(owners, dtype=np.int64))
        n = 0
        for s in (self.bids, self.asks):
            hit = np.isin(s.owner, owners)
            n += int(hit.sum())
            if hit.any():
                s.remove(~hit)
        return n

    def postable(self, sides, prices, qtys) -> np.ndarray:
        """Which of these post-only orders the book would rest (``post`` drops the others):
        positive size and price, and not crossing the book or an order of the same batch
        accepted before it (arrival order)."""
        k = kernels.book()
        if k is None:
            return self.postable_reference(sides, prices, qtys)
        sides, prices, qtys = _arrays(sides, prices, qtys)
        bids, asks = self.bids.price, self.asks.price
        return k.postable(sides, prices, qtys, len(bids) > 0, int(bids[0]) if len(bids) else 0,
                          len(asks) > 0, int(asks[0]) if len(asks) else 0)

    def postable_reference(self, sides, prices, qtys) -> np.ndarray:
        """``postable`` in numpy (the reference of the compiled kernel)."""
        sides, prices, qtys = _arrays(sides, prices, qtys)
        bb, ba = self.best_bid(), self.best_ask()
        crosses = ((sides == BUY) & (ba is not None) & (prices >= (ba or 0))) | (
            (sides == SELL) & (bb is not None) & (prices <= (bb or 0))
        )
        ok = ~crosses & (qtys > 0) & (prices > 0)
        buy_ok, sell_ok = ok & (sides == BUY), ok & (sides == SELL)
        if buy_ok.any() and sell_ok.any() and prices[buy_ok].max() >= prices[sell_ok].min():
            # orders of this batch cross each other: accept in arrival order, each checked
            # against the book plus the batch orders accepted before it
            ok[:] = False
            for i, (side, price, q) in enumerate(zip(sides.tolist(), prices.tolist(), qtys.tolist())):
                if q <= 0 or price <= 0:
                    continue
                if side == BUY and (ba is None or price < ba):
                    ok[i] = True
                    bb = price if bb is None else max(bb, price)
                elif side == SELL and (bb is None or price > bb):
                    ok[i] = True
                    ba = price if ba is None else min(ba, price)
        return ok

    def post(self, owners, sides, prices, qtys) -> np.ndarray:
        """Rest limit orders without matching (post-only); orders that would cross are dropped.

        Returns the order ids (``-1`` for a dropped order). The book checks prices only; the
        venue checks margin first (``Venue.post_quotes``).
        """
        owners, sides, prices, qtys = _arrays(owners, sides, prices, qtys)
        oids = self._next_oid + np.arange(len(qtys), dtype=np.int64)
        self._next_oid += len(qtys)
        ok = self.postable(sides, prices, qtys)
        for side, s in ((BUY, self.bids), (SELL, self.asks)):
            m = ok & (sides == side)
            if m.any():
                s.insert(prices[m], qtys[m], owners[m], oids[m])
        return np.where(ok, oids, -1)

    def resting_lots_of(self, owners) -> tuple[np.ndarray, np.ndarray]:
        """Resting (bid lots, ask lots) of each account in ``owners`` (sorted, unique ids)."""
        k = kernels.book()
        if k is None:
            return self.resting_lots_of_reference(owners)
        owners = kernels.i64(owners)
        return k.resting_lots(self.bids.owner, self.bids.qty, owners), k.resting_lots(self.asks.owner, self.asks.qty, owners)

    def resting_lots_of_reference(self, owners) -> tuple[np.ndarray, np.ndarray]:
        """``resting_lots_of`` in numpy (the reference of the compiled kernel)."""
        owners = np.asarray(owners, dtype=np.int64)
        out = []
        for s in (self.bids, self.asks):
            lots = np.zeros(len(owners), dtype=np.int64)
            hit = np.isin(s.owner, owners)
            if hit.any():
                np.add.at(lots, np.searchsorted(owners, s.owner[hit]), s.qty[hit])
            out.append(lots)
        return out[0], out[1]

    def submit(self, owners, sides, qtys, limits=None, rest: bool = False) -> Fills:
        """Match incoming orders in the given order; the remainder rests if ``rest`` else is dropped.

        Args:
            owners, sides, qtys: per incoming order.
            limits: limit price per order; ``None`` for market orders (no limit).
            rest: True for good-till-cancel limit orders, False for IOC/market.
        """
        owners, sides, qtys = (np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in (owners, sides, qtys))
        if limits is None:
            limits = np.where(sides == BUY, NO_LIMIT_BUY, NO_LIMIT_SELL)
        limits = np.asarray(limits, dtype=np.int64)
        if limits.shape != qtys.shape:
            limits = np.broadcast_to(limits, qtys.shape)
        if rest and len(qtys) > 1:
            # resting orders interact with later ones on the other side: go one at a time
            return Fills.concat([self.submit(owners[i], sides[i], qtys[i], limits[i], True) for i in range(len(qtys))])
        k = kernels.book()
        # IOC batches in one compiled call (both sides, fills in arrival order)
        if not rest and self.compiled and k is not None and kernels.get() is not None and not (qtys < 0).any():
            b, a = self.bids, self.asks
            i64 = kernels.i64
            out, b.price, b.qty, b.owner, b.oid, a.price, a.qty, a.owner, a.oid = k.submit(
                b.price, b.qty, b.owner, b.oid, a.price, a.qty, a.owner, a.oid, i64(owners), i64(sides), i64(qtys),
                i64(limits))
            return Fills(*out)
        parts = []
        for side, book_side in ((BUY, self.asks), (SELL, self.bids)):
            idx = np.flatnonzero(sides == side)
            if len(idx):
                parts.append(self._match(book_side, side, idx, owners[idx], qtys[idx], limits[idx]))
        fills = Fills.concat(parts)
        if rest:
            left = int(qtys[0]) - int(fills.qty.sum())
            if left > 0:
                oid = self._next_oid
                self._next_oid += 1
                (self.bids if sides[0] == BUY else self.asks).insert(
                    limits[:1], np.array([left]), owners[:1], np.array([oid])
                )
        if len(fills):
            fills = _in_arrival_order(fills)
        return fills

    def _match(self, book: _Side, side: int, index, owners, qtys, limits) -> Fills:
        k = kernels.get()
        if k is None or not self.compiled or (qtys < 0).any():
            return self._match_reference(book, side, index, owners, qtys, limits)
        if len(book.qty) == 0:
            return Fills.empty()
        i64 = kernels.i64
        taker, maker, qty, price, order_index, maker_oid, left = k.match(
            book.price, book.qty, book.owner, book.oid, side == BUY, i64(index), i64(owners), i64(qtys), i64(limits))
        if len(qty) == 0:
            return Fills.empty()
        fills = Fills(taker=taker, maker=maker, taker_side=np.full(len(qty), side, dtype=np.int64), qty=qty,
                      price=price, order_index=order_index, maker_order_id=maker_oid)
        book.qty = left
        book.remove(left > 0)
        return fills

    def _match_reference(self, book: _Side, side: int, index, owners, qtys, limits) -> Fills:
        """``_match`` in numpy (the reference the compiled kernel is tested against)."""
        available = book.lots_at_or_better(limits)
        # taken[i]: cumulative lots consumed after incoming order i (sequential: each order
        # takes what is left at or better than its own limit)
        taken = np.empty(len(qtys), dtype=np.int64)
        used = 0
        for i, (q, a) in enumerate(zip(qtys.tolist(), available.tolist())):
            used = min(used + q, max(used, a))
            taken[i] = used
        total = used
        if total == 0:
            return Fills.empty()
        resting_cum = np.cumsum(book.qty)
        bounds = np.unique(np.concatenate([[0], taken, resting_cum[resting_cum < total], [total]]))
        starts, sizes = bounds[:-1], np.diff(bounds)
        who = np.searchsorted(taken, starts, side="right")
        whom = np.searchsorted(resting_cum, starts, side="right")
        fills = Fills(
            taker=owners[who],
            maker=book.owner[whom],
            taker_side=np.full(len(sizes), side, dtype=np.int64),
            qty=sizes,
            price=book.price[whom],
            order_index=index[who],
            maker_order_id=book.oid[whom],
        )
        prev_cum = resting_cum - book.qty
        book.qty = resting_cum - np.clip(total, prev_cum, resting_cum)
        book.remove(book.qty > 0)
        return fills


def _arrays(*arrays):
    return tuple(np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in arrays)


def _in_arrival_order(fills: Fills) -> Fills:
    order = np.argsort(fills.order_index, kind="stable")
    return Fills(*(getattr(fills, f)[order] for f in Fills.__dataclass_fields__))
