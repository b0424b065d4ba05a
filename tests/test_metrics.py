"""Hand-built runs whose every summary figure is worked out by hand below."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from simulator.venue.events import EventLog
from simulator.world.metrics import SUMMARY_KEYS, cvar, describe, gini, paired_bootstrap_ci, summarize

# cash unit 1e-6 quote; tick 0.1 quote; lot 0.001 base -> one lot x one tick = 1e-4 quote
# = 100 cash units (the market's contract value).
META = {"cash_unit": 1e-6, "tick_size": 0.1, "lot_size": 0.001, "insurance_fund_start": 1.5}
M = 1_000_000  # cash units per quote unit


def timeseries(**over) -> pd.DataFrame:
    """A V-shaped crash: index peaks at 100 (last touched at step 1), bottoms at 70 (step 4)."""
    cols = {
        "step": [0, 1, 2, 3, 4, 5, 6, 7],
        "index": [100.0, 100.0, 90.0, 80.0, 70.0, 80.0, 85.0, 90.0],
        "mark": [100.0, 100.0, 90.0, 79.0, 68.0, 80.0, 85.0, 90.0],
        "last": [np.nan, 100.0, 89.0, 75.0, 63.0, 79.0, 85.0, 90.0],
        "best_bid": [99.9] * 8,
        "best_ask": [100.1] * 8,
        "depth_bid_1pct": [2000.0, 1000.0, 500.0, 100.0, 50.0, 300.0, 600.0, 900.0],
        "depth_ask_1pct": [2000.0] * 8,
        "open_interest": [1e5] * 8,
        "funding_rate": [0.0] * 8,
        "insurance_fund": [1.5, 1.5, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0],
        "backstop_equity": [0.0] * 8,
        "cascade_depth": [0, 0, 0, 1, 2, 0, 0, 0],
        "rejections": [0] * 8,
        "residual": [0] * 8,
    }
    cols.update(over)
    return pd.DataFrame(cols)


def crash_events() -> pd.DataFrame:
    log = EventLog()
    # step 3, round 0: account 10 (long 5000 lots = 5 BTC) sold into the book at 790 ticks
    # (79.0): notional 5000 * 790 * 1e-4 = 395 quote; it ends 2.5 quote under water.
    log.step, log.round = 3, 0
    log.add("liquidation", stage="book", account=10, market=0, qty=-5000, price=790.0, bankruptcy_price=800.0)
    log.add("deficit", account=10, amount=2_500_000)
    log.add("fund_payout", stage="insurance_fund", account=10, amount=1_500_000)  # the whole fund (1.5)
    log.add("socialize", stage="socialize", account=[30, 31], amount=[500_000, 300_000], weight=[0.625, 0.375])
    log.add("venue_loss", account=10, amount=200_000)  # 2.5 - 1.5 - 0.8 = 0.2 left
    log.add("cover", stage=["insurance_fund", "socialize", "venue"], account=10,
            amount=[1_500_000, 800_000, 200_000])
    # step 4, round 1: account 11 long 3000 lots, bankrupt at 700 ticks, mark 680: ADL at
    # bankruptcy against shorts 20 (2000 lots, entry 1000) and 21 (1000 lots, entry 750).
    log.step, log.round = 4, 1
    log.add("deficit", stage="adl", account=11, amount=6_000_000)  # 3000 * (700 - 680) * 100 cash = 6 quote
    log.add("liquidation", stage="adl", account=11, counterparty=[20, 21], market=0, qty=[-2000, -1000],
            price=680.0, bankruptcy_price=700.0)
    log.add("adl", stage="adl", account=[20, 21], counterparty=11, market=0, qty=[2000, 1000], price=680.0,
            bankruptcy_price=700.0, amount=0,  # filled at mark: no haircut vs mark
            pnl=[2000 * (1000 - 680) * 100, 1000 * (750 - 680) * 100])  # 64 and 7 quote
    # the case's -6 quote split 2:1 by closed notional: 20 pays 4, 21 pays 2
    log.add("adl_haircut", stage="adl", account=[20, 21], counterparty=11, amount=[4_000_000, 2_000_000],
            weight=[2 / 3, 1 / 3])
    log.add("cover", stage="adl", account=11, amount=6_000_000)
    return log.to_frame()


@pytest.fixture
def summary():
    meta = dict(META, zero_position_accounts={31}, profitable_accounts=4,
                equity_before_socialization={30: 10 * M, 31: 1 * M})
    return summarize(timeseries(), crash_events(), meta)


def test_keys_and_plain_types(summary):
    assert list(summary) == list(SUMMARY_KEYS)
    for k, v in summary.items():
        if k == "settlement_asset":  # the one label: what money figures are counted in
            assert v == "USD"
            continue
        assert type(v) in (int, float, bool), (k, type(v))
    assert summary["cash_unit"] == 1e-6
    json.dumps(summary)  # serialisable (NaN allowed)
    assert summary["steps"] == 8
    assert summary["conservation_residual_max_abs"] == 0


def test_prices_v_shape(summary):
    assert summary["index_min"] == 70.0
    assert summary["last_min"] == 63.0  # NaN at step 0 ignored
    assert summary["mark_min"] == 68.0
    assert summary["overshoot"] == pytest.approx((70 - 63) / 70)  # = 0.1
    assert summary["max_drawdown"] == pytest.approx(0.3)  # (100 - 70) / 100
    assert summary["drawdown_peak_step"] == 1  # last touch of 100 before the fall
    assert summary["drawdown_trough_step"] == 4
    # half the drop: 70 + (100 - 70) / 2 = 85, first reached at step 6 -> 6 - 4 = 2 steps
    assert summary["steps_to_half_recovery"] == 2.0


def test_liquidations_book_and_adl(summary):
    assert summary["liquidation_count"] == 2  # cases (3, 0, 10) and (4, 1, 11)
    assert summary["liquidation_events"] == 3  # 1 book row + 2 ADL fills
    assert summary["liquidated_accounts"] == 2
    assert summary["liq_notional_book"] == pytest.approx(395.0)  # 5000 * 790 * 1e-4
    assert summary["liq_notional_adl"] == pytest.approx(204.0)  # 3000 * 680 * 1e-4
    assert summary["liq_notional_backstop"] == 0.0
    assert summary["liq_notional_insurance_fund"] == 0.0
    assert summary["liquidation_notional"] == pytest.approx(599.0)
    assert summary["max_cascade_depth"] == 2
    # R = 599 / (30 % move) / mean depth before the fall (steps 0, 1: (2000 + 1000) / 2 = 1500)
    assert summary["amplification_r"] == pytest.approx(599 / 30 / 1500)


def test_deficit_and_covers(summary):
    assert summary["deficit_total"] == pytest.approx(8.5)  # 2.5 + 6
    assert summary["covered_insurance_fund"] == pytest.approx(1.5)
    assert summary["covered_adl"] == pytest.approx(6.0)  # 4 + 2 paid by the ADL'd shorts
    assert summary["covered_socialize"] == pytest.approx(0.8)
    assert summary["venue_loss"] == pytest.approx(0.2)
    assert summary["covered_backstop"] == 0.0
    assert summary["deficit_covered_total"] == pytest.approx(8.5)  # 1.5 + 6 + 0.8 + 0.2
    assert summary["venue_loss_occurred"] is True


def test_fund_depletion(summary):
    assert summary["fund_start"] == 1.5
    assert summary["fund_min"] == 0.0
    assert summary["fund_end"] == 0.0
    assert summary["fund_drawdown"] == 1.5
    assert summary["fund_depleted"] is True
    assert summary["fund_depleted_step"] == 3
    assert summary["fund_paid"] == pytest.approx(1.5)


def test_adl_figures(summary):
    assert summary["adl_triggered"] is True
    assert summary["adl_accounts"] == 2
    assert summary["adl_fills"] == 2
    assert summary["adl_notional"] == pytest.approx(204.0)
    assert summary["adl_pnl_taken"] == pytest.approx(71.0)  # 64 + 7
    assert summary["adl_profit_taken"] == pytest.approx(71.0)
    assert summary["adl_haircut"] == pytest.approx(6.0)
    assert summary["adl_paid_beyond_deficit"] == 0.0
    # shortfall: the deficit of the case ADL acted on, 3000 * (700 - 680) * 1e-4 = 6 quote
    assert summary["adl_shortfall"] == pytest.approx(6.0)
    assert summary["adl_overshoot"] == pytest.approx(65.0)  # 71 taken - 6 needed
    # Gini of [64, 7]: sum |xi - xj| = 2 * 57 = 114; 2 n^2 mean = 2 * 4 * 35.5 = 284
    assert summary["adl_gini"] == pytest.approx(114 / 284)
    assert summary["adl_share_winners_hit"] == 0.5  # 2 hit / 4 profitable
    assert math.isnan(summary["max_leverage_after_adl"])  # no such column, not in meta


def test_socialization(summary):
    assert summary["socialization_triggered"] is True
    assert summary["socialized_total"] == pytest.approx(0.8)
    assert summary["socialized_accounts"] == 2
    # 30 paid 0.5 of 10 (5 %), 31 paid 0.3 of 1 (30 %)
    assert summary["socialized_max_haircut_pct"] == pytest.approx(30.0)
    assert summary["socialized_max_share_pct"] == pytest.approx(62.5)  # 0.5 / 0.8
    assert summary["socialized_share_zero_position"] == pytest.approx(0.375)  # 0.3 / 0.8 by 31


def test_optional_meta_absent_gives_nan():
    s = summarize(timeseries(), crash_events(), META)
    assert math.isnan(s["socialized_share_zero_position"])
    assert math.isnan(s["socialized_max_haircut_pct"])
    assert math.isnan(s["adl_share_winners_hit"])
    assert s["socialized_max_share_pct"] == pytest.approx(62.5)


def test_zero_position_by_step_pairs():
    # (step, account) pairs: 31 was flat when charged at step 3, 30 only at step 9 (no charge)
    meta = dict(META, zero_position_accounts=[(3, 31), (9, 30)])
    assert summarize(timeseries(), crash_events(), meta)["socialized_share_zero_position"] == pytest.approx(0.375)


def test_cascade_depth_from_events_when_column_missing():
    ts = timeseries().drop(columns=["cascade_depth"])
    assert summarize(ts, crash_events(), META)["max_cascade_depth"] == 1  # one round per step


def test_adl_at_previous_mark_shortfall_and_overshoot():
    # short case 5 (1000 lots), bankrupt at 900 ticks, mark 950, filled at previous mark 930
    # against long 6: 6 sells 20 ticks below mark -> haircut 1000 * 20 * 100 = 2 quote.
    log = EventLog()
    log.step = 2
    log.add("liquidation", stage="adl", account=5, counterparty=6, market=0, qty=1000, price=930.0,
            bankruptcy_price=900.0)
    log.add("adl", stage="adl", account=6, counterparty=5, market=0, qty=-1000, price=930.0,
            bankruptcy_price=900.0, amount=2 * M, pnl=10 * M)
    # the ADL stage records the case's deficit at mark (5); the price haircut covers 2 of it,
    # the other 3 is left to the stages after ADL (here the fund)
    log.add("deficit", stage="adl", account=5, amount=5 * M)
    log.add("cover", stage=["adl", "insurance_fund"], account=5, amount=[2 * M, 3 * M])
    s = summarize(timeseries(), log.to_frame(), META)
    # shortfall at mark: 1000 * (950 - 900) * 1e-4 = 5 = 1000 * (930 - 900) * 1e-4 (3) + 2
    assert s["adl_shortfall"] == pytest.approx(5.0)
    assert s["covered_adl"] == pytest.approx(2.0)
    assert s["adl_overshoot"] == pytest.approx(10.0 - 5.0)
    assert s["adl_gini"] == 0.0  # a single ADL'd account


def test_takeover_absorbed_deficits_and_multi_market():
    log = EventLog()
    log.step = 1
    # market 1: lot 1 base, tick 0.5 quote -> 10 lots at 4 ticks = 10 * 4 * 0.5 = 20 quote
    log.add("liquidation", stage="backstop", account=7, counterparty=2, market=1, qty=-10, price=4.0,
            bankruptcy_price=5.0)
    log.add("takeover", stage="backstop", account=7, counterparty=2, amount=-1 * M)  # absorbed 1
    log.add("cover", stage="backstop", account=7, amount=M)
    log.add("liquidation", stage="insurance_fund", account=8, counterparty=1, market=0, qty=100, price=1000.0,
            bankruptcy_price=990.0)  # 100 * 1000 * 1e-4 = 10 quote
    log.add("takeover", stage="insurance_fund", account=[8, 9], counterparty=1, amount=[-M // 2, 3 * M])
    log.add("cover", stage="insurance_fund", account=8, amount=M // 2)
    meta = {"cash_unit": 1e-6, "tick_sizes": [0.1, 0.5], "lot_sizes": [0.001, 1.0], "insurance_fund_start": 1.5}
    s = summarize(timeseries(), log.to_frame(), meta)
    assert s["liq_notional_backstop"] == pytest.approx(20.0)
    assert s["liq_notional_insurance_fund"] == pytest.approx(10.0)
    assert s["covered_backstop"] == pytest.approx(1.0)
    assert s["covered_insurance_fund"] == pytest.approx(0.5)  # the +3 margin taken is not a cover
    assert s["fund_received"] == pytest.approx(3.0)  # ... but it is money the fund received


def test_quiet_run_no_drop_no_events():
    ts = timeseries(index=[100.0, 101, 102, 103, 104, 105, 106, 107], insurance_fund=[1.5] * 8,
                    residual=[0, 0, 0, -2, 0, 1, 0, 0])
    s = summarize(ts, EventLog().to_frame(), META)
    assert s["max_drawdown"] == 0.0
    assert math.isnan(s["steps_to_half_recovery"])
    assert math.isnan(s["amplification_r"])
    assert s["liquidation_count"] == 0 and s["liquidation_notional"] == 0.0
    assert s["fund_depleted"] is False and s["fund_depleted_step"] == -1 and s["fund_drawdown"] == 0.0
    assert s["adl_triggered"] is False and s["adl_gini"] == 0.0 and s["adl_overshoot"] == 0.0
    assert math.isnan(s["socialized_max_share_pct"])
    assert s["conservation_residual_max_abs"] == 2


def test_no_recovery_is_nan():
    ts = timeseries(index=[100.0, 100, 90, 80, 70, 72, 75, 84])  # never back to 85
    assert math.isnan(summarize(ts, crash_events(), META)["steps_to_half_recovery"])


# ------------------------------------------------------------------ statistics
def test_gini():
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)  # (n - 1) / n with n = 4
    assert gini([3, 3, 3]) == 0.0
    assert gini([0, 0, 0]) == 0.0
    assert gini([0] * 9 + [1]) == pytest.approx(0.9)
    assert gini([]) == 0.0
    with pytest.raises(ValueError):
        gini([1, -1])


def test_cvar_upper_tail():
    x = np.arange(1, 101)
    # upper tail, 5 % of 100 values = the 5 largest: (96 + 97 + 98 + 99 + 100) / 5 = 98
    assert cvar(x, 0.95) == pytest.approx(98.0)
    assert cvar(x[::-1], 0.95) == pytest.approx(98.0)  # order does not matter
    # 10 values: tail mass 0.5 < 1 -> the maximum
    assert cvar(np.arange(10), 0.95) == 9.0
    # 30 values: tail mass 1.5 -> (30 + 0.5 * 29) / 1.5
    assert cvar(np.arange(1, 31), 0.95) == pytest.approx((30 + 0.5 * 29) / 1.5)
    assert math.isnan(cvar([np.nan]))


def test_describe_ignores_nan():
    d = describe(list(range(1, 101)) + [np.nan])
    assert d["n"] == 100
    assert d["mean"] == 50.5 and d["median"] == 50.5
    assert d["p95"] == pytest.approx(95.05)  # linear: 1 + 0.95 * 99
    assert d["p99"] == pytest.approx(99.01)
    assert d["cvar95"] == pytest.approx(98.0)
    assert describe([True, False, False, False])["mean"] == 0.25  # a probability
    assert describe([])["n"] == 0 and math.isnan(describe([])["mean"])


def test_paired_bootstrap_deterministic_shift():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 1000, size=200).astype(float)
    b = a + 3
    est, lo, hi = paired_bootstrap_ci(a, b, rng=np.random.default_rng(1))
    assert (est, lo, hi) == (3.0, 3.0, 3.0)


def test_paired_bootstrap_covers_true_difference():
    rng = np.random.default_rng(2)
    a = rng.normal(10, 5, size=400)
    b = a + 1 + rng.normal(0, 1, size=400)  # true mean difference 1
    est, lo, hi = paired_bootstrap_ci(a, b, n_boot=2000, level=0.95, rng=np.random.default_rng(3))
    assert lo < 1 < hi and lo <= est <= hi
    assert hi - lo < 0.5  # about 4 * 1 / sqrt(400)
    # NaN pairs are dropped; a rng is required
    a2, b2 = np.r_[a, np.nan], np.r_[b, 5.0]
    assert paired_bootstrap_ci(a2, b2, rng=np.random.default_rng(3))[0] == pytest.approx(est)
    with pytest.raises(TypeError):
        paired_bootstrap_ci(a, b)


def test_adl_reasons_and_solvent_cases():
    # two ADL'd cases: one because the fund could not pay (equity -5 quote), one deleveraged
    # solvent under the literal "unfilled" trigger (equity +1 quote, the book was exhausted)
    log = EventLog()
    log.step = 1
    log.add("liquidation", stage="adl", account=[5, 6], counterparty=[7, 8], market=0, qty=[-1000, -2000],
            price=900.0, bankruptcy_price=[950.0, 850.0], equity=[-5 * M, M], reason=["fund_empty", "book_exhausted"])
    log.add("adl", stage="adl", account=[7, 8], counterparty=[5, 6], market=0, qty=[1000, 2000], price=900.0,
            amount=0, pnl=[M, M], reason=["fund_empty", "book_exhausted"])
    s = summarize(timeseries(), log.to_frame(), META)
    assert (s["adl_cases"], s["adl_cases_solvent"]) == (2, 1)
    # notional by reason: 1000 x 900 x 1e-4 = 90 and 2000 x 900 x 1e-4 = 180
    assert s["adl_notional_fund_empty"] == pytest.approx(90.0)
    assert s["adl_notional_book_exhausted"] == pytest.approx(180.0)
    assert s["adl_notional_negative_equity"] == 0.0
    assert s["adl_notional"] == pytest.approx(270.0)
