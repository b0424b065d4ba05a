"""Fund health rule (issue 11 item 4): the averaging window as a duration and the funding
adjustment, by hand.

Contract value 1, MM 1 %, mark = index, 30 s steps, guard threshold 0.2, max leverage 5.
A long 10 @ 100 (wallet 20), B short 10 @ 100 (wallet 1,000). Marks 100, 110, 120 at t = 0, 30,
60: open-interest value 1,000, 1,100, 1,200.
  whole run: average 1,100 -> the guard's line 220; a 60 s window at t = 60 drops t = 0:
  average 1,150 -> line 230. A fund of 225 is healthy in the first, below the line in the second.
At 120: A's equity 20 + 200 = 220, leverage 1,200/220 = 5.45 > 5 (over); B 800, 1.5. So the
longs hold the over-levered lots: they pay the adjustment.
Funding (binance formula, premium 0): rate 0.0001 -> A pays ceil(1,200 x 0.0001) = ceil(0.12) = 1,
B receives ceil(-0.12) = 0 (rounding to the fee pool). With the adjustment 0.001: rate 0.0011 ->
A pays ceil(1.32) = 2, B receives 1, the fee pool 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import move_to


def build(make_venue, **guard):
    v = make_venue(waterfall=[{"stage": "book"}], fund=225, step_seconds=30.0, fund_guard_threshold=0.2,
                   fund_guard_max_leverage=5.0, **guard)
    A, B = (int(x) for x in v.add_accounts(2, "trader", [20, 1_000]))
    v.ledger.trade(0, A, B, 10, 100)
    for step, price in enumerate((100, 110, 120)):
        v.step = step
        move_to(v, price)
    return v, A, B


@pytest.mark.parametrize("guard, active, paid", [
    ({}, False, (-1, 0)),  # default window 30 days: the run so far
    ({"fund_guard_window_seconds": 60.0}, True, (-1, 0)),  # on, but no funding adjustment
    ({"fund_guard_window_seconds": 60.0, "fund_guard_funding_adjustment": 0.001}, True, (-2, 1)),
    ({"fund_guard_funding_adjustment": 0.001}, False, (-1, 0)),  # healthy fund: no adjustment
])
def test_fund_guard_window_and_funding_adjustment_by_hand(make_venue, guard, active, paid):
    v, A, B = build(make_venue, **guard)
    average = v.oi_value_sum / v.oi_value_count
    assert average == (1_150 if "fund_guard_window_seconds" in guard else 1_100)
    assert v.fund_guard_active() is active
    before = v.ledger.wallet[[A, B]].copy()
    v.apply_funding()
    assert tuple(int(x) for x in v.ledger.wallet[[A, B]] - before) == paid
    assert v.conservation_residual() == 0


def test_the_side_that_pays_is_the_over_levered_one(make_venue):
    v, A, B = build(make_venue)
    assert v.fund_relief_side().tolist() == [1.0]
    v.ledger.transfer(B, A, 990)  # now B short at 120 has 10 - 200 < 0 equity: over; A is 1,200/1,210
    assert v.fund_relief_side().tolist() == [-1.0]
