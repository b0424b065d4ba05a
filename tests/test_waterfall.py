"""The loss waterfall: book, insurance fund, backstop, socialization, ordering from configuration.

One scenario throughout (contract value 1, maintenance 1 %): the case L is long 100 @ 110 bought
from S, with 700 in its wallet. At mark 104 its equity is 700 + 10,400 - 11,000 = 100 < MM 104,
so it is liquidated; its bankruptcy price is (11,000 - 700) / 100 = 103. M quotes the bids the
book stage sells into; Z is a bystander with cash and no position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from conftest import move_to, unit_market
from simulator.venue.book import BUY, SELL
from simulator.venue.waterfall import STAGES, Stage, build_waterfall


def scenario(make_venue, waterfall, mark=104, bids=((104, 100),), fund=0, backstop=0, wallet=700,
             wallets=(1_400, 2_700, 4_000)):
    v = make_venue(waterfall=waterfall, fund=fund, backstop=backstop)
    L = int(v.add_accounts(1, "trader", wallet)[0])
    S, M, Z = (int(i) for i in v.add_accounts(3, "trader", list(wallets)))
    v.ledger.trade(0, L, S, 100, 110)
    move_to(v, mark)
    for price, lots in bids:
        v.post_quotes(0, [M], [BUY], [price], [lots])
    return v, L, S, M, Z


def kinds(v, kind):
    ev = v.events.to_frame()
    return ev[ev.kind == kind]


def check_books(v):
    assert v.conservation_residual() == 0
    assert (v.ledger.qty.sum(axis=0) == 0).all()


# --------------------------------------------------------------- insurance fund
def test_fill_better_than_bankruptcy_feeds_the_fund_all_remaining_margin(make_venue):
    v, L, S, M, Z = scenario(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"}], bids=((105, 100),), fund=1_000)
    assert v.liquidatable()[L]
    assert v.liquidate() == 1
    # sold 100 @ 105 (bankruptcy 103): wallet 700 + 10,500 - 11,000 = 200, all of it to the fund
    assert v.ledger.qty[L, 0] == 0 and v.ledger.wallet[L] == 0
    assert v.ledger.wallet[v.insurance_fund] == 1_200
    assert kinds(v, "surplus").amount.tolist() == [200]
    assert kinds(v, "fund_surplus").amount.tolist() == [200]
    liq = kinds(v, "liquidation")
    assert liq.qty.tolist() == [-100] and liq.price.tolist() == [105.0] and liq.stage.tolist() == ["book"]
    assert liq.bankruptcy_price.tolist() == [103.0]
    check_books(v)


def test_fee_policy_takes_exactly_the_clearance_fee(make_venue):
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "surplus_policy": "fee", "clearance_fee": 0.01}]
    v, L, *_ = scenario(make_venue, wf, bids=((105, 100),), fund=1_000)
    v.liquidate()
    # liquidated notional 100 x 105 = 10,500; 1 % = 105 to the fund, the trader keeps 200 - 105
    assert v.ledger.wallet[v.insurance_fund] == 1_105
    assert v.ledger.wallet[L] == 95
    assert kinds(v, "fund_surplus").amount.tolist() == [105]
    check_books(v)


def test_none_policy_leaves_the_surplus_with_the_trader(make_venue):
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "surplus_policy": "none"}]
    v, L, *_ = scenario(make_venue, wf, bids=((105, 100),), fund=1_000)
    v.liquidate()
    assert v.ledger.wallet[L] == 200 and v.ledger.wallet[v.insurance_fund] == 1_000


def test_fill_worse_than_bankruptcy_draws_the_fund(make_venue):
    v, L, *_ = scenario(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"}], bids=((101, 100),), fund=1_000)
    v.liquidate()
    # sold @ 101: wallet 700 + 10,100 - 11,000 = -200, paid by the fund
    assert kinds(v, "deficit").amount.tolist() == [200]
    assert kinds(v, "fund_payout").amount.tolist() == [200]
    assert v.ledger.wallet[v.insurance_fund] == 800
    assert v.ledger.wallet[L] == 0
    assert not len(kinds(v, "venue_loss"))
    check_books(v)


def test_an_empty_fund_passes_the_rest_to_the_next_stage(make_venue):
    wf = [{"stage": "book"}, {"stage": "insurance_fund"}, {"stage": "socialize"}]
    v, L, S, M, Z = scenario(make_venue, wf, bids=((101, 100),), fund=50)
    v.liquidate()
    # the fund pays its 50, the other 150 of the 200 deficit is socialized
    assert kinds(v, "fund_payout").amount.tolist() == [50]
    assert kinds(v, "socialize").amount.sum() == 150
    assert v.ledger.wallet[v.insurance_fund] == 0 and v.ledger.wallet[L] == 0
    check_books(v)


def test_no_stage_left_is_the_venues_own_loss(make_venue):
    v, L, *_ = scenario(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"}], bids=((101, 100),), fund=0)
    v.liquidate()
    loss = kinds(v, "venue_loss")
    assert loss.account.tolist() == [L] and loss.amount.tolist() == [200]
    assert v.ledger.injections == 200
    assert [(f.account, f.kind, f.amount, f.reason) for f in v.ledger.flows if f.kind == "injection"] == [
        (L, "injection", 200, "venue_loss")
    ]
    assert v.ledger.wallet[L] == 0
    check_books(v)  # reported, never hidden: the residual is still exactly 0


def test_per_event_cap(make_venue):
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "cap_per_event": 120}]
    v, L, *_ = scenario(make_venue, wf, bids=((101, 100),), fund=1_000)
    v.liquidate()
    # the fund pays at most 120 for this case; the other 80 of 200 is the venue's loss
    assert kinds(v, "fund_payout").amount.tolist() == [120]
    assert kinds(v, "venue_loss").amount.tolist() == [80]
    assert v.ledger.wallet[v.insurance_fund] == 880
    check_books(v)


def test_fund_pays_cases_worst_first_up_to_its_balance(make_venue):
    # two identical cases, fund of 300: the first 200 in full, the second 100 of its 200
    v = make_venue(waterfall=[{"stage": "book"}, {"stage": "insurance_fund"}], fund=300)
    L1, L2, S, M = (int(i) for i in v.add_accounts(4, "trader", [700, 700, 10**6, 10**6]))
    v.ledger.trade(0, [L1, L2], S, 100, 110)
    move_to(v, 104)
    v.post_quotes(0, [M], [BUY], [101], [200])
    v.liquidate()
    assert kinds(v, "fund_payout").amount.tolist() == [200, 100]
    assert kinds(v, "venue_loss").amount.tolist() == [100]
    check_books(v)


def test_fund_takeover(make_venue):
    # empty book, mark 102: L's equity 700 + 10,200 - 11,000 = -100. The fund takes the long 100
    # at mark (cost 10,200) and the margin: it pays the 100. (Capacity here: maintenance only.)
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "takeover": True, "takeover_max_leverage": None}]
    v, L, *_ = scenario(make_venue, wf, mark=102, bids=(), fund=1_000)
    v.liquidate()
    f = v.insurance_fund
    assert (v.ledger.qty[f, 0], v.ledger.cost[f, 0], v.ledger.wallet[f]) == (100, 10_200, 900)
    assert v.ledger.qty[L, 0] == 0 and v.ledger.wallet[L] == 0
    assert kinds(v, "takeover").amount.tolist() == [-100]
    assert kinds(v, "deficit").amount.tolist() == [100]
    liq = kinds(v, "liquidation")
    assert liq.stage.tolist() == ["insurance_fund"] and liq.counterparty.tolist() == [f] and liq.qty.tolist() == [-100]
    check_books(v)
    # the fund then sells what it holds into the book, unwind_fraction (20 %) per step, within
    # 2 % of mark: bids at 101 (inside the band) take 20 lots
    v.post_quotes(0, [int(v.add_accounts(1, "trader", 10**6)[0])], [BUY], [101], [1_000])
    v.unwind_venue_positions()
    assert v.ledger.qty[f, 0] == 80
    assert kinds(v, "unwind").qty.tolist() == [20]
    check_books(v)


def test_fund_takeover_capacity_is_its_balance_against_the_loss(make_venue):
    # DESIGN.md §5: the fund takes the case while its balance covers the loss to bankruptcy.
    # Fund 150 vs loss 100: taken (equity after 50, even though that is below MM 102).
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "takeover": True}]
    v, L, *_ = scenario(make_venue, wf, mark=102, bids=(), fund=150)
    v.liquidate()
    assert v.ledger.qty[L, 0] == 0 and v.ledger.qty[v.insurance_fund, 0] == 100
    assert v.equity()[v.insurance_fund] == 50
    check_books(v)


def test_fund_takeover_refused_the_engine_closes_and_the_fund_pays_what_it_has(make_venue):
    # fund 80 < loss 100: the takeover is refused; the engine takes the long at mark 102, the
    # deficit of 100 is realised, the fund pays its 80 and the venue the other 20
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "takeover": True}]
    v, L, *_ = scenario(make_venue, wf, mark=102, bids=(), fund=80)
    v.liquidate()
    assert v.ledger.qty[L, 0] == 0 and v.ledger.qty[v.engine, 0] == 100
    assert kinds(v, "liquidation").stage.tolist() == ["engine"]
    assert kinds(v, "deficit").amount.tolist() == [100]
    covers = kinds(v, "cover")
    assert dict(zip(covers.stage, covers.amount)) == {"insurance_fund": 80, "venue": 20}
    assert v.equity()[L] == 0
    check_books(v)


def test_a_fund_broke_by_its_inventory_owes_the_loss_like_a_deficit(make_venue):
    # fund 150 takes L over (loss 100): equity 50, long 100 @ 102. The mark falls to 101: the
    # fund's equity is 50 - 100 = -50. A broke fund cannot pay for itself: at the next
    # liquidation pass its row owes 50, covered here by the venue (no stage after it)
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "takeover": True}]
    v, L, *_ = scenario(make_venue, wf, mark=102, bids=(), fund=150)
    v.liquidate()
    assert v.equity([v.insurance_fund]).tolist() == [50]
    move_to(v, 101)
    assert v.equity([v.insurance_fund]).tolist() == [-50]
    v.liquidate()
    fund_rows = kinds(v, "cover").query("account == @v.insurance_fund")
    assert dict(zip(fund_rows.stage, fund_rows.amount)) == {"venue": 50}
    assert kinds(v, "deficit").amount.tolist() == [100, 50]
    assert v.equity([v.insurance_fund]).tolist() == [0]
    check_books(v)


@pytest.mark.parametrize("cap, holder", [(12, "fund"), (10, "engine")])
def test_fund_takeover_leverage_cap(make_venue, cap, holder):
    # an explicit cap: fund 1,000 takes the -100 case: equity after 900 against gross notional
    # 100 x 102 = 10,200. At 12x it needs 850 <= 900: taken; at 10x it needs 1,020 > 900:
    # refused, so the engine takes it and the fund pays the 100 deficit instead
    wf = [{"stage": "book"}, {"stage": "insurance_fund", "takeover": True, "takeover_max_leverage": cap}]
    v, L, *_ = scenario(make_venue, wf, mark=102, bids=(), fund=1_000)
    v.liquidate()
    taker = v.insurance_fund if holder == "fund" else v.engine
    assert v.ledger.qty[taker, 0] == 100 and v.ledger.qty[L, 0] == 0
    covers = kinds(v, "cover")
    assert dict(zip(covers.stage, covers.amount)) == {"insurance_fund": 100}
    check_books(v)


# -------------------------------------------------------------------- backstop
def test_backstop_takes_over_only_below_trigger_times_mm(make_venue):
    # mark 104: equity 100, MM 104, 2/3 MM = 69.3 -> liquidatable but not the backstop's
    v, L, *_ = scenario(make_venue, [{"stage": "backstop"}], bids=(), backstop=10_000)
    assert v.liquidate() == 0
    assert v.ledger.qty[L, 0] == 100 and v.ledger.qty[v.backstop, 0] == 0
    # wallet 750, mark 103: equity 750 + 10,300 - 11,000 = 50 < 2/3 x 103 = 68.7 -> taken over
    v, L, *_ = scenario(make_venue, [{"stage": "backstop"}], mark=103, bids=(), backstop=10_000, wallet=750)
    assert v.liquidate() == 1
    b = v.backstop
    # the vault holds the long 100 (at mark 103) and received the 50 of margin
    assert (v.ledger.qty[b, 0], v.ledger.cost[b, 0], v.ledger.wallet[b]) == (100, 10_300, 10_050)
    assert v.ledger.qty[L, 0] == 0 and v.ledger.wallet[L] == 0
    tk = kinds(v, "takeover")
    assert tk.stage.tolist() == ["backstop"] and tk.amount.tolist() == [50] and tk.counterparty.tolist() == [b]
    assert kinds(v, "surplus").amount.tolist() == [50]
    check_books(v)


def test_backstop_trigger_is_configurable(make_venue):
    # trigger 1.0: anything below MM (equity 100 < 104) is the vault's
    v, L, *_ = scenario(make_venue, [{"stage": "backstop", "trigger": 1.0}], bids=(), backstop=10_000)
    v.liquidate()
    assert v.ledger.qty[v.backstop, 0] == 100 and v.ledger.wallet[v.backstop] == 10_100


def test_backstop_respects_its_capital(make_venue):
    # case equity 50, MM 103: the vault needs capital + 50 >= 103 (MM of what it then holds)
    v, L, *_ = scenario(make_venue, [{"stage": "backstop"}], mark=103, bids=(), backstop=52, wallet=750)
    v.liquidate()
    assert v.ledger.qty[v.backstop, 0] == 0 and v.ledger.qty[L, 0] == 100
    v, L, *_ = scenario(make_venue, [{"stage": "backstop"}], mark=103, bids=(), backstop=53, wallet=750)
    v.liquidate()
    assert v.ledger.qty[v.backstop, 0] == 100
    assert v.equity()[v.backstop] == 103 == v.maintenance()[v.backstop].sum()
    check_books(v)


# ------------------------------------------------------------------ book stage
def test_partial_book_liquidation_closes_just_enough(make_venue):
    # equity 100 vs MM 104: close 1 - 100/104 + 0.1 = 13.85 % -> 14 lots @ 104. Left: long 86,
    # equity 100 >= MM 86 x 104 x 1 % = 89.44 -> 90. The ADL stage after it must leave the
    # rest alone.
    wf = [{"stage": "book", "partial": True}, {"stage": "adl"}]
    v, L, S, *_ = scenario(make_venue, wf)
    assert v.liquidate() == 1
    assert v.ledger.qty[L, 0] == 86 and v.ledger.qty[S, 0] == -100
    assert v.equity()[L] == 100 and v.maintenance()[L, 0] == 90
    assert not v.liquidatable()[L]
    assert not len(kinds(v, "adl"))
    check_books(v)


def test_a_solvent_case_the_book_cannot_close_is_never_deleveraged(make_venue):
    # only 10 lots bid, @ 100: equity 100 - 10 x 4 = 60 < MM of the 90 left (93.6 -> 94), so
    # the case is still below maintenance, but solvent: ADL (default trigger) leaves it open
    # for the book to retry; no deficit, nothing hidden
    wf = [{"stage": "book", "partial": True}, {"stage": "adl"}]
    v, L, S, *_ = scenario(make_venue, wf, bids=((100, 10),))
    v.liquidate()
    assert v.ledger.qty[L, 0] == 90 and v.equity()[L] == 60
    assert v.liquidatable()[L]
    assert not len(kinds(v, "adl")) and not len(kinds(v, "deficit"))
    check_books(v)


def test_unfilled_trigger_is_the_literal_reading_and_deleverages_a_solvent_case(make_venue):
    # the same case under ``trigger: unfilled``: ADL closes the other 90 at the bankruptcy
    # price, and the counterparty S receives the case's remaining 60 (the artefact)
    wf = [{"stage": "book", "partial": True}, {"stage": "adl", "trigger": "unfilled"}]
    v, L, S, *_ = scenario(make_venue, wf, bids=((100, 10),))
    v.liquidate()
    assert v.ledger.qty[L, 0] == 0
    adl = kinds(v, "adl")
    assert adl.qty.tolist() == [90] and adl.reason.tolist() == ["book_exhausted"]
    assert kinds(v, "adl_haircut").amount.tolist() == [-60]
    check_books(v)


def test_slice_sends_a_share_of_a_large_position_and_restores_the_case(make_venue):
    # Hyperliquid: the position is worth 100 x 104 = 10,400 > 5,000, so only ceil(20 % x 100) =
    # 20 lots go to the book @ 104 (equity stays 100: a sale at mark). Left: long 80, MM 80 x
    # 104 x 1 % = 83.2 -> 84 <= 100: back above maintenance, the rest is left with the trader
    wf = [{"stage": "book", "slice_share": 0.2, "slice_above": 5_000}, {"stage": "adl"}]
    v, L, S, *_ = scenario(make_venue, wf)
    assert v.liquidate() == 1
    assert v.ledger.qty[L, 0] == 80 and v.equity()[L] == 100 and v.maintenance()[L, 0] == 84
    assert not v.liquidatable()[L]
    assert kinds(v, "liquidation").qty.tolist() == [-20]
    check_books(v)


def test_a_position_at_or_below_the_slice_threshold_is_sent_whole(make_venue):
    # worth 10,400 <= 20,000: the whole 100 lots @ 104
    wf = [{"stage": "book", "slice_share": 0.2, "slice_above": 20_000}]
    v, L, *_ = scenario(make_venue, wf)
    v.liquidate()
    assert v.ledger.qty[L, 0] == 0
    assert kinds(v, "liquidation").qty.tolist() == [-100]
    check_books(v)


def test_after_a_slice_the_next_block_sends_the_whole_position(make_venue):
    # bids @ 103: the 20-lot slice costs 20 x (104 - 103) = 20 -> equity 80 < MM 84, still
    # liquidatable. In the same step (block) the book does not get the account again; one step
    # later (1 s, inside the 30 s cooldown) the order is for all 80 lots: 80 @ 103 -> equity
    # 80 - 80 = 0, flat.
    wf = [{"stage": "book", "slice_share": 0.2, "slice_above": 5_000}]
    v, L, *_ = scenario(make_venue, wf, bids=((103, 500),))
    v.start_step(1)
    v.liquidate()
    assert v.ledger.qty[L, 0] == 80 and v.equity()[L] == 80 and v.liquidatable()[L]
    v.liquidate()  # same block: no second order
    assert v.ledger.qty[L, 0] == 80
    v.start_step(2)
    v.liquidate()
    assert v.ledger.qty[L, 0] == 0 and v.ledger.wallet[L] == 0
    assert kinds(v, "liquidation").qty.tolist() == [-20, -80]
    check_books(v)


def test_after_the_cooldown_a_large_position_is_sliced_again(make_venue):
    # the same case; 31 steps of 1 s later the cooldown (30 s) is over: the 80 lots (worth 8,320
    # > 5,000) are sliced again, ceil(20 % x 80) = 16 lots
    wf = [{"stage": "book", "slice_share": 0.2, "slice_above": 5_000}]
    v, L, *_ = scenario(make_venue, wf, bids=((103, 500),))
    v.start_step(1)
    v.liquidate()
    v.start_step(32)
    v.liquidate()
    assert kinds(v, "liquidation").qty.tolist() == [-20, -16]
    assert v.ledger.qty[L, 0] == 64
    check_books(v)


def test_slices_in_two_markets_in_the_same_block(make_venue):
    # one account long 100 @ 110 in two markets, wallet 1,400: at marks 104 its equity is
    # 1,400 - 2 x 600 = 200 < MM 2 x 104 = 208. Each position is worth 10,400 > 5,000, so each is
    # sliced in the same block: 20 + 20 lots. Left: 80 + 80, MM 2 x ceil(83.2) = 168 <= 200.
    wf = [{"stage": "book", "slice_share": 0.2, "slice_above": 5_000}]
    v = make_venue(waterfall=wf, markets=[unit_market("A"), unit_market("B")])
    L = int(v.add_accounts(1, "trader", 1_400)[0])
    S, M = (int(i) for i in v.add_accounts(2, "trader", [10**6, 10**6]))
    for m in (0, 1):
        v.ledger.trade(m, L, S, 100, 110)
    move_to(v, 104, 104)
    for m in (0, 1):
        v.post_quotes(m, [M], [BUY], [104], [500])
    v.start_step(1)
    v.liquidate()
    assert v.ledger.qty[L].tolist() == [80, 80]
    assert kinds(v, "liquidation").qty.tolist() == [-20, -20]
    assert not v.liquidatable()[L]
    check_books(v)


def test_a_slice_that_does_not_fill_starts_no_cooldown(make_venue):
    # no bid in step 1: nothing is liquidated, so in step 2 the position is sliced again (20 of
    # 100), not sent whole
    wf = [{"stage": "book", "slice_share": 0.2, "slice_above": 5_000}]
    v, L, S, M, Z = scenario(make_venue, wf, bids=())
    v.start_step(1)
    v.liquidate()
    assert v.ledger.qty[L, 0] == 100
    v.post_quotes(0, [M], [BUY], [104], [500])
    v.start_step(2)
    v.liquidate()
    assert kinds(v, "liquidation").qty.tolist() == [-20]
    check_books(v)


def test_book_price_band(make_venue):
    # band 2 % of mark 104: sells no lower than 101.92 -> 102 (whole ticks inside the band)
    v, L, *_ = scenario(make_venue, [{"stage": "book", "price_band": 0.02}], bids=((103, 10), (102, 10), (101, 100)))
    v.liquidate()
    liq = kinds(v, "liquidation")
    assert liq.qty.tolist() == [-20] and liq.price.tolist() == [102.5]  # 10 @ 103 + 10 @ 102
    assert v.ledger.qty[L, 0] == 80
    assert v.books[0].best_bid() == 101
    check_books(v)


def test_book_limit_at_bankruptcy(make_venue):
    # P_b = 103: sells 50 @ 104, refuses the bid @ 102
    v, L, *_ = scenario(make_venue, [{"stage": "book", "limit_at_bankruptcy": True}], bids=((104, 50), (102, 100)))
    v.liquidate()
    assert v.ledger.qty[L, 0] == 50
    assert kinds(v, "liquidation").price.tolist() == [104.0]
    check_books(v)


def test_liquidation_cancels_the_case_resting_orders(make_venue):
    v, L, *_ = scenario(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"}], fund=1_000)
    # an ask that only reduces L's long (a bid adding to it would fail the quote margin check)
    v.post_quotes(0, [L], [SELL], [120], [5])
    assert v.books[0].orders_of(L) == 1
    v.liquidate()
    assert v.books[0].orders_of(L) == 0


# ---------------------------------------------------------------- socialization
def test_equity_weighted_socialization_includes_zero_position_accounts(make_venue):
    # deficit 200 (sold @ 101). At mark 104: S (short 100 @ 110) 1,400 + 600 = 2,000;
    # M (bought 100 @ 101) 2,700 + 300 = 3,000; Z (no position) 4,000. Total 9,000:
    # 44.4, 66.7, 88.9 -> 44, 66, 88 (198) + 1 each to the largest remainders Z (.89), M (.67)
    v, L, S, M, Z = scenario(make_venue, [{"stage": "book"}, {"stage": "socialize", "weights": "equity"}],
                             bids=((101, 100),))
    wallets = v.ledger.wallet.copy()
    v.liquidate()
    soc = kinds(v, "socialize")
    assert dict(zip(soc.account, soc.amount)) == {S: 44, M: 67, Z: 89}
    assert soc.amount.sum() == 200
    assert soc.weight.tolist() == pytest.approx([2 / 9, 3 / 9, 4 / 9])
    assert wallets[Z] - v.ledger.wallet[Z] == 89
    assert v.ledger.wallet[L] == 0 and v.ledger.wallet[v.loss_pool] == 0
    assert not len(kinds(v, "venue_loss"))
    # each charge records the payer's open lots (Z: none) and its equity before the charge
    assert dict(zip(soc.account, soc.qty)) == {S: 100, M: 100, Z: 0}
    assert dict(zip(soc.account, soc.score)) == {S: 2_000, M: 3_000, Z: 4_000}
    # so the run summary can say: 89 of the 200 (44.5 %) was paid by an account with no position
    from simulator.experiments.run import _socialization_meta

    meta = _socialization_meta(v.events.to_frame())
    assert meta["zero_position_accounts"] == [(0, Z)]
    check_books(v)


def test_profit_weighted_socialization(make_venue):
    # profit since the window began: S +600 (unrealised), M +300, Z 0 (not charged).
    # 200 x 600/900 = 133.3, 200 x 300/900 = 66.7 -> 133, 66 + 1 to M -> 133, 67
    v, L, S, M, Z = scenario(make_venue, [{"stage": "book"}, {"stage": "socialize", "weights": "profit"}],
                             bids=((101, 100),))
    v.liquidate()
    soc = kinds(v, "socialize")
    assert dict(zip(soc.account, soc.amount)) == {S: 133, M: 67}
    check_books(v)


def test_profit_weights_net_out_deposits(make_venue):
    # Z deposits 10,000 mid-window: that is not profit, Z still pays nothing
    v, L, S, M, Z = scenario(make_venue, [{"stage": "book"}, {"stage": "socialize", "weights": "profit"}],
                             bids=((101, 100),))
    v.deposit([Z], [10_000])
    v.liquidate()
    soc = kinds(v, "socialize")
    assert dict(zip(soc.account, soc.amount)) == {S: 133, M: 67}


def test_position_weighted_socialization(make_venue):
    # open size after the fill: S 100, M 100, P 30, Q 30 (260 lots):
    # 76.9, 76.9, 23.1, 23.1 -> 76, 76, 23, 23 + 1 each to S and M -> 77, 77, 23, 23. Z: no position.
    v, L, S, M, Z = scenario(make_venue, [{"stage": "book"}, {"stage": "socialize", "weights": "position"}],
                             bids=((101, 100),))
    P, Q = (int(i) for i in v.add_accounts(2, "trader", 10_000))
    v.ledger.trade(0, P, Q, 30, 104)
    v.liquidate()
    soc = kinds(v, "socialize")
    assert dict(zip(soc.account, soc.amount)) == {S: 77, M: 77, P: 23, Q: 23}
    check_books(v)


def test_socialization_at_settlement_parks_the_deficit_in_the_loss_pool(make_venue):
    wf = [{"stage": "book"}, {"stage": "socialize", "weights": "equity", "when": "settlement"}]
    v, L, S, M, Z = scenario(make_venue, wf, bids=((101, 100),))
    v.liquidate()
    assert kinds(v, "socialize_pending").amount.tolist() == [200]
    assert not len(kinds(v, "socialize"))
    assert v.ledger.wallet[L] == 0 and v.ledger.wallet[v.loss_pool] == -200
    check_books(v)
    v.settle_period()
    soc = kinds(v, "socialize")
    # same equities as the immediate case: 44, 67, 89
    assert dict(zip(soc.account, soc.amount)) == {S: 44, M: 67, Z: 89}
    assert v.ledger.wallet[v.loss_pool] == 0
    check_books(v)
    v.settle_period()  # nothing owed: nothing charged again
    assert len(kinds(v, "socialize")) == 3


def test_settlement_socialization_that_collects_nothing_is_the_venues_loss(make_venue):
    # issue 8, item 3: the loss pool fronts L's 200 (covered as "socialize_pending"); before the
    # settlement every payer's equity is withdrawn to exactly 0 (S: wallet 1,400 + U 600;
    # M: 2,700 + U 300 on the 100 bought at 101, marked 104; Z: 4,000), so the charge collects
    # nothing and the 200 becomes the venue's loss, recorded as such
    wf = [{"stage": "book"}, {"stage": "socialize", "weights": "equity", "when": "settlement"}]
    v, L, S, M, Z = scenario(make_venue, wf, bids=((101, 100),))
    v.liquidate()
    assert covers_of(v) == {"socialize_pending": 200}
    v.withdraw([S, M, Z], [2_000, 3_000, 4_000])
    assert v.equity([S, M, Z]).tolist() == [0, 0, 0]
    v.settle_period()
    assert not len(kinds(v, "socialize"))
    assert kinds(v, "venue_loss").amount.tolist() == [200]
    assert covers_of(v) == {"socialize_pending": 0, "venue": 200}
    assert v.ledger.wallet[v.loss_pool] == 0 and v.ledger.injections == 200
    check_books(v)


def test_position_socialization_charges_only_the_cases_markets_by_notional(make_venue):
    # issue 8, item 5: L (long in market X only) leaves 200; R and T hold 1,000 lots of market Y
    # (contract value 10, price 50: 500,000 of notional each) and are not charged. In X, by
    # notional at mark 104: S 100, M 100, P 30, Q 30 lots -> 77, 77, 23, 23 (as by lots, one price)
    from simulator.venue.market import MarketSpec

    y = MarketSpec(name="Y", tick_size=1.0, lot_size=10.0, cash_unit=1.0, max_leverage=100.0)
    v = make_venue(waterfall=[{"stage": "book"}, {"stage": "socialize", "weights": "position"}],
                   markets=[unit_market("X"), y])
    L = int(v.add_accounts(1, "trader", 700)[0])
    S, M, P, Q, R, T = (int(i) for i in v.add_accounts(6, "trader", 100_000))
    v.ledger.trade(0, L, S, 100, 110)
    v.ledger.trade(0, P, Q, 30, 104)
    v.ledger.trade(1, R, T, 1_000, 50)
    move_to(v, 104, 50)
    v.post_quotes(0, [M], [BUY], [101], [100])
    v.liquidate()
    soc = kinds(v, "socialize")
    assert dict(zip(soc.account, soc.amount)) == {S: 77, M: 77, P: 23, Q: 23}
    check_books(v)


def test_book_liquidation_reports_the_liquidation_price(make_venue):
    # L long 100 @ 110, wallet 700, MM 1 %: equity 100P - 10,300 = MM P at P = 10,300 / 99
    v, L, *_ = scenario(make_venue, [{"stage": "book"}], bids=((105, 100),))
    v.liquidate()
    liq = kinds(v, "liquidation")
    assert liq.liquidation_price.tolist() == [pytest.approx(10_300 / 99)]
    assert liq.equity.tolist() == [100]  # the case's equity at mark 104 before the fill


def test_settlement_socialization_happens_at_funding_time(make_venue):
    wf = [{"stage": "book"}, {"stage": "socialize", "when": "settlement"}]
    v, L, S, M, Z = scenario(make_venue, wf, bids=((101, 100),))
    v.liquidate()
    v.apply_funding()
    assert v.ledger.wallet[v.loss_pool] == 0 and kinds(v, "socialize").amount.sum() == 200
    check_books(v)


def test_socialization_cannot_charge_more_than_equity(make_venue):
    # L bought its 100 @ 110 from the backstop vault, which also holds the only bid (101): the
    # profits sit in a venue row, which socialization never charges. The only solvent trader is
    # Z with 30: it pays its 30 of the 200 deficit, the venue covers the other 170.
    v = make_venue(waterfall=[{"stage": "book"}, {"stage": "socialize"}], backstop=10**6)
    L, Z = (int(i) for i in v.add_accounts(2, "trader", [700, 30]))
    v.ledger.trade(0, L, v.backstop, 100, 110)
    move_to(v, 104)
    v.post_quotes(0, [v.backstop], [BUY], [101], [100])
    v.liquidate()
    soc = kinds(v, "socialize")
    assert dict(zip(soc.account, soc.amount)) == {Z: 30}
    assert kinds(v, "venue_loss").amount.tolist() == [170]
    assert v.ledger.wallet[Z] == 0 and v.ledger.wallet[v.loss_pool] == 0
    check_books(v)


# -------------------------------------------------------- orders from config
def two_orders_scenario(make_venue, waterfall, fund):
    # mark 102: equity 700 + 10,200 - 11,000 = -100; the book holds only 40 lots @ 101
    return scenario(make_venue, waterfall, mark=102, bids=((101, 40),), fund=fund)


def covers_of(v):
    c = kinds(v, "cover")
    return c.groupby("stage")["amount"].sum().to_dict()


def test_seed_order_book_adl_fund_socialize(make_venue):
    wf = [{"stage": "book"}, {"stage": "adl", "price": "mark"}, {"stage": "insurance_fund"},
          {"stage": "socialize"}]
    v, L, S, M, Z = two_orders_scenario(make_venue, wf, fund=30)
    assert [type(s).name for s in v.waterfall] == ["book", "adl", "insurance_fund", "socialize"]
    v.liquidate()
    # book: 40 @ 101 realise 40 x (101 - 110) = -360 -> wallet 340; the 60 left are worth
    # 60 x (102 - 110) = -480 at mark: equity -140, more than the fund's 30, so ADL (at mark)
    # fires: S buys the 60 @ 102 -> wallet -140 = the deficit; the fund pays its 30; 110 socialized
    assert kinds(v, "adl").reason.tolist() == ["fund_empty"]
    assert kinds(v, "deficit").amount.tolist() == [140]
    assert kinds(v, "fund_payout").amount.tolist() == [30]
    assert kinds(v, "socialize").amount.sum() == 110
    assert covers_of(v) == {"insurance_fund": 30, "socialize": 110}
    assert v.equity()[L] == 0
    check_books(v)


def test_seed_order_with_a_fund_that_can_pay_never_deleverages(make_venue):
    # the same case with a fund of 1,000: ADL sits before the fund in the list but its trigger
    # (the fund cannot pay) does not fire; the engine takes the 60 lots at mark and the fund
    # pays the 140
    wf = [{"stage": "book"}, {"stage": "adl", "price": "mark"}, {"stage": "insurance_fund"},
          {"stage": "socialize"}]
    v, L, S, M, Z = two_orders_scenario(make_venue, wf, fund=1_000)
    v.liquidate()
    assert not len(kinds(v, "adl")) and not len(kinds(v, "socialize"))
    assert kinds(v, "deficit").amount.tolist() == [140]
    assert covers_of(v) == {"insurance_fund": 140}
    assert v.ledger.wallet[v.insurance_fund] == 860 and v.ledger.qty[v.engine, 0] == 60
    check_books(v)


def test_common_order_book_fund_adl(make_venue):
    wf = [{"stage": "book"}, {"stage": "insurance_fund"}, {"stage": "adl"}]
    v, L, S, M, Z = two_orders_scenario(make_venue, wf, fund=30)
    assert [type(s).name for s in v.waterfall] == ["book", "insurance_fund", "adl"]
    v.liquidate()
    # the fund (30) cannot pay the 140, so ADL at the bankruptcy price closes the 60 lots and
    # S pays the whole 140; the fund keeps its 30
    assert kinds(v, "adl_haircut").amount.tolist() == [140]
    assert covers_of(v) == {"adl": 140}
    assert v.ledger.wallet[v.insurance_fund] == 30
    assert v.equity()[L] == 0
    check_books(v)


def test_adl_does_not_run_before_a_fund_that_can_pay(make_venue):
    # issue 8, item 1: book -> insurance_fund (no takeover) -> adl, the book empty, mark 102:
    # deficit 100 (700 + 10,200 - 11,000), fund 1,000,000: the fund pays 100, nobody is ADL'd
    wf = [{"stage": "book"}, {"stage": "insurance_fund"}, {"stage": "adl"}]
    v, L, S, *_ = scenario(make_venue, wf, mark=102, bids=(), fund=1_000_000)
    v.liquidate()
    assert not len(kinds(v, "adl"))
    assert covers_of(v) == {"insurance_fund": 100}
    assert v.ledger.wallet[v.insurance_fund] == 1_000_000 - 100
    assert v.ledger.qty[S, 0] == -100  # the profitable short kept its position
    check_books(v)


@pytest.mark.parametrize("waterfall", [[{"stage": "socialize"}], [{"stage": "backstop"}]])
def test_a_bankrupt_position_no_stage_can_close_is_closed_and_recorded(make_venue, waterfall):
    # issue 8, item 6: nothing in the list can close L (socialize only; or a backstop with no
    # capital). The engine closes it at mark 102, the deficit of 100 is recorded and covered
    # (by socialization where there is one, else by the venue): nothing stays open or hidden
    v, L, S, M, Z = scenario(make_venue, waterfall, mark=102, bids=())
    v.liquidate()
    assert v.ledger.qty[L, 0] == 0 and v.equity()[L] == 0
    assert kinds(v, "deficit").amount.tolist() == [100]
    assert sum(covers_of(v).values()) == 100
    expected = "socialize" if waterfall[0]["stage"] == "socialize" else "venue"
    assert covers_of(v) == {expected: 100}
    check_books(v)


def test_pro_rata_adl_shares_the_loss_by_what_each_gives_up(make_venue):
    # issue 8, item 4: two cases and two equal counterparties. Case P long 10 @ 100 (wallet 5,
    # then 250 paid away) and case Q long 10 @ 100 (wallet 5) bought from A (short 10) and B
    # (short 10). At mark 70: P 5 - 250 - 300 = -545, Q 5 - 300 = -295.
    v = make_venue(waterfall=[{"stage": "adl", "ranking": "pro_rata"}])
    P, Q = (int(i) for i in v.add_accounts(2, "trader", [5, 5]))
    A, B = (int(i) for i in v.add_accounts(2, "trader", [10_000, 10_000]))
    v.ledger.trade(0, P, A, 10, 100)
    v.ledger.trade(0, Q, B, 10, 100)
    # make P worse than Q: P also paid 250 in fees earlier
    v.ledger.transfer(P, v.fee_pool, 250)
    move_to(v, 70)
    assert v.equity([P, Q]).tolist() == [-545, -295]
    v.liquidate()
    cut = kinds(v, "adl_haircut")
    paid = cut.groupby("account")["amount"].sum().to_dict()
    # total loss 545 + 295 = 840 over equal notional: 420 each (queue pairing would have made
    # A pay P's 545 and B pay Q's 295)
    assert paid == {A: 420, B: 420}
    assert covers_of(v) == {"adl": 840}
    assert v.equity([P, Q]).tolist() == [0, 0]
    check_books(v)


def test_build_waterfall_rejects_unknown_stage_naming_the_allowed_ones(make_venue):
    with pytest.raises(ValueError) as err:
        build_waterfall([{"stage": "book"}, {"stage": "bailout"}])
    msg = str(err.value)
    assert "bailout" in msg and "waterfall[1]" in msg
    for name in ("book", "backstop", "insurance_fund", "adl", "socialize"):
        assert name in msg
    with pytest.raises(ValueError):
        make_venue(waterfall=[{"stage": "bailout"}])
    with pytest.raises(ValueError, match="ranking"):
        build_waterfall([{"stage": "adl", "ranking": "alphabetical"}])
    with pytest.raises(ValueError, match="ADL price"):
        build_waterfall([{"stage": "adl", "price": "last"}])
    with pytest.raises(ValueError, match="surplus_policy"):
        build_waterfall([{"stage": "insurance_fund", "surplus_policy": "all"}])
    with pytest.raises(ValueError, match="weights"):
        build_waterfall([{"stage": "socialize", "weights": "withdrawal"}])
    with pytest.raises(ValueError, match="when"):
        build_waterfall([{"stage": "socialize", "when": "never"}])
    with pytest.raises(TypeError):
        build_waterfall([{"stage": "book", "partiall": True}])


@dataclass
class FeePoolPays(Stage):
    """A toy stage: the fee pool covers deficits (nothing else knows about it)."""

    name: ClassVar[str] = "fee_pool_pays"
    limit: int = 10**9

    def cover(self, venue, cases):
        need = np.minimum(cases.deficit(venue), self.limit)
        hit = need > 0
        venue.ledger.transfer(np.full(hit.sum(), venue.fee_pool), cases.accounts[hit], need[hit])


def test_a_new_stage_registered_in_STAGES_just_works(make_venue, monkeypatch):
    monkeypatch.setitem(STAGES, FeePoolPays.name, FeePoolPays)
    v, L, *_ = scenario(make_venue, [{"stage": "book"}, {"stage": "fee_pool_pays", "limit": 150}],
                        bids=((101, 100),))
    v.liquidate()
    # deficit 200: the toy stage covers 150, the remaining 50 is the venue's loss
    assert v.ledger.wallet[v.fee_pool] == -150
    assert kinds(v, "deficit").amount.tolist() == [200]
    assert kinds(v, "venue_loss").amount.tolist() == [50]
    # the round attributes the toy stage's payment to it, though it never said so
    assert covers_of(v) == {"fee_pool_pays": 150, "venue": 50}
    check_books(v)


# ----------------------------------------------------------- liquidation rounds
def test_cascade_rounds_until_nobody_is_below_maintenance(make_venue):
    # mark = book mid. Bids 103 x 100 and 100 x 1,000, ask 105: mid 104.
    # L1 long 100 @ 110, wallet 700: equity 100 < MM 104 -> round 0 sells 100 @ 103 (its
    # bankruptcy price: wallet exactly 0). The 103 bid is gone: mid (100 + 105)/2 = 102.5 -> 102.
    # L2 long 100 @ 110, wallet 800: equity at 104 was 200 (fine), at 102 it is 0 < MM 102 ->
    # round 1 sells 100 @ 100: wallet 800 + 10,000 - 11,000 = -200, paid by the fund.
    # Then the mid stays 102 and nobody is below maintenance: cascade depth 2.
    v = make_venue(waterfall=[{"stage": "book"}, {"stage": "insurance_fund"}], fund=10_000, mark="mid")
    L1, L2, S, M = (int(i) for i in v.add_accounts(4, "trader", [700, 800, 10**6, 10**6]))
    v.ledger.trade(0, [L1, L2], S, 100, 110)
    v.set_index([104])
    v.post_quotes(0, [M, M, M], [BUY, BUY, -BUY], [103, 100, 105], [100, 1_000, 1_000])
    assert v.update_marks().tolist() == [104]
    assert v.liquidatable()[[L1, L2]].tolist() == [True, False]
    assert v.liquidate() == 2
    liq = kinds(v, "liquidation")
    assert list(zip(liq.account, liq["round"], liq.price)) == [(L1, 0, 103.0), (L2, 1, 100.0)]
    assert kinds(v, "fund_payout").amount.tolist() == [200]
    assert v.marks.tolist() == [102]
    assert not v.liquidatable().any()
    check_books(v)


def test_round_limit_caps_the_cascade(make_venue):
    v = make_venue(waterfall=[{"stage": "book"}, {"stage": "insurance_fund"}], fund=10_000, mark="mid", max_rounds=1)
    L1, L2, S, M = (int(i) for i in v.add_accounts(4, "trader", [700, 800, 10**6, 10**6]))
    v.ledger.trade(0, [L1, L2], S, 100, 110)
    v.set_index([104])
    v.post_quotes(0, [M, M, M], [BUY, BUY, -BUY], [103, 100, 105], [100, 1_000, 1_000])
    v.update_marks()
    assert v.liquidate() == 1
    assert v.liquidatable()[L2]  # left for the next step
