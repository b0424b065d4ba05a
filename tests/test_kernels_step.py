"""The compiled step path (issue 13) against the numpy references it replaces, bit for bit on
random inputs (never a timing): the ledger scans (``_nb_scan``), the book and quote kernels
(``_nb_book``), the makers' ladder and the traders' decision pass (whole runs with and without
the kernels give the same ledger and event log), the trader agents made only on demand, and a
conservation break caught in the step it happens."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agents.arbitrageurs as arbitrageurs
import agents.market_makers as market_makers
import agents.traders as traders
from agents.traders import LeveragedTrader
from simulator.venue import _nb, kernels
from simulator.venue.book import BUY, SELL, OrderBook
from simulator.venue.fixedpoint import PPM, muldiv_ceil
from simulator.venue.margin import MarginTiers
from simulator.venue.market import MarketSpec
from simulator.venue.prices import MarkConfig, PriceState
from simulator.venue.settlement import fill_notional
from simulator.venue.venue import Venue, VenueConfig, _tier_arrays
from simulator.world.model import PerpModel
from simulator.world.scenario import validate

from conftest import unit_market

SCAN = kernels.scan()
BOOK = kernels.book()


def test_compiled_step_kernels_are_available():
    assert SCAN is not None and BOOK is not None
    assert traders._kernels() is not None and market_makers._kernels() is not None


# ------------------------------------------------------------------ ledger scans
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.integers(1, 3))
def test_scan_kernels_equal_the_first_kernels_and_numpy(seed, n, n_markets):
    rng = np.random.default_rng(seed)
    # tiers with floors the notionals cross (notional = |lots| x mark x cv up to ~2e7)
    tiers = [MarginTiers((0, 10**5, 10**6, 10**7), (5_000, 10_000, 25_000, 50_000)), MarginTiers((0,), (20_000,)),
             MarginTiers((0, 3 * 10**6), (7_000, 13_000))][:n_markets]
    v = Venue(VenueConfig(markets=[unit_market(f"M{m}", tiers=tiers[m]) for m in range(n_markets)]), rng)
    acc = v.add_accounts(n, "trader", rng.integers(0, 10**6, n))
    for m in range(n_markets):
        lots = rng.integers(0, 2_000, n) * (rng.random(n) < 0.7)
        v.opening_auction(m, np.r_[acc, acc], np.r_[lots, -lots[::-1]], 1_000)
    cuts = rng.integers(0, 10**6, n // 3)
    v.ledger.wallet[acc[: n // 3]] -= cuts  # some below maintenance, some flat and negative
    cut = int(cuts.sum())
    led = v.ledger
    tier_arrays = _tier_arrays(v.tiers)
    for mark in (1_000, 700, 1_400, 9_000):
        v.prices.mark[:] = mark
        marks = kernels.i64(v.marks)
        fast = SCAN.liquidatable(led.wallet, led.qty, led.cost, marks, v.contract_values, *tier_arrays, led.is_venue())
        linear = np.zeros(v.n_markets, dtype=np.bool_)
        first = _nb.liquidatable(led.wallet, led.qty, led.cost, marks, v.contract_values, linear, *tier_arrays,
                                 led.is_venue())
        assert np.array_equal(fast, first)
        assert np.array_equal(fast, v.liquidatable_reference())
        # the quiet pass's one call: flagged rows, holder check, the ledger's totals
        flagged, broke, scanned = v._first_scan()
        assert flagged.tolist() == np.flatnonzero(v.liquidatable_reference()).tolist()
        assert broke is v._inventory_may_be_broke() is False  # the venue rows hold nothing
        w, u, net, oi = SCAN.ledger_totals(led.wallet, led.qty, led.cost, marks, v.contract_values)
        w0, u0, net0, oi0 = _nb.ledger_totals(led.wallet, led.qty, led.cost, marks, v.contract_values)
        assert (w, u) == (w0, u0) and np.array_equal(net, net0) and np.array_equal(oi, oi0)
        holders = [v.engine, v.insurance_fund, v.backstop]
        assert scanned.tolist() == [w, u, *net.tolist(), *oi.tolist(), *led.equity(v.marks, holders).tolist()]
        assert led.totals(marks, scanned[:-3])[0] == led.totals(marks)[0] == -cut
        assert np.array_equal(net, led.qty.sum(axis=0)) and np.array_equal(oi, np.clip(led.qty, 0, None).sum(axis=0))
        # the wallets were cut by hand above, so the residual is that cut: -sum(cuts)
        assert int(w) + int(u) - led.deposits == v.conservation_residual() == -cut


def test_equity_of_a_few_rows_equals_the_ledger_and_a_hand_sum():
    # two markets, contract value 1 (unit markets), marks 120 and 30: an account with wallet
    # 1,000, long 3 lots bought at 100 (cost 300) and short 2 lots sold at 40 (cost -80) has
    # equity 1,000 + (3 x 120 - 300) + (-2 x 30 + 80) = 1,000 + 60 + 20 = 1,080
    v = Venue(VenueConfig(markets=[unit_market("A"), unit_market("B")]), np.random.default_rng(0))
    a, other = v.add_accounts(2, "trader", [1_000, 10**6])
    v.opening_auction(0, [a, other], [3, -3], 100)
    v.opening_auction(1, [a, other], [-2, 2], 40)
    v.set_index([120, 30])
    v.update_marks()
    assert v.marks.tolist() == [120, 30]
    rows = np.array([a, other, a], dtype=np.int64)
    assert v.equity(rows).tolist() == [1_080, 10**6 - 60 - 20, 1_080]
    led = v.ledger
    rng = np.random.default_rng(5)  # random positions: the kernel is the ledger's numpy sum
    led.qty[:] = rng.integers(-10**6, 10**6, led.qty.shape)
    led.cost[:] = rng.integers(-10**9, 10**9, led.cost.shape)
    some = rng.integers(0, led.n_accounts, 7)
    assert np.array_equal(v.equity(some), led.equity(v.marks, some))
    assert np.array_equal(v.equity(some), v.equity()[some])


@pytest.mark.parametrize("lots, mm", [(600, 1_450), (40, 40), (100, 150), (5_000, 23_450)])
def test_scan_at_the_maintenance_boundary_by_hand(lots, mm):
    # tiers 1 % from 0, 2 % from 5,000, 5 % from 50,000: deductions 0, 5,000 x 1 % = 50,
    # 50 + 50,000 x 3 % = 1,550. At mark 100: 600 lots = 60,000 -> 3,000 - 1,550 = 1,450;
    # 40 lots = 4,000 -> 40; 100 lots = 10,000 -> 200 - 50 = 150; 5,000 lots = 500,000 -> 23,450.
    # Equity one unit below the margin is liquidatable, at or above it is not.
    tiers = MarginTiers((0, 5_000, 50_000), (10_000, 20_000, 50_000))
    v = Venue(VenueConfig(markets=[unit_market(tiers=tiers)]), np.random.default_rng(0))
    accounts = v.add_accounts(3, "trader", [mm - 1, mm, mm + 1])
    short = v.add_accounts(1, "trader", 10**9)[0]
    v.set_index([100])
    v.update_marks()
    v.opening_auction(0, np.r_[accounts, short], [lots, lots, lots, -3 * lots], 100)
    assert v.maintenance(accounts).sum(axis=1).tolist() == [mm] * 3
    assert v.liquidatable()[accounts].tolist() == [True, False, False]
    assert v.liquidatable_reference()[accounts].tolist() == [True, False, False]


# ------------------------------------------------------------------ mark update
def _price_state(method, n, rng):
    ps = PriceState(n, MarkConfig(method=method))
    ps.set_index(rng.uniform(50.0, 5_000.0, n))
    return ps


def _price_fields(ps):
    return [np.asarray(getattr(ps, f)).tobytes() for f in
            ("mark", "previous_mark", "basis_ema", "mark_high", "mark_low", "premium_sum", "last", "index")] + [
        ps.premium_count]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.sampled_from(["median", "index", "index_basis", "mid", "last"]))
def test_mark_kernel_equals_numpy_reference(seed, n, method):
    # a walk of index moves, mids (some NaN: a one-sided book), trades and rolls; the compiled
    # update and the numpy reference must leave every field bit for bit the same
    rng = np.random.default_rng(seed)
    fast = _price_state(method, n, rng)
    ref = copy.deepcopy(fast)
    for _ in range(40):
        if rng.random() < 0.3:
            ticks = rng.uniform(50.0, 5_000.0, n)
            fast.set_index(ticks)
            ref.set_index(ticks)
        if rng.random() < 0.3:
            fast.last[:] = ref.last[:] = rng.uniform(40.0, 6_000.0, n)
        if rng.random() < 0.1:
            fast.reset_extremes()
            ref.reset_extremes()
        mids = fast.index * rng.uniform(0.9, 1.1, n) + rng.uniform(-0.5, 0.5, n)
        mids[rng.random(n) < 0.2] = np.nan
        roll = bool(rng.random() < 0.6)
        assert fast.update_mark(mids.copy(), roll).tobytes() == ref.update_mark_reference(mids.copy(), roll).tobytes()
        assert _price_fields(fast) == _price_fields(ref)


def test_mark_median_by_hand():
    # index 1,000, alpha 0.5: mid 1,010 -> basis EMA 0 x 0.5 + 10 x 0.5 = 5, fair 1,005; last
    # 1,000 (set from the index): median(1,005, 1,010, 1,000) = 1,005. The premium
    # (1,005 - 1,000) / 1,000 = 0.005 is summed for funding.
    ps = PriceState(1, MarkConfig(method="median", basis_ema_alpha=0.5))
    ps.set_index([1_000.0])
    assert ps.update_mark(np.array([1_010.0])).tolist() == [1_005]
    assert ps.basis_ema.tolist() == [5.0] and ps.premium_sum.tolist() == [0.005]
    assert ps.mark_high.tolist() == [1_005] and ps.mark_low.tolist() == [1_000]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 400), st.integers(1, 3))
def test_window_std_equals_numpy_std(seed, steps, n_markets):
    # realised volatility: numpy sums one column pairwise (eight running sums, halves above
    # 128 terms) and several columns row after row; the kernel must give numpy's std bit for
    # bit on every window, short ones and ones longer than a pairwise block included
    rng = np.random.default_rng(seed)
    path = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (steps + 1, n_markets)), axis=0))
    returns = np.ascontiguousarray(np.diff(np.log(path), axis=0))
    k = kernels.prices()
    for _ in range(10):
        lo = int(rng.integers(0, steps - 1))
        hi = int(rng.integers(lo + 2, steps + 1))
        assert k.window_std(returns, lo, hi).tobytes() == returns[lo:hi].std(axis=0).tobytes()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.integers(1, 3), st.integers(1, 200))
def test_the_whole_runs_windows_equal_numpy_step_by_step(seed, steps, n_markets, window):
    # the index path is fixed for a run, so the model computes every step's realised vol and
    # signs at once: row t must be numpy's std of the returns in t's window (zero while it
    # holds fewer than two returns) and the signs of ``signals`` at t, bit for bit
    rng = np.random.default_rng(seed)
    path = np.ascontiguousarray(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (steps, n_markets)), axis=0)))
    returns = np.ascontiguousarray(np.diff(np.log(path), axis=0))
    k = kernels.prices()
    vol = k.window_std_table(returns, window, steps)
    trend, reversion = k.window_signals_table(path, window, steps)
    for t in range(steps):
        lo = max(0, t - window)
        want = np.zeros(n_markets) if t + 1 - lo < 3 else returns[lo:t].std(axis=0)
        assert vol[t].tobytes() == want.tobytes()
        w = path[lo : t + 1]
        assert trend[t].tobytes() == np.sign(w[-1] - w[0]).tobytes()
        assert reversion[t].tobytes() == (-np.sign(w[-1] - w.mean(axis=0))).tobytes()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.integers(1, 3), st.booleans())
def test_window_signals_equal_the_signs_of_numpy_signals(seed, steps, n_markets, flat):
    # the traders' signs from the index window: sign(last - first) and -sign(last - mean), the
    # mean as numpy's mean(axis=0); a flat path (every sign 0) and windows of one step included
    rng = np.random.default_rng(seed)
    path = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (steps, n_markets)), axis=0))
    if flat:
        path[:] = 100.0
    k = kernels.prices()
    for _ in range(10):
        hi = int(rng.integers(1, steps + 1))
        lo = max(0, hi - int(rng.integers(1, 200)))
        w = path[lo:hi]
        trend, reversion = k.window_signals(path, lo, hi)
        assert trend.tobytes() == np.sign(w[-1] - w[0]).tobytes()
        assert reversion.tobytes() == (-np.sign(w[-1] - w.mean(axis=0))).tobytes()


def test_window_std_by_hand():
    # returns 1, 3 (mean 2, squared deviations 1 and 1): variance 1, std 1; returns 0, 0, 6:
    # mean 2, squared deviations 4, 4, 16, variance 8, std sqrt(8)
    k = kernels.prices()
    assert k.window_std(np.array([[1.0], [3.0], [9.0]]), 0, 2).tolist() == [1.0]
    assert k.window_std(np.array([[0.0, 1.0], [0.0, 3.0], [6.0, 5.0]]), 0, 3).tolist() == [8 ** 0.5, (8 / 3) ** 0.5]


# ------------------------------------------------------------------ book kernels
def _random_book(rng, n_rest) -> OrderBook:
    b = OrderBook()
    for _ in range(3):  # several posts: ids interleave across prices
        k = int(rng.integers(0, n_rest + 1))
        sides = np.where(rng.random(k) < 0.5, BUY, SELL)
        prices = np.where(sides == BUY, rng.integers(90, 100, k), rng.integers(101, 111, k))
        b.post(rng.integers(0, 6, k), sides, prices, rng.integers(1, 20, k))
    return b


def _side_columns(b: OrderBook):
    return [getattr(getattr(b, s), c).tolist() for s in ("bids", "asks") for c in ("price", "qty", "owner", "oid")]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 25), st.integers(0, 25))
def test_book_kernels_equal_numpy_reference(seed, n_rest, n_new):
    rng = np.random.default_rng(seed)
    fast = _random_book(rng, n_rest)
    ref = copy.deepcopy(fast)
    # post-only batch, sometimes crossing itself or the book, with empty and bad orders
    sides = np.where(rng.random(n_new) < 0.5, BUY, SELL)
    prices = rng.integers(-1, 115, n_new)
    qtys = rng.integers(-1, 15, n_new)
    assert fast.postable(sides, prices, qtys).tolist() == ref.postable_reference(sides, prices, qtys).tolist()
    owners = rng.integers(0, 6, n_new)
    ok = fast.postable(sides, prices, qtys)
    for side, s_fast, s_ref in ((BUY, fast.bids, ref.bids), (SELL, fast.asks, ref.asks)):
        m = ok & (sides == side)
        oids = 1_000 + np.flatnonzero(m)
        s_fast.insert(prices[m], qtys[m], owners[m], oids)
        s_ref.insert_reference(prices[m], qtys[m], owners[m], oids)
    assert _side_columns(fast) == _side_columns(ref)
    who = np.unique(rng.integers(0, 6, 3))
    assert [x.tolist() for x in fast.resting_lots_of(who)] == [x.tolist() for x in ref.resting_lots_of_reference(who)]
    gone = rng.integers(0, 6, int(rng.integers(0, 3)))
    assert fast.cancel_owners(gone) == ref.cancel_owners_reference(gone)
    assert _side_columns(fast) == _side_columns(ref)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 25), st.floats(80.0, 120.0), st.sampled_from([0.0, 0.01, 0.05]))
def test_depth_kernel_equals_numpy_reference(seed, n_rest, ref_price, fraction):
    b = _random_book(np.random.default_rng(seed), n_rest)
    assert b.depth_within(fraction, ref_price) == b.depth_within_reference(fraction, ref_price)


def test_depth_within_by_hand():
    # bids 99 x 4, 98 x 3, 90 x 5; asks 101 x 2, 102 x 7; 1 % of 100: bids >= 99 (4 lots),
    # asks <= 101 (2 lots); 10 %: bids >= 90 (4 + 3 + 5 = 12), asks <= 110 (2 + 7 = 9)
    b = OrderBook()
    b.post([1, 1, 1, 2, 2], [BUY, BUY, BUY, SELL, SELL], [99, 98, 90, 101, 102], [4, 3, 5, 2, 7])
    assert b.depth_within(0.01, 100.0) == (4, 2)
    assert b.depth_within(0.1, 100.0) == (12, 9)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 25), st.integers(1, 25), st.booleans())
def test_submit_kernel_equals_side_by_side_matching(seed, n_rest, n_in, market_orders):
    rng = np.random.default_rng(seed)
    fast = _random_book(rng, n_rest)
    ref = copy.deepcopy(fast)
    ref.compiled = False  # the numpy matcher, one side after the other
    owners, qtys = rng.integers(10, 20, n_in), rng.integers(0, 30, n_in)
    sides = np.where(rng.random(n_in) < 0.5, BUY, SELL)
    limits = None if market_orders else rng.integers(85, 116, n_in)
    f1, f2 = fast.submit(owners, sides, qtys, limits), ref.submit(owners, sides, qtys, limits)
    for f in f1.__dataclass_fields__:
        assert getattr(f1, f).tolist() == getattr(f2, f).tolist(), f
    assert _side_columns(fast) == _side_columns(ref)


def test_submit_fills_in_arrival_order_by_hand():
    # asks 101 x 5 (id 0), 102 x 5 (id 1); bids 99 x 4 (id 2). Batch: buy 7, sell 3, buy 2:
    # buy 7 takes 5 @ 101 and 2 @ 102, the sell 3 @ 99, the last buy 2 @ 102
    b = OrderBook()
    b.post([1, 1, 2], [SELL, SELL, BUY], [101, 102, 99], [5, 5, 4])
    f = b.submit([7, 8, 9], [BUY, SELL, BUY], [7, 3, 2])
    assert f.qty.tolist() == [5, 2, 3, 2] and f.price.tolist() == [101, 102, 99, 102]
    assert f.order_index.tolist() == [0, 0, 1, 2] and f.taker_side.tolist() == [BUY, BUY, SELL, BUY]
    assert f.maker_order_id.tolist() == [0, 1, 2, 1]
    assert b.asks.qty.tolist() == [1] and b.bids.qty.tolist() == [1]


def test_insert_merges_by_price_then_arrival():
    # bids at 99 (id 0), 98 (id 1) rest; new 99 (id 5), 100 (id 6), 98 (id 7): by price best
    # first, then arrival: 100/6, 99/0, 99/5, 98/1, 98/7
    b = OrderBook()
    b.post([1, 2], [BUY, BUY], [99, 98], [1, 1])
    b.bids.insert(np.array([99, 100, 98]), np.array([1, 1, 1]), np.array([3, 4, 5]), np.array([5, 6, 7]))
    assert b.bids.price.tolist() == [100, 99, 99, 98, 98]
    assert b.bids.oid.tolist() == [6, 0, 5, 1, 7]


# ------------------------------------------------------------ margin checks
def _inverse(spec: MarketSpec) -> MarketSpec:
    # K = lot_size / (tick_size x cash_unit) = 10,007 (prime): at ~100 ticks a lot is worth
    # ~100 cash units, as in the unit market, and floor(|q| K / P) almost never divides evenly
    return dataclasses.replace(spec, lot_size=10_007.0, settlement="inverse")


def _venue_with_positions(seed, guard: bool, inverse: bool = False, n_markets: int = 2):
    rng = np.random.default_rng(seed)
    markets = [unit_market("A", maker_fee_ppm=int(rng.integers(-200, 500)), taker_fee_ppm=int(rng.integers(0, 800)),
                           max_leverage=50.0), unit_market("B", max_leverage=20.0)][:n_markets]
    if inverse:
        markets = [_inverse(m) for m in markets]
    kw = {"fund_guard_threshold": 10.0, "fund_guard_max_leverage": 2.5} if guard else {}
    v = Venue(VenueConfig(markets=markets, insurance_fund=1_000, **kw), rng)
    n = 8
    acc = v.add_accounts(n, "market_maker", rng.integers(0, 20_000, n), leverage=rng.uniform(1, 60, n))
    for m in range(n_markets):
        lots = rng.integers(0, 300, n)
        v.opening_auction(m, np.r_[acc, acc], np.r_[lots, -lots[::-1]], 100)
    v.set_index([100.0] * n_markets)
    v.update_marks()
    if guard:
        v.oi_value_sum, v.oi_value_count = 10**9, 1  # the fund is far below the guard
        assert v.fund_guard_active()
    for m in range(n_markets):  # something already resting
        k = 6
        sides = np.where(rng.random(k) < 0.5, BUY, SELL)
        v.books[m].post(rng.choice(acc, k), sides, np.where(sides == BUY, 95, 105), rng.integers(1, 50, k))
    return v, acc, rng


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_quote_and_order_margin_kernels_equal_numpy_reference(seed, guard, inverse):
    # inverse: the kernels value lots as floor(|q| K / P) (settlement.py), bit for bit numpy's
    v, acc, rng = _venue_with_positions(seed, guard, inverse)
    assert v.ledger.any_inverse == inverse
    n = 20
    owners, sides = rng.choice(acc, n), np.where(rng.random(n) < 0.5, BUY, SELL)
    qtys = rng.integers(0, 400, n)
    market = int(rng.integers(0, 2))
    fast = v.quote_margin_ok(market, owners, sides, qtys)
    assert fast.tolist() == v.quote_margin_ok_reference(market, owners, sides, qtys).tolist()

    # a maker batch: ladders near to far on both sides, some crossing the book or each other
    ref = copy.deepcopy(v)
    prices = np.where(sides == BUY, rng.integers(92, 104, n), rng.integers(97, 109, n))
    o1 = v.post_quotes(market, owners, sides, prices, qtys)
    o2 = ref.post_quotes_reference(market, owners, sides, prices, qtys)
    assert o1.tolist() == o2.tolist() and v.quote_rejections == ref.quote_rejections
    assert v.books[market]._next_oid == ref.books[market]._next_oid
    assert _side_columns(v.books[market]) == _side_columns(ref.books[market])

    ref = copy.deepcopy(v)
    reduce_only = rng.random(n) < 0.3
    limits = rng.integers(90, 111, n)
    f1 = v.submit_orders(market, owners, sides, qtys, limits, reduce_only=reduce_only)
    f2 = ref.submit_orders_reference(market, owners, sides, qtys, limits, reduce_only=reduce_only)
    for f in f1.__dataclass_fields__:
        assert np.array_equal(getattr(f1, f), getattr(f2, f)), f
    assert v.rejections == ref.rejections
    for col in ("wallet", "qty", "cost"):
        assert np.array_equal(getattr(v.ledger, col), getattr(ref.ledger, col))
    assert np.array_equal(v.equity(acc), v.ledger.equity(v.marks, acc))

    # fees of fills: ceil(value x rate / 1e6) each, value = settlement.fill_notional
    spec, cv = v.markets[market], int(v.contract_values[market])
    q, px = rng.integers(1, 10**6, n), rng.integers(50, 200, n)
    taker, maker = rng.choice(acc, n), rng.choice(acc, n)
    wallet = v.ledger.wallet.copy()
    BOOK.pay_fees(wallet, taker, maker, q, px, cv, spec.taker_fee_ppm, spec.maker_fee_ppm, v.fee_pool, inverse)
    expect = v.ledger.wallet.copy()
    value = fill_notional(q, px, cv, inverse)
    for who, ppm in ((taker, spec.taker_fee_ppm), (maker, spec.maker_fee_ppm)):
        fee = muldiv_ceil(value, ppm, PPM)
        np.subtract.at(expect, who, fee)
        expect[v.fee_pool] += int(fee.sum())
    assert np.array_equal(wallet, expect)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans(), st.integers(0, 20))
def test_requote_kernel_equals_cancel_then_post(seed, guard, inverse, n):
    # a maker's re-quote on a one-market venue (one compiled call) is the numpy cancel of the
    # owners given, then the numpy post: same ids, queue order, rejections
    v, acc, rng = _venue_with_positions(seed, guard, inverse, n_markets=1)
    cancel = rng.choice(acc, int(rng.integers(0, len(acc) + 1)), replace=False)
    owners, sides = rng.choice(acc, n), np.where(rng.random(n) < 0.5, BUY, SELL)
    qtys = rng.integers(0, 400, n)
    prices = np.where(sides == BUY, rng.integers(92, 104, n), rng.integers(97, 109, n))
    ref = copy.deepcopy(v)
    o1 = v.requote(0, cancel, owners, sides, prices, qtys)
    ref.books[0].cancel_owners_reference(cancel)
    o2 = ref.post_quotes_reference(0, owners, sides, prices, qtys) if n else np.zeros(0, dtype=np.int64)
    assert o1.tolist() == o2.tolist() and v.quote_rejections == ref.quote_rejections
    assert v.books[0]._next_oid == ref.books[0]._next_oid
    assert _side_columns(v.books[0]) == _side_columns(ref.books[0])
    assert not np.isin(v.books[0].bids.owner, np.setdiff1d(cancel, owners)).any()

    # the liquidation pass's first scan, one call on this (linear or inverse) ledger
    led = v.ledger
    holder = int(rng.choice([v.engine, v.insurance_fund, v.backstop]))
    led.wallet[acc[:3]] -= rng.integers(0, 30_000, 3)  # some below maintenance
    led.wallet[holder] -= int(rng.integers(0, 2_000))  # the fund holds 1,000: broke below that
    flagged, broke, scanned = v._first_scan()
    assert flagged.tolist() == np.flatnonzero(v.liquidatable_reference()).tolist()
    holders = [v.engine, v.insurance_fund, v.backstop]
    assert broke is v._inventory_may_be_broke() is bool((led.equity(v.marks, holders) < 0).any())
    if inverse:  # the inverse scan sums nothing: the record makes its own pass
        assert len(scanned) == 0
    else:
        fresh = led.totals(v.marks)
        got = led.totals(v.marks, scanned[:-3])
        assert got[0] == fresh[0] and np.array_equal(got[1], fresh[1]) and np.array_equal(got[2], fresh[2])
        assert scanned[-3:].tolist() == led.equity(v.marks, holders).tolist()


def test_order_margin_refuses_by_hand():
    # equity 100, leverage 10, mark 100: a 10-lot buy needs IM 10 x 100 / 10 = 100 plus a taker
    # fee of ceil(1,000 x 1,000 / 1e6) = 1 -> 99 < 100, refused; 9 lots need 90 + 1 -> accepted
    v = Venue(VenueConfig(markets=[unit_market(taker_fee_ppm=1_000)]), np.random.default_rng(0))
    a = v.add_accounts(1, "trader", 100, leverage=10.0)[0]
    mm = v.add_accounts(1, "market_maker", 10**9)[0]
    v.set_index([100])
    v.update_marks()
    v.books[0].post([mm], [SELL], [100], [1_000])
    assert len(v.submit_orders(0, [a], [BUY], [10])) == 0 and v.rejections == 1
    assert v.submit_orders(0, [a], [BUY], [9]).qty.tolist() == [9]


def test_fees_by_hand_with_a_maker_rebate():
    # 100 lots at 100 = value 10,000: taker 1,000 ppm -> 10; maker -250 ppm -> ceil(-2.5) = -2,
    # a rebate the pool pays; the pool nets 8 and the ledger still adds up
    v = Venue(VenueConfig(markets=[unit_market(taker_fee_ppm=1_000, maker_fee_ppm=-250)]), np.random.default_rng(0))
    t, mk = v.add_accounts(2, "trader", 10**6)
    v.set_index([100])
    v.update_marks()
    v.post_quotes(0, [mk], [SELL], [100], [100])
    v.submit_orders(0, [t], [BUY], [100])
    assert v.ledger.wallet[v.fee_pool] == 8
    assert v.equity(np.array([t, mk])).tolist() == [10**6 - 10, 10**6 + 2]
    assert v.conservation_residual() == 0


# ------------------------------------------------------------------ makers' ladder
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 12), st.booleans())
def test_maker_ladder_kernel_equals_the_numpy_ladder(seed, n, levels, inverse):
    """Random makers, inventories on both sides of their limits, dead makers, random skew and
    limit share: the compiled ladder is ``market_makers.ladder`` bit for bit."""
    rng = np.random.default_rng(seed)
    accounts = np.sort(rng.choice(50, n, replace=False)).astype(np.int64)
    equity = rng.integers(-10**6, 10**9, n).astype(np.int64)
    qty = rng.integers(-10**5, 10**5, (50, 2)).astype(np.int64)
    fair = float(rng.uniform(100.0, 2e6))
    cv = int(rng.choice([1, 10, 1000]))
    m = int(rng.integers(0, 2))
    limit, leverage = float(rng.uniform(0.05, 2)), float(rng.uniform(1, 50))
    base, half, spacing = float(rng.uniform(0, 500)), float(rng.uniform(1e-5, 0.05)), float(rng.uniform(1e-5, 0.01))
    skew_coef, share = float(rng.choice([0.0, rng.uniform(0, 0.2)])), float(rng.choice([0.0, 1.0, rng.uniform(0, 1)]))
    q = qty[accounts, m]
    inventory = q * cv / fair if inverse else q * fair * cv  # Venue.exposure_cash
    want = market_makers.ladder(accounts, equity, inventory, fair, limit, leverage, base, half, spacing, levels,
                                skew_coef, share)
    got = market_makers._kernels().maker_ladder(accounts, equity, qty, m, fair, cv, limit, leverage, base, half,
                                                spacing, levels, inverse, skew_coef, share)
    for a, b in zip(got, want):
        assert a.dtype == np.int64 and np.array_equal(a, b)


# ------------------------------------------------------------ arbitrageurs' ladder
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(1, 8), st.sampled_from([1.0, 1.5, 2.0, 3.7]))
def test_arb_quotes_kernel_equals_the_numpy_basis_ladder(seed, n, levels, growth):
    """Random arbitrageurs (broke ones, positions beyond their room on either side): the compiled
    rooms and ladder are ``arbitrageurs._room`` + ``basis_ladder`` bit for bit."""
    import types

    import agents.arbitrageurs as arbitrageurs

    rng = np.random.default_rng(seed)
    accounts = np.sort(rng.choice(40, n, replace=False)).astype(np.int64)
    equity = rng.integers(-10**6, 10**10, n).astype(np.int64)
    qty = rng.integers(-10**6, 10**6, (40, 2)).astype(np.int64)
    m = int(rng.integers(0, 2))
    index, lot_cash = float(rng.uniform(10.0, 2e6)), float(rng.uniform(0.01, 1e4))
    leverage, threshold, spacing = float(rng.uniform(1, 20)), float(rng.uniform(1e-4, 0.01)), float(rng.uniform(1e-4, 0.01))
    level_lots = int(rng.integers(0, 10**5))
    venue = types.SimpleNamespace(lot_cash=lambda market, price: lot_cash, ledger=types.SimpleNamespace(qty=qty))
    buy_room, sell_room = arbitrageurs._room(venue, m, accounts, equity, index, leverage)
    want = arbitrageurs.basis_ladder(accounts, buy_room, sell_room, index, threshold, spacing, levels, level_lots,
                                     growth)
    size, before = arbitrageurs._level_sizes(level_lots, levels, growth)
    got = kernels.load("agents._nb_arbs").arb_quotes(accounts, equity, qty, m, leverage, arbitrageurs.CAPITAL_USE,
                                                     lot_cash, index, threshold, spacing, size, before)
    for a, b in zip(got, want):
        assert a.dtype == np.int64 and np.array_equal(a, b)


# --------------------------------------------------------------- whole runs
def _scenario(**traders_extra) -> dict:
    t = {"count": 400, "trade_probability": 0.05, "isolated_share": 0.3, "stop_loss": 0.5, "take_profit": 0.8,
         "multi_market_share": 0.3, "leverage": {"median": 30, "sigma": 0.3, "cap": 50}, "long_share": 0.8,
         **traders_extra}
    return {
        "name": "kernels", "seed": 5, "steps": 150,
        "markets": [{"name": "BTC", "tick_size": 0.1, "lot_size": 0.001, "max_leverage": 50},
                    {"name": "ETH", "tick_size": 0.01, "lot_size": 0.01, "max_leverage": 25}],
        "index": {"models": [{"kind": "gbm", "start_price": 50_000, "volatility": 0.8},
                             {"kind": "gbm", "start_price": 3_000, "volatility": 0.9}], "correlation": 0.7},
        "shocks": [{"kind": "index_move", "step": 60, "duration": 20, "move": -0.12}],
        "agents": {"traders": t, "market_makers": {"count": 3, "capital": 8_000_000, "level_notional": 20_000},
                   "arbitrageurs": {"count": 1}},
        "venue": {"insurance_fund": 50_000},
    }


def _run(sc, monkeypatch, compiled: bool) -> PerpModel:
    with monkeypatch.context() as mp:
        if not compiled:
            mp.setattr(traders, "_kernels", lambda: None)
            mp.setattr(market_makers, "_kernels", lambda: None)
            mp.setattr(arbitrageurs, "_kernels", lambda: None)
            mp.setattr(kernels, "book", lambda: None)
            mp.setattr(kernels, "scan", lambda: None)
            mp.setattr(kernels, "prices", lambda: None)  # marks, realised vol, signals in numpy
        model = PerpModel(sc)
        model.run()
    return model


@pytest.mark.parametrize("extra", [{}, {"hedger_leverage": {"median": 0.5, "sigma": 0.3}, "long_share": 0.3}])
def test_compiled_run_equals_numpy_run(monkeypatch, extra):
    data = _scenario(**extra)
    if extra:
        # takers-only arbitrageurs with the hedgers: the basis ladder (sized for 1,000 traders)
        # holds this 400-trader dip to 14 liquidations; the first case runs with the ladder
        data["agents"]["arbitrageurs"]["quote_levels"] = 0
    sc = validate(data)
    fast, slow = _run(sc, monkeypatch, True), _run(sc, monkeypatch, False)
    assert fast.venue.events.to_frame().equals(slow.venue.events.to_frame())
    for col in ("wallet", "qty", "cost"):
        assert np.array_equal(getattr(fast.venue.ledger, col), getattr(slow.venue.ledger, col))
    assert (fast.venue.rejections, fast.venue.quote_rejections) == (slow.venue.rejections, slow.venue.quote_rejections)
    assert (fast.venue.events.to_frame()["kind"] == "liquidation").sum() > 30  # the run went through a cascade
    # the recorded series (one column store per step, the book depth compiled) bit for bit
    assert {k: v.tobytes() for k, v in fast.series.items()} == {k: v.tobytes() for k, v in slow.series.items()}


def test_one_market_run_with_fused_quotes_equals_the_numpy_run(monkeypatch):
    # on a one-market venue the makers' equity, ladder, cancel and post are one compiled call
    # (``requote_ladder``), and so are the arbitrageurs' equity, basis ladder and post
    # (``post_ladder``) and the traders' orders gathered and submitted (``send_decided``): the
    # run is the numpy run (cancel, ladder, margin checks, post, match, settle) exactly
    from pathlib import Path

    from simulator.experiments import run

    root = Path(__file__).resolve().parents[1]
    sc = run.load_scenario(root / "scenarios/cascade.yaml", {"agents.traders.count": 300, "steps": 400})
    fast, slow = _run(sc, monkeypatch, True), _run(sc, monkeypatch, False)
    assert fast.venue.n_markets == 1 and fast.arb_config.quote_levels > 0
    assert fast.venue.events.to_frame().equals(slow.venue.events.to_frame())
    for col in ("wallet", "qty", "cost"):
        assert np.array_equal(getattr(fast.venue.ledger, col), getattr(slow.venue.ledger, col))
    book_f, book_s = fast.venue.books[0], slow.venue.books[0]
    for side in ("bids", "asks"):
        for col in ("price", "qty", "owner", "oid"):
            assert np.array_equal(getattr(getattr(book_f, side), col), getattr(getattr(book_s, side), col))
    assert len(book_f.bids.qty) > 0 and set(fast.arb_accounts) & set(book_f.bids.owner)  # arbitrageurs rest bids
    assert fast.venue.quote_rejections == slow.venue.quote_rejections
    assert (fast.venue.events.to_frame()["kind"] == "liquidation").sum() > 10


def test_inverse_run_with_the_kernels_equals_the_numpy_run(monkeypatch):
    # on an inverse (coin-margined) ledger the compiled traders' pass, makers' ladder, margin
    # checks and fees value lots as floor(|q| K / P): the run is the numpy run exactly
    from pathlib import Path

    from simulator.experiments import run

    root = Path(__file__).resolve().parents[1]
    sc = run.load_scenario(root / "scenarios/inverse_crash.yaml", {"agents.traders.count": 200})
    fast, slow = _run(sc, monkeypatch, True), _run(sc, monkeypatch, False)
    assert fast.venue.ledger.any_inverse
    assert fast.venue.events.to_frame().equals(slow.venue.events.to_frame())
    for col in ("wallet", "qty", "cost"):
        assert np.array_equal(getattr(fast.venue.ledger, col), getattr(slow.venue.ledger, col))
    assert fast.venue.ledger.wallet[fast.venue.fee_pool] > 0  # fees were charged (in coin)


# ------------------------------------------------------------ agents, checks
def test_trader_agents_are_made_on_demand_with_the_set_up_ids():
    sc = validate({"name": "ids", "seed": 1, "steps": 20,
                   "index": {"models": [{"kind": "gbm", "start_price": 50_000, "volatility": 0.5}]},
                   "agents": {"traders": {"count": 100}, "market_makers": {"count": 2, "capital": 2_000_000},
                              "arbitrageurs": {"count": 1}}})
    model = PerpModel(sc)
    model.run()
    assert len(model._agents) == 5  # stepping made no trader object: exchange, 2 makers, 1 arb, backstop
    # mesa numbers agents from 1 in creation order: exchange 1, makers 2-3, arbitrageur 4,
    # traders 5..104 (slot order), backstop vault 105
    traders_set = model.agents_by_type[LeveragedTrader]
    assert sorted(a.unique_id for a in traders_set) == list(range(5, 105))
    assert [a.account for a in sorted(traders_set, key=lambda a: a.slot)] == model.traders.accounts.tolist()
    assert model.backstop_vault.unique_id == 105 and model.exchange.unique_id == 1
    assert len(model.agents) == 105


def test_a_quiet_step_records_the_totals_its_liquidation_pass_summed(monkeypatch):
    # a quiet step's conservation check and venue-row equity reuse the sums of its liquidation
    # pass (the pass was the step's last touch of the ledger): at every step they equal a pass
    # of their own, and steps with liquidations make their own pass
    from pathlib import Path

    from simulator.experiments import run

    root = Path(__file__).resolve().parents[1]
    sc = run.load_scenario(root / "scenarios/cascade.yaml", {"agents.traders.count": 300, "steps": 400})
    model = PerpModel(sc)
    venue = model.venue
    reused = []
    step_totals = venue.step_totals

    def checked():
        reused.append(venue.quiet_totals is not None)
        fresh = venue.ledger.totals(venue.marks)
        rows = [venue.insurance_fund, venue.backstop, venue.engine]
        got = step_totals()
        assert got[0] == fresh[0] == 0
        assert np.array_equal(got[1], fresh[1]) and np.array_equal(got[2], fresh[2])
        assert got[3] == venue.ledger.equity(venue.marks, rows).tolist()
        return got

    monkeypatch.setattr(venue, "step_totals", checked)
    model.run()
    assert 300 < sum(reused) < len(reused) == 400  # mostly quiet, some steps liquidate


def test_conservation_break_is_caught_in_the_step_it_happens():
    sc = validate({"name": "break", "seed": 2, "steps": 30,
                   "index": {"models": [{"kind": "gbm", "start_price": 50_000, "volatility": 0.5}]},
                   "agents": {"traders": {"count": 50}}})
    model = PerpModel(sc)
    for _ in range(12):
        model.step()
    trader = int(model.traders.accounts[0])
    model.venue.ledger.wallet[trader] += 1  # one cash unit out of nowhere, no deposit recorded
    with pytest.raises(RuntimeError, match="ledger broke conservation at step 12: residual 1"):
        model.step()


def test_snapshots_keep_only_changed_accounts_and_rebuild_every_table():
    from types import SimpleNamespace

    from simulator.venue import audit

    led = SimpleNamespace(wallet=np.array([5, 7, 9]), qty=np.zeros((3, 1), np.int64), cost=np.zeros((3, 1), np.int64))
    venue = SimpleNamespace(ledger=led, insurance_fund=1, equity=lambda a: led.wallet[a])
    rec = audit.SnapshotRecorder(step_seconds=60.0)
    rec.record(0, venue)
    led.wallet[1] = 8  # account 1 pays
    led.qty[2, 0], led.cost[2, 0] = 3, 300  # account 2 opens 3 lots
    rec.record(1, venue)
    led.wallet = np.array([5, 8, 9, 4])  # an account opened after the start (a whale)
    led.qty = np.zeros((4, 1), np.int64)
    led.cost = np.zeros((4, 1), np.int64)
    led.qty[2, 0], led.cost[2, 0] = 3, 300
    rec.record(2, venue)
    assert [r["changed"].tolist() for r in rec.rows] == [[0, 1, 2], [1, 2], [3]]
    table = rec.balances_frame()
    assert table["snapshot"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert table["wallet"].tolist() == [5, 7, 9, 5, 8, 9, 5, 8, 9, 4]
    assert table["qty_0"].tolist() == [0, 0, 0, 0, 0, 3, 0, 0, 3, 0]
    assert table["cost_0"].tolist() == [0, 0, 0, 0, 0, 300, 0, 0, 300, 0]


def test_warm_up_leaves_no_kernel_to_load_inside_a_run():
    # in a fresh process: after the warm-up (what the bench and the pool workers call), a
    # cascade run with trading, liquidations and unwinds meets no kernel signature it did not
    # already have; a new one would be loaded from numba's cache (or compiled) inside the run
    import subprocess
    import sys

    code = """
import importlib
from simulator.experiments import run
from simulator.world.model import PerpModel
mods = [importlib.import_module(m) for m in ("simulator.venue._nb", "simulator.venue._nb_book",
        "simulator.venue._nb_scan", "simulator.venue._nb_prices", "agents._nb_traders", "agents._nb_makers", "agents._nb_arbs")]
run.warm_up()
def loaded():
    return {(m.__name__, n): len(f.signatures) for m in mods for n, f in vars(m).items() if hasattr(f, "signatures")}
before = loaded()
sc = run.load_scenario("scenarios/cascade.yaml", {"agents.traders.count": 400, "steps": 420})
model = PerpModel(sc, 1)
model.run()
assert model.venue.events.count("liquidation") > 0 and model.venue.volume.sum() > 0
new = {k: v for k, v in loaded().items() if v != before.get(k, 0)}
assert not new, new
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ------------------------------------------------------------------ inverse maintenance scan (float bound)
def _inverse_market(name, lot_size, tiers):
    # tick 1, cash unit 0.01: K = lot_size / 0.01 cash units per lot at price 1 (lot 100 -> K = 10,000)
    return MarketSpec(name=name, tick_size=1.0, lot_size=float(lot_size), cash_unit=0.01, settlement="inverse",
                      max_leverage=100.0, tiers=tiers)


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.sampled_from(["inverse", "inverse+inverse", "inverse+linear"]),
       st.sampled_from([1, 100, 10_000]))
def test_inverse_scan_equals_numpy_reference_at_the_boundary(seed, n, layout, lot_size):
    rng = np.random.default_rng(seed)
    tiers = MarginTiers((0, 10**5, 10**6, 10**7), (5_000, 10_000, 25_000, 50_000))
    markets = [_inverse_market("I0", lot_size, tiers)]
    if layout == "inverse+inverse":
        markets.append(_inverse_market("I1", 100, MarginTiers((0, 3 * 10**6), (7_000, 13_000))))
    elif layout == "inverse+linear":
        markets.append(unit_market("L", tiers=MarginTiers((0,), (20_000,))))
    v = Venue(VenueConfig(markets=markets), rng)
    acc = v.add_accounts(n, "trader", 0)
    led = v.ledger
    # positions up to 10^7 lots (notionals to ~10^13 cash units), a third flat; any cost
    led.qty[acc] = rng.integers(-10**7, 10**7, (n, v.n_markets)) * (rng.random((n, v.n_markets)) < 0.67)
    led.cost[acc] = rng.integers(-10**12, 10**12, (n, v.n_markets))
    for marks in ([1_000, 50], [7, 3], [99_991, 12_345]):
        v.prices.mark[:] = marks[: v.n_markets]
        # wallets that put the equity exactly at the margin, one unit either side, or anywhere:
        # where a float bound that is too tight would decide wrongly
        led.wallet[acc] = 0
        gap = v.maintenance(acc).sum(axis=1) - v.equity(acc)
        led.wallet[acc] = gap + rng.choice([-1, 0, 1, -(10**6), 10**6], n)
        led.wallet[acc[:5]] = rng.integers(-10, 10, min(5, n))  # flat or not, negative or not
        fast = v.liquidatable()
        assert led.any_inverse and np.array_equal(fast, v.liquidatable_reference())
        # the exact boundary is really hit: equity = margin - 1 is liquidatable for a position
        held = (led.qty[acc] != 0).any(axis=1)
        mm = v.maintenance(acc).sum(axis=1)
        eq = v.equity(acc)
        assert np.array_equal(fast[acc][held & (mm > 0)], (eq < mm)[held & (mm > 0)])


@pytest.mark.parametrize("side, mark, wallet, liquidatable", [
    # long 7 inverse lots opened at 100 (K = 10,000: value -floor(7 x 10,000 / 100) = -700 = cost);
    # at mark 30: notional floor(70,000 / 30) = floor(2,333.3) = 2,333, value -2,333, equity
    # wallet - 2,333 + 700 = wallet - 1,633; margin ceil(2,333 x 1 %) = ceil(23.33) = 24.
    # wallet 1,656 -> equity 23 < 24: liquidatable; 1,657 -> 24: not; 1,658 -> 25: not.
    (1, 30, 1_656, True), (1, 30, 1_657, False), (1, 30, 1_658, False),
    # short 7 at 100 (value +700 = cost); at mark 300: notional floor(70,000 / 300) = 233, value
    # +233, equity wallet + 233 - 700 = wallet - 467; margin ceil(2.33) = 3.
    # wallet 469 -> equity 2 < 3: liquidatable; 470 -> 3: not.
    (-1, 300, 469, True), (-1, 300, 470, False),
])
def test_inverse_scan_at_the_maintenance_boundary_by_hand(side, mark, wallet, liquidatable):
    v = Venue(VenueConfig(markets=[_inverse_market("I", 100, MarginTiers((0,), (10_000,)))]), np.random.default_rng(0))
    a, other = v.add_accounts(2, "trader", [wallet, 10**9])
    v.opening_auction(0, [a, other], [7 * side, -7 * side], 100)
    assert v.ledger.cost[a, 0] == -700 * side and v.ledger.wallet[a] == wallet
    v.prices.mark[:] = mark
    mm, eq = int(v.maintenance(np.array([a])).sum()), int(v.equity(np.array([a]))[0])
    assert (mm, eq) == ((24, wallet - 1_633) if side == 1 else (3, wallet - 467))
    assert v.liquidatable()[a] == liquidatable == v.liquidatable_reference()[a]


@settings(max_examples=300, deadline=None)
@given(st.floats(1.0, 1e7), st.floats(1.0, 1e8), st.sampled_from([(1.0, 0.0001), (0.1, 0.001), (0.01, 0.01), (0.5, 1.0)]))
def test_lots_for_quote_scalar_path_equals_the_array_path(quote, price, units):
    # an agent's per-step size takes Python floats; it must round exactly as the numpy path
    # (half to even), including exact halves
    tick, lot = units
    spec = MarketSpec(name="x", tick_size=tick, lot_size=lot, cash_unit=0.01, max_leverage=10.0,
                      taker_fee_ppm=0, maker_fee_ppm=0, tiers=MarginTiers((0,), (5_000,)))
    half = (np.floor(quote / (price * tick) / lot) + 0.5) * lot * price * tick  # near an exact half
    for q in (quote, half):
        assert int(spec.lots_for_quote(q, price)) == int(spec.lots_for_quote(np.array([q]), np.array([price]))[0])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.sampled_from(["median", "index", "index_basis", "mid"]))
def test_roll_marks_equals_set_index_then_update_mark(seed, n, method):
    """The open step's one compiled call (``PriceState.roll_marks``) leaves the same state, bit for
    bit, as ``set_index(max(rint(price / tick), 1))`` then ``update_mark(mids, roll=True)``, and as
    the numpy reference of the mark update; one-sided books (NaN mids) included."""
    rng = np.random.default_rng(seed)
    fast = PriceState(n, MarkConfig(method=method, basis_ema_alpha=float(rng.uniform(0.01, 1))))
    fast.mark = rng.integers(1, 10**7, n).astype(np.int64)
    fast.previous_mark = rng.integers(1, 10**7, n).astype(np.int64)
    fast.mark_high = np.maximum(fast.mark, rng.integers(1, 10**7, n)).astype(np.int64)
    fast.mark_low = np.minimum(fast.mark, rng.integers(1, 10**7, n)).astype(np.int64)
    fast.last = rng.uniform(1, 1e7, n)
    fast.basis_ema = rng.normal(0, 100, n)
    fast.premium_sum = rng.normal(0, 1e-3, n)
    fast.index = rng.uniform(1, 1e7, n)
    ref, numpy_ref = copy.deepcopy(fast), copy.deepcopy(fast)
    ticks = rng.choice([0.01, 0.1, 0.5, 1.0], n)
    prices = rng.uniform(0.001, 1e5, n) * np.where(rng.random(n) < 0.1, 1e-6, 1)  # some round to 0 -> 1 tick
    mids = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(1, 1e7, n))
    assert fast.roll_marks(prices.copy(), ticks.copy(), mids.copy())
    index_ticks = np.maximum(np.rint(prices / ticks), 1)
    ref.set_index(index_ticks)
    ref.update_mark(mids.copy(), roll=True)
    numpy_ref.set_index(index_ticks)
    numpy_ref.update_mark_reference(mids.copy(), roll=True)
    for other in (ref, numpy_ref):
        for name in ("index", "mark", "previous_mark", "mark_high", "mark_low", "last", "basis_ema", "premium_sum"):
            a, b = getattr(fast, name), getattr(other, name)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
        assert fast.premium_count == other.premium_count
