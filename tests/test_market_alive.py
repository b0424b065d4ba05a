"""The market stays alive at every population size (issue 8).

Every bundled scenario, at 300, 10,000 and 100,000 traders, is run up to its first shock (at
most ``MAX_STEPS`` steps): the book must be two-sided on at least 95 % of those steps, nobody may
be liquidated, and the liquidity providers must take the traders' whole net opening position.
The figures come from the run's own summary code (``metrics.market_health``).
"""

from __future__ import annotations

import numpy as np
import pytest

from golden_runs import ROOT, scenario_files
from simulator.experiments import run
from simulator.world import metrics
from simulator.world.model import PerpModel
from simulator.world.scenario import ScenarioError, first_shock_step

MAX_STEPS = 300
POPULATIONS = (300, 10_000, 100_000)
CASES = [
    pytest.param(path, n, id=f"{path.stem}-{n // 1000}k-traders" if n >= 1000 else f"{path.stem}-{n}-traders")
    for path in scenario_files() for n in POPULATIONS
]


def _pre_shock_health(scenario, steps: int) -> dict:
    model = PerpModel(scenario, base_dir=scenario._base_dir)
    for _ in range(steps):
        model.step()
    ts = model.timeseries()
    ev = model.venue.events.to_frame()
    liq = ev[ev["kind"] == "liquidation"]
    return metrics.market_health(ts, liq, run.run_meta(model))


@pytest.mark.parametrize("path, n", CASES)
def test_market_is_alive_before_the_first_shock(path, n):
    scenario = run.load_scenario(path, {"agents.traders.count": n})
    steps = min(first_shock_step(scenario), MAX_STEPS)
    assert steps > 0
    h = _pre_shock_health(scenario, steps)
    assert h["two_sided_share_pre_shock"] >= metrics.MIN_TWO_SIDED_SHARE, h
    assert h["liquidations_pre_shock"] == 0, h
    assert h["makers_liquidated"] == 0, h
    assert h["opening_unfilled_share"] == 0.0, h


def test_makers_never_absorb_beyond_their_capacity():
    """Without population scaling, 10,000 traders' crowded opening is more than the makers can
    hold: they take what keeps them far from margin, the rest is not opened and is reported."""
    off = {"agents.market_makers.scale_with_traders": False, "agents.arbitrageurs.scale_with_traders": False}
    sc = run.load_scenario(ROOT / "scenarios/oracle_lag.yaml", {"agents.traders.count": 10_000, **off})
    model = PerpModel(sc, base_dir=sc._base_dir)
    venue = model.venue
    assert model.opening_unfilled_lots.sum() > 0
    makers = model.maker_accounts
    im = venue.initial()[makers].sum(axis=1)
    assert (venue.equity(makers) > 2 * im).all()
    assert not np.isin(makers, np.flatnonzero(venue.liquidatable())).any()
    h = _pre_shock_health(sc, 1)
    assert 0 < h["opening_unfilled_share"] < 0.1


def test_validate_rejects_a_population_the_makers_cannot_take():
    off = {"agents.market_makers.scale_with_traders": False, "agents.arbitrageurs.scale_with_traders": False}
    with pytest.raises(ScenarioError, match=r"cascade\.yaml: agents\.market_makers\.capital: .*would not open"):
        run.load_scenario(ROOT / "scenarios/cascade.yaml", {"agents.traders.count": 10_000, **off})
    # the same population with the default scaling is fine
    run.load_scenario(ROOT / "scenarios/cascade.yaml", {"agents.traders.count": 10_000})


def test_liquidity_scales_with_the_population_above_the_reference():
    sc = run.load_scenario(ROOT / "scenarios/cascade.yaml", {"agents.traders.count": 10_000})
    a = sc.agents
    k = 10_000 / a.reference_traders
    assert a.effective_market_makers().capital == pytest.approx(a.market_makers.capital * k)
    assert a.effective_market_makers().level_notional == pytest.approx(a.market_makers.level_notional * k)
    assert a.effective_arbitrageurs().capital == pytest.approx(a.arbitrageurs.capital * k)
    small = run.load_scenario(ROOT / "scenarios/cascade.yaml", {"agents.traders.count": 300}).agents
    assert small.effective_market_makers() == small.market_makers  # never scaled below the file


def test_cli_warns_loudly_on_a_degenerate_run(tmp_path, capsys):
    from simulator.cli import main

    rc = main(["run", str(ROOT / "scenarios/flash_crash.yaml"), "--steps", "60", "--out", str(tmp_path / "dead"),
               "--set", "agents.traders.count=10000", "--set", "agents.traders.initial_positions=0.3",
               "--set", "shocks.0.step=50",
               "--set", "agents.market_makers.scale_with_traders=false",
               "--set", "agents.arbitrageurs.scale_with_traders=false"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "WARNING: degenerate run" in err and "two-sided" in err
