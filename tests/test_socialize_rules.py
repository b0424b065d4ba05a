"""Socialization scope and delay (issue 11 item 2), by hand.

Contract value 1, MM 1 %. S short 10 @ 100 (wallet 200), L long 10 @ 100 (wallet 50, the case),
W a spot wallet (300, ``spot=True``), M a maker (1,100) bidding 10 @ 90. Mark 100 -> 90: L sells
its 10 into M's bid at 90 and is flat at 50 + 900 - 1000 = -50: a deficit of 50.
Equities then: S 200 + 1000 - 900 = 300, W 300, M 1,100 (long 10 @ 90 at mark 90).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import move_to
from simulator.venue.book import BUY


def build(make_venue, socialize: dict, step_seconds: float = 1.0):
    v = make_venue(waterfall=[{"stage": "book"}, {"stage": "socialize", "weights": "equity", **socialize}],
                   step_seconds=step_seconds)
    S, L, F = (int(x) for x in v.add_accounts(3, "trader", [200, 50, 0]))
    W = int(v.add_accounts(1, "trader", 300, leverage=1.0, spot=True)[0])
    M = int(v.add_accounts(1, "market_maker", 1_100)[0])
    v.ledger.trade(0, F, S, 10, 100)
    v.ledger.trade(0, L, F, 10, 100)  # F is flat again: it only passed S's lots to L
    move_to(v, 100)
    v.post_quotes(0, [M], [BUY], [90], [10])
    move_to(v, 90)
    return v, dict(S=S, L=L, W=W, M=M)


def charges(v, acc):
    ev = v.events.to_frame()
    name = {i: k for k, i in acc.items()}
    s = ev[ev.kind == "socialize"]
    return {name[int(a)]: int(x) for a, x in zip(s.account, s.amount)}


# 50 by equity: all_equity S 300, W 300, M 1,100 (1,700): 8.82, 8.82, 32.35 -> 8, 8, 32 + 2 to the
# largest remainders S, W (0.82 > 0.35) -> 9, 9, 32. derivatives_only: W is out; S 300, M 1,100
# (1,400): 10.71, 39.29 -> 10, 39 + 1 to S -> 11, 39. settlement_asset_holders: one settlement
# asset, so the same as all_equity.
@pytest.mark.parametrize("scope, expected", [
    ("all_equity", {"S": 9, "W": 9, "M": 32}),
    ("derivatives_only", {"S": 11, "M": 39}),
    ("settlement_asset_holders", {"S": 9, "W": 9, "M": 32}),
])
def test_socialize_scope_by_hand(make_venue, scope, expected):
    v, acc = build(make_venue, {"scope": scope})
    v.liquidate()
    assert charges(v, acc) == expected
    assert int(v.ledger.wallet[acc["L"]]) == 0
    assert int(v.ledger.wallet[acc["W"]]) == 300 - expected.get("W", 0)
    assert v.conservation_residual() == 0


# delay 90 s at 30 s a step: fronted at step 0 (t = 0), nothing at steps 1, 2 (t = 30, 60), charged
# at the pass of step 3 (t = 90) on the equities then: the mark went back to 100, so S 200 + 0 =
# 200, W 300, M 1,100 + 100 = 1,200 (1,700): 5.88, 8.82, 35.29 -> 5, 8, 35 + 2 to S (0.88) and
# W (0.82) -> 6, 9, 35. derivatives_only: S 200, M 1,200 (1,400): 7.14, 42.86 -> 7, 42 + 1 to M -> 7, 43
@pytest.mark.parametrize("scope, expected", [
    ("all_equity", {"S": 6, "W": 9, "M": 35}),
    ("derivatives_only", {"S": 7, "M": 43}),
])
def test_delayed_socialization_by_hand(make_venue, scope, expected):
    v, acc = build(make_venue, {"scope": scope, "delay_seconds": 90}, step_seconds=30)
    v.liquidate()
    ev = v.events.to_frame()
    assert ev[(ev.kind == "cover")].groupby("stage").amount.sum().to_dict() == {"socialize_pending": 50}
    assert int(v.ledger.wallet[v.loss_pool]) == -50
    for step, price in ((1, 90), (2, 95), (3, 100)):
        v.step = v.events.step = step
        move_to(v, price)
        v.liquidate()
        assert charges(v, acc) == ({} if step < 3 else expected)
    assert int(v.ledger.wallet[v.loss_pool]) == 0
    ev = v.events.to_frame()
    cover = ev[ev.kind == "cover"]
    pool = cover[cover.account == v.loss_pool]
    assert pool.groupby("stage").amount.sum().to_dict() == {"socialize_pending": -50, "socialize": 50}
    assert int(cover.amount.sum()) == int(ev[ev.kind == "deficit"].amount.sum()) == 50
    assert v.conservation_residual() == 0


def test_delayed_charge_that_cannot_be_collected_is_the_venues_loss(make_venue):
    # derivatives_only, and by t = 90 S and M have left (withdrawn to 0 equity: positions moved
    # to the filler): only W has equity, and W is insulated -> all 50 is the venue's loss
    v, acc = build(make_venue, {"scope": "derivatives_only", "delay_seconds": 90}, step_seconds=30)
    v.liquidate()
    v.step = v.events.step = 3
    for a in (acc["S"], acc["M"]):
        v.ledger.withdraw([a], [int(v.equity(np.array([a]))[0])])
    v.liquidate()
    ev = v.events.to_frame()
    assert ev[ev.kind == "venue_loss"].amount.tolist() == [50]
    assert charges(v, acc) == {}
    assert int(v.ledger.wallet[v.loss_pool]) == 0 and v.conservation_residual() == 0


def test_delay_with_settlement_timing_is_refused(make_venue):
    with pytest.raises(ValueError):
        make_venue(waterfall=[{"stage": "socialize", "when": "settlement", "delay_seconds": 90}])


def test_a_settlement_stage_does_not_charge_what_a_delayed_stage_will(make_venue):
    """Two socialize stages: the delayed one (first in the list) fronts the 50 at t = 0; a
    funding settlement at t = 30 must not charge those 50 again (they are the delayed stage's,
    due at t = 90). Then at t = 90 the 50 are charged once, as in the delayed case above with the
    mark back at 100: S 6, W 9, M 35, and the loss pool is back to 0 (not +50)."""
    v = make_venue(waterfall=[{"stage": "book"},
                              {"stage": "socialize", "weights": "equity", "delay_seconds": 90},
                              {"stage": "socialize", "weights": "equity", "when": "settlement"}],
                   step_seconds=30)
    S, L, F = (int(x) for x in v.add_accounts(3, "trader", [200, 50, 0]))
    W = int(v.add_accounts(1, "trader", 300, leverage=1.0, spot=True)[0])
    M = int(v.add_accounts(1, "market_maker", 1_100)[0])
    acc = dict(S=S, L=L, W=W, M=M)
    v.ledger.trade(0, F, S, 10, 100)
    v.ledger.trade(0, L, F, 10, 100)
    move_to(v, 100)
    v.post_quotes(0, [M], [BUY], [90], [10])
    move_to(v, 90)
    v.liquidate()
    assert int(v.ledger.wallet[v.loss_pool]) == -50
    v.step = v.events.step = 1
    v.settle_period()  # a settlement before the delay has run out
    assert charges(v, acc) == {} and int(v.ledger.wallet[v.loss_pool]) == -50
    for step, price in ((2, 95), (3, 100)):
        v.step = v.events.step = step
        move_to(v, price)
        v.liquidate()
    assert charges(v, acc) == {"S": 6, "W": 9, "M": 35}
    v.settle_period()  # nothing left for the settlement stage
    assert charges(v, acc) == {"S": 6, "W": 9, "M": 35}
    assert int(v.ledger.wallet[v.loss_pool]) == 0 and v.conservation_residual() == 0
