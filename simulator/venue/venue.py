"""The perpetual venue: ledger, books, prices, funding, liquidation rounds and the waterfall.

The exchange agent drives it once per step (DESIGN.md §8):
``set_index -> (agents trade) -> update_marks -> funding -> unwind -> liquidate``.
Agents never touch the ledger: they call ``submit_orders`` (IOC/market, checked against
initial margin) and ``post_quotes`` (resting, post-only).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from simulator.venue import kernels
from simulator.venue.book import BUY, NO_LIMIT_BUY, NO_LIMIT_SELL, SELL, Fills, OrderBook
from simulator.venue.events import EventLog
from simulator.venue.fixedpoint import PPM, muldiv_ceil
from simulator.venue.ledger import Ledger
from simulator.venue.margin import below_maintenance, initial_margin, maintenance_margin, notional
from simulator.venue.market import MarketSpec
from simulator.venue.settlement import fill_notional
from simulator.venue.prices import FundingConfig, MarkConfig, PriceState, funding_payments
from simulator.venue.waterfall import Cases, Stage, build_waterfall, cover_engine_inventory, run_round


@dataclass
class VenueConfig:
    """Everything that defines the venue, independent of who trades on it.

    Args:
        markets: the perpetual markets.
        waterfall: ordered stage configs, e.g. ``[{"stage": "book"}, {"stage": "insurance_fund"}]``.
        insurance_fund: starting balance of the fund, cash units.
        backstop_capital: starting capital of the backstop vault, cash units.
        max_rounds: liquidation rounds allowed per step.
        unwind_fraction: share of a venue-held position (backstop, fund) sold per step.
        unwind_band: worst price the unwind accepts, as a fraction away from mark.
        fund_guard_threshold: fund health guard (the seed article): while the insurance fund
            is below this fraction of the average open-interest value, new exposure is allowed
            only up to ``fund_guard_max_leverage``. None: no guard.
        fund_guard_funding_adjustment: while the guard is on, each funding settlement adds this
            rate (per settlement, after the cap) toward the side that relieves the fund: the side
            holding more lots in accounts levered above ``fund_guard_max_leverage`` (the side
            whose bankruptcies the fund would pay) pays it to the other. 0: no adjustment.
        fund_guard_window_seconds: the open-interest average is over this much scenario time
            (default 30 days, the reference's 30-day average OI; a shorter run averages the run
            so far).
        step_seconds: scenario seconds per step (``time = step x step_seconds``): the clock of
            delayed socialization and of the fund guard's averaging window.
    """

    markets: list[MarketSpec] = field(default_factory=lambda: [MarketSpec()])
    waterfall: list[dict] = field(
        default_factory=lambda: [{"stage": "book"}, {"stage": "insurance_fund"}, {"stage": "adl"}]
    )
    mark: MarkConfig = field(default_factory=MarkConfig)
    funding: FundingConfig = field(default_factory=FundingConfig)
    insurance_fund: int = 0
    backstop_capital: int = 0
    max_rounds: int = 20
    unwind_fraction: float = 0.2
    unwind_band: float = 0.02
    fund_guard_threshold: float | None = None
    fund_guard_max_leverage: float = 5.0
    fund_guard_funding_adjustment: float = 0.0
    fund_guard_window_seconds: float = 30 * 86_400.0
    step_seconds: float = 1.0


class Venue:
    """A simulated perpetual-futures venue.

    Args:
        config: the venue's configuration.
        rng: numpy Generator for the venue's own draws (random ADL ranking).
    """

    def __init__(self, config: VenueConfig, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        self.markets = list(config.markets)
        self.tiers = [m.tiers for m in self.markets]
        self.ledger = Ledger(np.array([m.contract_value for m in self.markets], dtype=np.int64),
                             np.array([m.inverse for m in self.markets], dtype=bool))
        # per-market inverse flags for the margin functions; None when every market is linear
        # (their linear fast path, no per-call mask test)
        self._inverse_mask = self.ledger.inverse if self.ledger.any_inverse else None
        self.books = [OrderBook() for _ in self.markets]
        self.prices = PriceState(len(self.markets), config.mark)
        self.events = EventLog()
        self.leverage = np.zeros((0, len(self.markets)))
        self.spot = np.zeros(0, dtype=bool)  # spot-wallet rows: balances not pledged as collateral
        self.window_equity = np.zeros(0, dtype=np.int64)
        self.window_flows = np.zeros(0, dtype=np.int64)
        self.adl_profitable = np.zeros(0, dtype=bool)  # in profit when ranked by an ADL queue
        self.fee_pool = self.add_accounts(1, "fee_pool")[0]
        self.insurance_fund = self.add_accounts(1, "insurance_fund", config.insurance_fund)[0]
        self.backstop = self.add_accounts(1, "backstop", config.backstop_capital)[0]
        self.loss_pool = self.add_accounts(1, "loss_pool")[0]
        self.engine = self.add_accounts(1, "engine")[0]  # the liquidation engine's own book
        self.waterfall = build_waterfall(config.waterfall)
        self._due_stages = (None, [])  # (the waterfall, its stages with a ``due``), for ``liquidate``
        self._tier_arrays = None  # padded maintenance tiers for the compiled scan
        self._tick_sizes = None  # per market, for set_index
        self._tick_array = None  # the same as a float array, for roll_marks
        self._holder_rows = None  # the inventory holders' rows, for the quiet liquidation pass
        self.step = 0
        self.rejections = 0
        self.quote_rejections = 0  # resting orders refused for initial margin (post_quotes)
        #: the ledger totals summed by this step's liquidation pass when it flagged nobody and so
        #: was the step's last touch of the ledger (``step_totals``); None otherwise
        self.quiet_totals = None
        self.volume = np.zeros(len(self.markets), dtype=np.int64)
        self.oi_value_sum = 0.0  # running sum of open-interest value (cash) over the guard's window
        self.oi_value_count = 0
        self.oi_samples: deque = deque()  # (time, value) of the samples in the window
        self.adl_leverage_after = float("nan")  # highest leverage of a deleveraged account after ADL

    # ------------------------------------------------------------------ set-up
    def add_accounts(self, n: int, kind: str, deposit=0, leverage=None, spot: bool = False) -> np.ndarray:
        """Open accounts; ``leverage`` (per account or scalar) is their initial-margin setting;
        ``spot`` marks spot wallets (never hold a position; ``socialize`` scope
        ``derivatives_only`` leaves them alone)."""
        ids = self.ledger.add_accounts(n, kind, deposit)
        self.spot = np.concatenate([self.spot, np.full(n, bool(spot))])
        lev = np.ones((n, len(self.markets))) * (
            np.asarray(leverage, dtype=float).reshape(-1, 1) if leverage is not None else 1.0
        )
        if leverage is None:
            lev[:] = [m.max_leverage for m in self.markets]
        lev = np.minimum(lev, [m.max_leverage for m in self.markets])
        self.leverage = np.concatenate([self.leverage, lev])
        # a new account's profit window starts at its deposit
        self.window_equity = np.concatenate([self.window_equity, self.ledger.wallet[ids]])
        self.window_flows = np.concatenate([self.window_flows, np.zeros(n, dtype=np.int64)])
        self.adl_profitable = np.concatenate([self.adl_profitable, np.zeros(n, dtype=bool)])
        return ids

    def _leverage_c(self) -> np.ndarray:
        """The leverage settings as a C-contiguous float64 array (what the kernels take)."""
        lev = self.leverage
        if lev.dtype != np.float64 or not lev.flags.c_contiguous:
            return np.ascontiguousarray(lev, dtype=float)
        return lev

    @property
    def time(self) -> float:
        """Scenario seconds: ``step x step_seconds``."""
        return self.step * self.config.step_seconds

    @property
    def n_markets(self) -> int:
        return len(self.markets)

    @property
    def marks(self) -> np.ndarray:
        return self.prices.mark

    @property
    def contract_values(self) -> np.ndarray:
        return self.ledger.contract_values

    @property
    def inverse(self) -> np.ndarray:
        """Per market: True for an inverse (coin-margined) contract."""
        return self.ledger.inverse

    def exposure_cash(self, lots, market, price):
        """Float signed notional in cash of ``lots`` at ``price`` ticks in ``market`` (one market or
        an array of markets), for sizing: linear ``lots * price * cv``, inverse ``lots * K / price``."""
        cv = self.contract_values[market]
        if not self.ledger.any_inverse:
            return lots * price * cv
        return np.where(self.inverse[market], lots * cv / price, lots * price * cv)

    def lot_cash(self, market, price):
        """Cash value of one lot at ``price`` ticks (``exposure_cash`` of one lot)."""
        return self.exposure_cash(1, market, price)

    def value_cash(self, lots, market, price):
        """Float signed value ``V`` of ``lots`` at ``price`` (what ``cost`` holds at entry):
        ``exposure_cash``, negated for an inverse market."""
        v = self.exposure_cash(lots, market, price)
        if not self.ledger.any_inverse:
            return v
        return np.where(self.inverse[market], -v, v)

    # ---------------------------------------------------------------- margin
    def equity(self, accounts=None) -> np.ndarray:
        """Equity at mark of every account, or of ``accounts`` only (cheaper)."""
        led = self.ledger
        if type(accounts) is np.ndarray and accounts.dtype == np.int64 and accounts.ndim == 1:
            k = kernels.scan()
            if k is not None:  # a few rows: the compiled sum, exactly ``Ledger.equity``'s
                return k.equity_of(led.wallet, led.qty, led.cost, kernels.i64(self.marks), led.contract_values,
                                   kernels.i64(accounts), led.inverse)
        return led.equity(self.marks, accounts)

    def maintenance(self, accounts=None) -> np.ndarray:
        """Maintenance margin per account and market (of ``accounts`` only, if given)."""
        qty = self.ledger.qty if accounts is None else self.ledger.qty[accounts]
        return maintenance_margin(qty, self.marks, self.contract_values, self.tiers, self._inverse_mask)

    def initial(self, qty=None) -> np.ndarray:
        q = self.ledger.qty if qty is None else qty
        return initial_margin(q, self.marks, self.contract_values, self.leverage, self._inverse_mask)

    def free_collateral(self, rows, leverage=None) -> np.ndarray:
        """What ``rows`` could withdraw: equity above the initial margin of their positions (at
        ``leverage``, default each account's), at most their cash."""
        rows = np.asarray(rows, dtype=np.int64)
        lev = self.leverage[rows] if leverage is None else leverage
        im = initial_margin(self.ledger.qty[rows], self.marks, self.contract_values, lev, self._inverse_mask).sum(axis=1)
        return np.minimum(self.ledger.wallet[rows], self.equity(rows) - im)

    def liquidatable(self) -> np.ndarray:
        """Accounts below maintenance (cross margin), venue rows excluded."""
        k = kernels.scan()
        if k is None:
            return self.liquidatable_reference()
        led = self.ledger
        if self._tier_arrays is None:
            self._tier_arrays = _tier_arrays(self.tiers)
        if led.any_inverse:
            return kernels.get().liquidatable(led.wallet, led.qty, led.cost, kernels.i64(self.marks), self.contract_values,
                                        led.inverse, *self._tier_arrays, led.is_venue())
        return k.liquidatable(led.wallet, led.qty, led.cost, kernels.i64(self.marks),
                              self.contract_values, *self._tier_arrays, led.is_venue())

    def liquidatable_reference(self) -> np.ndarray:
        """``liquidatable`` in numpy only (the reference the compiled kernel is tested against)."""
        led = self.ledger
        # a flat account with a negative wallet (a reducing order filled deep in a thin book)
        # is bankrupt too: its loss must go through the waterfall, not hide in the wallet
        flat_negative = (led.wallet < 0) & ~(led.qty != 0).any(axis=1)
        return (below_maintenance(self.equity(), self.maintenance()) | flat_negative) & ~led.is_venue()

    # --------------------------------------------------------------- trading
    def submit_orders(self, market: int, owners, sides, qtys, limits=None, reduce_only=None) -> Fills:
        """Market/IOC orders from agents, one per owner, in arrival order.

        An order that grows a position is rejected (and counted) when the owner's equity would
        fall below the initial margin of all its positions after it; reduce-only orders are cut
        to the position they reduce.
        """
        k = kernels.book()
        if k is None:
            return self.submit_orders_reference(market, owners, sides, qtys, limits, reduce_only)
        i64 = kernels.i64
        owners, sides, qtys = kernels.i64_1d(owners), kernels.i64_1d(sides), kernels.i64_1d(qtys)
        if reduce_only is None:
            ro = np.zeros(0, dtype=bool)
        elif (type(reduce_only) is np.ndarray and reduce_only.dtype == np.bool_ and reduce_only.shape == qtys.shape
              and reduce_only.flags.c_contiguous):
            ro = reduce_only  # the traders' flags, as they come
        else:
            ro = np.ascontiguousarray(np.broadcast_to(np.asarray(reduce_only, dtype=bool), qtys.shape))
        led = self.ledger
        book = self.books[market]
        if book.compiled and not self.inverse[market]:  # one call: checks, match, ledger, fees
            if limits is None:
                limits = np.where(sides == BUY, NO_LIMIT_BUY, NO_LIMIT_SELL)
            elif not (type(limits) is np.ndarray and limits.dtype == np.int64 and limits.shape == qtys.shape
                      and limits.flags.c_contiguous):
                limits = np.ascontiguousarray(np.broadcast_to(np.asarray(limits, dtype=np.int64), qtys.shape))
            out = self.submit_by(market, k.submit_settle,
                                 (int(market), owners, sides, qtys, limits, ro, reduce_only is not None))
            return Fills.empty() if out is None else Fills(*out)
        guard = self.config.fund_guard_threshold is not None and self.fund_guard_active()
        qtys, ok, refused = k.order_margin(
            int(market), owners, sides, qtys, ro, reduce_only is not None, led.wallet, led.qty, led.cost,
            i64(self.marks), self.contract_values, np.ascontiguousarray(self.leverage, dtype=float), guard,
            float(self.config.fund_guard_max_leverage),
            int(self.markets[market].taker_fee_ppm), led.inverse)
        self.rejections += int(refused)
        if not ok.any():
            return Fills.empty()
        idx = np.flatnonzero(ok)
        if limits is not None:
            limits = np.broadcast_to(np.asarray(limits, dtype=np.int64), qtys.shape)[idx]
        fills = self.books[market].submit(owners[idx], sides[idx], qtys[idx], limits)
        self.settle(market, fills, fees=True)
        return fills

    def compiled_submit(self, market: int) -> bool:
        """Whether ``submit_by`` applies to ``market``: the compiled book of a linear market."""
        return kernels.book() is not None and self.books[market].compiled and not self.inverse[market]

    def submit_by(self, market: int, submitter, orders: tuple):
        """``submit_orders``' one compiled call (``compiled_submit`` markets): ``submitter(*orders,
        <the ledger, fees and the book's two sides, as _nb_book.submit_settle takes them after
        its orders>)`` must return what ``submit_settle`` returns; ``orders`` is either
        ``submit_settle``'s own (market, orders, limits, reduce-only flags) or what an agent's
        kernel needs to gather its orders. Returns the fills (``submit``'s 7 rows), None when no
        order was accepted."""
        led = self.ledger
        book = self.books[market]
        cfg = self.config
        spec = self.markets[market]
        b, a = book.bids, book.asks
        guard = cfg.fund_guard_threshold is not None and self.fund_guard_active()
        # the marks are the price state's int64 array (see ``PriceState``): no conversion
        out, refused, sent, bid_cols, ask_cols = submitter(
            *orders, led.wallet, led.qty, led.cost, self.prices.mark, led.contract_values, self._leverage_c(), guard,
            float(cfg.fund_guard_max_leverage), int(spec.taker_fee_ppm), int(spec.maker_fee_ppm), led.inverse,
            int(self.fee_pool), b.price, b.qty, b.owner, b.oid, a.price, a.qty, a.owner, a.oid)
        b.price, b.qty, b.owner, b.oid = bid_cols
        a.price, a.qty, a.owner, a.oid = ask_cols
        self.rejections += int(refused)
        if not sent:
            return None
        if out.shape[1]:  # ``settle``'s bookkeeping (the ledger and fees are done)
            self.prices.last[market] = float(out[4, -1])
            self.volume[market] += int(out[3].sum())
        return out

    def submit_orders_reference(self, market: int, owners, sides, qtys, limits=None, reduce_only=None) -> Fills:
        """``submit_orders`` with the checks in numpy (the reference of ``order_margin``)."""
        owners, sides, qtys = (np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in (owners, sides, qtys))
        if limits is not None:
            limits = np.broadcast_to(np.asarray(limits, dtype=np.int64), qtys.shape)
        pos = self.ledger.qty[owners, market]
        reducing = np.sign(pos) == -sides
        if reduce_only is not None:
            ro = np.broadcast_to(np.asarray(reduce_only, dtype=bool), qtys.shape)
            qtys = np.where(ro, np.where(reducing, np.minimum(qtys, np.abs(pos)), 0), qtys)
        new_pos = pos + sides * qtys
        grows = np.abs(new_pos) > np.abs(pos)
        ok = qtys > 0
        if grows.any():
            q_all = self.ledger.qty[owners].copy()
            q_all[:, market] = new_pos
            leverage = self.leverage[owners]
            if self.fund_guard_active():
                leverage = np.minimum(leverage, self.config.fund_guard_max_leverage)
            im_after = initial_margin(q_all, self.marks, self.contract_values, leverage, self._inverse_mask).sum(axis=1)
            fee = muldiv_ceil(notional(qtys[:, None], self.marks[market : market + 1], self.contract_values[market : market + 1],
                                        None if self._inverse_mask is None else self.inverse[market : market + 1])[:, 0], self.markets[market].taker_fee_ppm, PPM)
            eq = self.ledger.equity(self.marks, owners) - fee
            refused = grows & (eq < im_after)
            self.rejections += int((refused & ok).sum())
            ok &= ~refused
        if not ok.any():
            return Fills.empty()
        idx = np.flatnonzero(ok)
        fills = self.books[market].submit(owners[idx], sides[idx], qtys[idx], None if limits is None else limits[idx])
        self.settle(market, fills, fees=True)
        return fills

    def post_quotes(self, market: int, owners, sides, prices, qtys) -> np.ndarray:
        """Resting post-only limit orders (market makers), checked against initial margin.

        Orders the book would drop (crossing, empty) are dropped first; of the rest, an order is
        refused (counted in ``quote_rejections``) unless the owner's equity, less the maker fee
        of its side filling, stays >= the initial margin of the worst case in which every resting
        order of the owner on one side fills (``quote_margin_ok``). Returns the order ids, ``-1``
        for a dropped or refused order.
        """
        k = kernels.book()
        if k is not None:
            return self._post_quotes_compiled(k, market, owners, sides, prices, qtys)
        return self.post_quotes_reference(market, owners, sides, prices, qtys)

    def _post_quotes_compiled(self, k, market: int, owners, sides, prices, qtys) -> np.ndarray:
        i64 = kernels.i64
        i64_1d = kernels.i64_1d
        owners, sides, prices, qtys = i64_1d(owners), i64_1d(sides), i64_1d(prices), i64_1d(qtys)
        book = self.books[market]
        led = self.ledger
        if self.n_markets == 1:  # one call: owners, leverage rows, checks and posting
            return self.requote_by(market, None, k.post_quotes_one_market, (owners, sides, prices, qtys),
                                   post_only=True)
        u = i64(np.unique(owners))
        buys = np.zeros((len(u), self.n_markets), dtype=np.int64)
        sells = np.zeros_like(buys)
        for m, other in enumerate(self.books):
            if m != market:
                buys[:, m], sells[:, m] = other.resting_lots_of(u)
        b, a = book.bids, book.asks
        guard = self.config.fund_guard_threshold is not None and self.fund_guard_active()
        oids, refused, book._next_oid, b.price, b.qty, b.owner, b.oid, a.price, a.qty, a.owner, a.oid = k.post_quotes(
            int(market), owners, sides, prices, qtys, b.price, b.qty, b.owner, b.oid, a.price, a.qty, a.owner, a.oid,
            u, buys, sells, led.wallet, led.qty, led.cost, i64(self.marks), self.contract_values,
            np.ascontiguousarray(self.leverage[u], dtype=float), guard, float(self.config.fund_guard_max_leverage),
            max(self.markets[market].maker_fee_ppm, 0), int(book._next_oid), led.inverse)
        self.quote_rejections += int(refused)
        return oids

    def requote(self, market: int, cancel_accounts, owners, sides, prices, qtys) -> np.ndarray:
        """Cancel every order of ``cancel_accounts`` in market ``market``'s book, then
        ``post_quotes`` the new orders (if any): on a one-market venue one compiled call, the
        same operations in the same order. Returns the order ids."""
        k = kernels.book()
        book = self.books[market]
        if k is None or self.n_markets != 1:
            book.cancel_owners(cancel_accounts)
            if len(qtys):
                return self.post_quotes(market, owners, sides, prices, qtys)
            return np.zeros(0, dtype=np.int64)
        i64_1d = kernels.i64_1d
        return self.requote_by(market, i64_1d(cancel_accounts), k.requote_one_market,
                               (i64_1d(owners), i64_1d(sides), i64_1d(prices), i64_1d(qtys)))

    def requote_by(self, market: int, cancel_accounts: np.ndarray, quoter, orders: tuple, post_only=False):
        """``requote`` (``post_quotes`` when ``post_only``) on a one-market venue, with the new
        orders computed by a compiled ``quoter`` in the same call: ``quoter(cancel_accounts, *orders,
        <the book's two sides and the ledger, as _nb_book.requote_one_market takes them>)`` must return
        what ``requote_one_market`` (``post_quotes_one_market``) returns; ``orders`` is either
        the orders themselves or what the quoter needs to compute them (an agent's ladder
        kernel). ``cancel_accounts`` (int64) is left out when ``post_only``. Returns the order
        ids."""
        book = self.books[market]
        led = self.ledger
        cfg = self.config
        b, a = book.bids, book.asks
        guard = cfg.fund_guard_threshold is not None and self.fund_guard_active()
        head = orders if post_only else (cancel_accounts, *orders)
        # the marks are the price state's int64 array (see ``PriceState``): no conversion
        oids, refused, book._next_oid, bid_cols, ask_cols = quoter(
            *head, b.price, b.qty, b.owner, b.oid, a.price, a.qty, a.owner, a.oid, led.wallet, led.qty, led.cost,
            self.prices.mark, led.contract_values, self._leverage_c(), guard, float(cfg.fund_guard_max_leverage),
            max(self.markets[market].maker_fee_ppm, 0), book._next_oid, led.inverse)
        b.price, b.qty, b.owner, b.oid = bid_cols
        a.price, a.qty, a.owner, a.oid = ask_cols
        self.quote_rejections += int(refused)
        return oids

    def post_quotes_reference(self, market: int, owners, sides, prices, qtys) -> np.ndarray:
        """``post_quotes`` step by step (postable, margin check, post): the reference of the
        compiled ``_nb_book.post_quotes``."""
        owners, sides, prices, qtys = (np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in (owners, sides, prices, qtys))
        book = self.books[market]
        ok = book.postable(sides, prices, qtys)
        idx = np.flatnonzero(ok)
        if len(idx):
            fits = self.quote_margin_ok(market, owners[idx], sides[idx], qtys[idx])
            self.quote_rejections += int((~fits).sum())
            ok[idx[~fits]] = False
        oids = np.full(len(qtys), -1, dtype=np.int64)
        if ok.any():
            oids[ok] = book.post(owners[ok], sides[ok], prices[ok], qtys[ok])
        return oids

    def quote_margin_ok(self, market: int, owners, sides, qtys) -> np.ndarray:
        """Initial-margin check of new resting orders, one pass (DESIGN.md §3).

        Per market the worst case of an account's resting orders is
        ``max(|q + resting buys|, |q - resting sells|)`` lots, valued at mark / leverage and
        summed over markets. The new orders count cumulatively per owner and side in the given
        order (makers give near-to-far ladders), on top of what already rests in the books, so a
        ladder is cut where margin runs out. An order whose side, filled up to it, leaves a
        position no larger than the current one is always accepted (it cannot add exposure);
        the fund health guard caps leverage as for market orders.
        """
        k = kernels.book()
        if k is None:
            return self.quote_margin_ok_reference(market, owners, sides, qtys)
        i64 = kernels.i64
        owners, sides, qtys = (i64(a) for a in (owners, sides, qtys))
        led = self.ledger
        u, inv = np.unique(owners, return_inverse=True)
        u = i64(u)
        buys = np.empty((len(u), self.n_markets), dtype=np.int64)
        sells = np.empty_like(buys)
        for m, book in enumerate(self.books):
            buys[:, m], sells[:, m] = book.resting_lots_of(u)
        guard = self.fund_guard_active()
        return k.quote_margin(int(market), owners, sides, qtys, u, i64(inv.reshape(-1)), buys, sells, led.wallet,
                              led.qty, led.cost, i64(self.marks), self.contract_values,
                              np.ascontiguousarray(self.leverage[u], dtype=float), guard,
                              float(self.config.fund_guard_max_leverage), max(self.markets[market].maker_fee_ppm, 0),
                              led.inverse)

    def quote_margin_ok_reference(self, market: int, owners, sides, qtys) -> np.ndarray:
        """``quote_margin_ok`` in numpy (the reference of the compiled kernel)."""
        owners, sides, qtys = (np.asarray(a, dtype=np.int64) for a in (owners, sides, qtys))
        led = self.ledger
        u, inv = np.unique(owners, return_inverse=True)
        q = led.qty[u]
        buys = np.zeros_like(q)
        sells = np.zeros_like(q)
        for m, book in enumerate(self.books):
            buys[:, m], sells[:, m] = book.resting_lots_of(u)
        worst = np.maximum(np.abs(q + buys), np.abs(q - sells))
        # cumulative lots of the new orders per owner and side, in the given order
        order = np.lexsort((np.arange(len(qtys)), sides, inv))
        key = inv[order] * 2 + (sides[order] == BUY)
        csum = np.cumsum(qtys[order])
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        base = np.repeat(csum[starts] - qtys[order][starts], np.diff(np.r_[starts, len(order)]))
        cum = np.empty_like(qtys)
        cum[order] = csum - base
        q0 = q[inv, market]
        rest = np.where(sides == BUY, buys[inv, market], sells[inv, market])
        side_lots = rest + cum
        exposure = np.abs(q0 + sides * side_lots)
        scenario = worst[inv].copy()
        scenario[:, market] = exposure
        leverage = self.leverage[u][inv]
        if self.fund_guard_active():
            leverage = np.minimum(leverage, self.config.fund_guard_max_leverage)
        im = initial_margin(scenario, self.marks, self.contract_values, leverage, self._inverse_mask).sum(axis=1)
        fee_ppm = max(self.markets[market].maker_fee_ppm, 0)  # a rebate is not counted as margin
        if self.inverse[market]:
            fee = muldiv_ceil(fill_notional(side_lots, int(self.marks[market]), int(self.contract_values[market]), True),
                              fee_ppm, PPM)
        else:
            mark_value = int(self.marks[market]) * int(self.contract_values[market])
            fee = muldiv_ceil(side_lots * mark_value, fee_ppm, PPM)
        eq = led.equity(self.marks, u)[inv] - fee
        return (exposure <= np.abs(q0)) | (eq >= im)

    def cancel_orders(self, accounts) -> int:
        """Cancel every resting order of ``accounts`` in every book; returns how many."""
        n = 0
        for book in self.books:
            n += book.cancel_owners(accounts)
        return n

    def opening_auction(self, market: int, accounts, qtys, price: int) -> None:
        """Set up step-0 positions: signed lots per account crossed at one price, pro rata.

        Buyers' and sellers' lots are matched in order up to the smaller side, so the ledger
        sees ordinary two-sided fills (no fees); the unmatched remainder is not filled.
        """
        accounts = np.asarray(accounts, dtype=np.int64)
        qtys = np.asarray(qtys, dtype=np.int64)
        buy, sell = qtys > 0, qtys < 0
        total = min(int(qtys[buy].sum()), int(-qtys[sell].sum()))
        if total == 0:
            return
        bcum = np.minimum(np.cumsum(qtys[buy]), total)
        scum = np.minimum(np.cumsum(-qtys[sell]), total)
        bounds = np.unique(np.concatenate([[0], bcum, scum]))
        starts, sizes = bounds[:-1], np.diff(bounds)
        buyers = accounts[buy][np.searchsorted(bcum, starts, side="right")]
        sellers = accounts[sell][np.searchsorted(scum, starts, side="right")]
        self.ledger.trade(market, buyers, sellers, sizes, price)
        self.prices.last[market] = float(price)

    def deposit(self, accounts, amounts) -> None:
        """External deposit; counted out of the profit window used by profit socialization."""
        self.ledger.deposit(accounts, amounts)
        np.add.at(self.window_flows, np.atleast_1d(accounts), amounts)

    def withdraw(self, accounts, amounts) -> np.ndarray:
        """External withdrawals of ``amounts``, in order; returns what each paid out.

        A stage that takes a share of withdrawals (``socialize`` with ``weights:
        withdrawal_factor``) keeps its haircut in the loss pool; the rest leaves the ledger and
        is counted out of the profit window like a deposit. Logged as ``withdrawal`` events
        (amount paid out, weight = the share kept).
        """
        accounts = np.atleast_1d(np.asarray(accounts, dtype=np.int64))
        amounts = np.broadcast_to(np.asarray(amounts, dtype=np.int64), accounts.shape)
        if (amounts < 0).any():
            raise ValueError("a withdrawal must be non-negative")
        cut = np.zeros(len(accounts), dtype=np.int64)
        for stage in self.waterfall:
            kept = stage.withdrawal_haircut(self, accounts, amounts - cut)
            if kept is not None:
                cut += kept
        self.ledger.withdraw(accounts, amounts, haircut=cut, to=self.loss_pool)
        paid = amounts - cut
        np.subtract.at(self.window_flows, accounts, paid)
        share = np.divide(cut, amounts, out=np.zeros(len(amounts)), where=amounts > 0)
        self.events.add("withdrawal", account=accounts, amount=paid, weight=share)
        return paid

    def settle(self, market: int, fills: Fills, fees: bool = True) -> None:
        """Put fills on the ledger; with ``fees`` the taker and maker fees go to the fee pool."""
        if not len(fills):
            return
        self.ledger.trade(market, fills.buyer, fills.seller, fills.qty, fills.price)
        self.prices.last[market] = float(fills.price[-1])
        self.volume[market] += int(fills.qty.sum())
        if fees:
            spec = self.markets[market]
            k = kernels.book()
            if k is not None:
                i64 = kernels.i64
                k.pay_fees(self.ledger.wallet, i64(fills.taker), i64(fills.maker), i64(fills.qty), i64(fills.price),
                           int(self.contract_values[market]), int(spec.taker_fee_ppm), int(spec.maker_fee_ppm),
                           int(self.fee_pool), bool(self.inverse[market]))
                return
            value = fill_notional(fills.qty, fills.price, self.contract_values[market], bool(self.inverse[market]))
            taker_fee = muldiv_ceil(value, spec.taker_fee_ppm, PPM)
            maker_fee = muldiv_ceil(value, spec.maker_fee_ppm, PPM)
            self.ledger.transfer(fills.taker, self.fee_pool, taker_fee)
            self.ledger.transfer(fills.maker, self.fee_pool, maker_fee)

    # ------------------------------------------------------------ step parts
    def set_index(self, index_prices) -> None:
        """Feed the external index (quote currency, one per market)."""
        prices = np.atleast_1d(np.asarray(index_prices, dtype=float))
        if len(prices) != self.n_markets:
            ticks = np.array([m.to_ticks(p) for m, p in zip(self.markets, prices)], dtype=float)
        else:  # every market's ``MarketSpec.to_ticks`` at once
            if self._tick_sizes is None:
                self._tick_sizes = [float(m.tick_size) for m in self.markets]
            ratios = [p / t for p, t in zip(prices.tolist(), self._tick_sizes)]
            if all(math.isfinite(r) for r in ratios):
                # Python's round of a float is numpy's rint (half to even), exactly
                ticks = np.array([float(max(round(r), 1)) for r in ratios])
            else:
                ticks = np.maximum(np.round(prices / np.array(self._tick_sizes)), 1).astype(np.int64).astype(float)
        self.prices.set_index(ticks)

    def roll_marks(self, index_prices) -> np.ndarray:
        """A step opens: ``set_index(index_prices)`` then ``update_marks(roll=True)``, in one
        compiled call when every market has a mark and a finite index (bit for bit the two)."""
        if self._tick_array is None:
            self._tick_array = np.array([float(m.tick_size) for m in self.markets])
        if not self.prices.roll_marks(kernels.f64(index_prices), self._tick_array, self.mids()):
            self.set_index(index_prices)
            return self.update_marks(roll=True)
        if self.config.fund_guard_threshold is not None:
            self._sample_open_interest()
        return self.prices.mark

    def mids(self) -> np.ndarray:
        """Book mid per market. A side swept empty leaves the last trade as the book's price
        (the deepest level hit), so a wiped-out book pulls the median mark down with it; NaN
        only when the book has never traded and is empty."""
        if len(self.books) == 1:  # the usual venue, without the loop
            book = self.books[0]
            bids, asks = book.bids.price, book.asks.price
            if len(bids) and len(asks):
                return np.array([(int(bids[0]) + int(asks[0])) / 2])
        out = []
        for m, book in enumerate(self.books):
            bids, asks = book.bids.price, book.asks.price
            if len(bids) and len(asks):
                out.append((int(bids[0]) + int(asks[0])) / 2)  # ``OrderBook.mid``
            elif len(bids) or len(asks):
                out.append(self.prices.last[m])
            else:
                out.append(np.nan)
        return np.array(out, dtype=float)

    def open_interest_value(self) -> int:
        """Open interest valued at mark, all markets, cash units."""
        if self.ledger.any_inverse:
            return int(self.ledger.notional(self.ledger.open_interest()[None, :], self.marks).sum())
        return int((self.ledger.open_interest() * self.marks * self.contract_values).sum())

    def fund_guard_active(self) -> bool:
        """The fund is below the guard's fraction of the average open-interest value."""
        threshold = self.config.fund_guard_threshold
        if threshold is None or self.oi_value_count == 0:
            return False
        average = self.oi_value_sum / self.oi_value_count
        return bool(self.equity(np.array([self.insurance_fund]))[0] < threshold * average)

    def fund_relief_side(self) -> np.ndarray:
        """Per market +1 (longs pay), -1 (shorts pay) or 0: the side holding more lots in
        accounts levered above the guard's ``max_leverage`` (notional / equity; equity <= 0
        counts) pays the funding adjustment, so the risk the fund would cover is discouraged."""
        led = self.ledger
        notional = led.notional(led.qty, self.marks).sum(axis=1)
        eq = self.equity()
        over = ((eq <= 0) | (notional > self.config.fund_guard_max_leverage * eq)) & (notional > 0) & ~led.is_venue()
        q = led.qty[over]
        return np.sign(np.clip(q, 0, None).sum(axis=0) - np.clip(-q, 0, None).sum(axis=0)).astype(float)

    def update_marks(self, roll: bool = True) -> np.ndarray:
        """New marks; with ``roll`` (once per step) also the previous mark and the running
        average of open-interest value."""
        marks = self.prices.update_mark(self.mids(), roll)
        if roll and self.config.fund_guard_threshold is not None:
            self._sample_open_interest()
        return marks

    def _sample_open_interest(self) -> None:
        """The fund guard's running average of open-interest value takes this step's sample."""
        value = self.open_interest_value()
        self.oi_samples.append((self.time, value))
        self.oi_value_sum += value
        self.oi_value_count += 1
        start = self.time - self.config.fund_guard_window_seconds
        while self.oi_samples and self.oi_samples[0][0] <= start + 1e-9:
            _, old = self.oi_samples.popleft()
            self.oi_value_sum -= old
            self.oi_value_count -= 1

    def apply_funding(self) -> np.ndarray:
        """Settle funding for the interval just ended; returns the rates."""
        rate = self.prices.funding_rate(self.config.funding)
        if self.config.fund_guard_funding_adjustment and self.fund_guard_active():
            rate = rate + self.config.fund_guard_funding_adjustment * self.fund_relief_side()
        pay = funding_payments(self.ledger.qty, self.marks, self.contract_values, rate, self._inverse_mask)
        payers = np.flatnonzero(pay)
        self.ledger.transfer(payers, self.fee_pool, pay[payers])
        self.settle_period()
        return rate

    def settle_period(self) -> None:
        """End of a settlement window: deferred socialization is charged, profit windows reset."""
        for stage in self.waterfall:
            stage.settle(self)
        self.window_equity = self.equity()
        self.window_flows = np.zeros(self.ledger.n_accounts, dtype=np.int64)
        self.prices.reset_extremes()

    def window_profit(self) -> np.ndarray:
        """Net profit of each account since the settlement window began, net of deposits."""
        return self.equity() - self.window_equity - self.window_flows

    def holds_inventory(self) -> bool:
        """Whether the backstop vault, the insurance fund or the engine holds a position (what
        ``unwind_venue_positions`` would sell)."""
        qty = self.ledger.qty
        if qty.shape[1] == 1:
            return bool(qty[self.backstop, 0] or qty[self.insurance_fund, 0] or qty[self.engine, 0])
        return bool(qty[self.backstop].any() or qty[self.insurance_fund].any() or qty[self.engine].any())

    def unwind_venue_positions(self, holders=None) -> None:
        """The backstop vault, the fund and the engine sell part of what they took over."""
        holders = (self.backstop, self.insurance_fund, self.engine) if holders is None else holders
        qty = self.ledger.qty
        if qty.shape[1] == 1:  # the usual step: no inventory to unwind
            if not any(qty[h, 0] for h in holders):
                return
        elif not any(qty[h].any() for h in holders):
            return
        for holder in holders:
            for m in range(self.n_markets):
                q = int(self.ledger.qty[holder, m])
                if q == 0:
                    continue
                size = max(1, int(abs(q) * self.config.unwind_fraction))
                side = SELL if q > 0 else BUY
                band = self.config.unwind_band
                mark = float(self.marks[m])  # the int64 mark times a float: the float product
                limit = math.ceil(mark * (1 - band)) if side == SELL else math.floor(mark * (1 + band))
                book = self.books[m]
                k = kernels.book()
                if k is not None and book.compiled and not self.inverse[m]:  # one call: match and ledger
                    b, a = book.bids, book.asks
                    out, bid_cols, ask_cols = k.ioc_settle(
                        m, np.array([holder], dtype=np.int64), np.array([side], dtype=np.int64),
                        np.array([size], dtype=np.int64), np.array([limit], dtype=np.int64), self.ledger.wallet,
                        self.ledger.qty, self.ledger.cost, self.contract_values, b.price, b.qty, b.owner, b.oid,
                        a.price, a.qty, a.owner, a.oid)
                    b.price, b.qty, b.owner, b.oid = bid_cols
                    a.price, a.qty, a.owner, a.oid = ask_cols
                    fills = Fills(*out)
                    if len(fills):  # ``settle``'s bookkeeping
                        self.prices.last[m] = float(out[4, -1])
                        self.volume[m] += int(out[3].sum())
                else:
                    fills = book.submit([holder], [side], [size], [limit])
                    self.settle(m, fills, fees=False)
                if len(fills):
                    self.events.add("unwind", account=holder, market=m, qty=int(fills.qty.sum()),
                                    price=float(fills.price.mean()))

    def liquidate(self) -> int:
        """Liquidation rounds until no account is below maintenance; returns the cascade depth."""
        waterfall, due = self._due_stages
        if waterfall is not self.waterfall:  # the stages that defer charges, listed once
            self._due_stages = waterfall, due = self.waterfall, [s for s in self.waterfall if type(s).due is not Stage.due]
        for stage in due:  # deferred charges that have come due (delayed socialization)
            stage.due(self)
        depth = 0
        broke = None  # the closing check, known early when the first scan flags nobody
        self.quiet_totals = None
        for r in range(self.config.max_rounds):
            self.events.round = r
            if r == 0 and kernels.scan() is not None:
                flagged, quiet_broke, totals = self._first_scan()
                if len(flagged) == 0:
                    broke = quiet_broke
                    if not broke and len(totals):  # nothing moves before the step ends
                        self.quiet_totals = totals
            else:
                flagged = np.flatnonzero(self.liquidatable())
            if len(flagged) == 0:
                break
            eq = self.equity(flagged)
            mm = self.maintenance(flagged).sum(axis=1)
            flagged = flagged[np.argsort(eq / np.maximum(mm, 1), kind="stable")]  # worst first
            self.cancel_orders(flagged)
            before_qty = self.ledger.qty[flagged].copy()
            before_wallet = self.ledger.wallet[flagged].copy()
            run_round(self, self.waterfall, Cases.flagged(self, flagged))
            moved = (self.ledger.qty[flagged] != before_qty).any() or (self.ledger.wallet[flagged] != before_wallet).any()
            if not moved:
                break
            depth += 1
            self.update_marks(roll=False)
        self.events.round = depth
        if self._inventory_may_be_broke() if broke is None else broke:
            cover_engine_inventory(self, self.waterfall)
        return depth

    def _first_scan(self) -> tuple[np.ndarray, bool, np.ndarray]:
        """``np.flatnonzero(liquidatable())``, ``_inventory_may_be_broke()`` and, on a linear
        ledger, the ledger's totals in one compiled call (``_nb_scan.quiet_scan``): the whole
        pass of a quiet step."""
        led = self.ledger
        if self._tier_arrays is None:
            self._tier_arrays = _tier_arrays(self.tiers)
        if self._holder_rows is None:  # (the order ``step_totals`` reads)
            self._holder_rows = np.array([self.engine, self.insurance_fund, self.backstop], dtype=np.int64)
        return kernels.scan().quiet_scan(led.wallet, led.qty, led.cost, kernels.i64(self.marks), self.contract_values,
                                         led.inverse, bool(led.any_inverse), *self._tier_arrays, led.is_venue(),
                                         self._holder_rows)

    def _inventory_may_be_broke(self) -> bool:
        """Whether an inventory holder (engine, fund, backstop vault) has equity below zero:
        ``cover_engine_inventory``'s test, one compiled call (the quiet step ends here)."""
        if self._holder_rows is None:
            self._holder_rows = np.array([self.engine, self.insurance_fund, self.backstop], dtype=np.int64)
        return min(self.equity(self._holder_rows).tolist()) < 0

    def start_step(self, step: int) -> None:
        """A new step begins: events are stamped with it."""
        self.step = self.events.step = step

    def add_funding_premium(self, extra) -> None:
        """A scripted funding spike: ``extra`` premium per market added to this step's average."""
        self.prices.premium_sum += extra

    def step_totals(self) -> tuple[int, np.ndarray, np.ndarray, list[int]]:
        """What the step's record takes from the ledger at the step's end: ``Ledger.totals``
        (the conservation check) and the equity of the insurance fund, the backstop vault and
        the engine. The values of the step's quiet liquidation pass when it was the last thing
        to touch the ledger (``quiet_totals``, used once); a pass of their own otherwise."""
        scanned, self.quiet_totals = self.quiet_totals, None
        if scanned is None:
            rows = np.array([self.insurance_fund, self.backstop, self.engine], dtype=np.int64)
            return (*self.ledger.totals(self.marks), self.equity(rows).tolist())
        engine, fund, backstop = scanned[-3:].tolist()  # the first scan's holder rows
        return (*self.ledger.totals(self.marks, scanned[:-3]), [fund, backstop, engine])

    def conservation_residual(self) -> int:
        return self.ledger.conservation_residual(self.marks)


def _tier_arrays(tiers) -> tuple[np.ndarray, ...]:
    """Maintenance tiers of every market as padded int64 arrays (floors, rates, deductions,
    tier count) for ``kernels.liquidatable``."""
    width = max(len(t.floors) for t in tiers)
    floors = np.zeros((len(tiers), width), dtype=np.int64)
    mmr = np.zeros((len(tiers), width), dtype=np.int64)
    ded = np.zeros((len(tiers), width), dtype=np.int64)
    for m, t in enumerate(tiers):
        k = len(t.floors)
        floors[m, :k] = t.floors
        mmr[m, :k] = t.mmr_ppm
        ded[m, :k] = t.deductions
    return floors, mmr, ded, np.array([len(t.floors) for t in tiers], dtype=np.int64)
