"""The bundled scenarios: golden summaries, reproducibility, and the behaviour each one is for."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from golden_runs import ROOT, SMALL, golden_path, scenario_files, small_summary
from simulator.experiments import run

SCENARIOS = scenario_files()


def test_every_scenario_has_a_golden_summary():
    assert len(SCENARIOS) >= 7
    missing = [p.name for p in SCENARIOS if not golden_path(p).exists()]
    assert not missing, f"run `python tests/golden_runs.py --update` for {missing}"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_golden_summary(path):
    expected = json.loads(golden_path(path).read_text())
    got = small_summary(path)
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        have = got[key]
        if isinstance(want, float) and isinstance(have, float):
            assert math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-9), key
        else:
            assert have == want, key
    # money is exact in every bundled scenario, every step (the run raises otherwise)
    assert got["conservation_residual_max_abs"] == 0


def test_same_seed_gives_byte_identical_summary_and_other_seed_differs(tmp_path):
    sc = run.load_scenario(ROOT / "scenarios/cascade.yaml", SMALL)
    a = run.write_run(run.run_scenario(sc, seed=5), tmp_path / "a")
    b = run.write_run(run.run_scenario(sc, seed=5), tmp_path / "b")
    c = run.write_run(run.run_scenario(sc, seed=6), tmp_path / "c")
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    assert (a / "summary.json").read_bytes() != (c / "summary.json").read_bytes()


@pytest.fixture(scope="module")
def cascade():
    sc = run.load_scenario(ROOT / "scenarios/cascade.yaml", SMALL)
    return sc, run.run_scenario(sc)


def test_cascade_cascades(cascade):
    sc, result = cascade
    s, events = result.summary, result.events
    liq = events[events.kind == "liquidation"]
    # liquidations in more than one round within one step
    assert liq.groupby("step")["round"].nunique().max() > 1
    assert s["max_cascade_depth"] > 1
    # the last-trade low undershoots the index low
    assert s["last_min"] < s["index_min"]
    assert s["overshoot"] > 0
    # the same market with leverage capped at 3x liquidates less
    capped = run.with_overrides(sc, {"agents.traders.leverage.cap": 3})
    assert run.run_scenario(capped).summary["liquidation_notional"] < s["liquidation_notional"]


def test_calm_baseline_has_no_bankrupt_account():
    result = run.run_scenario(run.load_scenario(ROOT / "scenarios/calm.yaml", SMALL))
    assert result.summary["deficit_total"] == 0
    assert result.summary["venue_loss"] == 0
    assert (result.events.kind == "deficit").sum() == 0


def test_whale_empties_the_small_fund_and_profits_are_clawed_back():
    result = run.run_scenario(run.load_scenario(ROOT / "scenarios/whale_clawback.yaml", SMALL))
    s = result.summary
    assert s["deficit_total"] > s["fund_start"]  # the whale's hole is bigger than the fund
    assert s["covered_insurance_fund"] == pytest.approx(s["fund_start"], abs=1e-6)
    # clawback at settlement: exactly what the fund could not pay, charged to profitable accounts
    assert s["covered_socialize"] == pytest.approx(s["deficit_total"] - s["covered_insurance_fund"], abs=1e-6)
    charged = result.events[result.events.kind == "socialize"]
    assert len(charged) > 1 and (charged["step"] >= 599).all()  # settles every 600 s of 1-second steps: the first at step 599


def test_isolated_traders_lose_at_most_the_margin_posted():
    from simulator.world.model import PerpModel

    sc = run.load_scenario(ROOT / "scenarios/cascade.yaml", {**SMALL, "agents.traders.isolated_share": 1.0})
    model = PerpModel(sc)
    pop = model.traders
    led = model.venue.ledger
    spot_before = led.wallet[pop.wallets].copy()
    # posted margin = 30 % of capital (isolated_margin), the rest in the spot wallet
    assert np.allclose(led.wallet[pop.accounts] + spot_before, np.round(pop.capital / 1e-6), atol=2)
    model.run()
    liquidated = set(model.venue.events.to_frame().query("kind == 'liquidation'").account)
    hit = np.isin(pop.accounts, list(liquidated))
    assert hit.sum() > 10
    # no position ever sits in a spot wallet, and a liquidation never reaches it (no
    # socialization stage in this waterfall): the wallet is exactly what was left there
    assert (led.qty[pop.wallets] == 0).all()
    np.testing.assert_array_equal(led.wallet[pop.wallets], spot_before)
