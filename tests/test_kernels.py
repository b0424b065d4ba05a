"""The compiled kernels (simulator/venue/kernels.py) against the numpy references they replace:
bit-for-bit equal on random inputs (never a timing)."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.venue import kernels
from simulator.venue.book import BUY, SELL, OrderBook
from simulator.venue.ledger import Ledger
from simulator.venue.margin import MarginTiers
from simulator.venue.market import MarketSpec
from simulator.venue.venue import Venue, VenueConfig

from conftest import unit_market

K = kernels.get()


def test_numba_kernels_are_available():
    assert K is not None  # numba is a dependency: the fast path must be the one that runs


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.integers(1, 40))
def test_trade_kernel_equals_numpy_reference(seed, n_acc, n_fills):
    rng = np.random.default_rng(seed)
    led = Ledger(np.array([int(rng.integers(1, 1000))]))
    led.add_accounts(n_acc, "trader", 10**12)
    # some positions to reduce and flip
    buyers = rng.integers(0, n_acc, n_fills)
    sellers = rng.integers(0, n_acc, n_fills)
    qty = rng.integers(0, 50, n_fills)
    price = rng.integers(1, 10**6, n_fills)
    ref = copy.deepcopy(led)
    led.trade(0, buyers, sellers, qty, price)
    ref.trade_reference(0, buyers, sellers, qty, price)
    for _ in range(2):  # a second batch on top of the positions of the first
        b2, s2 = rng.integers(0, n_acc, n_fills), rng.integers(0, n_acc, n_fills)
        q2, p2 = rng.integers(0, 80, n_fills), rng.integers(1, 10**6, n_fills)
        led.trade(0, b2, s2, q2, p2)
        ref.trade_reference(0, b2, s2, q2, p2)
    assert np.array_equal(led.wallet, ref.wallet)
    assert np.array_equal(led.qty, ref.qty)
    assert np.array_equal(led.cost, ref.cost)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.integers(1, 40), st.sampled_from([10**5, 2 * 10**8, 10**11]))
def test_inverse_trade_kernel_equals_numpy_reference(seed, n_acc, n_fills, k):
    """Inverse fills (value ``-floor(q K / P)``): ``trade_values`` equals the numpy reference and
    moves no cash in total (``sum(wallet) - sum(cost)`` stays 0)."""
    rng = np.random.default_rng(seed)
    led = Ledger(np.array([k]), np.array([True]))
    led.add_accounts(n_acc, "trader", 10**12)
    ref = copy.deepcopy(led)
    for lots_hi in (50, 80, 10**6):
        b, s = rng.integers(0, n_acc, n_fills), rng.integers(0, n_acc, n_fills)
        q, p = rng.integers(0, lots_hi, n_fills), rng.integers(1, 10**6, n_fills)
        led.trade(0, b, s, q, p)
        ref.trade_reference(0, b, s, q, p)
    assert np.array_equal(led.wallet, ref.wallet)
    assert np.array_equal(led.qty, ref.qty)
    assert np.array_equal(led.cost, ref.cost)
    assert int(led.wallet.sum()) - int(led.cost.sum()) == n_acc * 10**12
    assert led.conservation_residual([int(rng.integers(1, 10**6))]) == 0


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(1, 30), st.booleans())
def test_match_kernel_equals_numpy_reference(seed, n_rest, n_in, rest):
    """IOC batches (the fused kernel) and resting limit orders one at a time (the per-side
    kernel) match exactly as the numpy reference does."""
    rng = np.random.default_rng(seed)
    books = [OrderBook(), OrderBook()]
    for b in books:
        r = np.random.default_rng(seed)
        b.post(r.integers(0, 9, n_rest), np.where(r.random(n_rest) < 0.5, BUY, SELL),
               np.where(r.random(n_rest) < 0.5, r.integers(90, 100, n_rest), r.integers(101, 111, n_rest)),
               r.integers(1, 20, n_rest))
    owners, qtys = rng.integers(10, 20, n_in), rng.integers(1, 30, n_in)
    sides = np.where(rng.random(n_in) < 0.5, BUY, SELL)
    limits = rng.integers(85, 116, n_in)
    fast = books[0].submit(owners, sides, qtys, limits, rest=rest)
    ref_book = books[1]
    ref_book.compiled = False  # the numpy path
    slow = ref_book.submit(owners, sides, qtys, limits, rest=rest)
    for f in fast.__dataclass_fields__:
        assert np.array_equal(getattr(fast, f), getattr(slow, f)), f
    for side in ("bids", "asks"):
        for col in ("price", "qty", "owner", "oid"):
            assert np.array_equal(getattr(getattr(books[0], side), col), getattr(getattr(ref_book, side), col))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.booleans())
def test_liquidatable_and_totals_kernels_equal_numpy_reference(seed, n, inverse):
    rng = np.random.default_rng(seed)
    tiers = MarginTiers((0, 5_000, 50_000), (10_000, 20_000, 50_000))
    # ``inverse``: market A is an inverse contract with K = 10,000 (1 contract at 100 ticks is
    # worth 100 cash units, like the linear one), so the mixed kernel runs
    a = unit_market("A", tiers=tiers)
    if inverse:
        a = MarketSpec(name="A", tick_size=1.0, lot_size=100.0, cash_unit=0.01, settlement="inverse",
                       max_leverage=100.0, tiers=tiers)
    v = Venue(VenueConfig(markets=[a, unit_market("B")]), rng)
    acc = v.add_accounts(n, "trader", rng.integers(0, 3_000, n))
    lots = rng.integers(0, 40, n)
    v.opening_auction(0, np.r_[acc, acc], np.r_[lots, -lots[::-1]], 100)
    v.opening_auction(1, acc, rng.integers(-30, 30, n) * (np.arange(n) % 2 * 2 - 1), 50)
    v.ledger.wallet[acc[: n // 3]] -= rng.integers(0, 5_000, n // 3)  # some below maintenance, some flat and negative
    for mark in (100, 80, 125):
        v.prices.mark[:] = [mark, 50]
        assert np.array_equal(v.liquidatable(), v.liquidatable_reference())
        residual, net, oi = v.ledger.totals(v.marks)
        assert residual == v.ledger.conservation_residual(v.marks)
        assert np.array_equal(net, v.ledger.qty.sum(axis=0))
        assert np.array_equal(oi, v.ledger.open_interest())


def test_a_book_with_compiled_off_matches_with_the_numpy_reference(monkeypatch):
    """The comparisons above mean something only if ``compiled = False`` really takes the numpy
    path (and the default book does not)."""
    calls = []
    original = OrderBook._match_reference

    def spy(self, *args):
        calls.append(self.compiled)
        return original(self, *args)

    monkeypatch.setattr(OrderBook, "_match_reference", spy)
    for compiled in (True, False):
        b = OrderBook()
        b.compiled = compiled
        b.post([1], [SELL], [101], [5])
        fills = b.submit([2], [BUY], [3])
        assert fills.qty.tolist() == [3] and fills.price.tolist() == [101]
    assert calls == ([False] if kernels.get() is not None else [True, False])


# ------------------------------------------------------------------ ADL settle at bankruptcy, all cases at once
@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 30), st.sampled_from([10, 10**6, 10**13]))
def test_largest_remainder_by_case_equals_one_split_per_case(seed, n_cases, n_rows, scale):
    from simulator.venue.fixedpoint import largest_remainder
    from simulator.venue.waterfall.adl import largest_remainder_by_case

    rng = np.random.default_rng(seed)
    case = rng.integers(0, n_cases, n_rows)  # rows of a case interleaved with others'
    weights = rng.integers(0, scale, n_rows)  # zeros allowed...
    weights[rng.random(n_rows) < 0.3] = 7  # ...and ties (equal remainders)
    used = np.unique(case)
    for k in used:  # ...but never all zero in a case
        if weights[case == k].sum() == 0:
            weights[np.flatnonzero(case == k)[0]] = 1
    totals = rng.integers(0, scale, n_cases)  # scale 1e13: total x weight ~ 1e26, far past int64
    parts, wsum = largest_remainder_by_case(totals, case, weights)
    for k in used:
        mine = case == k
        assert parts[mine].tolist() == largest_remainder(int(totals[k]), weights[mine]).tolist()
        assert int(parts[mine].sum()) == int(totals[k]) and int(wsum[k]) == int(weights[mine].sum())


def test_largest_remainder_by_case_by_hand():
    from simulator.venue.waterfall.adl import largest_remainder_by_case

    # case 0: 10 over weights 1, 1, 1 (rows 0, 2, 4) -> 3.33 each: floors 3, 3, 3, one unit left
    # to the largest remainder, all equal (1/3) -> the earliest row: 4, 3, 3.
    # case 1: 7 over weights 3, 1 (rows 1, 3) -> 5.25 and 1.75: floors 5, 1, one unit left to the
    # larger remainder (0.75, row 3): 5, 2.
    parts, wsum = largest_remainder_by_case([10, 7], [0, 1, 0, 1, 0], [1, 3, 1, 1, 1])
    assert parts.tolist() == [4, 5, 3, 2, 3] and wsum.tolist() == [3, 4]
    # 2**62 split 1:3 -> 2**60 and 3 * 2**60, although 2**62 * 3 overflows int64
    parts, _ = largest_remainder_by_case([2**62], [0, 0], [1, 3])
    assert parts.tolist() == [2**60, 3 * 2**60]
