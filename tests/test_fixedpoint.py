"""Exact integer arithmetic: muldiv / muldiv_ceil and the largest-remainder split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.venue.fixedpoint import largest_remainder, muldiv, muldiv_ceil

INT64_MAX = 2**63 - 1


def test_muldiv_exact_where_the_plain_product_overflows():
    # x * num is far beyond int64 in every row; the true result fits. Python ints are the oracle.
    x = np.array([2**62, 5_000_000_000_000_000_001, -(2**62) + 12345, 123_456_789_012_345_678], dtype=np.int64)
    num = np.array([3, 2, 3, 999_999], dtype=np.int64)
    den = np.array([4, 3, 5, 1_000_000], dtype=np.int64)
    assert all(abs(int(a) * int(b)) > INT64_MAX for a, b in zip(x, num))
    with np.errstate(over="ignore"):
        plain = (x * num) // den  # the naive formula wraps around
    expected = [int(a) * int(b) // int(d) for a, b, d in zip(x, num, den)]
    assert list(muldiv(x, num, den)) == expected
    assert list(plain) != expected  # proves the case is one where overflow matters
    # 2**62 * 3 / 4 = 3 * 2**60 exactly
    assert int(muldiv(2**62, 3, 4)) == 3 * 2**60


def test_muldiv_floors_and_muldiv_ceil_rounds_up_for_both_signs():
    # 7 * 2 / 3 = 4.67 -> floor 4, ceil 5; -7 * 2 / 3 = -4.67 -> floor -5, ceil -4
    assert int(muldiv(7, 2, 3)) == 4
    assert int(muldiv_ceil(7, 2, 3)) == 5
    assert int(muldiv(-7, 2, 3)) == -5
    assert int(muldiv_ceil(-7, 2, 3)) == -4
    # negative numerator (a negative rate): 7 * -2 / 3 = -4.67
    assert int(muldiv(7, -2, 3)) == -5
    assert int(muldiv_ceil(7, -2, 3)) == -4
    # exact division has no rounding either way
    assert int(muldiv(9, 2, 3)) == int(muldiv_ceil(9, 2, 3)) == 6


@settings(max_examples=200, deadline=None)
@given(
    x=st.integers(-(2**62), 2**62),
    num=st.integers(-(10**9), 10**9),
    den=st.integers(1, 10**9),
)
def test_muldiv_matches_python_integers(x, num, den):
    exact_floor = x * num // den
    if abs(exact_floor) + abs(num) >= 2**62:  # the result itself must fit in int64
        return
    assert int(muldiv(np.int64(x), num, den)) == exact_floor
    assert int(muldiv_ceil(np.int64(x), num, den)) == -(-x * num // den)


def test_largest_remainder_by_hand():
    # 10 over weights 1:1:1 -> 3.33 each: floors 3,3,3, one unit left, equal remainders ->
    # the lowest index gets it
    assert list(largest_remainder(10, [1, 1, 1])) == [4, 3, 3]
    # 100 over 1:2:3 (sum 6): 16.67, 33.33, 50 -> floors 16, 33, 50 = 99; largest remainder
    # is 16.67's (0.67) -> [17, 33, 50]
    assert list(largest_remainder(100, [1, 2, 3])) == [17, 33, 50]
    # zero weight gets nothing
    assert list(largest_remainder(5, [0, 2, 3])) == [0, 2, 3]
    assert largest_remainder(0, [5, 7]).tolist() == [0, 0]


def test_largest_remainder_numpy_total_does_not_overflow():
    # total * weight overflows int64 if total is kept as np.int64; the split must be exact
    total = np.int64(4 * 10**18)
    parts = largest_remainder(total, np.array([3, 5], dtype=np.int64))
    assert int(parts.sum()) == 4 * 10**18
    assert parts.tolist() == [15 * 10**17, 25 * 10**17]


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(0, 10**15),
    weights=st.lists(st.integers(0, 10**12), min_size=1, max_size=12).filter(lambda w: sum(w) > 0),
)
def test_largest_remainder_sums_exactly_and_is_proportional(total, weights):
    parts = largest_remainder(total, weights)
    assert parts.dtype == np.int64
    assert int(parts.sum()) == total
    wsum = sum(weights)
    for p, w in zip(parts.tolist(), weights):
        # each part is its exact quota rounded down or up by one unit
        assert total * w // wsum <= p <= total * w // wsum + 1
        if w == 0:
            assert p == 0


def test_largest_remainder_rejects_bad_input():
    with pytest.raises(ValueError):
        largest_remainder(-1, [1])
    with pytest.raises(ValueError):
        largest_remainder(1, [0, 0])
    with pytest.raises(ValueError):
        largest_remainder(1, [2, -1])
