"""Inverse (coin-margined) contracts, worked by hand in satoshis.

The market is BitMEX's XBTUSD: one contract = 1 USD, tick 0.5 USD, margin and PnL in BTC, the
ledger's cash unit 1 satoshi (1e-8 BTC). So ``K = 1 / (0.5 * 1e-8) = 2e8`` and ``q`` contracts
at ``P`` ticks are worth ``floor(q * 2e8 / P)`` sats; 10,000 USD is 20,000 ticks.
BitMEX: "XBT Contract Value = Multiplier / Price", "PnL = #Contracts * Multiplier * (1/Entry -
1/Exit)" (inverse perpetuals and inverse futures guides).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from simulator.venue import kernels
from simulator.venue.book import BUY, SELL
from simulator.venue.ledger import Ledger
from simulator.venue.margin import MarginTiers, bankruptcy_price, liquidation_price
from simulator.venue.market import MarketSpec
from simulator.venue.prices import funding_payments

from conftest import move_to

K = 200_000_000  # 1 USD / (0.5 USD per tick * 1e-8 BTC per sat)
SAT = 100_000_000  # sats per BTC


def xbtusd(mmr_ppm: int = 5_000, **kw) -> MarketSpec:
    return MarketSpec(name="XBTUSD", tick_size=0.5, lot_size=1.0, cash_unit=1e-8, settlement="inverse",
                      max_leverage=100.0, taker_fee_ppm=0, maker_fee_ppm=0,
                      tiers=MarginTiers((0,), (mmr_ppm,)), **kw)


def inverse_ledger(wallets=(0, 0)) -> tuple[Ledger, np.ndarray]:
    led = Ledger(np.array([K]), np.array([True]))
    ids = led.add_accounts(len(wallets), "trader", list(wallets))
    return led, ids


def test_contract_constant_is_exact_or_refused():
    assert xbtusd().contract_value == K
    # a 0.3 USD tick: 1 / (0.3e-8) = 333,333,333.33 sats per contract-tick is not whole
    with pytest.raises(ValueError, match=r"lot_size / \(tick_size \* cash_unit\)"):
        MarketSpec(tick_size=0.3, lot_size=1.0, cash_unit=1e-8, settlement="inverse").contract_value
    with pytest.raises(ValueError, match="settlement"):
        MarketSpec(settlement="quanto")


def test_long_pnl_in_sats_matches_bitmex_futures_example():
    # BitMEX's inverse futures guide: long 100,000 contracts at 10,000, sold at 10,500:
    # profit = 100,000 * (1/10,000 - 1/10,500) = 0.476190476 BTC.
    # cost  = -floor(100,000 * 2e8 / 20,000) = -1,000,000,000 sats (10 BTC)
    # close = floor(100,000 * 2e8 / 21,000) = floor(952,380,952.38) = 952,380,952 sats
    # PnL   = 1,000,000,000 - 952,380,952 = 47,619,048 sats = 0.47619048 BTC
    led, (a, b) = inverse_ledger()
    led.trade(0, a, b, 100_000, 20_000)
    assert led.cost[a, 0] == -1_000_000_000 and led.cost[b, 0] == 1_000_000_000
    assert led.unrealised([21_000])[a, 0] == 47_619_048  # marked at 10,500: the same sats
    c = led.add_accounts(1, "trader")[0]
    led.trade(0, c, a, 100_000, 21_000)
    assert led.wallet[a] == 47_619_048
    assert led.qty[a, 0] == 0 and led.cost[a, 0] == 0
    assert abs(47_619_048 / SAT - 100_000 * (1 / 10_000 - 1 / 10_500)) < 1e-8
    assert led.conservation_residual([21_000]) == 0


def test_short_pnl_in_sats():
    # short 10,000 contracts at 10,000 (cost +1e8 sats = 1 BTC), mark 9,000 (18,000 ticks):
    # V = floor(10,000 * 2e8 / 18,000) = floor(111,111,111.1) = 111,111,111; U = 11,111,111 sats
    # BitMEX: -10,000 * (1/10,000 - 1/9,000) = 0.111111 BTC
    led, (a, b) = inverse_ledger()
    led.trade(0, b, a, 10_000, 20_000)
    assert led.cost[a, 0] == 100_000_000
    assert led.unrealised([18_000])[a, 0] == 11_111_111
    # the long side loses exactly what the short makes (the same floor, opposite signs)
    assert led.unrealised([18_000])[b, 0] == -11_111_111
    assert led.entry_price()[a, 0] == pytest.approx(20_000)


def test_fill_batch_settles_exactly_numpy_equals_kernel():
    # A buys 3 from B at 20,001 ticks: |V| = floor(3 * 2e8 / 20,001) = floor(29,998.50) = 29,998
    # A sells 1 to C at 19,999:        |V| = floor(2e8 / 19,999) = floor(10,000.50) = 10,000
    #   A reduces 1 of 3: closed cost = floor(-29,998 / 3) = -10,000; realised -10,000 + 10,000 = 0
    # B buys 5 from A at 20,003:       |V| = floor(5 * 2e8 / 20,003) = floor(49,992.50) = 49,992
    #   A (long 2, cost -19,998) flips to short 3: the closing 2/5 of +49,992 is
    #   floor(49,992 * 2 / 5) = 19,996, realised -19,996 + 19,998 = +2; cost 49,992 - 19,996 = 29,996
    #   B (short 3, cost +29,998) flips to long 2: closing 3/5 of -49,992 is floor(-29,995.2) =
    #   -29,996, realised +29,996 - 29,998 = -2; cost -49,992 + 29,996 = -19,996
    buyers, sellers = [0, 2, 1], [1, 0, 0]
    qty, price = [3, 1, 5], [20_001, 19_999, 20_003]
    led, _ = inverse_ledger((0, 0, 0))
    ref = copy.deepcopy(led)
    led.trade(0, buyers, sellers, qty, price)
    ref.trade_reference(0, buyers, sellers, qty, price)
    assert kernels.get() is not None
    for x, y in ((led.wallet, ref.wallet), (led.qty, ref.qty), (led.cost, ref.cost)):
        assert np.array_equal(x, y)
    assert led.wallet.tolist() == [2, -2, 0]
    assert led.qty[:, 0].tolist() == [-3, 2, 1]
    assert led.cost[:, 0].tolist() == [29_996, -19_996, -10_000]
    # sum(wallet) - sum(cost) == 0: nothing created; the rounded per-account mark values do not
    # add up to the (zero) value of the net position, which is why the identity values the net
    # at 19,001 ticks: floor(6e8 / 19,001) = 31,577, floor(4e8 / 19,001) = 21,051 and
    # floor(2e8 / 19,001) = 10,525 (10,525.76): V = +31,577 (short 3), -21,051, -10,525
    mark = [19_001]
    per_account = led.value(led.qty, mark)[:, 0].tolist()
    assert per_account == [31_577, -21_051, -10_525]
    assert sum(per_account) == 1  # rounding: not a satoshi of anyone's money
    assert led.conservation_residual(mark) == 0
    assert led.totals(mark)[0] == 0


@pytest.mark.parametrize("qty, wallet, p_b", [
    # isolated 100x long at 10,000: margin 1 % of 1 BTC = 1,000,000 sats; cost -1e8
    # P_b = q K / (other - cost) = 10,000 * 2e8 / (1e6 + 1e8) = 19,801.98 ticks = 9,900.99 USD
    # = 10,000 / (1 + 1/100) (BitMEX: "bankruptcy about 9,901")
    (10_000, 1_000_000, 10_000 / 1.01),
    # short: -10,000 * 2e8 / (1e6 - 1e8) = 20,202.02 ticks = 10,101.01 USD = 10,000 / (1 - 1/100)
    (-10_000, 1_000_000, 10_000 / 0.99),
])
def test_bankruptcy_price_isolated_100x(qty, wallet, p_b):
    led, (a, b) = inverse_ledger((wallet, 10 * SAT))
    if qty > 0:
        led.trade(0, a, b, qty, 20_000)
    else:
        led.trade(0, b, a, -qty, 20_000)
    assert bankruptcy_price(led, [20_000], a, 0) * 0.5 == pytest.approx(p_b, rel=1e-12)
    # at the bankruptcy price (to the tick) equity crosses zero
    below, above = int(np.floor(p_b * 2)), int(np.ceil(p_b * 2))
    eq = [int(led.equity([p])[a]) for p in (below, above)]
    assert (eq[0] < 0 < eq[1]) if qty > 0 else (eq[1] < 0 < eq[0])


@pytest.mark.parametrize("qty, liq_usd", [
    # P = (q + |q| mmr) K / (other - cost) with mmr 0.5 %:
    # long:  10,000 * 1.005 * 2e8 / 1.01e8 = 19,900.99 ticks = 9,950.50 USD = 10,000 * 1.005 / 1.01
    (10_000, 10_000 * 1.005 / 1.01),
    # short: -10,000 * 0.995 * 2e8 / -9.9e7 = 20,101.01 ticks = 10,050.51 USD = 10,000 * 0.995 / 0.99
    (-10_000, 10_000 * 0.995 / 0.99),
])
def test_liquidation_price_isolated_100x(make_venue, qty, liq_usd):
    # BitMEX quotes ~9,950 / ~10,050 for 100x at 10,000 with 0.5 % maintenance (its MM is on the
    # entry value, ours on the value at the liquidation mark: 9,950.25 vs 9,950.50)
    venue = make_venue(markets=[xbtusd()])
    move_to(venue, 10_000.0)
    a, b = venue.add_accounts(2, "trader", [1_000_000, 10 * SAT])
    buyer, seller = (a, b) if qty > 0 else (b, a)
    venue.ledger.trade(0, buyer, seller, abs(qty), 20_000)
    lp = liquidation_price(venue.ledger, venue.marks, a, 0, venue.tiers[0])
    assert lp * 0.5 == pytest.approx(liq_usd, rel=1e-12)
    # the maintenance scan (numba kernel and numpy reference) flips exactly across it:
    # long at 19,900 ticks: N = floor(2e12 / 19,900) = 100,502,512; equity = 1e6 - N + 1e8 =
    # 497,488 < MM = ceil(502,512.56) = 502,513 -> liquidatable; at 19,902: N = 100,492,412,
    # equity 507,588 >= MM 502,463 -> not
    inside, outside = (19_900, 19_902) if qty > 0 else (20_102, 20_100)
    for mark, flagged in ((inside, True), (outside, False)):
        venue.prices.mark[:] = mark
        assert bool(venue.liquidatable()[a]) is flagged
        assert bool(venue.liquidatable_reference()[a]) is flagged
    venue.prices.mark[:] = 19_900
    if qty > 0:
        assert int(venue.equity([a])[0]) == 497_488
        assert int(venue.maintenance([a]).sum()) == 502_513


def test_funding_is_paid_in_coin():
    # long 10,000 contracts marked at 10,000 USD: value 1 BTC = 1e8 sats; rate 0.01 %:
    # the long pays ceil(1e8 * 1e-4) = 10,000 sats = 0.0001 BTC (BitMEX: position value in XBT
    # x funding rate), the short receives 10,000
    qty = np.array([[10_000], [-10_000]])
    pay = funding_payments(qty, [20_000], [K], [1e-4], np.array([True]))
    assert pay.tolist() == [10_000, -10_000]
    # at 9,000 USD the same contracts are worth more coin: floor(2e12 / 18,000) = 111,111,111 sats
    # -> the long pays ceil(11,111.11) = 11,112, the short receives 11,111 (ceil(-11,111.11)); the
    # fee pool keeps the satoshi, as for linear markets
    assert funding_payments(qty, [18_000], [K], [1e-4], np.array([True])).tolist() == [11_112, -11_111]


def test_fund_takes_over_at_the_bankruptcy_price_in_sats(make_venue):
    # a 100x long (margin 1e6 sats) marked at 9,800 USD with no book: the fund takes it over.
    # Equity at 19,600 ticks: 1e6 - floor(2e12 / 19,600) + 1e8 = 1e6 - 102,040,816 + 1e8
    # = -1,040,816 sats; the fund takes the position at mark and pays that deficit, so its
    # equity falls by exactly 1,040,816 sats (= the loss from the mark to the bankruptcy price).
    venue = make_venue(waterfall=[{"stage": "book"}, {"stage": "insurance_fund", "takeover": True}],
                       markets=[xbtusd()], fund=10 * SAT)
    move_to(venue, 10_000.0)
    a, b = venue.add_accounts(2, "trader", [1_000_000, 10 * SAT])
    venue.ledger.trade(0, a, b, 10_000, 20_000)
    move_to(venue, 9_800.0)
    fund_before = int(venue.equity([venue.insurance_fund])[0])
    venue.liquidate()
    assert venue.ledger.qty[a, 0] == 0 and venue.ledger.wallet[a] == 0
    assert venue.ledger.qty[venue.insurance_fund, 0] == 10_000
    assert fund_before - int(venue.equity([venue.insurance_fund])[0]) == 1_040_816
    ev = venue.events.to_frame()
    liq = ev[(ev.kind == "liquidation") & (ev.account == a)]
    assert liq.bankruptcy_price.iloc[0] * 0.5 == pytest.approx(10_000 / 1.01)
    assert venue.conservation_residual() == 0


def test_adl_at_bankruptcy_leaves_the_case_at_zero_in_sats(make_venue):
    # no fund: the 100x long at 9,800 is deleveraged against the short at the bankruptcy price.
    # At mark the short is up floor(2e12 / 19,600) - 1e8 = 2,040,816 sats, but the case only has
    # 1,000,000 sats of margin: closing at the bankruptcy price moves the case's equity
    # (-1,040,816) to the short, which keeps exactly the case's margin as profit; the case ends
    # flat at 0.
    venue = make_venue(waterfall=[{"stage": "adl"}], markets=[xbtusd()])
    move_to(venue, 10_000.0)
    a, b = venue.add_accounts(2, "trader", [1_000_000, 10 * SAT])
    venue.ledger.trade(0, a, b, 10_000, 20_000)
    move_to(venue, 9_800.0)
    eq_b = int(venue.equity([b])[0])  # 10 BTC + (102,040,816 - 1e8) = 1,002,040,816
    assert eq_b == 10 * SAT + 2_040_816
    venue.liquidate()
    assert venue.ledger.qty[[a, b], 0].tolist() == [0, 0]
    assert venue.ledger.wallet[a] == 0
    assert int(venue.equity([b])[0]) == eq_b - 1_040_816  # = 10 BTC + 1,000,000: the case's margin
    assert venue.conservation_residual() == 0


def test_orders_need_initial_margin_in_coin(make_venue):
    # 1,000 USD of contracts at 10,000 USD at 10x need 1,000 / 10,000 / 10 = 0.01 BTC = 1e6 sats
    venue = make_venue(markets=[xbtusd()])
    move_to(venue, 10_000.0)
    mm, poor, rich = venue.add_accounts(3, "trader", [100 * SAT, 999_999, 1_000_000], leverage=10.0)
    venue.post_quotes(0, [mm], [SELL], [20_000], [5_000])
    venue.submit_orders(0, [poor, rich], [BUY, BUY], [1_000, 1_000])
    assert venue.ledger.qty[[poor, rich], 0].tolist() == [0, 1_000]
    assert venue.rejections == 1
