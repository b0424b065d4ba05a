"""Bad scenario files fail before anything runs, naming the file, the field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator.cli import main
from simulator.world.scenario import ScenarioError, load

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "scenarios/cascade.yaml").read_text())


def write(tmp_path, mutate) -> Path:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


CASES = {
    "unknown key": (lambda d: d["agents"]["traders"].update(levrage=3), "agents.traders.levrage", "unknown field"),
    "wrong type": (lambda d: d.update(steps="many"), "steps", "valid integer"),
    "negative capital": (lambda d: d["agents"]["market_makers"].update(capital=-5), "agents.market_makers.capital", "greater than 0"),
    "leverage zero": (lambda d: d["agents"]["traders"]["leverage"].update(median=0), "agents.traders.leverage.median", "greater than 0"),
    "shock after last step": (lambda d: d["shocks"][0].update(step=5000), "shocks[0].step", "after the last step"),
    "unknown stage": (lambda d: d["venue"]["waterfall"].append({"stage": "bailout"}), "venue.waterfall.3", "'book', 'backstop', 'insurance_fund', 'adl', 'socialize'"),
    "unknown ranking": (lambda d: d["venue"]["waterfall"][2].update(ranking="vibes"), "venue.waterfall.2.adl.ranking", "'pnl_x_leverage'"),
    "funding step count": (lambda d: d["venue"].update(funding={"interval": 480}), "venue.funding.interval", "use interval_seconds"),
    "funding formula": (lambda d: d["venue"].update(funding={"formula": "ftx"}), "venue.funding.formula", "'binance' or 'premium_plus_interest'"),
    "funding interval below a step": (lambda d: d.update(step_seconds=60) or d["venue"].update(funding={"interval_seconds": 30}),
                                      "venue.funding.interval_seconds = 30 is shorter than step_seconds (60)", "at most one settlement per step"),
    "strategy shares": (lambda d: d["agents"]["traders"].update(strategies={"trend": 0.5}), "agents.traders.strategies", "sum to 1"),
    "withdrawal wave share": (lambda d: d["shocks"].append({"kind": "withdrawal_wave", "step": 10, "share": 1.5}),
                              "shocks.1.withdrawal_wave.share", "less than or equal to 1"),
    "withdrawal wave nobody": (lambda d: d["shocks"].append({"kind": "withdrawal_wave", "step": 10, "share": 0}),
                               "shocks.1.withdrawal_wave.share", "greater than 0"),
    "withdrawal wave fraction": (lambda d: d["shocks"].append({"kind": "withdrawal_wave", "step": 10, "share": 0.3, "fraction": 2}),
                                 "shocks.1.withdrawal_wave.fraction", "less than or equal to 1"),
    "withdrawal wave of": (lambda d: d["shocks"].append({"kind": "withdrawal_wave", "step": 10, "share": 0.3, "of": "equity"}),
                           "shocks.1.withdrawal_wave.of", "'free_collateral'"),
    "withdrawal wave after the end": (lambda d: d["shocks"].append({"kind": "withdrawal_wave", "step": 5000, "share": 0.3}),
                                      "shocks[1].step", "after the last step"),
    "withdrawal factor at settlement": (lambda d: d["venue"]["waterfall"].append(
        {"stage": "socialize", "weights": "withdrawal_factor", "when": "settlement"}),
        "venue.waterfall.3.socialize", "withdrawal_factor is repaid by later withdrawals"),
    "two partial rules": (lambda d: d["venue"]["waterfall"][0].update(partial=True, slice_share=0.2),
                          "venue.waterfall.0.book", "set one of them"),
    "slice share": (lambda d: d["venue"]["waterfall"][0].update(slice_share=1.5),
                    "venue.waterfall.0.book.slice_share", "less than 1"),
    "share takeover without takeover": (lambda d: d["venue"]["waterfall"][1].update(takeover=False, takeover_share_step=0.2),
                                        "venue.waterfall.1.insurance_fund", "set takeover: true"),
    "share takeover target": (lambda d: d["venue"]["waterfall"][1].update(takeover_share_step=0.2, takeover_target_ratio=1.5),
                              "venue.waterfall.1.insurance_fund.takeover_target_ratio", "less than 1"),
    "design fund guard": (lambda d: d.update(designs=[{"name": "g", "waterfall": [{"stage": "book"}], "fund_guard": {"threshold": 0}}]),
                          "designs.0.fund_guard.threshold", "greater than 0"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_field_is_named_with_what_is_allowed(tmp_path, name):
    mutate, field, allowed = CASES[name]
    path = write(tmp_path, mutate)
    with pytest.raises(ScenarioError) as err:
        load(path)
    msg = str(err.value)
    assert str(path) in msg
    assert field in msg
    assert allowed in msg


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ScenarioError, match="nope.yaml: file not found"):
        load(tmp_path / "nope.yaml")


def test_missing_replay_file_is_named(tmp_path):
    data = yaml.safe_load((ROOT / "scenarios/october_2025.yaml").read_text())
    data["index"]["models"][0]["path"] = "data/missing.csv"
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match=r"index.models.0.path: file .*missing.csv.* does not exist"):
        load(path)


def test_cli_run_on_bad_file_fails_clearly_and_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, lambda d: d["agents"]["traders"].update(levrage=3))
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out)])
    assert code == 2
    assert "agents.traders.levrage" in capsys.readouterr().err
    assert not out.exists()


def test_cli_validate_accepts_every_bundled_scenario(capsys):
    files = sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == len(files)


def test_bad_override_is_named(tmp_path):
    with pytest.raises(ScenarioError, match="agents.traders.count"):
        load(ROOT / "scenarios/cascade.yaml", {"agents.traders.count": -1})


def test_every_bundled_preset_is_a_valid_design():
    from simulator.world.scenario import load_design, preset_names

    names = preset_names()
    assert {"bitmex", "binance", "bybit", "okx", "hyperliquid", "dydx_v4", "drift", "seed_article"} <= set(names)
    for name in names:
        design = load_design(name)
        assert design.name == name and design.waterfall


def test_a_preset_brings_its_venue_funding_rule():
    from simulator.world.scenario import load_design

    sc = load(ROOT / "scenarios/cascade.yaml")
    assert sc.venue.funding.formula == "binance" and sc.venue.funding.interval_seconds == 28_800
    data = sc.model_dump(mode="json")
    assert "interval" not in data["venue"]["funding"]  # the removed field is never written back
    data["designs"] = [load_design("hyperliquid").model_dump(mode="json"), load_design("seed_article").model_dump(mode="json")]
    from simulator.world.scenario import validate

    sc2 = validate(data)
    hl = sc2.design("hyperliquid").venue.funding
    assert (hl.interval_seconds, hl.rate_period_seconds, hl.cap) == (3_600, 28_800, 0.04)
    assert sc2.design("seed_article").venue.funding == sc.venue.funding  # no rule: the scenario's


def test_unknown_preset_names_the_available_ones():
    from simulator.world.scenario import load_design

    with pytest.raises(ScenarioError, match="no such design file or preset; presets: .*binance"):
        load_design("mtgox")


def test_cli_batch_bad_design_subset_fails_before_running(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["batch", str(ROOT / "scenarios/cascade.yaml"), "--runs", "2", "--designs", "nope", "--out", str(out)])
    assert code == 2
    assert "--designs ['nope'] not found; designs: ['default']" in capsys.readouterr().err
    assert not out.exists()


def test_cli_steps_override_is_validated(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", str(ROOT / "scenarios/cascade.yaml"), "--steps", "100", "--out", str(out)]) == 2
    assert "shocks[0].step = 300 is after the last step (99)" in capsys.readouterr().err
    assert main(["run", str(ROOT / "scenarios/cascade.yaml"), "--steps", "0", "--out", str(out)]) == 2
    assert "steps: Input should be greater than or equal to 1" in capsys.readouterr().err
    assert not out.exists()
