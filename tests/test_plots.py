"""Figures of ``simulator.figures`` and ``perpstress plot``, drawn from small real results folders.

Each figure is checked to be a valid image of the size asked for, and the numbers it returns
(the data it drew) are checked against the run folder or the batch's results.

The folders (built once per session by ``results_folders``, also used by test_report.py):

* a run folder from ``perpstress run`` of the cascade scenario (150 traders, 400 steps, a -8 %
  shock at step 200, no insurance fund at start, so the fund, then ADL, cover the bad debt);
* a batch folder from ``simulator.experiments.batch.run_batch``: the cascade scenario at 120 traders and
  240 steps, three designs (fund then ADL; pro-rata ADL then fund then socialization; fund
  without surplus then socialization), a 2 x 2 sweep (starting fund 0 / 1e5 x shock -4 % /
  -8 %) and 2 paths per cell: 24 runs (per-step series kept for run 0; every run has its thin
  fund / backstop path), with compare.csv / probabilities.csv as ``perpstress batch`` writes
  them. ``fund_then_socialize`` sets its own fund (0), overriding the swept one.
"""

from __future__ import annotations

import copy
import struct
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pandas as pd
import pytest
import yaml

from simulator import figures as plots
from simulator.figures.timeline import COVER_COLUMNS, MAX_BARS

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

DESIGNS = [
    {
        "name": "fund_then_adl",
        "description": "book -> insurance fund (takeover) -> ADL",
        "waterfall": [
            {"stage": "book", "price_band": 0.1},
            {"stage": "insurance_fund", "takeover": True},
            {"stage": "adl", "ranking": "pnl_x_leverage"},
        ],
    },
    {
        "name": "adl_first",
        "description": "book -> pro-rata ADL -> insurance fund -> socialize",
        "waterfall": [
            {"stage": "book", "price_band": 0.1},
            {"stage": "adl", "ranking": "pro_rata"},
            {"stage": "insurance_fund"},
            {"stage": "socialize"},
        ],
    },
    {
        "name": "fund_then_socialize",
        "description": "book -> insurance fund (keeps no surplus) -> socialize",
        "insurance_fund": 0,  # its own: the swept fund does not move it
        "waterfall": [
            {"stage": "book", "price_band": 0.1},
            {"stage": "insurance_fund", "surplus_policy": "none"},
            {"stage": "socialize"},
        ],
    },
]
GRID = {"venue.insurance_fund": [0, 1e5], "shocks.0.move": [-0.04, -0.08]}
N_RUNS = 2


def batch_run_fn(scenario: dict, task) -> dict:
    """One batch task: the cell's overrides, the task's design, the task's seeds."""
    from simulator.experiments import batch
    from simulator.experiments import run
    from simulator.experiments.paths import thin_paths
    from simulator.world import scenario as sc_mod

    sc = sc_mod.validate(sc_mod.apply_overrides(scenario, task.cell), "test", base_dir=SCENARIOS).design(task.design)
    r = run.run_scenario(sc, seed=batch.task_seed_sequence(task))
    return {**r.summary, **thin_paths(r.timeseries), "_series": r.timeseries}


_FOLDERS: dict[str, Path] = {}


def results_folders(tmp_path_factory) -> dict[str, Path]:
    """``{"run": run folder, "batch": batch folder}``, built once per test session."""
    if _FOLDERS:
        return _FOLDERS
    from simulator import cli
    from simulator.experiments.batch import expand_grid, plan_tasks, run_batch
    from simulator.experiments.compare import write_compare
    from simulator.figures.report import TABLE_METRICS

    root = tmp_path_factory.mktemp("plot_results")
    run_dir = root / "run"
    rc = cli.main([
        "run", str(SCENARIOS / "cascade.yaml"), "--set", "agents.traders.count=150", "--set", "steps=400",
        "--set", "shocks.0.step=200", "--set", "shocks.0.move=-0.08", "--set", "venue.insurance_fund=0",
        # an empty fund that takes no positions and keeps no surplus: ADL fires (fund_cannot_pay)
        "--set", "venue.waterfall.1.takeover=false", "--set", "venue.waterfall.1.surplus_policy=none",
        # takers-only arbitrageurs: at 150 traders the basis ladder (sized for 1,000) holds the dip
        # above the bankruptcy prices and nothing would reach ADL
        "--set", "agents.arbitrageurs.quote_levels=0",
        "--out", str(run_dir),
    ])
    assert rc == 0

    data = yaml.safe_load((SCENARIOS / "cascade.yaml").read_text())
    data["steps"] = 240
    data["agents"]["traders"]["count"] = 120
    data["shocks"][0]["step"] = 120
    data["designs"] = copy.deepcopy(DESIGNS)
    batch_dir = root / "batch"
    tasks = plan_tasks(N_RUNS, [d["name"] for d in DESIGNS], expand_grid(GRID), seed=data["seed"])
    # series kept for run 0 only: the fan chart must still use both runs (their thin paths)
    report = run_batch(data, batch_run_fn, tasks, batch_dir, executor="serial", keep_series=1, progress=False)
    assert report.failed == 0, report.summary()
    write_compare(batch_dir, metrics=[m for m in TABLE_METRICS if m != "backstop_pnl"], n_boot=200)
    _FOLDERS.update(run=run_dir, batch=batch_dir)
    return _FOLDERS


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    return results_folders(tmp_path_factory)


@pytest.fixture(scope="session")
def run_folder(folders):
    return plots.open_folder(folders["run"])


@pytest.fixture(scope="session")
def batch(folders):
    return plots.open_folder(folders["batch"])


# --------------------------------------------------------------------------- helpers
def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails if ``data`` is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, ctype = struct.unpack(">I4s", data[8:16])
    assert ctype == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def expected_pixels(fig) -> tuple[int, int]:
    w, h = fig.get_size_inches() * fig.dpi
    return int(round(w)), int(round(h))


def check_png(fig, path: Path) -> None:
    out = plots.save_figure(fig, path)
    assert out.suffix == ".png" and out.exists()
    assert png_size(out.read_bytes()) == expected_pixels(fig)
    img = mimage.imread(out)  # decodes the whole image
    assert img.shape[:2] == expected_pixels(fig)[::-1]
    assert img.std() > 0.01  # not blank


# ========================================================================== folders
def test_folder_kind_and_errors(folders, tmp_path):
    assert plots.folder_kind(folders["run"]) == "run"
    assert plots.folder_kind(folders["batch"]) == "batch"
    with pytest.raises(FileNotFoundError, match="not a results folder"):
        plots.folder_kind(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        plots.open_folder(tmp_path / "missing")


def test_design_colors_are_stable_across_folders(batch):
    assert batch.designs == [d["name"] for d in DESIGNS]
    colors = plots.design_colors(batch.designs)
    assert list(colors) == batch.designs
    assert len(set(colors.values())) == len(colors)
    # the same name has the same colour whatever the other designs and their order
    assert plots.design_colors(list(reversed(batch.designs))) == colors
    assert plots.design_colors(["hyperliquid", batch.designs[1]])[batch.designs[1]] == colors[batch.designs[1]]
    for d in batch.designs:
        assert colors[d] == plots.design_color(d) and colors[d] in plots.DESIGN_PALETTE
    # presets have fixed colours
    assert plots.design_colors(["x", "hyperliquid", "default"])["hyperliquid"] == plots.PRESET_COLORS["hyperliquid"]
    assert plots.design_colors(["bitmex"])["bitmex"] == plots.PRESET_COLORS["bitmex"]
    assert set(plots.STAGES) <= set(plots.STAGE_COLORS)


# ========================================================================= timeline
def test_timeline_of_a_run_draws_the_runs_series(run_folder, tmp_path):
    fig, data = plots.plot_timeline(run_folder)
    check_png(fig, tmp_path / "timeline.png")
    assert expected_pixels(fig) == (1200, 1400)
    ts = pd.read_parquet(run_folder.path / "timeseries.parquet")
    summary = run_folder.summary

    liq = data["liquidations"]
    assert liq["step"].tolist() == ts["step"].tolist()
    stacked = liq[["book", "backstop", "insurance_fund", "adl", "engine"]].sum(axis=1)
    np.testing.assert_allclose(stacked, ts["liq_notional"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(liq["total"], ts["liq_notional"])
    assert liq["total"].sum() == pytest.approx(summary["liquidation_notional"], rel=1e-9)
    for stage in ("book", "insurance_fund", "adl"):
        assert liq[stage].sum() == pytest.approx(summary[f"liq_notional_{stage}"], rel=1e-9, abs=1e-6)
    assert liq["adl"].sum() > 0  # this run reaches ADL

    for col in ("index", "mark", "last"):
        np.testing.assert_array_equal(data["prices"][col], ts[col])
    np.testing.assert_array_equal(data["fund"]["insurance_fund"], ts["insurance_fund"])
    np.testing.assert_array_equal(data["depth"]["bid"], ts["depth_bid_1pct"])
    np.testing.assert_array_equal(data["depth"]["ask"], ts["depth_ask_1pct"])
    assert data["losses"]["deficit"].sum() == pytest.approx(summary["deficit_total"], rel=1e-9)
    assert data["losses"]["socialized"].sum() == pytest.approx(summary["socialized_total"], abs=1e-9)
    assert data["shocks"][["start", "end"]].values.tolist() == [[200, 260]]

    # the bad-debt panel is the split by cover: the cover_* columns, adding up to each step's deficit
    losses = data["losses"]
    covers = list(COVER_COLUMNS)
    for c in covers:
        np.testing.assert_array_equal(losses[c], ts[c])
    np.testing.assert_allclose(losses[covers].sum(axis=1), losses["deficit"], rtol=1e-9, atol=1e-6)
    assert losses["cover_adl"].sum() == pytest.approx(summary["covered_adl"], rel=1e-9)
    # bars are binned so none is a hairline: at most MAX_BARS bars, sums kept
    bars, width = data["liquidation_bars"], data["liquidation_bars"].attrs["bin_steps"]
    assert width == int(np.ceil(len(ts) / MAX_BARS)) and len(bars) <= MAX_BARS
    np.testing.assert_allclose(bars["total"].sum(), liq["total"].sum())
    np.testing.assert_allclose(data["loss_bars"][covers].sum().sum(), losses["deficit"].sum(), rtol=1e-9)
    drawn = [p for p in fig.axes[1].patches if p.get_height() > 0]
    assert drawn and min(p.get_width() for p in drawn) >= 0.9 * width - 1e-9
    # price-low labels stay inside the axes and off the lines' low points
    fig.canvas.draw()
    ax0 = fig.axes[0]
    box = ax0.get_window_extent()
    for t in ax0.texts:
        bb = t.get_window_extent()
        assert box.x0 - 1 <= bb.x0 and bb.x1 <= box.x1 + 1 and box.y0 - 1 <= bb.y0, t.get_text()
        assert not bb.contains(*ax0.transData.transform(t.xy)), t.get_text()

    # every panel has a title and labelled axes (units in the labels)
    axes = fig.axes
    assert len(axes) == 5
    assert all(ax.get_title(loc="left") for ax in axes)
    assert all("USD" in ax.get_ylabel() for ax in axes)
    assert "step" in axes[-1].get_xlabel()


def test_timeline_depth_rolling_median(run_folder):
    _, data = plots.plot_timeline(run_folder, depth_median=15, bin_steps=1, figsize=(6, 7), dpi=40)
    d = data["depth"]
    np.testing.assert_allclose(d["bid_median"], d["bid"].rolling(15, min_periods=1, center=True).median())
    assert data["liquidation_bars"].attrs["bin_steps"] == 1


def test_timeline_window(run_folder):
    fig, data = plots.plot_timeline(run_folder, steps=(180, 300), figsize=(8, 9), dpi=50)
    assert data["prices"]["step"].min() == 180 and data["prices"]["step"].max() == 300
    assert expected_pixels(fig) == (400, 450)
    assert png_size(plots.figure_bytes(fig)) == (400, 450)


def test_timeline_empty_panels_are_strips(run_folder):
    # before the shock (step 200) nothing is liquidated and nothing goes bankrupt in this run
    fig, data = plots.plot_timeline(run_folder, steps=(0, 150), figsize=(8, 9), dpi=50)
    assert data["liquidations"]["total"].sum() == 0 and data["losses"]["deficit"].sum() == 0
    fig.canvas.draw()
    liq_ax, debt_ax, fund_ax = fig.axes[1], fig.axes[2], fig.axes[3]
    for ax, text in ((liq_ax, "no liquidations"), (debt_ax, "no bad debt")):
        assert [t.get_text() for t in ax.texts] == [text]
        assert len(ax.get_yticks()) == 0 and ax.get_ylabel() == ""
        # a strip: well under a third of a drawn panel's height (ratios 0.45 vs 1.5)
        assert ax.get_position().height < 0.35 * fund_ax.get_position().height
    # with bad debt, the panel is a full panel with its axis
    fig, _ = plots.plot_timeline(run_folder, figsize=(8, 9), dpi=50)
    assert len(fig.axes[2].get_yticks()) > 0 and "USD" in fig.axes[2].get_ylabel()


def test_timeline_of_a_kept_batch_run(batch, tmp_path):
    cell = list(batch.cells)[1]
    fig, data = plots.plot_timeline(batch, design="adl_first", cell=cell, run_index=0)
    check_png(fig, tmp_path / "tl.png")
    s = batch.series
    kept = s[(s["design"] == "adl_first") & (s["cell_id"] == cell) & (s["run_index"] == 0)]
    np.testing.assert_allclose(data["liquidations"]["total"], kept["liq_notional"])
    np.testing.assert_allclose(data["liquidations"][["book", "backstop", "insurance_fund", "adl", "engine"]].sum(axis=1),
                               kept["liq_notional"], rtol=1e-9, atol=1e-6)
    # the title speaks of the cell's own values, not the scenario's description ("a 4 % dip")
    assert "move -8 %" in fig._suptitle.get_text()
    assert "4 % dip" not in fig._suptitle.get_text()
    # default: the first design on the worst path (the same path as every batch figure)
    _, d = plots.plot_timeline(batch)
    meta = d["meta"].iloc[0]
    kept = batch.results.merge(s[["cell_id", "run_index"]].drop_duplicates())
    g = kept.groupby(["cell_id", "run_index"])["deficit_total"].mean()
    assert (meta["cell"], meta["run_index"]) == g.idxmax() == plots.worst_path(batch)
    assert meta["design"] == batch.designs[0]
    with pytest.raises(ValueError, match="no kept series|no design"):
        plots.plot_timeline(batch, design="nope")


# ========================================================================== compare
def test_compare_points_are_the_runs(batch, tmp_path):
    fig, data = plots.plot_compare(batch)
    check_png(fig, tmp_path / "compare.png")
    assert expected_pixels(fig) == (1500, 2100)
    res = batch.results
    runs = data["runs"]
    assert set(runs["metric"]) == set(plots.COMPARE_METRICS)
    for (metric, design), g in runs.groupby(["metric", "design"]):
        want = res.loc[res["design"] == design, metric].astype(float).sort_values().to_numpy()
        np.testing.assert_allclose(np.sort(g["value"].to_numpy()), want)
    assert len(runs) == len(plots.COMPARE_METRICS) * len(res)

    exc = data["exceedance"]
    for (metric, design), g in exc.groupby(["metric", "design"]):
        v = res.loc[res["design"] == design, metric].astype(float).to_numpy()
        for x, p in zip(g["x"], g["p_exceed"]):
            assert p == pytest.approx((v > x).mean())
        assert g["p_exceed"].is_monotonic_decreasing and g["p_exceed"].iloc[-1] == 0
    # the designs differ where they should: socialization only where a design has the stage
    soc = exc[(exc["metric"] == "socialized_total") & (exc["x"] == 0)].set_index("design")["p_exceed"]
    assert soc["fund_then_adl"] == 0 and soc["fund_then_socialize"] > 0

    # paired differences: every path of every design minus the baseline on the same path
    baseline = batch.baseline()
    assert baseline == batch.designs[0]
    diffs, stats = data["diffs"], data["diff_stats"]
    base = res[res["design"] == baseline].set_index(["cell_id", "run_index"])
    zero = set(data["zero"]["metric"])
    assert set(diffs["metric"]) == set(plots.COMPARE_METRICS) - zero
    for (metric, design), g in diffs.groupby(["metric", "design"]):
        other = res[res["design"] == design].set_index(["cell_id", "run_index"])
        want = other[metric].astype(float) - base[metric].astype(float)
        got = g.set_index(["cell_id", "run_index"])["diff"]
        assert len(got) == len(res[res["design"] == design])
        np.testing.assert_allclose(got.to_numpy(), want.loc[got.index].to_numpy())
        st = stats[(stats["metric"] == metric) & (stats["design"] == design)].iloc[0]
        assert st["median"] == pytest.approx(np.median(got)) and st["mean"] == pytest.approx(got.mean())
        assert st["low"] <= st["mean"] + 1e-9 <= st["high"] + 2e-9
    # one cell: the interval is the one perpstress compare writes (same n_boot, same seed)
    from simulator.experiments.compare import compare

    cell = list(batch.cells)[0]
    _, st1 = plots.paired_differences(batch, ["deficit_total"], cell=cell, n_boot=200)
    c = compare(res, baseline=baseline, metrics=["deficit_total"], n_boot=200)
    c = c[(c["cell_id"] == cell) & (c["design"] != baseline)].set_index("design")
    for r in st1.itertuples(index=False):
        assert (r.mean, r.low, r.high) == pytest.approx(tuple(c.loc[r.design, ["diff_mean", "diff_low", "diff_high"]]))

    # the fan is every run (thin paths), not the one kept series per design and cell
    fan = data["fund_fan"]
    assert fan.attrs["source"] == "all runs" and batch.series["run_index"].nunique() == 1
    assert fan.groupby("design")["n_paths"].max().eq(len(batch.cells) * N_RUNS).all()
    # pooled cells start from different fund balances: the fan shows the change since step 0
    assert fan.attrs["relative"] is True
    from simulator.experiments.paths import read_path

    d = "fund_then_adl"
    g = res[res["design"] == d]
    paths = np.array([read_path(t) for t in g["path_insurance_fund"]])
    steps = read_path(g["path_step"].iloc[0])
    want = np.median(paths - paths[:, :1], axis=0)
    f = fan[fan["design"] == d]
    np.testing.assert_allclose(f["step"].to_numpy(), steps)
    np.testing.assert_allclose(f["median"].to_numpy(), want)
    assert (fan["q05"] <= fan["median"] + 1e-9).all() and (fan["median"] <= fan["q95"] + 1e-9).all()
    # the thin path is the run's series, sampled (checked on the kept run)
    s = batch.series
    kept = s[(s["design"] == d) & (s["cell_id"] == cell) & (s["run_index"] == 0)].set_index("step")
    row = g[(g["cell_id"] == cell) & (g["run_index"] == 0)].iloc[0]
    st = read_path(row["path_step"]).astype(int)
    assert len(st) <= 200 and st[0] == kept.index.min() and st[-1] == kept.index.max()
    np.testing.assert_allclose(read_path(row["path_insurance_fund"]), kept.loc[st, "insurance_fund"], atol=0.006)

    # design colours are the same as everywhere else
    colors = plots.design_colors(batch.designs)
    ax = next(a for a in fig.axes if a.get_title() == "Socialized loss" and a.get_ylabel() == "P(X > x)")
    for line in ax.get_lines():
        d = line.get_label().split(" (")[0]
        if d in colors:
            assert mcolors.to_hex(line.get_color()) == colors[d].lower()


def test_compare_zero_metrics_are_a_line_of_text(batch):
    res = batch.results
    zero = plots.zero_metrics(res, list(plots.COMPARE_METRICS))
    assert zero == {m: len(res) for m in plots.COMPARE_METRICS if not (res[m].astype(float) != 0).any()}
    _, data = plots.plot_compare(batch, metrics=["deficit_total", "covered_backstop"])
    assert data["zero"].set_index("metric")["n_runs"].to_dict() == {"covered_backstop": len(res)}
    fig, _ = plots.plot_compare(batch, metrics=["deficit_total", "covered_backstop"])
    titles = [a.get_title() for a in fig.axes]
    assert not any("covered backstop" in t for t in titles)
    texts = [t.get_text() for sf in fig.subfigs for t in ([sf._suptitle] if sf._suptitle else [])]
    assert any(f"covered backstop: 0 in all {len(res)} runs" in t for t in texts)


def test_compare_backstop_design_fan_shows_the_vault(batch):
    from simulator.figures.compare import fan_series

    assert fan_series(batch, "fund_then_adl") == "insurance_fund"
    vault = plots.BatchFolder(batch.path)
    vault.__dict__.update(cells={}, scenario={"venue": {"insurance_fund": 0, "waterfall": []}, "designs": [
        {"name": "vault", "waterfall": [{"stage": "book"}, {"stage": "backstop"}, {"stage": "adl"}]}]})
    assert fan_series(vault, "vault") == "backstop_equity"


def test_thin_paths_of_a_run():
    from simulator.experiments.paths import read_path, thin_paths

    ts = pd.DataFrame({"step": np.arange(1000), "insurance_fund": np.linspace(0, 999, 1000),
                       "backstop_equity": np.full(1000, 5.0)})
    out = thin_paths(ts)
    steps = read_path(out["path_step"])
    assert len(steps) == 200 and steps[0] == 0 and steps[-1] == 999
    np.testing.assert_allclose(read_path(out["path_insurance_fund"]), steps)
    assert out["backstop_equity_end"] == 5.0
    assert len(read_path(thin_paths(ts.head(50))["path_step"])) == 50


def test_compare_one_cell_fan_in_usd(batch):
    cell = list(batch.cells)[-1]
    fig, data = plots.plot_compare(batch, cell=cell)
    assert set(data["runs"]["cell_id"]) == {cell}
    fan = data["fund_fan"]
    assert fan.attrs["relative"] is False
    assert fan["n_paths"].max() == N_RUNS
    with pytest.raises(ValueError, match="no sweep cell"):
        plots.plot_compare(batch, cell="nope")


def test_compare_needs_a_batch(run_folder):
    with pytest.raises(ValueError, match="needs a batch folder"):
        plots.plot_compare(run_folder)


def test_exceedance_and_lorenz_helpers():
    e = plots.exceedance([0, 0, 5, 10, np.nan])
    assert e["x"].tolist() == [0, 5, 10] and e["p_exceed"].tolist() == [0.5, 0.25, 0.0]
    assert plots.exceedance([2.0, 4.0])["x"].tolist() == [0, 2, 4]
    lc = plots.lorenz([0, 0, 0, 4])
    assert lc["share_amount"].tolist() == [0, 0, 0, 0, 1]
    assert lc.attrs["gini"] == pytest.approx(0.75)
    assert plots.lorenz([1, 1]).attrs["gini"] == 0


# ========================================================================= who pays
def test_who_pays_bars_are_the_summary_columns(batch, tmp_path):
    fig, data = plots.plot_who_pays(batch)
    check_png(fig, tmp_path / "who.png")
    split = data["split"].set_index("design")
    res = batch.results
    cols = list(plots.SPLIT_COLUMNS)
    want = res.groupby("design")[cols + ["deficit_total"]].mean()
    for d in batch.designs:
        for c in cols + ["deficit_total"]:
            assert split.loc[d, c] == pytest.approx(want.loc[d, c], rel=1e-12, abs=1e-12)
        # the bar's height is what the stages covered, i.e. the deficit
        assert split.loc[d, cols].sum() == pytest.approx(want.loc[d, "deficit_total"], rel=1e-9)
    assert split.loc["fund_then_adl", "covered_socialize"] == 0
    assert split.loc["fund_then_socialize", "covered_socialize"] > 0

    # every cover is in the split, pending settlement included
    assert {"covered_backstop", "socialize_pending", "venue_loss"} <= set(cols)
    # ADL notional by why it fired: the summary's adl_notional_<reason> means, adding up to adl_notional
    reasons = data["reasons"].set_index("design")
    rcols = list(plots.REASON_COLUMNS)
    want = res.groupby("design")[rcols + ["adl_notional"]].mean()
    for d in batch.designs:
        for c in rcols:
            assert reasons.loc[d, c] == pytest.approx(want.loc[d, c], rel=1e-12, abs=1e-9)
        assert reasons.loc[d, rcols].sum() == pytest.approx(want.loc[d, "adl_notional"], rel=1e-9, abs=1e-6)
    assert reasons["adl_notional"].sum() > 0

    # the Lorenz curves are the replayed worst path (the timelines' path); the replay reproduces
    # the stored run exactly
    stats = data["lorenz_stats"]
    assert len(stats) and stats["run_index"].nunique() == 1 and stats["cell_id"].nunique() == 1
    cell, run_index = stats["cell_id"].iloc[0], int(stats["run_index"].iloc[0])
    assert (cell, run_index) == plots.worst_path(batch)
    for r in stats.itertuples(index=False):
        row = res[(res["design"] == r.design) & (res["cell_id"] == cell) & (res["run_index"] == run_index)].iloc[0]
        if r.kind == "adl":  # the haircut actually lost, and the profit realised early beside it
            assert r.total_usd == pytest.approx(row["adl_haircut"], rel=1e-9)
            assert r.profit_realised_usd == pytest.approx(row["adl_profit_taken"], rel=1e-9)
        else:
            assert r.total_usd == pytest.approx(row["socialized_total"], rel=1e-9)
            assert r.n_accounts == row["socialized_accounts"]
            assert r.top10_share <= 1
    assert set(stats["kind"]) and set(stats["kind"]) <= {"adl", "socialize"}
    for ax in fig.axes[2:]:
        assert ax.get_ylabel() == "cumulative share of the total (%)"
    assert "not a loss" in fig._supxlabel.get_text()
    lor = data["lorenz"]
    for _, g in lor.groupby(["design", "kind"]):
        assert g["share_amount"].iloc[0] == 0 and g["share_amount"].iloc[-1] == pytest.approx(1)
        assert g["share_amount"].is_monotonic_increasing and g["share_accounts"].is_monotonic_increasing


def test_who_pays_of_a_run_uses_its_events(run_folder, tmp_path):
    fig, data = plots.plot_who_pays(run_folder, figsize=(12, 5), dpi=80)
    check_png(fig, tmp_path / "who_run.png")
    assert expected_pixels(fig) == (960, 400)
    s = run_folder.summary
    split = data["split"].iloc[0]
    for c in plots.SPLIT_COLUMNS:
        assert split[c] == pytest.approx(s[c])
    assert split[list(plots.SPLIT_COLUMNS)].sum() == pytest.approx(s["deficit_total"], rel=1e-9)
    st = data["lorenz_stats"].set_index("kind").loc["adl"]
    assert st["total_usd"] == pytest.approx(s["adl_haircut"], rel=1e-9)
    assert st["profit_realised_usd"] == pytest.approx(s["adl_profit_taken"], rel=1e-9)
    assert data["reasons"].iloc[0]["adl_notional_fund_empty"] == pytest.approx(s["adl_notional_fund_empty"])


def test_who_pays_one_cell_without_replay(batch):
    cell = list(batch.cells)[0]
    _, data = plots.plot_who_pays(batch, cell=cell, replay_worst=False)
    res = batch.results[batch.results["cell_id"] == cell]
    want = res.groupby("design")["covered_adl"].mean()
    got = data["split"].set_index("design")["covered_adl"]
    np.testing.assert_allclose(got.loc[want.index], want)
    assert data["lorenz"].empty


# ============================================================================ sweep
def test_sweep_heatmap_is_the_groupby_mean(batch, tmp_path):
    fig, table = plots.plot_sweep(batch)
    check_png(fig, tmp_path / "sweep.png")
    res = batch.results.copy()
    x, y = "cell.venue.insurance_fund", "cell.shocks.0.move"
    res["soc"] = (res["socialized_total"] > 0).astype(float)
    want = res.groupby(["design", x, y])["soc"].mean()
    assert len(table) == len(want) == 3 * 4
    for r in table.itertuples(index=False):
        d, xv, yv, v = r[0], r[1], r[2], r.value
        assert v == pytest.approx(want.loc[(d, xv, yv)])
    assert table["n"].eq(N_RUNS).all()
    assert table.attrs["x"] == "venue.insurance_fund" and table.attrs["y"] == "shocks.0.move"
    assert table["value"].max() > 0  # something socializes somewhere
    # one panel per design with the design's name, plus one shared colour bar; the design that
    # sets its own fund is marked, not silently identical
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split("\n")[0] for t in titles] == batch.designs
    assert table.attrs["overridden"] == {"fund_then_socialize": ["venue.insurance_fund"]}
    assert "fixed at \\$0 by the design" in titles[2] and "\n" not in titles[0]
    # readable axes: units and formatted values, and a title that fits the figure
    ax = fig.axes[0]
    assert ax.get_xlabel() == "insurance fund (USD)" and ax.get_ylabel() == "shock 1: move (%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["\\$0", "\\$100k"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["-8 %", "-4 %"]
    fig.canvas.draw()
    bb = fig._suptitle.get_window_extent()
    assert bb.x0 >= 0 and bb.x1 <= fig.bbox.width

    _, t2 = plots.plot_sweep(batch, "deficit_total", x="shocks.0.move", y="venue.insurance_fund")
    want2 = res.groupby(["design", y, x])["deficit_total"].mean()
    for r in t2.itertuples(index=False):
        assert r.value == pytest.approx(want2.loc[(r[0], r[1], r[2])])


def test_sweep_errors(batch, run_folder):
    with pytest.raises(ValueError, match="not in the results"):
        plots.plot_sweep(batch, "no_such_metric")
    with pytest.raises(ValueError, match="not a swept parameter"):
        plots.plot_sweep(batch, x="venue.max_rounds")
    with pytest.raises(ValueError, match="needs a batch folder"):
        plots.plot_sweep(run_folder)


# ============================================================================ output
def test_svg_on_request(run_folder, tmp_path):
    fig, _ = plots.plot_who_pays(run_folder)
    out = plots.save_figure(fig, tmp_path / "who", format="svg")
    assert out.name == "who.svg"
    text = out.read_text()
    assert "<svg" in text[:2000] and "</svg>" in text[-100:]
    assert 'width="1080pt"' in text[:2000]  # 15 in x 72 pt


def test_plot_all_and_cli(folders, tmp_path):
    from simulator.cli import build_parser, main

    out = tmp_path / "plots"
    assert main(["plot", str(folders["run"]), "--kind", "who-pays", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["who_pays.png"]
    assert main(["plot", str(folders["batch"]), "--kind", "sweep", "--metric", "p_adl", "--format", "svg",
                 "--out", str(out)]) == 0
    assert (out / "sweep_p_adl.svg").exists()
    assert main(["plot", str(folders["run"]), "--kind", "compare", "--out", str(out)]) == 2
    assert main(["plot", str(tmp_path / "nothing-here")]) == 2
    args = build_parser().parse_args(["plot", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="not a results folder"):
        args.func(args)
    # what "all" draws for each kind of folder (the batch's figures are drawn in test_report.py)
    assert [stem for stem, _ in plots._figures(plots.open_folder(folders["run"]), ["all"], None)] == [
        "timeline", "who_pays"]
    stems = [stem for stem, _ in plots._figures(plots.open_folder(folders["batch"]), ["all"], None)]
    assert stems == [f"timeline_{d}" for d in plots.open_folder(folders["batch"]).designs] + [
        "compare", "who_pays", "sweep"]
