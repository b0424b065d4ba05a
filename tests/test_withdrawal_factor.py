"""Withdrawal factor (DESIGN.md §5 ``withdrawal_factor``; Paradex "Socialized Losses"), by hand.

Contract value 1 (1 lot x 1 tick = 1 cash unit), MM 1 %, mark = index. Waterfall: insurance fund,
then ``socialize`` with ``weights: withdrawal_factor``. Fund 1,000; A, B, C deposit 1,000 each.

C buys 100 lots at 100 from the venue's engine row (a venue row: no claimant), the mark falls to
74: C's equity is 1,000 + 100 x (74 - 100) = -1,600. The liquidation pass: the engine takes C's
position at mark (C flat at -1,600), the fund pays 1,000, the loss pool fronts the other 600
(``socialize_pending``). Factor = outstanding / positive equity in scope = 600 / (A 1,000 +
B 1,000) = 0.30 = 300,000,000 ppb.

  A withdraws 1,000: haircut ceil(1,000 x 0.3) = 300 -> A receives 700; outstanding 300.
  Factor again 300 / (B 1,000) = 0.30: B withdraws 500 -> receives 350, 150 repays; outstanding 150.
  Factor 150 / (B 500) = 0.30: B withdraws 500 -> receives 350, the last 150; outstanding 0.
  Factor 0: A deposits 100 and withdraws it -> receives 100.
Paid out 700 + 350 + 350 + 100 = 1,500; haircuts 300 + 150 + 150 = 600 = the socialized loss.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import move_to
from simulator.venue.waterfall import SocializeStage

WATERFALL = [{"stage": "insurance_fund"}, {"stage": "socialize", "weights": "withdrawal_factor"}]


def crash(make_venue, **socialize):
    v = make_venue(waterfall=[WATERFALL[0], {**WATERFALL[1], **socialize}], fund=1_000)
    A, B, C = (int(x) for x in v.add_accounts(3, "trader", 1_000, leverage=10.0))
    move_to(v, 100)
    v.ledger.trade(0, C, v.engine, 100, 100)
    v.step = 1
    move_to(v, 74)
    assert int(v.equity(np.array([C]))[0]) == -1_600
    v.liquidate()
    stage = v.waterfall[1]
    return v, stage, A, B, C


def covers(v, stage):
    ev = v.events.to_frame()
    c = ev[ev.kind == "cover"]
    return int(c[c.stage == stage].amount.sum())


def test_hand_case_factor_030_repaid_by_withdrawals(make_venue):
    v, stage, A, B, C = crash(make_venue)
    assert covers(v, "insurance_fund") == 1_000
    assert covers(v, "socialize_pending") == 600  # fronted, not yet paid by anybody
    assert covers(v, "socialize") == 0
    assert stage.outstanding == 600 == -int(v.ledger.wallet[v.loss_pool])
    assert stage.factor_ppb(v) == 300_000_000

    assert v.withdraw([A], [1_000]).tolist() == [700]
    assert stage.outstanding == 300 and stage.factor_ppb(v) == 300_000_000
    assert v.withdraw([B], [500]).tolist() == [350]
    assert stage.outstanding == 150 and stage.factor_ppb(v) == 300_000_000
    assert v.withdraw([B], [500]).tolist() == [350]
    assert stage.outstanding == 0 and stage.factor_ppb(v) == 0
    v.deposit([A], [100])
    assert v.withdraw([A], [100]).tolist() == [100]

    ev = v.events.to_frame()
    assert ev[ev.kind == "withdrawal"].amount.tolist() == [700, 350, 350, 100]
    soc = ev[ev.kind == "socialize"]
    assert soc.amount.tolist() == [300, 150, 150] and set(soc.reason) == {"withdrawal_factor"}
    assert soc.weight.tolist() == pytest.approx([0.3, 0.3, 0.3])
    assert covers(v, "socialize_pending") == 0 and covers(v, "socialize") == 600
    assert int(v.ledger.wallet[v.loss_pool]) == 0
    assert v.ledger.withdrawals == 1_500 and v.ledger.deposits == 4_100
    assert v.conservation_residual() == 0


def test_one_call_rounds_up_and_the_last_takes_only_what_is_left(make_venue):
    """Outstanding 1 over equity 3,000 (A 1,000, B 2,000): factor ceil(1e9 / 3,000) =
    ceil(333,333.3) = 333,334 ppb (rounded in the venue's favour). A's 10: ceil(10 x 333,334 /
    1e9) = ceil(0.0033) = 1 -> receives 9, the loss is repaid; B's 10 in the same call pays
    nothing."""
    v, stage, A, B, C = crash(make_venue)
    v.withdraw([A], [1_000])  # outstanding 300 as above
    v.withdraw([B], [500])  # 150
    v.withdraw([B], [497])  # ceil(497 x 0.3) = ceil(149.1) = 150: all of it; B keeps 3
    assert stage.outstanding == 0
    stage.outstanding = 1  # a fresh 1-unit loss, the pool fronting it (to a venue row)
    v.ledger.transfer(v.loss_pool, v.engine, 1)
    v.deposit([A, B], [1_000, 1_997])  # equity 1,000 and 2,000
    assert stage.factor_ppb(v) == 333_334
    assert v.withdraw([A, B], [10, 10]).tolist() == [9, 10]
    assert stage.outstanding == 0 == int(v.ledger.wallet[v.loss_pool])
    assert v.conservation_residual() == 0


def test_recapitalized_fund_repays_first(make_venue):
    """Paradex: the exchange bankruptcy amount is net of the fund. A transfer of 200 into the
    fund repays 200 at the next pass: outstanding 400, factor 400 / 2,000 = 0.20, so A's 1,000
    pays 200 and A receives 800."""
    v, stage, A, B, C = crash(make_venue)
    v.ledger.deposit([v.insurance_fund], [200])
    v.liquidate()
    assert stage.outstanding == 400 and int(v.ledger.wallet[v.insurance_fund]) == 0
    assert covers(v, "insurance_fund") == 1_200 and covers(v, "socialize_pending") == 400
    assert stage.factor_ppb(v) == 200_000_000
    assert v.withdraw([A], [1_000]).tolist() == [800]
    assert v.conservation_residual() == 0


def test_never_repaid_stays_outstanding_in_the_summary(make_venue):
    """Nobody withdraws: the 600 stays pending: not socialized, not a venue loss."""
    from simulator.world.metrics import summarize

    v, stage, A, B, C = crash(make_venue)
    v.settle_period()  # a settlement does not charge it
    assert stage.outstanding == 600
    s = summarize(None, v.events.to_frame(), {"cash_unit": 1.0, "tick_size": 1.0, "lot_size": 1.0,
                                                "socialized_outstanding": -int(v.ledger.wallet[v.loss_pool])})
    assert s["deficit_total"] == 1_600
    assert s["covered_insurance_fund"] == 1_000 and s["covered_socialize"] == 0 and s["venue_loss"] == 0
    assert s["socialize_pending"] == 600 == s["socialized_outstanding"]
    assert s["withdrawn"] == 0 and s["withdrawal_haircut"] == 0


def test_summary_counts_withdrawals_and_haircuts(make_venue):
    from simulator.world.metrics import summarize

    v, stage, A, B, C = crash(make_venue)
    v.withdraw([A, B], [1_000, 400])  # one call, factor 0.30: haircuts 300 and 120
    s = summarize(None, v.events.to_frame(), {"cash_unit": 1.0, "tick_size": 1.0, "lot_size": 1.0})
    assert s["withdrawn"] == 700 + 280
    assert s["withdrawal_haircut"] == 420 == s["covered_socialize"] == s["socialized_total"]
    assert s["socialized_outstanding"] == s["socialize_pending"] == 600 - 420


def test_impossible_settings_fail():
    with pytest.raises(ValueError, match="withdrawal_factor"):
        SocializeStage(weights="withdrawal_factor", when="settlement")
    with pytest.raises(ValueError, match="withdrawal_factor"):
        SocializeStage(weights="withdrawal_factor", delay_seconds=30.0)
