"""Mark price and funding: zero-sum with the rounding remainder to the fee pool, direction, clamp."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.venue.book import BUY, SELL
from simulator.venue.prices import FundingConfig, MarkConfig, PriceState, funding_due, funding_payments


def funded_venue(make_venue, bid, ask, index=1_000, cap=0.0075, interest=0.0001, formula="premium_plus_interest"):
    """a long 10, b short 7, c short 3 (entered at 1,000); mark = book mid, index given."""
    v = make_venue(mark="mid", funding=FundingConfig(formula=formula, cap=cap, interest=interest))
    mm, a, b, c = v.add_accounts(4, "trader", 100_000)
    v.ledger.trade(0, a, b, 7, 1_000)
    v.ledger.trade(0, a, c, 3, 1_000)
    v.set_index([index])
    v.post_quotes(0, [mm, mm], [BUY, SELL], [bid, ask], [1, 1])
    v.update_marks()
    return v, a, b, c


def test_longs_pay_shorts_when_mark_above_index_remainder_to_fee_pool(make_venue):
    v, a, b, c = funded_venue(make_venue, 1_000, 1_002)
    assert v.marks.tolist() == [1_001]
    before = v.ledger.wallet.copy()
    rate = v.apply_funding()
    # premium (1001 - 1000) / 1000 = 0.001, + interest 0.0001 = 0.0011 per interval
    assert rate[0] == pytest.approx(0.0011)
    # a: 10 * 1001 * 0.0011 = 11.011 -> pays 12 (payer rounds up)
    # b: 7 * 1001 * 0.0011 = 7.7077 -> receives 7; c: 3003 * 0.0011 = 3.3033 -> receives 3
    delta = v.ledger.wallet - before
    assert (delta[a], delta[b], delta[c]) == (-12, 7, 3)
    # 12 - 7 - 3 = 2 units of rounding: the fee pool's, never lost
    assert delta[v.fee_pool] == 2
    assert delta.sum() == 0
    assert v.conservation_residual() == 0


def test_shorts_pay_longs_when_mark_below_index(make_venue):
    v, a, b, c = funded_venue(make_venue, 997, 999, interest=0.0)
    before = v.ledger.wallet.copy()
    rate = v.apply_funding()
    # mark 998: premium -0.002. a receives 10 * 998 * 0.002 = 19.96 -> 19;
    # b pays 7 * 998 * 0.002 = 13.972 -> 14; c pays 5.988 -> 6; fee pool 14 + 6 - 19 = 1
    assert rate[0] == pytest.approx(-0.002)
    delta = v.ledger.wallet - before
    assert (delta[a], delta[b], delta[c], delta[v.fee_pool]) == (19, -14, -6, 1)
    assert v.conservation_residual() == 0


def test_funding_rate_is_clamped(make_venue):
    v, a, b, c = funded_venue(make_venue, 1_099, 1_101)
    before = v.ledger.wallet.copy()
    rate = v.apply_funding()
    # premium 0.1 + 0.0001 clamps to 0.0075: a pays 10 * 1100 * 0.0075 = 82.5 -> 83,
    # b gets 57.75 -> 57, c gets 24.75 -> 24, fee pool 2
    assert rate[0] == pytest.approx(0.0075)
    delta = v.ledger.wallet - before
    assert (delta[a], delta[b], delta[c], delta[v.fee_pool]) == (-83, 57, 24, 2)
    v2, a, b, c = funded_venue(make_venue, 899, 901)
    assert v2.apply_funding()[0] == pytest.approx(-0.0075)


def test_funding_averages_the_premium_over_the_interval_and_resets():
    ps = PriceState(1, MarkConfig(method="mid"))
    ps.set_index([1_000])
    ps.update_mark([1_001])  # premium 0.001
    ps.update_mark([1_003])  # premium 0.003
    cfg = FundingConfig(formula="premium_plus_interest", cap=0.01, interest=0.0)
    assert ps.funding_rate(cfg)[0] == pytest.approx(0.002)
    # reset: with no new marks the next rate is the interest alone
    assert ps.funding_rate(FundingConfig(cap=0.01, interest=0.0001))[0] == pytest.approx(0.0001)
    # rolling inside liquidation rounds (roll=False) does not count towards the average
    ps.update_mark([1_010], roll=False)
    assert ps.funding_rate(cfg)[0] == 0


def test_funding_payments_sum_is_never_negative():
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.integers(-50, 50, size=(9, 2))
        q[-1] = -q[:-1].sum(axis=0)  # zero-sum positions
        rate = rng.uniform(-0.0075, 0.0075, size=2)
        pay = funding_payments(q, rng.integers(1, 10**6, size=2), np.array([1, 100]), rate)
        assert pay.sum() >= 0
        assert pay.sum() <= 2 * 9  # at most one unit of rounding per account and market


def test_mark_median_of_fair_mid_last():
    ps = PriceState(1, MarkConfig(method="median", basis_ema_alpha=0.1))
    ps.set_index([1_000])
    assert ps.mark.tolist() == [1_000]  # the first index sets the mark
    ps.last[:] = 990
    # basis = mid - index = 10; EMA 0.1 * 10 = 1 -> fair 1001; median(1001, 1010, 990) = 1001
    assert ps.update_mark([1_010]).tolist() == [1_001]
    assert ps.previous_mark.tolist() == [1_000]
    # one-sided book (NaN mid): the mid input falls back to fair; basis sample 0 -> EMA 0.9
    # fair 1000.9; median(1000.9, 1000.9, 990) -> 1001
    assert ps.update_mark([np.nan]).tolist() == [1_001]
    # a manipulated last trade alone cannot drag the mark: last 1, mid 1010 -> basis EMA
    # 0.9 * 0.9 + 0.1 * 10 = 1.81, fair 1001.81 = the median -> 1002
    ps.last[:] = 1
    assert ps.update_mark([1_010]).tolist() == [1_002]


def test_mark_methods_and_config_validation():
    for method, expected in (("index", 1_000), ("mid", 1_020), ("last", 980), ("index_basis", 1_002)):
        ps = PriceState(1, MarkConfig(method=method, basis_ema_alpha=0.1))
        ps.set_index([1_000])
        ps.last[:] = 980
        assert ps.update_mark([1_020]).tolist() == [expected]
    with pytest.raises(ValueError):
        MarkConfig(method="vwap")
    with pytest.raises(ValueError):
        MarkConfig(basis_ema_alpha=0)
    with pytest.raises(ValueError):
        FundingConfig(interval_seconds=0)
    with pytest.raises(ValueError):
        FundingConfig(formula="clamped_premium")
    with pytest.raises(ValueError):
        FundingConfig(cap=1.5)


# ------------------------------------------------------------------ funding formulas and timing
@pytest.mark.parametrize("premium, binance, plus_interest", [
    # 0.03 %: I - P = -0.02 % is inside +-0.05 %, so F = P + (I - P) = I = 0.01 %
    (0.0003, 0.0001, 0.0004),
    # 0.2 %: I - P = -0.19 % clamps to -0.05 %: F = 0.2 % - 0.05 % = 0.15 %
    (0.002, 0.0015, 0.0021),
    # -0.1 %: I - P = 0.11 % clamps to +0.05 %: F = -0.1 % + 0.05 % = -0.05 %
    (-0.001, -0.0005, -0.0009),
    # 1 %: 1 % - 0.05 % = 0.95 % is over the 0.75 % cap; P + I = 1.01 % too
    (0.01, 0.0075, 0.0075),
    # 0: I - P = 0.01 % -> F = 0.01 %, the interest alone
    (0.0, 0.0001, 0.0001),
])
def test_funding_formulas_by_hand(premium, binance, plus_interest):
    assert FundingConfig().rate([premium])[0] == pytest.approx(binance, abs=1e-15)
    assert FundingConfig(formula="premium_plus_interest").rate([premium])[0] == pytest.approx(plus_interest, abs=1e-15)


def test_a_rate_period_longer_than_the_interval_pays_its_share():
    # Hyperliquid: premium 0.2 % -> 8-hour rate 0.15 % (as above), paid hourly at 1/8 = 0.01875 %;
    # premium 40 % -> 8-hour rate 39.95 %, 1/8 = 4.99375 % per hour, capped at 4 %
    hl = FundingConfig(interval_seconds=3_600, rate_period_seconds=28_800, cap=0.04)
    assert hl.rate([0.002, 0.4]).tolist() == pytest.approx([0.0001875, 0.04], abs=1e-15)


def test_binance_funding_payments_by_hand(make_venue):
    # mark 1,001 vs index 1,000: P = 0.1 %, I - P = -0.09 % -> clamp -0.05 % -> F = 0.05 %.
    # a (long 10) pays ceil(10,010 * 0.0005) = ceil(5.005) = 6; b (short 7) gets
    # floor(7,007 * 0.0005) = floor(3.5035) = 3; c (short 3) gets floor(1.5015) = 1; fee pool 2
    v, a, b, c = funded_venue(make_venue, 1_000, 1_002, formula="binance")
    before = v.ledger.wallet.copy()
    assert v.apply_funding()[0] == pytest.approx(0.0005)
    delta = v.ledger.wallet - before
    assert (delta[a], delta[b], delta[c], delta[v.fee_pool]) == (-6, 3, 1, 2)
    assert v.conservation_residual() == 0


def settlement_steps(n_steps, step_seconds, interval_seconds):
    return [t for t in range(n_steps) if funding_due(t, step_seconds, interval_seconds)]


def test_settlements_fall_where_scenario_time_crosses_a_multiple_of_the_interval():
    # 100 steps of 30 s = 3,000 s; every 600 s -> 5 settlements, at the ends of steps 19, 39, ...
    assert settlement_steps(100, 30, 600) == [19, 39, 59, 79, 99]
    # 30 steps of 7 s = 210 s, every 60 s: 63 s (end of step 8), 126 s (17), 182 s (25) -> 3
    assert settlement_steps(30, 7, 60) == [8, 17, 25]
    # 1-second steps over 30 minutes with the Binance 8 h default: no settlement at all
    assert settlement_steps(1_800, 1, 28_800) == []
    # 1-second steps, 8 h: the first at the end of step 28,799; decimal steps stay exact
    assert settlement_steps(28_800, 1, 28_800) == [28_799]
    assert settlement_steps(30, 0.1, 1) == [9, 19, 29]
    assert len(settlement_steps(3_000, 0.1, 0.3)) == 1_000
