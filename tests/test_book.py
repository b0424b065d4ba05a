"""Order book unit tests (ABIDES-style: one behaviour per test, every fill checked).

Owners are plain integers, prices whole ticks, sizes whole lots.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.venue.book import BUY, SELL, OrderBook


def fills_list(f):
    """(taker, maker, qty, price) per fill, in execution order."""
    return list(zip(f.taker.tolist(), f.maker.tolist(), f.qty.tolist(), f.price.tolist()))


def book_side(book, side):
    s = book.bids if side == BUY else book.asks
    return list(zip(s.owner.tolist(), s.price.tolist(), s.qty.tolist()))


# ------------------------------------------------------------------ priority
def test_same_price_earlier_order_fills_first():
    b = OrderBook()
    b.post([1], [SELL], [100], [5])
    b.post([2], [SELL], [100], [5])
    f = b.submit([9], [BUY], [7])
    # owner 1 arrived first at 100: all 5 of its lots, then 2 of owner 2's
    assert fills_list(f) == [(9, 1, 5, 100), (9, 2, 2, 100)]
    assert book_side(b, SELL) == [(2, 100, 3)]


def test_same_price_time_priority_on_bids_in_one_post_batch():
    b = OrderBook()
    b.post([1, 2, 3], [BUY, BUY, BUY], [100, 100, 100], [1, 1, 1])
    f = b.submit([9], [SELL], [2])
    assert fills_list(f) == [(9, 1, 1, 100), (9, 2, 1, 100)]
    assert book_side(b, BUY) == [(3, 100, 1)]


def test_better_price_beats_earlier_time():
    b = OrderBook()
    b.post([1], [SELL], [101], [5])  # earlier, worse
    b.post([2], [SELL], [100], [5])  # later, better
    assert b.best_ask() == 100
    f = b.submit([9], [BUY], [3])
    assert fills_list(f) == [(9, 2, 3, 100)]
    b.post([3], [BUY], [98], [5])  # earlier, worse
    b.post([4], [BUY], [99], [5])  # later, better
    f = b.submit([8], [SELL], [6])
    assert fills_list(f) == [(8, 4, 5, 99), (8, 3, 1, 98)]


# ------------------------------------------------------------ partial fills
def test_partial_fill_of_a_resting_order_keeps_its_place():
    b = OrderBook()
    ids = b.post([1, 2], [SELL, SELL], [100, 100], [10, 10])
    b.submit([9], [BUY], [4])
    # owner 1's order is cut to 6 and stays ahead of owner 2 (same order id)
    assert book_side(b, SELL) == [(1, 100, 6), (2, 100, 10)]
    assert b.asks.oid.tolist() == ids.tolist()
    f = b.submit([9], [BUY], [7])
    assert fills_list(f) == [(9, 1, 6, 100), (9, 2, 1, 100)]


def test_incoming_order_walks_levels():
    b = OrderBook()
    b.post([1, 2, 3], [SELL] * 3, [100, 101, 102], [2, 3, 5])
    f = b.submit([9], [BUY], [6])
    # 2 @ 100, 3 @ 101, then 1 of the 5 @ 102
    assert fills_list(f) == [(9, 1, 2, 100), (9, 2, 3, 101), (9, 3, 1, 102)]
    assert book_side(b, SELL) == [(3, 102, 4)]
    # sell side mirrored: bids 99 x1, 98 x1; a sell of 5 takes both, the other 3 are dropped (IOC)
    b.post([4, 5], [BUY, BUY], [99, 98], [1, 1])
    f = b.submit([8], [SELL], [5])
    assert fills_list(f) == [(8, 4, 1, 99), (8, 5, 1, 98)]
    assert b.best_bid() is None


def test_market_order_larger_than_the_book_takes_everything():
    b = OrderBook()
    b.post([1, 2], [SELL, SELL], [100, 150], [1, 1])
    f = b.submit([9], [BUY], [10])
    assert f.qty.sum() == 2 and b.best_ask() is None


# --------------------------------------------------------------- IOC / GTC
def test_ioc_remainder_is_dropped():
    b = OrderBook()
    b.post([1], [SELL], [100], [2])
    f = b.submit([9], [BUY], [5], limits=[100], rest=False)
    assert fills_list(f) == [(9, 1, 2, 100)]
    assert b.best_bid() is None and b.best_ask() is None
    assert b.orders_of(9) == 0


def test_gtc_remainder_rests_at_its_limit():
    b = OrderBook()
    b.post([1], [SELL], [100], [2])
    f = b.submit([9], [BUY], [5], limits=[100], rest=True)
    assert fills_list(f) == [(9, 1, 2, 100)]
    assert book_side(b, BUY) == [(9, 100, 3)]
    # it is now a resting order like any other: a seller hits it
    f = b.submit([7], [SELL], [1])
    assert fills_list(f) == [(7, 9, 1, 100)]


def test_gtc_batch_later_order_can_hit_an_earlier_ones_remainder():
    b = OrderBook()
    # buy 3 @ 100 rests (empty book), then sell 2 @ 100 from another owner trades against it
    f = b.submit([1, 2], [BUY, SELL], [3, 2], limits=[100, 100], rest=True)
    assert fills_list(f) == [(2, 1, 2, 100)]
    assert book_side(b, BUY) == [(1, 100, 1)]
    assert b.best_ask() is None


def test_gtc_that_does_not_reach_the_book_just_rests():
    b = OrderBook()
    b.post([1], [SELL], [105], [2])
    f = b.submit([9], [BUY], [5], limits=[100], rest=True)
    assert len(f) == 0
    assert book_side(b, BUY) == [(9, 100, 5)]


# -------------------------------------------------------- limits in a batch
def test_limit_respected_in_a_batch_strict_then_loose():
    b = OrderBook()
    b.post([1, 2, 3], [SELL] * 3, [100, 101, 102], [2, 2, 2])
    # A (owner 7) buy 3 limit 100 gets only the 2 lots at 100; B (owner 8) buy 3 limit 102
    # takes what A left: 2 @ 101 and 1 @ 102
    f = b.submit([7, 8], [BUY, BUY], [3, 3], limits=[100, 102])
    assert fills_list(f) == [(7, 1, 2, 100), (8, 2, 2, 101), (8, 3, 1, 102)]
    assert f.order_index.tolist() == [0, 1, 1]
    assert book_side(b, SELL) == [(3, 102, 1)]


def test_limit_respected_in_a_batch_loose_then_strict():
    b = OrderBook()
    b.post([1, 2], [SELL] * 2, [100, 101], [2, 2])
    # A buy 3 limit 101: 2 @ 100 + 1 @ 101. B buy 3 limit 100: level 100 is gone -> nothing.
    # C buy 1 limit 101: the last lot @ 101.
    f = b.submit([7, 8, 9], [BUY] * 3, [3, 3, 1], limits=[101, 100, 101])
    assert fills_list(f) == [(7, 1, 2, 100), (7, 2, 1, 101), (9, 2, 1, 101)]
    assert b.best_ask() is None


def test_sell_limits_in_a_batch():
    b = OrderBook()
    b.post([1, 2], [BUY] * 2, [100, 98], [2, 2])
    # A sell 3 limit 99: 2 @ 100 only (98 < 99). B sell 3 limit 98: 2 @ 98.
    f = b.submit([7, 8], [SELL, SELL], [3, 3], limits=[99, 98])
    assert fills_list(f) == [(7, 1, 2, 100), (8, 2, 2, 98)]


def test_limit_away_from_the_book_takes_nothing():
    b = OrderBook()
    b.post([1, 2], [SELL, BUY], [100, 90], [5, 5])
    f = b.submit([7, 8], [BUY, SELL], [1, 1], limits=[99, 91])
    assert len(f) == 0
    assert b.resting_lots(SELL) == 5 and b.resting_lots(BUY) == 5


def test_mixed_batch_fills_come_in_arrival_order_with_buyer_and_seller():
    b = OrderBook()
    b.post([1, 2], [SELL, BUY], [101, 99], [5, 5])
    f = b.submit([7, 8, 9], [SELL, BUY, SELL], [1, 2, 3])
    assert f.order_index.tolist() == [0, 1, 2]
    assert fills_list(f) == [(7, 2, 1, 99), (8, 1, 2, 101), (9, 2, 3, 99)]
    # buyer/seller: a buy taker is the buyer, a sell taker the seller
    assert f.buyer.tolist() == [2, 8, 2]
    assert f.seller.tolist() == [7, 1, 9]


# ---------------------------------------------------------------- post-only
def test_post_only_orders_that_would_cross_are_dropped():
    b = OrderBook()
    b.post([1, 2], [BUY, SELL], [100, 103], [1, 1])
    ids = b.post([3, 4, 5, 6], [BUY, BUY, SELL, SELL], [103, 101, 100, 102], [1, 1, 1, 1])
    # buy @103 touches the ask 103 and sell @100 touches the bid 100: dropped, nothing trades
    assert (ids >= 0).tolist() == [False, True, False, True]
    assert book_side(b, BUY) == [(4, 101, 1), (1, 100, 1)]
    assert book_side(b, SELL) == [(6, 102, 1), (2, 103, 1)]


def test_post_only_within_one_batch_cannot_cross_itself():
    b = OrderBook()
    # empty book: the bid @101 is accepted first, so the ask @101 and @100 after it would cross
    ids = b.post([1, 2, 3, 4], [BUY, SELL, SELL, SELL], [101, 101, 100, 102], [1, 1, 1, 1])
    assert (ids >= 0).tolist() == [True, False, False, True]
    assert b.best_bid() == 101 and b.best_ask() == 102
    assert b.best_bid() < b.best_ask()


def test_post_only_non_positive_orders_are_dropped():
    b = OrderBook()
    ids = b.post([1, 2], [BUY, SELL], [100, 0], [0, 3])
    assert ids.tolist() == [-1, -1]
    assert b.best_bid() is None and b.best_ask() is None


# --------------------------------------------------------------- cancel/depth
def test_cancel_all_orders_of_one_owner():
    b = OrderBook()
    b.post([1, 2, 1, 2, 1], [BUY, BUY, SELL, SELL, SELL], [99, 98, 101, 102, 103], [1, 2, 3, 4, 5])
    assert b.orders_of(1) == 3
    assert b.cancel_owners([1]) == 3
    assert b.orders_of(1) == 0
    assert book_side(b, BUY) == [(2, 98, 2)]
    assert book_side(b, SELL) == [(2, 102, 4)]
    assert b.cancel_owners([1]) == 0  # nothing left to cancel


def test_depth_within():
    b = OrderBook()
    b.post([1, 1, 1], [BUY] * 3, [99, 98, 90], [5, 5, 10])
    b.post([2, 2, 2], [SELL] * 3, [101, 103, 110], [4, 6, 10])
    assert b.mid() == 100
    # within 2 % of mid 100: bids >= 98 (5 + 5), asks <= 102 (4)
    assert b.depth_within(0.02) == (10, 4)
    # within 10 % of a given reference 100: bids >= 90 (20), asks <= 110 (20)
    assert b.depth_within(0.10, reference=100) == (20, 20)
    assert OrderBook().depth_within(0.5) == (0, 0)
    # one-sided book: reference falls back to the best price there is
    one = OrderBook()
    one.post([1, 1], [BUY, BUY], [100, 50], [1, 1])
    assert one.depth_within(0.1) == (1, 0)


def test_fill_maker_order_ids_match_the_posted_ids():
    b = OrderBook()
    ids = b.post([1, 2], [SELL, SELL], [100, 101], [1, 1])
    f = b.submit([9], [BUY], [2])
    assert f.maker_order_id.tolist() == ids.tolist()


# ------------------------------------------------------ reference model check
def reference_match(resting, incoming):
    """Naive price-time matching, one incoming order at a time, no resting of remainders.

    resting: list of (oid, owner, side, price, qty) in arrival order.
    incoming: list of (owner, side, qty, limit).
    Returns fills [(order_index, taker, maker, qty, price)] and the book left.
    """
    book = [list(r) for r in resting]
    fills = []
    for i, (owner, side, qty, limit) in enumerate(incoming):
        opp = [r for r in book if r[2] == -side and r[4] > 0]
        opp.sort(key=lambda r: (r[3] if side == BUY else -r[3], r[0]))
        for r in opp:
            if qty == 0:
                break
            if (side == BUY and r[3] > limit) or (side == SELL and r[3] < limit):
                break
            take = min(qty, r[4])
            fills.append((i, owner, r[1], take, r[3]))
            r[4] -= take
            qty -= take
    left = sorted((r[1], r[2], r[3], r[4]) for r in book if r[4] > 0)
    return fills, left


@settings(max_examples=150, deadline=None)
@given(
    resting=st.lists(st.tuples(st.integers(0, 4), st.sampled_from([BUY, SELL]), st.integers(1, 8), st.integers(1, 5)),
                     max_size=15),
    incoming=st.lists(st.tuples(st.integers(5, 8), st.sampled_from([BUY, SELL]), st.integers(1, 12),
                                st.one_of(st.none(), st.integers(1, 8))), min_size=1, max_size=6),
)
def test_batch_matching_equals_one_at_a_time_reference(resting, incoming):
    b = OrderBook()
    accepted = []
    for owner, side, price, qty in resting:  # one at a time: crossing quotes are dropped
        oid = int(b.post([owner], [side], [price], [qty])[0])
        if oid >= 0:
            accepted.append((oid, owner, side, price, qty))
    limits = [(l if l is not None else (2**63 - 1 if s == BUY else 0)) for _, s, _, l in incoming]
    ref_in = [(o, s, q, lim) for (o, s, q, _), lim in zip(incoming, limits)]
    expected, left = reference_match(accepted, ref_in)
    f = b.submit([o for o, *_ in incoming], [s for _, s, *_ in incoming], [q for _, _, q, _ in incoming],
                 limits=limits)
    got = list(zip(f.order_index.tolist(), f.taker.tolist(), f.maker.tolist(), f.qty.tolist(), f.price.tolist()))
    assert got == expected
    book_left = sorted(
        [(o, BUY, p, q) for o, p, q in book_side(b, BUY)] + [(o, SELL, p, q) for o, p, q in book_side(b, SELL)]
    )
    assert book_left == left
    # the book is never crossed
    if b.best_bid() is not None and b.best_ask() is not None:
        assert b.best_bid() < b.best_ask()
