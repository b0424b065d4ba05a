"""Waterfall designs compared on the same random paths (issue 4), on the real simulator.

One small batch of the cascade scenario: 6 paths x 2 fund sizes (a sweep) x 3 designs, run
through ``perpstress batch``'s own run function on the process pool. Common random numbers make
run ``i`` of every design and every cell the same market path until the designs diverge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from golden_runs import ROOT
from simulator.experiments.batch import load_results, load_series, plan_tasks, run_batch, scenario_run_fn
from simulator.cli import main
from simulator.experiments.compare import compare
from conftest import move_to
from simulator.venue.book import BUY

BOOK = {"stage": "book", "price_band": 0.1}
# the fund pays deficits but keeps no surplus and takes no positions: its starting balance is
# all it has, so the small cell's fund cannot pay and ADL (trigger: fund_cannot_pay) fires
FUND_TAKEOVER = {"stage": "insurance_fund", "surplus_policy": "none"}
DESIGNS = [
    {"name": "common", "waterfall": [BOOK, FUND_TAKEOVER, {"stage": "adl"}]},
    # differs from "common" only in a last stage, reached only when something is left after ADL
    {"name": "common_socialize", "waterfall": [BOOK, FUND_TAKEOVER, {"stage": "adl"}, {"stage": "socialize"}]},
    {"name": "fund_socialize", "waterfall": [BOOK, FUND_TAKEOVER, {"stage": "socialize"}]},
]
FUNDS = [0.0, 2_000_000.0]
RUNS = 6


def batch_scenario() -> dict:
    data = yaml.safe_load((ROOT / "scenarios" / "cascade.yaml").read_text())
    data["agents"]["traders"]["count"] = 300
    data["steps"] = 600
    data["designs"] = DESIGNS
    data["sweep"] = {"venue.insurance_fund": FUNDS}
    return data


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("designs")
    tasks = plan_tasks(RUNS, [d["name"] for d in DESIGNS], [{"venue.insurance_fund": f} for f in FUNDS], seed=11)
    report = run_batch(batch_scenario(), scenario_run_fn, tasks, out, executor="process", workers=2,
                       keep_series=RUNS, progress=False)
    assert report.exit_code == 0, report.failures
    return out, load_results(out), load_series(out)


def _by(results, design, fund):
    rows = results[(results.design == design) & (results["cell.venue.insurance_fund"] == fund)]
    return rows.set_index("run_index").sort_index()


def test_common_random_numbers_stage_never_reached_changes_nothing(batch):
    _, results, series = batch
    checked = 0
    for fund in FUNDS:
        a, b = _by(results, "common", fund), _by(results, "common_socialize", fund)
        for i in range(RUNS):
            if b.loc[i, "socialized_total"] > 0 or a.loc[i, "venue_loss"] > 0:
                continue  # the extra stage was reached on this path
            checked += 1
            assert a.loc[i, "liquidation_count"] == b.loc[i, "liquidation_count"]
            sa = series[(series.design == "common") & (series.run_index == i) & (series.cell_id == a.loc[i, "cell_id"])]
            sb = series[(series.design == "common_socialize") & (series.run_index == i) & (series.cell_id == b.loc[i, "cell_id"])]
            for col in ("index", "mark", "last", "liquidations"):
                np.testing.assert_array_equal(sa[col].to_numpy(), sb[col].to_numpy())
    assert checked >= RUNS  # the comparison is not vacuous


def test_same_run_index_shares_the_index_path_across_designs_and_cells(batch):
    _, _, series = batch
    paths = series[series.run_index == 0].groupby(["design", "cell_id"])["index"].apply(lambda s: s.to_numpy())
    first = paths.iloc[0]
    assert len(paths) == len(DESIGNS) * len(FUNDS)
    for p in paths:
        np.testing.assert_array_equal(p, first)
    other = series[(series.run_index == 1)]["index"].to_numpy()[: len(first)]
    assert not np.array_equal(other, first)


@pytest.mark.parametrize("design", ["common", "common_socialize", "fund_socialize"])
def test_a_larger_fund_never_increases_adl_or_socialized_loss_on_the_same_path(batch, design):
    _, results, _ = batch
    small, big = _by(results, design, FUNDS[0]), _by(results, design, FUNDS[1])
    assert (big["adl_notional"] <= small["adl_notional"] + 1e-9).all()
    assert (big["socialized_total"] <= small["socialized_total"] + 1e-9).all()
    assert (big["venue_loss"] <= small["venue_loss"] + 1e-9).all()


def test_the_small_fund_is_exhausted_so_later_stages_matter(batch):
    _, results, _ = batch
    small = _by(results, "common", FUNDS[0])
    # the metamorphic checks above are not vacuous: with an empty fund ADL fires on every path,
    # with a fund that can pay it never does (ADL only when the fund cannot pay)
    assert (small["adl_notional"] > 0).all()
    big = _by(results, "common", FUNDS[1])
    assert (big["adl_notional"] == 0).all() and (big["covered_insurance_fund"] > 0).all()


# The two checks below hold by construction for one liquidation on a fixed market; on the cascade
# batch they do not hold path by path (ADL changes who holds what, and the path diverges), see
# the issue note. They are therefore shown on a hand-built venue where the numbers are exact.
def _one_bankrupt_long(make_venue, waterfall):
    """Long 100 lots at 110 with wallet 700, mark 100: equity -300, empty book. Three shorts of
    100 lots entered at 120, 110 and 105 with equal equity 3,000 (equal leverage 3.33x)."""
    v = make_venue(waterfall=waterfall)
    L = int(v.add_accounts(1, "trader", 700)[0])
    shorts = [int(a) for a in v.add_accounts(3, "trader", [1_000, 2_000, 2_500])]
    # L buys 100 at 110 from a filler; the shorts sell to fillers at their entries
    filler = int(v.add_accounts(1, "trader", 10**7)[0])
    v.ledger.trade(0, L, filler, 100, 110)
    for s_acc, entry in zip(shorts, (120, 110, 105)):
        v.ledger.trade(0, filler, s_acc, 100, entry)
    move_to(v, 100)
    return v, L, shorts


def _events(v, kind):
    ev = v.events.to_frame()
    return ev[ev.kind == kind]


def test_without_adl_the_deficit_is_socialized_with_adl_it_is_not(make_venue):
    no_adl, L, _ = _one_bankrupt_long(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"}, {"stage": "socialize"}])
    no_adl.liquidate()
    with_adl, L2, _ = _one_bankrupt_long(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"},
                                                     {"stage": "adl"}, {"stage": "socialize"}])
    with_adl.liquidate()
    # without ADL nothing in the list can close the position on an empty book: the venue's
    # liquidation engine takes it at mark 100, and the 300 (the empty fund cannot pay) is socialized
    assert _events(no_adl, "liquidation").stage.tolist() == ["engine"]
    assert _events(no_adl, "socialize").amount.sum() == 300
    # with ADL at the bankruptcy price the three shorts pay the 300 in the fill: nothing socialized
    assert _events(with_adl, "adl_haircut").amount.sum() == 300
    assert _events(with_adl, "socialize").amount.sum() == 0
    for v in (no_adl, with_adl):
        assert v.conservation_residual() == 0


@pytest.mark.parametrize("ranking, profit_taken", [("pnl_x_leverage", 2_000), ("pro_rata", 34 * 20 + 33 * 10 + 33 * 5)])
def test_pro_rata_overshoot_is_no_larger_than_the_queue_at_equal_leverage(make_venue, ranking, profit_taken):
    # queue: scores PnL% x 3.33 -> the short from 120 (PnL 2,000 on 100 lots) goes first and
    # alone; pro rata: 100 lots over 300 -> 34/33/33 by largest remainder (ties to the first),
    # PnL per lot 20/10/5: 680 + 330 + 165 = 1,175. Shortfall covered = 300 in both;
    # overshoot = PnL taken - 300 = 1,700 (queue) vs 875 (pro rata).
    v, L, shorts = _one_bankrupt_long(make_venue, [{"stage": "book"}, {"stage": "adl", "ranking": ranking}])
    v.liquidate()
    adl = _events(v, "adl")
    assert adl.pnl.clip(lower=0).sum() == profit_taken
    assert _events(v, "adl_haircut").amount.sum() == 300
    overshoot = {"pnl_x_leverage": 2_000 - 300, "pro_rata": 1_175 - 300}
    assert adl.pnl.clip(lower=0).sum() - 300 == overshoot[ranking]
    assert overshoot["pro_rata"] <= overshoot["pnl_x_leverage"]


def test_compare_pairs_designs_on_run_index(batch):
    _, results, _ = batch
    table = compare(results, baseline="common", metrics=["adl_notional"], n_boot=200)
    row = table[(table.design == "fund_socialize") & (table.cell_id == table.cell_id.iloc[0])].iloc[0]
    cell = row["cell_id"]
    a = results[(results.design == "common") & (results.cell_id == cell)].set_index("run_index")["adl_notional"]
    b = results[(results.design == "fund_socialize") & (results.cell_id == cell)].set_index("run_index")["adl_notional"]
    assert row["diff_mean"] == pytest.approx((b - a).mean())
    assert row["diff_low"] <= row["diff_mean"] <= row["diff_high"]


def test_executors_give_identical_results(tmp_path):
    data = batch_scenario()
    data["agents"]["traders"]["count"] = 100
    data["steps"] = 360
    data["sweep"] = {}
    tasks = plan_tasks(2, ["common", "fund_socialize"], None, seed=3)
    frames = []
    for executor in ("serial", "process", "dask"):
        if executor == "dask":
            pytest.importorskip("dask.distributed")
        run_batch(data, scenario_run_fn, tasks, tmp_path / executor, executor=executor, workers=2, progress=False)
        frames.append(load_results(tmp_path / executor).drop(columns=["elapsed_s"]))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])


def test_cli_batch_resume_gives_the_same_table(tmp_path, capsys):
    args = ["batch", str(ROOT / "scenarios" / "cascade.yaml"), "--runs", "3", "--preset", "seed_article",
            "--set", "agents.traders.count=100", "--set", "steps=360", "--executor", "serial"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    assert main([*args, "--out", str(tmp_path / "cut")]) == 0
    # a batch killed after some runs: drop two finished results, resume runs only those
    runs = sorted((tmp_path / "cut" / "runs").glob("*.parquet"))
    for f in runs[-2:]:
        f.unlink()
    assert main(["batch", "--resume", str(tmp_path / "cut"), "--executor", "serial"]) == 0
    assert "4 from before" in capsys.readouterr().out
    full = load_results(tmp_path / "full").drop(columns=["elapsed_s"])
    cut = load_results(tmp_path / "cut").drop(columns=["elapsed_s"])
    pd.testing.assert_frame_equal(full, cut)
    assert main(["compare", str(tmp_path / "cut"), "--metrics", "adl_notional", "--n-boot", "100"]) == 0
    assert (tmp_path / "cut" / "compare.csv").exists()
