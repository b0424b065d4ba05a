"""Index price models, scripted shocks and the replayed 2025-10-10 crash paths."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from simulator.world.index import (
    GBM,
    YEAR_SECONDS,
    Garch,
    IndexShock,
    JumpDiffusion,
    Replay,
    apply_shocks,
    equicorrelation_factor,
    index_paths,
    parse_index_model,
    replay_coverage,
    shock_factors,
)

DATA = Path(__file__).resolve().parents[1] / "scenarios" / "data"
BTC = Replay(path="btc_2025-10-10.csv")
# figures from the raw Gemini trades (scenarios/data/README.md)
BTC_LOW, BTC_LOW_AT = 107_000.0, pd.Timestamp("2025-10-10T21:26:24.755Z")
BTC_FIRST = 117_060.44  # first trade in the window, 20:45:01.078
BTC_BEFORE_GAP = 112_000.66  # last trade before the gap 21:13:57.378 -> 21:20:46.767


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def ns(ts: str) -> int:
    return pd.Timestamp(ts).value


# ---------------------------------------------------------------------------- models
def test_gbm_without_volatility_is_the_exponential_of_the_drift():
    drift, dt, n = 0.5, 3600.0, 1000
    p = index_paths([GBM(start_price=100.0, drift=drift, volatility=0.0)], n, dt, rng())
    t_years = np.arange(n) * dt / YEAR_SECONDS
    assert p.shape == (n, 1) and p.dtype == np.float64
    assert p[0, 0] == 100.0
    # after 999 hours: 100 * exp(0.5 * 999 / 8760) = 105.86...
    assert p[-1, 0] == pytest.approx(100.0 * math.exp(0.5 * 999 / 8760), rel=1e-12)
    np.testing.assert_allclose(p[:, 0], 100.0 * np.exp(drift * t_years), rtol=1e-12)


def test_gbm_log_return_std_matches_volatility():
    vol, dt = 0.8, 60.0
    p = index_paths([GBM(start_price=50_000.0, volatility=vol)], 100_001, dt, rng(1))
    r = np.diff(np.log(p[:, 0]))
    assert r.std() == pytest.approx(vol * math.sqrt(dt / YEAR_SECONDS), rel=0.02)


def test_same_seed_same_path_other_seed_other_path():
    models = [
        GBM(start_price=100.0, drift=0.1, volatility=0.6),
        JumpDiffusion(start_price=3000.0, volatility=0.7, jump_intensity=5.0, jump_mean=-0.02, jump_std=0.01),
        Garch(start_price=150.0, omega=1e-6, alpha=0.1, beta=0.85),
    ]
    shocks = [IndexShock(step=50, duration=10, move=-0.3)]
    a = index_paths(models, 500, 60.0, rng(7), correlation=0.5, shocks=shocks)
    b = index_paths(models, 500, 60.0, rng(7), correlation=0.5, shocks=shocks)
    c = index_paths(models, 500, 60.0, rng(8), correlation=0.5, shocks=shocks)
    np.testing.assert_array_equal(a, b)
    assert (a[1:] != c[1:]).all()
    np.testing.assert_array_equal(a[0], [100.0, 3000.0, 150.0])


def test_changing_a_shock_does_not_change_the_draws():
    models = [
        GBM(start_price=100.0, volatility=0.8),
        JumpDiffusion(start_price=10.0, volatility=0.5, jump_intensity=20.0, jump_mean=-0.01),
    ]
    shocks = [IndexShock(step=20, duration=5, move=-0.25, recovery=0.4, recovery_steps=30, markets=[1])]
    plain = index_paths(models, 200, 60.0, rng(3), correlation=0.4)
    shocked = index_paths(models, 200, 60.0, rng(3), correlation=0.4, shocks=shocks)
    np.testing.assert_allclose(shocked / plain, shock_factors(200, 2, shocks), rtol=1e-14)
    np.testing.assert_array_equal(shocked[:, 0], plain[:, 0])


@pytest.mark.parametrize("rho", [-0.5, 0.0, 0.6, 0.95])
def test_sample_correlation_of_log_returns_near_the_requested_value(rho):
    models = [GBM(start_price=100.0, volatility=0.5), GBM(start_price=10.0, volatility=1.5)]
    p = index_paths(models, 40_001, 60.0, rng(11), correlation=rho)
    r = np.diff(np.log(p), axis=0)
    assert np.corrcoef(r.T)[0, 1] == pytest.approx(rho, abs=0.02)


def test_equicorrelation_factor_bounds():
    low = equicorrelation_factor(3, -0.5)  # the singular lower bound is allowed
    np.testing.assert_allclose(low @ low.T, [[1, -0.5, -0.5], [-0.5, 1, -0.5], [-0.5, -0.5, 1]], atol=1e-12)
    one = equicorrelation_factor(4, 1.0)
    np.testing.assert_allclose(one @ one.T, np.ones((4, 4)), atol=1e-12)
    with pytest.raises(ValueError, match=r"correlation must be in \[-0.5, 1\]"):
        equicorrelation_factor(3, -0.6)
    with pytest.raises(ValueError, match="correlation"):
        index_paths([GBM(start_price=1.0, volatility=0.1)] * 2, 10, 60.0, rng(), correlation=1.5)


def test_garch_follows_its_recursion_with_the_first_normals():
    g = Garch(start_price=100.0, omega=2e-6, alpha=0.1, beta=0.8, initial_variance=1e-4)
    n = 50
    p = index_paths([g], n, 60.0, rng(5))
    z = rng(5).standard_normal((n - 1, 1))[:, 0]  # the block of normals is drawn first
    h, r = 1e-4, []
    for zt in z:
        r.append(math.sqrt(h) * zt)
        h = g.omega + g.alpha * r[-1] ** 2 + g.beta * h
    np.testing.assert_allclose(np.diff(np.log(p[:, 0])), r, rtol=1e-9, atol=1e-15)


def test_garch_stationary_variance():
    g = Garch(start_price=100.0, omega=2e-6, alpha=0.1, beta=0.8)
    assert g.stationary_variance == pytest.approx(2e-5)
    p = index_paths([g], 200_001, 60.0, rng(2))
    r = np.diff(np.log(p[:, 0]))
    assert r.var() == pytest.approx(2e-5, rel=0.1)


def test_jump_diffusion_without_jumps_equals_gbm_on_the_same_draws():
    gbm = GBM(start_price=100.0, drift=0.2, volatility=0.9)
    jd = JumpDiffusion(start_price=100.0, drift=0.2, volatility=0.9, jump_intensity=0.0, jump_mean=-0.1, jump_std=0.05)
    np.testing.assert_array_equal(index_paths([jd], 1000, 60.0, rng(4)), index_paths([gbm], 1000, 60.0, rng(4)))


def test_jump_counts_and_compensated_drift():
    # no diffusion, fixed jump size: every log return is -compensator + N * jump_mean
    lam = 10.0 * 3600 / 86_400  # 10 jumps a day, hourly steps
    jd = JumpDiffusion(start_price=100.0, volatility=0.0, jump_intensity=10.0, jump_mean=-0.05)
    p = index_paths([jd], 20_001, 3600.0, rng(6))
    r = np.diff(np.log(p[:, 0]))
    comp = lam * math.expm1(-0.05)
    counts = (r + comp) / -0.05
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    assert counts.mean() == pytest.approx(lam, rel=0.03)
    assert np.exp(r).mean() == pytest.approx(1.0, abs=1e-3)  # drift 0: martingale


def test_one_step_and_mappings():
    p = index_paths([{"kind": "garch", "start_price": 5.0, "omega": 1e-6, "alpha": 0.1, "beta": 0.8}], 1, 1.0, rng())
    np.testing.assert_array_equal(p, [[5.0]])


# ---------------------------------------------------------------------------- shocks
FLAT = GBM(start_price=100.0, volatility=0.0)


@pytest.mark.parametrize("recovery", [0.0, 0.5, 1.0])
def test_shock_ramp_hold_and_recovery_on_a_flat_path(recovery):
    shock = IndexShock(
        step=5, duration=10, move=-0.3, hold_steps=3, recovery=recovery, recovery_steps=20 if recovery else 0
    )
    p = index_paths([FLAT], 60, 60.0, rng(), shocks=[shock])[:, 0]
    np.testing.assert_array_equal(p[:6], 100.0)  # the ramp starts at its step
    assert p[10] == pytest.approx(100.0 * math.sqrt(0.7), rel=1e-12)  # halfway, linear in log
    assert p[15] == 70.0  # end of the ramp: exactly 0.7 * start
    np.testing.assert_array_equal(p[15:19], 70.0)  # held three more steps
    if recovery:
        assert 70.0 < p[19] < p[30] < p[37]
    np.testing.assert_allclose(p[38:], 100.0 * (0.7 + 0.3 * recovery), rtol=1e-15)


def test_shock_at_step_zero_keeps_the_start_price_and_shocks_multiply():
    shocks = [IndexShock(step=0, duration=4, move=-0.5), IndexShock(step=2, duration=2, move=-0.5, markets=[1])]
    p = index_paths([FLAT, FLAT], 10, 60.0, rng(), shocks=shocks)
    np.testing.assert_array_equal(p[0], [100.0, 100.0])
    np.testing.assert_allclose(p[-1], [50.0, 25.0], rtol=1e-15)


def test_apply_shocks_on_its_own():
    paths = np.full((8, 3), 2.0)
    out = apply_shocks(paths, [{"step": 1, "duration": 2, "move": 1.0, "markets": [0, 2]}])
    np.testing.assert_allclose(out[-1], [4.0, 2.0, 4.0])
    np.testing.assert_array_equal(paths, 2.0)  # input untouched
    with pytest.raises(ValueError, match=r"market\(s\) \[3\].*only 3 markets"):
        apply_shocks(paths, [IndexShock(step=0, move=-0.1, markets=[3])])


# ---------------------------------------------------------------------------- replay
def test_replay_semantics_last_trade_at_or_before_each_step(tmp_path):
    f = tmp_path / "trades.csv"
    f.write_text("t,px\n0,100\n1.5,101\n1.7,102\n5,103\n7.2,104\n")
    r = Replay(path="trades.csv", timestamp_column="t", price_column="px", timestamp_unit="s")
    p = index_paths([r], 8, 1.0, rng(), base_dir=tmp_path)[:, 0]
    np.testing.assert_array_equal(p, [100, 100, 102, 102, 102, 103, 103, 103])
    assert replay_coverage(r, 1.0, tmp_path) == 8
    with pytest.raises(ValueError, match=r"trades.csv covers only 8 steps of 1 s"):
        index_paths([r], 9, 1.0, rng(), base_dir=tmp_path)
    iso = tmp_path / "iso.csv"
    iso.write_text("timestamp,price\n2025-01-01T00:00:00Z,10\n2025-01-01T00:00:30.5Z,11\n2025-01-01T00:02:00Z,12\n")
    q = index_paths([Replay(path=str(iso), rescale_to=1.0)], 3, 60.0, rng())[:, 0]
    np.testing.assert_allclose(q, [1.0, 1.1, 1.2])


def test_bundled_btc_replay_at_60s_has_the_crash_low():
    p = index_paths([BTC], 90, 60.0, rng(), base_dir=DATA)[:, 0]
    assert p[0] == BTC_FIRST  # step 0 = 20:45:00, back-filled from the first trade
    # sampling each minute can only miss the extreme, never go below it
    assert BTC_LOW <= p.min() <= BTC_LOW * 1.01
    assert 36 <= p.argmin() <= 45  # between 21:21 and 21:30
    assert p.max() < 117_200


def test_bundled_btc_replay_at_1s_reaches_the_exact_low():
    btc = BTC.model_copy(update={"start": pd.Timestamp("2025-10-10T20:45:00Z").to_pydatetime()})
    assert replay_coverage(btc, 1.0, DATA) == 5394  # last trade 22:14:53.703
    p = index_paths([btc], 5394, 1.0, rng(), base_dir=DATA)[:, 0]
    start = ns("2025-10-10T20:45:00Z")
    assert p[0] == BTC_FIRST
    assert p.min() == BTC_LOW
    # the 21:26:24.755 trade is the price from the next whole second on
    assert p.argmin() == (BTC_LOW_AT.ceil("s").value - start) // 1_000_000_000


def test_replay_carries_the_last_price_over_the_gap():
    p = index_paths([BTC], 90, 60.0, rng(), base_dir=DATA)[:, 0]
    minute = lambda hhmm: (ns(f"2025-10-10T{hhmm}:00Z") - ns("2025-10-10T20:45:00Z")) // 60_000_000_000
    np.testing.assert_array_equal(p[minute("21:14") : minute("21:20") + 1], BTC_BEFORE_GAP)
    assert p[minute("21:21")] != BTC_BEFORE_GAP
    raw = pd.read_csv(DATA / "btc_2025-10-10.csv")
    at_1830 = raw.price[raw.timestamp <= ns("2025-10-10T21:18:30Z") // 1000].iloc[-1]
    assert at_1830 == BTC_BEFORE_GAP
    assert np.isfinite(p).all()


def test_replay_start_rescale_and_three_markets():
    models = [
        Replay(path=f"{s}_2025-10-10.csv", start="2025-10-10T21:00:00", rescale_to=100.0) for s in ("btc", "eth", "sol")
    ]
    p = index_paths(models, 60, 60.0, rng(), base_dir=DATA, shocks=[IndexShock(step=30, move=-0.1)])
    np.testing.assert_allclose(p[0], 100.0)
    assert (p.min(axis=0) < 90).all()
    assert models[0].start.tzinfo is not None  # naive start means UTC


def test_replay_too_short_or_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"btc_2025-10-10.csv covers only 90 steps of 60 s"):
        index_paths([BTC], 91, 60.0, rng(), base_dir=DATA)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        index_paths([Replay(path="nope.csv")], 10, 60.0, rng(), base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"no column\(s\) \['close'\]"):
        index_paths([BTC.model_copy(update={"price_column": "close"})], 10, 60.0, rng(), base_dir=DATA)
    with pytest.raises(ValueError, match="more than 60 s before its first trade"):
        index_paths([Replay(path=BTC.path, start="2025-10-10T20:00:00Z")], 10, 60.0, rng(), base_dir=DATA)


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "data, field",
    [
        ({"kind": "gbm", "start_price": 100, "volatility": -0.1}, "volatility"),
        ({"kind": "gbm", "start_price": 0, "volatility": 0.1}, "start_price"),
        ({"kind": "gbm", "start_price": 100, "volatility": 0.1, "drift": float("nan")}, "drift"),
        ({"kind": "gbm", "start_price": 100, "volatility": 0.1, "vol": 0.2}, "gbm.vol\n  Extra inputs"),
        ({"kind": "garch", "start_price": 100, "omega": 1e-6, "alpha": 0.2, "beta": 0.8}, "alpha + beta"),
        ({"kind": "garch", "start_price": 100, "omega": 0, "alpha": 0.1, "beta": 0.8}, "omega"),
        (
            {"kind": "jump_diffusion", "start_price": 1, "volatility": 0.1, "jump_intensity": -1, "jump_mean": 0},
            "jump_intensity",
        ),
        ({"kind": "heston", "start_price": 100}, "'heston' found using 'kind' does not match any of the expected tags"),
        ({"start_price": 100, "volatility": 0.1}, "discriminator 'kind'"),
        ({"kind": "replay", "path": "x.csv", "timestamp_unit": "minutes"}, "timestamp_unit"),
    ],
)
def test_bad_model_configs_name_the_field(data, field):
    with pytest.raises(ValidationError) as e:
        parse_index_model(data)
    assert field in str(e.value)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"step": 0, "move": -1.0}, "move"),
        ({"step": 0, "move": 10.0}, "move"),
        ({"step": -1, "move": -0.1}, "step"),
        ({"step": 0, "duration": 0, "move": -0.1}, "duration"),
        ({"step": 0, "move": -0.1, "recovery": 1.5, "recovery_steps": 3}, "recovery"),
        ({"step": 0, "move": -0.1, "recovery": 0.5}, "recovery_steps"),
        ({"step": 0, "move": -0.1, "markets": []}, "markets"),
        ({"step": 0, "move": -0.1, "size": 3}, "size\n  Extra inputs are not permitted"),
    ],
)
def test_bad_shocks_name_the_field(data, field):
    with pytest.raises(ValidationError) as e:
        IndexShock.model_validate(data)
    assert field in str(e.value)


def test_bad_call_arguments():
    with pytest.raises(ValueError, match="n_steps"):
        index_paths([FLAT], 0, 60.0, rng())
    with pytest.raises(ValueError, match="dt_seconds"):
        index_paths([FLAT], 10, 0.0, rng())
    with pytest.raises(ValueError, match="at least one"):
        index_paths([], 10, 60.0, rng())
