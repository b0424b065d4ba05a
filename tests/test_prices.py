"""Mark price and funding: zero-sum with the rounding remainder to the fee pool, direction, clamp."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.venue.book import BUY, SELL
from simulator.venue.prices import FundingConfig, MarkConfig, PriceState, funding_payments


def funded_venue(make_venue, bid, ask, index=1_000, cap=0.0075, interest=0.0001):
    """a long 10, b short 7, c short 3 (entered at 1,000); mark = book mid, index given."""
    v = make_venue(mark="mid", funding=FundingConfig(interval=1, cap=cap, interest=interest))
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
    cfg = FundingConfig(interval=2, cap=0.01, interest=0.0)
    assert ps.funding_rate(cfg)[0] == pytest.approx(0.002)
    # reset: with no new marks the next rate is the interest alone
    assert ps.funding_rate(FundingConfig(interval=2, cap=0.01, interest=0.0001))[0] == pytest.approx(0.0001)
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
        FundingConfig(interval=0)
    with pytest.raises(ValueError):
        FundingConfig(cap=1.5)
