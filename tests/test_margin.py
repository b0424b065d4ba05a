"""Margin: bankruptcy and liquidation prices from venues' documented examples, tiered
maintenance margin worked out by hand, and the initial-margin check on new orders."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import unit_market
from simulator.venue.book import BUY, SELL
from simulator.venue.ledger import Ledger
from simulator.venue.margin import (
    MarginTiers,
    bankruptcy_price,
    below_maintenance,
    initial_margin,
    liquidation_price,
    liquidation_prices,
    maintenance_margin,
)
from simulator.venue.market import MarketSpec


def one_position(qty, entry_ticks, wallet, cv=1):
    """A ledger where account 0 holds ``qty`` lots bought (sold) at ``entry`` with ``wallet``."""
    led = Ledger(np.array([cv]))
    a, other = led.add_accounts(2, "trader", [wallet, 10**12])
    if qty > 0:
        led.trade(0, a, other, qty, entry_ticks)
    else:
        led.trade(0, other, a, -qty, entry_ticks)
    return led, int(a)


# ----------------------------------------------------------- BitMEX / Bybit
@pytest.mark.parametrize(
    "spec",
    [
        MarketSpec(tick_size=1.0, lot_size=1.0, cash_unit=1.0),  # price 100 = 100 ticks, cv 1
        MarketSpec(tick_size=0.01, lot_size=1.0, cash_unit=0.01),  # price 100 = 10,000 ticks, cv 1
    ],
)
def test_bitmex_example_long_1_at_100_with_1_margin(spec):
    # BitMEX, linear form: long 1 @ 100 holding 1 of margin (100x), maintenance 0.5 %:
    # bankruptcy at 99 (the 1 of margin is gone), liquidation where equity = 0.5 % of notional:
    # 1 + (P - 100) = 0.005 P  ->  P = 99 / 0.995 = 99.4975
    entry = int(spec.to_ticks(100.0))
    led, a = one_position(spec.to_lots(1.0), entry, int(spec.cash(1.0)), spec.contract_value)
    marks = [entry]
    tiers = MarginTiers((0,), (5_000,))
    assert spec.to_price(bankruptcy_price(led, marks, a, 0)) == pytest.approx(99.0, abs=1e-12)
    assert spec.to_price(liquidation_price(led, marks, a, 0, tiers)) == pytest.approx(99 / 0.995, rel=1e-12)
    # at the bankruptcy price equity is exactly zero
    assert led.equity([int(spec.to_ticks(99.0))])[a] == 0


def test_bitmex_example_short_mirror():
    # short 1 @ 100 with 1 of margin: bankrupt at 101; liquidated where 1 - (P - 100) = 0.005 P
    # -> P = 101 / 1.005 = 100.4975
    led, a = one_position(-1, 100, 1)
    tiers = MarginTiers((0,), (5_000,))
    assert bankruptcy_price(led, [100], a, 0) == pytest.approx(101.0)
    assert liquidation_price(led, [100], a, 0, tiers) == pytest.approx(101 / 1.005)
    assert led.equity([101])[a] == 0


@pytest.mark.parametrize("lev, im", [(10, 2_000), (25, 800), (50, 400), (100, 200)])
def test_bybit_linear_bankruptcy_price_with_wallet_equal_to_initial_margin(lev, im):
    # Bybit (USDT perps): wallet = initial margin = entry / lev for 1 contract; then
    # long P_b = entry * (1 - 1/lev), short P_b = entry * (1 + 1/lev). Entry 20,000.
    entry = 20_000
    assert initial_margin(np.array([[1]]), [entry], [1], lev)[0, 0] == im  # 20,000 / lev
    led, a = one_position(1, entry, im)
    assert bankruptcy_price(led, [entry], a, 0) == pytest.approx(entry * (1 - 1 / lev))
    led, a = one_position(-1, entry, im)
    assert bankruptcy_price(led, [entry], a, 0) == pytest.approx(entry * (1 + 1 / lev))
    # and it does not depend on the current mark
    assert bankruptcy_price(led, [entry - 500], a, 0) == pytest.approx(entry * (1 + 1 / lev))


def test_bankruptcy_price_holds_other_markets_at_mark():
    # cross margin over two markets: long 10 @ 100 in market 0, wallet 50, and a short 2 @ 40 in
    # market 1 marked at 30 (U = +20). Equity without market 0's U = 50 + 20 = 70, so
    # P_b = (1000 - 70) / 10 = 93
    led = Ledger(np.array([1, 1]))
    a, other = led.add_accounts(2, "trader", [50, 10**9])
    led.trade(0, a, other, 10, 100)
    led.trade(1, other, a, 2, 40)
    assert bankruptcy_price(led, [100, 30], a, 0) == pytest.approx(93.0)
    assert led.equity([93, 30])[a] == 0


# ------------------------------------------------------------------- tiers
BINANCE_LIKE = MarginTiers(floors=(0, 50_000, 250_000), mmr_ppm=(4_000, 5_000, 10_000))


def test_tier_deductions_by_hand():
    # deduction_1 = 50,000 * (0.005 - 0.004) = 50
    # deduction_2 = 50 + 250,000 * (0.010 - 0.005) = 50 + 1,250 = 1,300
    assert BINANCE_LIKE.deductions.tolist() == [0, 50, 1_300]


@pytest.mark.parametrize(
    "notional, mm",
    [
        (0, 0),
        (10_000, 40),  # 0.4 %
        (49_999, 200),  # 199.996 rounded up
        (50_000, 200),  # 250 - 50: same as just below -> continuous
        (50_001, 201),  # 250.005 -> 251, - 50
        (100_000, 450),  # 500 - 50
        (249_999, 1_200),  # 1249.995 -> 1250, - 50
        (250_000, 1_200),  # 2500 - 1300
        (250_001, 1_201),  # 2500.01 -> 2501, - 1300
        (1_000_000, 8_700),  # 10,000 - 1,300
    ],
)
def test_tiered_maintenance_by_hand(notional, mm):
    assert int(BINANCE_LIKE.maintenance(np.array([notional]))[0]) == mm


def test_tiered_maintenance_is_continuous_and_monotone_across_boundaries():
    for floor in (50_000, 250_000):
        n = np.arange(floor - 1_000, floor + 1_000)
        mm = BINANCE_LIKE.maintenance(n)
        steps = np.diff(mm)
        assert (steps >= 0).all() and (steps <= 1).all()
    assert BINANCE_LIKE.rate_at(np.array([49_999, 50_000, 250_000])).tolist() == [4_000, 5_000, 10_000]


def test_maintenance_margin_from_positions():
    # 500 lots long and 2,600 lots short at mark 100: notionals 50,000 and 260,000
    # -> 250 - 50 = 200 and 2,600 - 1,300 = 1,300
    qty = np.array([[500], [-2_600], [0]])
    mm = maintenance_margin(qty, [100], [1], [BINANCE_LIKE])
    assert mm[:, 0].tolist() == [200, 1_300, 0]


@pytest.mark.parametrize(
    "qty, wallet, tier",
    [
        # long 1000 @ 100, wallet 7,000: in tier 1 (r 0.5 %, d 50):
        # 7000 + 1000 P - 100,000 = 5 P - 50  ->  P = 92,950 / 995 = 93.417 (N = 93,417: tier 1)
        (1_000, 7_000, 1),
        # long 3000 @ 100, wallet 20,000: in tier 2 (r 1 %, d 1300):
        # 20,000 + 3000 P - 300,000 = 30 P - 1,300 -> P = 278,700 / 2,970 = 93.838 (N = 281,515)
        (3_000, 20_000, 2),
    ],
)
def test_tiered_liquidation_price(qty, wallet, tier):
    led, a = one_position(qty, 100, wallet)
    p = liquidation_price(led, [100], a, 0, BINANCE_LIKE)
    r = BINANCE_LIKE.mmr_ppm[tier] / 1e6
    d = int(BINANCE_LIKE.deductions[tier])
    assert p == pytest.approx((100 * qty - wallet - d) / (qty * (1 - r)))
    # independent check: equity == MM at that price (floats, the report is not settled)
    equity = wallet + qty * p - 100 * qty
    assert equity == pytest.approx(qty * p * r - d)


def test_vectorised_liquidation_prices_find_each_accounts_own_tier():
    # the two hand examples above in one call, with a flat account: every tier is solved at
    # once and each account takes the tier its own solution falls in
    led = Ledger(np.array([1]))
    a, b, flat, other = led.add_accounts(4, "trader", [7_000, 20_000, 5_000, 10**12])
    led.trade(0, a, other, 1_000, 100)
    led.trade(0, b, other, 3_000, 100)
    mm = np.zeros((3, 1), dtype=np.int64)  # one market: no other market's margin
    p = liquidation_prices(led, [100], [a, b, flat], 0, [BINANCE_LIKE], mm)
    assert p[0] == pytest.approx(92_950 / 995)  # tier 1: (100,000 - 7,000 - 50) / (1,000 x 0.995)
    assert p[1] == pytest.approx(278_700 / 2_970)  # tier 2: (300,000 - 20,000 - 1,300) / (3,000 x 0.99)
    assert np.isnan(p[2])
    assert p[:2].tolist() == [liquidation_price(led, [100], a, 0, BINANCE_LIKE),
                              liquidation_price(led, [100], b, 0, BINANCE_LIKE)]


def test_tiers_validate():
    with pytest.raises(ValueError):
        MarginTiers((10,), (5_000,))
    with pytest.raises(ValueError):
        MarginTiers((0, 10), (5_000, 4_000))
    with pytest.raises(ValueError):
        MarginTiers((0, 10), (5_000,))


# ------------------------------------------------------------ IM and trigger
def test_initial_margin_rounds_up():
    # 1,001 / 10 = 100.1 -> 101; 100 / 3 = 33.3 -> 34; 100 / 2.5 = 40 exactly
    qty = np.array([[1_001], [100], [100]])
    lev = np.array([[10.0], [3.0], [2.5]])
    assert initial_margin(qty, [1], [1], lev)[:, 0].tolist() == [101, 34, 40]


def test_below_maintenance_needs_a_position():
    equity = np.array([5, 10, -3, 11])
    mm = np.array([[10], [10], [0], [10]])
    # 5 < 10 yes; 10 < 10 no; -3 with no position is not a liquidation; 11 no
    assert below_maintenance(equity, mm).tolist() == [True, False, False, False]


def test_order_leaving_equity_below_initial_margin_is_rejected(make_venue, move):
    v = make_venue()
    mm, a, b = v.add_accounts(3, "trader", [10**9, 1_000, 1_000], leverage=[100, 10, 10])
    move(v, 100)
    v.post_quotes(0, [mm, mm], [SELL, BUY], [100, 99], [1_000, 1_000])
    # a: 100 lots @ mark 100 = 10,000 notional, IM at 10x = 1,000 = equity -> accepted
    f = v.submit_orders(0, [a], [BUY], [100])
    assert f.qty.sum() == 100 and v.rejections == 0
    # b: 101 lots -> IM 1,010 > 1,000 -> rejected, counted, nothing traded
    f = v.submit_orders(0, [b], [BUY], [101])
    assert len(f) == 0 and v.rejections == 1
    assert v.ledger.qty[b, 0] == 0
    # a already uses all its margin: one more lot is refused, a sale (reduces) is not
    f = v.submit_orders(0, [a, a], [BUY, SELL], [1, 10])
    assert v.rejections == 2
    assert v.ledger.qty[a, 0] == 90


def test_im_check_counts_existing_positions_and_the_taker_fee(make_venue, move):
    v = make_venue(markets=[unit_market(taker_fee_ppm=1_000)])
    mm, a, b = v.add_accounts(3, "trader", [10**9, 1_000, 1_000], leverage=[100, 10, 10])
    move(v, 100)
    v.post_quotes(0, [mm, mm], [SELL, BUY], [100, 100 - 1], [1_000, 1_000])
    # b buys 100: IM 1,000 but the fee 0.1 % of 10,000 = 10 leaves 990 -> rejected
    v.submit_orders(0, [b], [BUY], [100])
    assert v.rejections == 1 and v.ledger.qty[b, 0] == 0
    # 99 lots: IM 990, fee 9.9 -> 10, equity after fee 990 >= 990 -> accepted
    v.submit_orders(0, [b], [BUY], [99])
    assert v.rejections == 1 and v.ledger.qty[b, 0] == 99
    # a buys 50 (IM 500, fee 5): accepted; then 50 more would need IM 1,000 with equity 995 - 5
    v.submit_orders(0, [a], [BUY], [50])
    v.submit_orders(0, [a], [BUY], [50])
    assert v.rejections == 2 and v.ledger.qty[a, 0] == 50


def test_reducing_is_never_rejected_but_flipping_through_zero_is_checked(make_venue, move):
    v = make_venue()
    mm, a = v.add_accounts(2, "trader", [10**9, 1_000], leverage=[100, 10])
    move(v, 100)
    v.post_quotes(0, [mm, mm], [SELL, BUY], [100, 95], [1_000, 1_000])
    v.submit_orders(0, [a], [BUY], [100])
    move(v, 95)  # equity 1,000 - 500 = 500 < IM 950 of the position it holds
    v.submit_orders(0, [a], [SELL], [10])
    assert v.rejections == 0 and v.ledger.qty[a, 0] == 90
    # selling 300 would leave short 210 (IM 1,995): rejected
    v.submit_orders(0, [a], [SELL], [300])
    assert v.rejections == 1 and v.ledger.qty[a, 0] == 90
    # reduce-only: cut to the 90 it holds
    v.submit_orders(0, [a], [SELL], [300], reduce_only=True)
    assert v.rejections == 1 and v.ledger.qty[a, 0] == 0


def test_leverage_setting_is_capped_at_the_market_maximum(make_venue):
    v = make_venue(markets=[unit_market(max_leverage=20)])
    a, b = v.add_accounts(2, "trader", 0, leverage=[50, 5])
    assert v.leverage[[a, b], 0].tolist() == [20, 5]
    c = v.add_accounts(1, "trader", 0)[0]
    assert v.leverage[c, 0] == 20


# ------------------------------------------------- resting orders (post_quotes) and initial margin
def test_a_resting_bid_beyond_initial_margin_is_refused(make_venue, move):
    # mark 1,000, leverage 100, contract value 1. Equity 10: a 100-lot bid (100,000 notional)
    # needs IM 100 * 1,000 / 100 = 1,000 > 10 -> refused; a 1-lot bid needs exactly 10 -> rests.
    v = make_venue()
    poor = v.add_accounts(1, "market_maker", 10, leverage=100)[0]
    move(v, 1_000)
    oid = v.post_quotes(0, [poor], [BUY], [999], [100])
    assert oid.tolist() == [-1] and v.quote_rejections == 1 and v.rejections == 0
    assert v.books[0].best_bid() is None
    oid = v.post_quotes(0, [poor], [BUY], [999], [1])
    assert oid[0] >= 0 and v.books[0].resting_lots(BUY) == 1 and v.quote_rejections == 1


def test_a_quote_ladder_is_cut_where_margin_runs_out(make_venue, move):
    # flat, equity 50, mark 1,000, leverage 100: 10 cash of IM per lot, room for 5 lots a side.
    # bids 2, 2, 2 -> cumulative 2, 4, 6 lots -> IM 20, 40, 60: the third is cut.
    # asks 1, 3, 2 -> cumulative 1, 4, 6 -> IM 10, 40, 60: the third is cut. Each side is its
    # own worst case (max(|q + buys|, |q - sells|) = max(4, 4) -> IM 40 <= 50 after the cut).
    v = make_venue()
    mm = v.add_accounts(1, "market_maker", 50, leverage=100)[0]
    move(v, 1_000)
    oids = v.post_quotes(0, [mm] * 6, [BUY, BUY, BUY, SELL, SELL, SELL],
                         [999, 998, 997, 1_001, 1_002, 1_003], [2, 2, 2, 1, 3, 2])
    assert (oids >= 0).tolist() == [True, True, False, True, True, False]
    assert v.quote_rejections == 2
    assert (v.books[0].resting_lots(BUY), v.books[0].resting_lots(SELL)) == (4, 4)
    # what already rests counts: one more bid lot (cumulative 5, IM 50) fits, then none
    assert v.post_quotes(0, [mm, mm], [BUY, BUY], [996, 995], [1, 1]).tolist()[1] == -1
    assert v.books[0].resting_lots(BUY) == 5 and v.quote_rejections == 3


def test_quote_margin_counts_the_position_and_other_markets(make_venue, move):
    # market 0: long 3 @ 1,000, wallet 50 -> equity 50 at mark 1,000; leverage 100.
    # bids: |3 + 1| = 4 -> IM 40, |3 + 2| = 5 -> 50 (= equity, fits), |3 + 3| = 6 -> 60 refused.
    # asks only shrink the long first: |3 - 3| = 0 and |3 - 6| = 3 are no larger than the
    # position (accepted even without free margin); |3 - 11| = 8 -> IM 80 > 50 refused.
    v = make_venue(markets=[unit_market("A"), unit_market("B")])
    mm, other = v.add_accounts(2, "market_maker", 50, leverage=100)
    move(v, 1_000, 1_000)
    v.ledger.trade(0, mm, other, 3, 1_000)
    oids = v.post_quotes(0, [mm] * 6, [BUY, BUY, BUY, SELL, SELL, SELL],
                         [999, 998, 997, 1_001, 1_002, 1_003], [1, 1, 1, 3, 3, 5])
    assert (oids >= 0).tolist() == [True, True, False, True, True, False]
    # the short side (other, short 3, equity 50) in market 1: its market-0 worst case is
    # |-3 - 0| = 3 lots -> IM 30, so a bid of 2 lots in market 1 (IM 20) fits, 3 (IM 30) not
    assert v.post_quotes(1, [other], [BUY], [999], [3]).tolist() == [-1]
    assert v.post_quotes(1, [other], [BUY], [999], [2])[0] >= 0
    assert v.quote_rejections == 3
    assert v.conservation_residual() == 0
