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


def test_a_designs_fund_guard_is_the_one_applied_by_hand():
    """A design's ``fund_guard`` replaces the scenario's (None: the scenario's is kept).

    Market: tick 1, lot 0.1, no fees, so at price 1,000 a lot is worth 100 USD. A (deposit 250
    USD, leverage 10) is long 10 lots against B: open interest 1,000 USD. Fund 150 USD.
      scenario's guard, threshold 0.1: line 100 USD < 150 -> off. A buys 5 more lots: notional
      1,500 at leverage 10 needs 150 <= 250 -> accepted.
      design's guard, threshold 0.2, cap 5x: line 200 USD > 150 -> on. The same order needs
      1,500 / 5 = 300 > 250 -> refused.
    """
    from simulator.venue.book import BUY
    from simulator.venue.venue import Venue
    from simulator.world.model import venue_config
    from simulator.world.scenario import validate

    data = {
        "name": "guard", "steps": 10,
        "markets": [{"name": "X", "tick_size": 1.0, "lot_size": 0.1, "taker_fee": 0.0, "maker_fee": 0.0}],
        "index": {"models": [{"kind": "gbm", "start_price": 1000.0, "volatility": 0.0}]},
        "venue": {"insurance_fund": 150.0, "fund_guard": {"threshold": 0.1, "max_leverage": 5}},
        "agents": {"traders": {"count": 0}},
        "designs": [
            {"name": "guarded", "waterfall": [{"stage": "book"}], "fund_guard": {"threshold": 0.2, "max_leverage": 5}},
            {"name": "plain", "waterfall": [{"stage": "book"}]},
        ],
    }
    sc = validate(data)
    assert sc.design("plain").venue.fund_guard == sc.venue.fund_guard
    refused = {}
    for name in ("plain", "guarded"):
        v = Venue(venue_config(sc.design(name)), np.random.default_rng(0))
        A, B = (int(x) for x in v.add_accounts(2, "trader", [250_000_000, 10_000_000_000], leverage=10.0))
        v.set_index([1000.0])
        v.ledger.trade(0, A, B, 10, 1000)
        v.update_marks()
        assert v.open_interest_value() == 1_000_000_000  # 1,000 USD
        v.submit_orders(0, [A], [BUY], [5])
        refused[name] = (v.fund_guard_active(), v.rejections)
    assert refused == {"plain": (False, 0), "guarded": (True, 1)}


def test_seed_article_carries_the_references_guard():
    from simulator.world.scenario import load_design

    g = load_design("seed_article").fund_guard
    assert (g.threshold, g.window_seconds) == (0.2, 30 * 86_400)
