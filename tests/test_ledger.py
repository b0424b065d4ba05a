"""Ledger: fill settlement by hand, fees, external flows and the conservation identity."""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import example, given, settings

from conftest import move_to, unit_market
from strategies import fill_batches
from simulator.venue.book import BUY, SELL
from simulator.venue.ledger import Ledger


def two_traders(cv=1, deposit=10_000):
    led = Ledger(np.array([cv]))
    a, b = led.add_accounts(2, "trader", deposit)
    return led, a, b


def state(led, acc):
    return int(led.qty[acc, 0]), int(led.cost[acc, 0]), int(led.wallet[acc])


def test_open_add_partial_close_and_flip_by_hand():
    led, a, b = two_traders()
    # open: a buys 10 @ 100 from b
    led.trade(0, a, b, 10, 100)
    assert state(led, a) == (10, 1_000, 10_000)
    assert state(led, b) == (-10, -1_000, 10_000)
    # add: a buys 10 more @ 110 -> cost 1000 + 1100 = 2100, entry 105
    led.trade(0, a, b, 10, 110)
    assert state(led, a) == (20, 2_100, 10_000)
    assert led.entry_price()[a, 0] == 105.0
    # partial close: a sells 5 @ 120. Closed cost 2100 * 5/20 = 525, proceeds 600 -> +75.
    # b (short 20 @ 105) buys 5 @ 120: closed cost -525, pays 600 -> -75.
    led.trade(0, b, a, 5, 120)
    assert state(led, a) == (15, 1_575, 10_075)
    assert state(led, b) == (-15, -1_575, 9_925)
    assert led.entry_price()[a, 0] == 105.0  # unchanged by a reduction
    # flip: a sells 20 @ 90. Closes 15 (cost 1575, proceeds 1350 -> -225), opens short 5 @ 90.
    led.trade(0, b, a, 20, 90)
    assert state(led, a) == (-5, -450, 9_850)
    assert state(led, b) == (5, 450, 10_150)
    assert led.entry_price()[a, 0] == 90.0
    # every cash unit is accounted for at any mark
    for mark in (1, 90, 1_000):
        assert led.conservation_residual([mark]) == 0
    assert led.qty.sum() == 0


def test_short_flip_to_long():
    led, a, b = two_traders()
    led.trade(0, b, a, 4, 50)  # a short 4 @ 50 (cost -200)
    # a buys 6 @ 40: closes 4 (pays 160 for what it sold at 200 -> +40), opens long 2 @ 40
    led.trade(0, a, b, 6, 40)
    assert state(led, a) == (2, 80, 10_040)
    assert state(led, b) == (-2, -80, 9_960)
    assert led.conservation_residual([37]) == 0


def test_reduction_rounding_stays_exact():
    led, a, b = two_traders()
    for p in (33, 33, 34):  # a long 3, cost 100: entry 33.33
        led.trade(0, a, b, 1, p)
    # a sells 1 @ 40: closed cost floor(100 * 1/3) = 33, realised 40 - 33 = 7, cost left 67
    led.trade(0, b, a, 1, 40)
    assert state(led, a) == (2, 67, 10_007)
    # b was short 3 with cost -100 and buys 1 @ 40: closed cost floor(-100/3) = -34,
    # realised -40 + 34 = -6, cost left -66
    assert state(led, b) == (-2, -66, 9_994)
    assert led.conservation_residual([35]) == 0
    # closing the rest removes the remaining cost exactly
    led.trade(0, b, a, 2, 30)
    assert state(led, a) == (0, 0, 10_007 + 60 - 67)
    assert state(led, b) == (0, 0, 9_994 - 60 + 66)
    assert led.wallet.sum() == 20_000


def test_contract_value_scales_cost():
    # BTC-PERP style: tick 0.1 USD, lot 0.001 BTC, cash 1e-6 USD -> cv = 100 cash units
    led, a, b = two_traders(cv=100, deposit=0)
    led.trade(0, a, b, 3, 1_000_000)  # 0.003 BTC @ 100,000.0 USD = 300 USD = 3e8 micro-USD
    assert state(led, a) == (3, 300_000_000, 0)
    # mark 90,000.0 USD (900,000 ticks): U = 3 * 900,000 * 100 - 3e8 = -30 USD
    assert led.unrealised([900_000])[a, 0] == -30_000_000
    assert led.equity([900_000])[b] == 30_000_000


def test_a_batch_settles_per_account_at_its_vwap():
    led = Ledger(np.array([1]))
    a, b, c = led.add_accounts(3, "trader", 0)
    # a sells 1 @ 100 to b and 3 @ 104 to c in one call: a short 4, cost -412
    led.trade(0, [b, c], [a, a], [1, 3], [100, 104])
    assert state(led, a) == (-4, -412, 0)
    assert state(led, b) == (1, 100, 0)
    assert state(led, c) == (3, 312, 0)


def test_bought_and_sold_in_one_batch_realises_into_the_wallet():
    # a market maker with no position is hit on both sides in one batch: +1 @ 99, -1 @ 101.
    # It ends flat; the 2 it earned must be cash, not a cost left on a zero position.
    led = Ledger(np.array([1]))
    mm, t1, t2 = led.add_accounts(3, "trader", 1_000)
    led.trade(0, [t1, mm], [mm, t2], [1, 1], [101, 99])
    assert state(led, mm) == (0, 0, 1_002)
    # with a position the fills settle in order, as if one at a time: long 5 @ 90 (cost 450),
    # then +2 @ 100 -> long 7, cost 650; then -2 @ 103 closes floor(650 * 2 / 7) = 185 of cost
    # and realises 206 - 185 = 21: long 5 at cost 465, wallet 1,002 + 21 = 1,023.
    # (Netting the batch would have said cost 450 and +6 cash: same equity, wrong split.)
    led.trade(0, mm, t1, 5, 90)
    led.trade(0, [mm, t2], [t1, mm], [2, 2], [100, 103])
    assert state(led, mm) == (5, 465, 1_023)
    assert led.conservation_residual([95]) == 0
    # equity at 95 is the same either way: 1,023 + 5 * 95 - 465 = 1,033 = 1,008 + 475 - 450
    assert led.equity([95])[mm] == 1_033


def test_a_batch_equals_the_fills_one_at_a_time_by_hand():
    # a long 3 at cost 100 (entry 33.3) sells 1 @ 40, 1 @ 41 and 1 @ 40 in one batch.
    # Netted at the VWAP it would realise 121 - 100 = 21 as well; the partial closes below check
    # the rounding of each step (floor of the closed share of what cost is left).
    led = Ledger(np.array([1]))
    a, b, c = led.add_accounts(3, "trader", 0)
    for p in (33, 33, 34):
        led.trade(0, a, b, 1, p)
    led.trade(0, [b, c, b], [a, a, a], [1, 1, 1], [40, 41, 40])
    # 1 @ 40: closes 33, +7, cost 67; 1 @ 41: closes floor(67/2) = 33, +8, cost 34;
    # 1 @ 40: closes 34, +6, cost 0 -> wallet 21
    assert state(led, a) == (0, 0, 21)
    # a flip inside a batch at two prices: a short 2 @ 50 (cost -100) buys 3 @ 40 then 1 @ 60.
    # one at a time: closes 2 (pays 80 for 100 -> +20), opens long 1 @ 40; then adds 1 @ 60:
    # long 2 at cost 100. Netted at the VWAP (180 for 4) it would be cost 90 and +10.
    led2 = Ledger(np.array([1]))
    a, b, c = led2.add_accounts(3, "trader", 0)
    led2.trade(0, b, a, 2, 50)
    led2.trade(0, [a, a], [b, c], [3, 1], [40, 60])
    assert state(led2, a) == (2, 100, 20)
    assert led2.conservation_residual([45]) == 0


def test_self_trade_changes_nothing():
    led, a, _ = two_traders()
    led.trade(0, a, a, 5, 100)
    assert state(led, a) == (0, 0, 10_000)


def test_trade_rejects_bad_fills():
    led, a, b = two_traders()
    with pytest.raises(ValueError):
        led.trade(0, a, b, -1, 100)
    with pytest.raises(ValueError):
        led.trade(0, a, b, 1, 0)


def test_deposits_withdrawals_and_injections_are_logged():
    led = Ledger(np.array([1, 1]))
    a = led.add_accounts(2, "trader", [100, 0])
    fund = led.add_accounts(1, "insurance_fund", 0)[0]
    led.deposit([a[1]], [50])
    led.withdraw([a[0]], [30])
    led.inject(int(fund), 7, "venue_loss")
    assert (led.deposits, led.withdrawals, led.injections) == (150, 30, 7)
    assert [(f.account, f.kind, f.amount, f.reason) for f in led.flows] == [
        (int(a[0]), "deposit", 100, ""),
        (int(a[1]), "deposit", 50, ""),
        (int(a[0]), "withdrawal", 30, ""),
        (int(fund), "injection", 7, "venue_loss"),
    ]
    assert led.wallet.tolist() == [70, 50, 7]
    assert led.conservation_residual([1, 1]) == 0
    # an unlogged cash change is exactly what the residual catches
    led.wallet[0] += 1
    assert led.conservation_residual([1, 1]) == 1
    with pytest.raises(ValueError):
        led.deposit([0], [-1])
    with pytest.raises(ValueError):
        led.withdraw([0], [-1])


def test_transfer_moves_cash_between_rows():
    led = Ledger(np.array([1]))
    a, b, c = led.add_accounts(3, "trader", 10)
    led.transfer([a, b], c, [3, 4])
    assert led.wallet.tolist() == [7, 6, 17]
    led.transfer(c, a, -2)  # a negative amount moves the other way
    assert led.wallet.tolist() == [5, 6, 19]
    assert led.conservation_residual([1]) == 0


def test_account_kinds_and_venue_mask():
    led = Ledger(np.array([1]))
    led.add_accounts(2, "trader")
    led.add_accounts(1, "insurance_fund")
    led.add_accounts(1, "fee_pool")
    assert led.is_venue().tolist() == [False, False, True, True]
    with pytest.raises(ValueError):
        led.add_accounts(1, "whale")
    with pytest.raises(ValueError):
        Ledger(np.array([0]))


def test_open_interest_counts_long_lots():
    led = Ledger(np.array([1, 1]))
    a, b, c = led.add_accounts(3, "trader")
    led.trade(0, a, b, 4, 10)
    led.trade(0, c, b, 1, 10)
    led.trade(1, b, a, 2, 10)
    assert led.open_interest().tolist() == [5, 2]


# ----------------------------------------------------------------- via Venue
def test_trading_fees_go_to_the_fee_pool(make_venue, move):
    v = make_venue(markets=[unit_market(taker_fee_ppm=450, maker_fee_ppm=150)])
    mm, t = v.add_accounts(2, "trader", 10_000_000)
    move(v, 100_000)
    v.post_quotes(0, [mm], [SELL], [100_000], [10])
    v.submit_orders(0, [t], [BUY], [10])
    # notional 10 * 100,000 = 1,000,000: taker pays 450 ppm = 450, maker 150 ppm = 150
    assert v.ledger.wallet[v.fee_pool] == 600
    assert v.ledger.wallet[t] == 10_000_000 - 450
    assert v.ledger.wallet[mm] == 10_000_000 - 150
    assert v.conservation_residual() == 0


def test_fees_round_up_for_the_payer(make_venue, move):
    v = make_venue(markets=[unit_market(taker_fee_ppm=450, maker_fee_ppm=150)])
    mm, t = v.add_accounts(2, "trader", 1_000_000)
    move(v, 1_001)
    v.post_quotes(0, [mm], [SELL], [1_001], [1])
    v.submit_orders(0, [t], [BUY], [1])
    # 1001 * 450e-6 = 0.45 -> 1; 1001 * 150e-6 = 0.15 -> 1
    assert v.ledger.wallet[v.fee_pool] == 2
    assert v.conservation_residual() == 0


def test_venue_deposit_and_conservation_after_trading(make_venue):
    v = make_venue()
    a, b = v.add_accounts(2, "trader", 1_000)
    v.ledger.deposit([a], [500])
    v.ledger.withdraw([b], [200])
    move_to(v, 100)
    v.post_quotes(0, [a], [BUY], [99], [3])
    v.submit_orders(0, [b], [SELL], [2])
    for p in (50, 99, 150):
        move_to(v, p)
        assert v.conservation_residual() == 0
    assert v.ledger.qty.sum(axis=0).tolist() == [0]


# ------------------------------------------------------------ property: batch == one by one
@settings(max_examples=200, deadline=None)
@given(fill_batches())
def test_a_batch_settles_exactly_as_its_fills_one_at_a_time(case):
    """Random positions, then a random batch of fills (accounts hit on both sides, reductions,
    flips, self-trades, several batches): batched and one-by-one give identical integers."""
    cv, n_accounts, setup, batches = case
    batched, single = Ledger(np.array([cv])), Ledger(np.array([cv]))
    for led in (batched, single):
        led.add_accounts(n_accounts, "trader", 10**9)
        for b, s, q, p in setup:
            led.trade(0, b, s, q, p)
    for fills in batches:
        b, s, q, p = (np.array(x, dtype=np.int64) for x in zip(*fills))
        batched.trade(0, b, s, q, p)
        for fill in fills:
            single.trade(0, *fill)
        np.testing.assert_array_equal(batched.wallet, single.wallet)
        np.testing.assert_array_equal(batched.qty, single.qty)
        np.testing.assert_array_equal(batched.cost, single.cost)
    for mark in (1, 97, 10**4):
        assert batched.conservation_residual([mark]) == 0
    assert batched.qty.sum() == 0


def test_account_kinds_are_one_byte_codes_that_answer_by_name():
    led = Ledger(np.array([1]))
    led.add_accounts(3, "trader")
    led.add_accounts(1, "insurance_fund")
    led.add_accounts(2, "market_maker")
    # 6 accounts x 1 byte (the old "<U16" column: 6 x 64 bytes)
    assert led.kind_code.nbytes == 6
    assert (led.kind == "trader").tolist() == [True, True, True, False, False, False]
    assert (led.kind != "trader").sum() == 3
    assert (led.kind == "no_such_kind").sum() == 0
    assert led.kind[3] == "insurance_fund"
    assert led.kind[[0, 4]].tolist() == ["trader", "market_maker"]
    assert list(led.kind) == ["trader"] * 3 + ["insurance_fund"] + ["market_maker"] * 2
    assert led.is_venue().tolist() == [False, False, False, True, False, False]
    assert led.kind.counts() == {"insurance_fund": 1, "market_maker": 2, "trader": 3}
    assert len(led.flows) == 0  # no deposit, nothing logged
