"""Design comparison: distribution statistics, paired bootstrap differences, probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.experiments.batch import expand_grid, plan_tasks, run_batch
from simulator.experiments.compare import compare, format_table, probabilities, write_compare


def _frame(a_values, b_values, cell_id="base", extra=None):
    """Hand-made results: designs A and B, run_index 0..n-1, metric ``loss``."""
    n = len(a_values)
    rows = []
    for design, values in (("A", a_values), ("B", b_values)):
        for i, v in enumerate(values):
            row = {"run_index": i, "design": design, "cell_id": cell_id, "status": "ok", "error": None, "loss": v}
            if extra:
                row.update({k: f(design, i) for k, f in extra.items()})
            rows.append(row)
    assert len(rows) == 2 * n
    return pd.DataFrame(rows)


def _row(df, design, metric="loss", cell_id="base"):
    sel = df[(df.design == design) & (df.metric == metric) & (df.cell_id == cell_id)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_statistics_and_constant_paired_difference():
    a = np.arange(1, 101, dtype=float)  # 1..100
    df = _frame(a, a + 2)
    out = compare(df, n_boot=500)
    ra, rb = _row(out, "A"), _row(out, "B")
    # worked by hand: mean and median 50.5; p95 = 95 + 0.05 * (96 - 95) = 95.05 (linear);
    # p99 = 99.01; CVaR95 = mean of the worst 5 values 96..100 = 98
    assert ra["n"] == 100
    assert ra["mean"] == pytest.approx(50.5) and ra["median"] == pytest.approx(50.5)
    assert ra["p95"] == pytest.approx(95.05) and ra["p99"] == pytest.approx(99.01)
    assert ra["cvar95"] == pytest.approx(98.0)
    assert rb["mean"] == pytest.approx(52.5) and rb["p95"] == pytest.approx(97.05) and rb["cvar95"] == pytest.approx(100.0)
    # B = A + 2 on every path: every bootstrap mean is 2
    assert rb["baseline"] == "A" and rb["n_pairs"] == 100
    assert (rb["diff_mean"], rb["diff_low"], rb["diff_high"]) == pytest.approx((2.0, 2.0, 2.0))
    # the baseline's own row has no difference
    assert np.isnan(ra["diff_mean"]) and ra["baseline"] == "A"
    # baseline first, then the other designs
    assert out["design"].tolist() == ["A", "B"]


def test_pairs_on_run_index_not_row_order():
    a = np.arange(1, 21, dtype=float)
    df = _frame(a, a - 1.5)
    shuffled = df.sample(frac=1.0, random_state=3)  # B rows in another order than A rows
    out = compare(shuffled, baseline="A", n_boot=200)
    rb = _row(out, "B")
    assert (rb["diff_mean"], rb["diff_low"], rb["diff_high"]) == pytest.approx((-1.5, -1.5, -1.5))
    # other direction: A minus B
    ra = _row(compare(df, baseline="B", n_boot=200), "A")
    assert ra["diff_mean"] == pytest.approx(1.5) and ra["baseline"] == "B"


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    d = np.tile([0.0, 1.0], 50)  # differences 0, 1, 0, 1, ...: mean 0.5
    a = np.arange(100, dtype=float)
    df = _frame(a, a + d)
    r1 = _row(compare(df, n_boot=1000, seed=7), "B")
    r2 = _row(compare(df, n_boot=1000, seed=7), "B")
    assert r1["diff_mean"] == pytest.approx(0.5)
    assert r1["diff_low"] < 0.5 < r1["diff_high"]
    # standard error of the mean of 100 values with sd 0.5 is 0.05: interval about +-0.1
    assert 0.35 < r1["diff_low"] and r1["diff_high"] < 0.65
    assert (r1["diff_low"], r1["diff_high"]) == (r2["diff_low"], r2["diff_high"])


def test_only_ok_rows_and_missing_pairs():
    a = np.arange(1, 11, dtype=float)
    df = _frame(a, a + 1)
    # a failed run of B for run 3 (no metric) and an unmatched extra A run
    df.loc[(df.design == "B") & (df.run_index == 3), ["status", "error", "loss"]] = ["failed", "boom", np.nan]
    df = pd.concat(
        [df, pd.DataFrame([{"run_index": 10, "design": "A", "cell_id": "base", "status": "ok", "loss": 1000.0}])],
        ignore_index=True,
    )
    out = compare(df, n_boot=100)
    ra, rb = _row(out, "A"), _row(out, "B")
    assert ra["n"] == 11 and rb["n"] == 9
    assert rb["n_pairs"] == 9 and rb["diff_mean"] == pytest.approx(1.0)
    assert rb["mean"] == pytest.approx((a.sum() + 10 - 5) / 9)


def test_per_cell_and_default_metrics():
    extra = {"count": lambda d, i: i, "fund_depleted": lambda d, i: i % 4 == 0, "note": lambda d, i: "x"}
    a = np.arange(1, 9, dtype=float)
    df = pd.concat([_frame(a, a + 1, "s=1", extra), _frame(a, 2 * a, "s=2", extra)], ignore_index=True)
    df["cell.s"] = df["cell_id"].str[2:].astype(int)
    out = compare(df, n_boot=100)
    assert set(out["metric"]) == {"loss", "count", "fund_depleted"}  # not run_index, cell.s or the text column
    assert list(out.columns[:4]) == ["cell_id", "cell.s", "design", "metric"]
    assert _row(out, "B", cell_id="s=1")["diff_mean"] == pytest.approx(1.0)
    assert _row(out, "B", cell_id="s=2")["diff_mean"] == pytest.approx(a.mean())
    assert _row(out, "A", "fund_depleted", "s=1")["mean"] == pytest.approx(0.25)
    only = compare(df, metrics=["count"], n_boot=10)
    assert set(only["metric"]) == {"count"} and len(only) == 4
    with pytest.raises(ValueError, match="not in the results"):
        compare(df, metrics=["nope"])
    with pytest.raises(ValueError, match="baseline"):
        compare(df, baseline="C")


def test_probabilities():
    df = pd.DataFrame(
        {
            "run_index": [0, 1, 2, 3, 0, 1, 2, 3],
            "design": ["A"] * 4 + ["B"] * 4,
            "cell_id": ["base"] * 8,
            "status": ["ok"] * 7 + ["failed"],
            "adl_notional": [0.0, 0.0, 5.0, 0.0, 1.0, 2.0, 0.0, np.nan],
            "fund_depleted": [True, False, False, False, True, True, False, None],
        }
    )
    p = probabilities(df)
    assert list(p.columns) == ["cell_id", "design", "n", "p_adl", "p_fund_depletion"]  # no socialized_total
    a, b = p.iloc[0], p.iloc[1]
    assert (a["design"], a["n"], a["p_adl"], a["p_fund_depletion"]) == ("A", 4, 0.25, 0.25)
    assert (b["design"], b["n"], b["p_adl"], b["p_fund_depletion"]) == ("B", 3, pytest.approx(2 / 3), pytest.approx(2 / 3))
    df["socialized_total"] = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert probabilities(df)["p_socialization"].tolist() == [0.25, 0.0]


def test_format_table():
    df = pd.DataFrame({"design": ["A", "longer_name"], "metric": ["loss", "loss"], "p95": [95.05, np.nan], "n": [100, 7]})
    text = format_table(df)
    lines = text.splitlines()
    assert lines[0].split() == ["design", "metric", "p95", "n"]
    assert set(lines[1]) <= {"-", " "}
    assert "95.05" in lines[2] and lines[2].startswith("A ")
    # numbers right-aligned: the n column ends at the same place on every line
    assert lines[2].endswith("100") and lines[3].endswith("  7")
    assert len(lines[0]) == len(lines[2]) == len(lines[3])
    assert "more rows" in format_table(df, max_rows=1)


# ------------------------------------------------------------------ on a batch folder
def toy_run(scenario, task):
    from simulator.experiments.batch import task_seed_sequence

    rng = np.random.default_rng(task_seed_sequence(task))
    x = float(rng.normal())
    shift = {"base": 0.0, "big_fund": -1.0}[task.design]
    return {"loss": x + shift + task.cell["shock"], "adl_notional": max(0.0, x + shift), "fund_depleted": x > 1}


def test_write_compare_on_a_batch(tmp_path):
    tasks = plan_tasks(20, ["base", "big_fund"], expand_grid({"shock": [0.0, 1.0]}), seed=5)
    run_batch({"name": "toy"}, toy_run, tasks, tmp_path, executor="serial", progress=False)
    cmp, prob = write_compare(tmp_path, n_boot=200)
    assert (tmp_path / "compare.csv").exists() and (tmp_path / "probabilities.csv").exists()
    assert pd.read_csv(tmp_path / "compare.csv").shape == cmp.shape
    assert set(cmp["baseline"]) == {"base"}  # the manifest's first design
    loss = cmp[(cmp.metric == "loss") & (cmp.design == "big_fund")]
    assert loss["diff_mean"].tolist() == pytest.approx([-1.0, -1.0])  # common random numbers: exact
    assert loss["diff_low"].tolist() == pytest.approx([-1.0, -1.0])
    assert len(prob) == 4 and "p_adl" in prob.columns
    assert "diff_mean" in format_table(cmp)


def test_printed_compare_has_units_and_one_number_format():
    from simulator.experiments.compare import format_table, format_value, metric_unit

    df = pd.DataFrame({
        "cell_id": "base", "design": ["a", "b", "a", "b", "a", "b"],
        "metric": ["deficit_total", "deficit_total", "overshoot", "overshoot", "max_cascade_depth", "max_cascade_depth"],
        "n": 3, "mean": [300000.0, 0.4, 0.0094, 0.0095, 2.0, 2.25], "median": 1.0, "p95": 1.0, "p99": 1.0,
        "cvar95": 1.0, "baseline": "a", "n_pairs": pd.array([pd.NA, 3, pd.NA, 3, pd.NA, 3], dtype="Int64"),
        "diff_mean": [np.nan, -299999.6, np.nan, 6.41e-06, np.nan, 0.25],
        "diff_low": [np.nan, -3e5, np.nan, -0.000196, np.nan, 0.0], "diff_high": [np.nan, -1.0, np.nan, 0.000212, np.nan, 0.5],
    })
    text = format_table(df)
    assert "unit" in text.splitlines()[0]
    assert "e-0" not in text and "e+0" not in text
    assert "$300,000" in text and "$0.40" in text and "-$299,999.60" not in text and "-$300,000" in text
    assert "0.94 %" in text and "0.00 pp" in text and "-0.00" not in text
    assert "2.00" in text and "2.25" in text and "+0.25" in text
    assert metric_unit("covered_adl") == "USD" and metric_unit("p_adl") == "%" and metric_unit("max_cascade_depth") == ""
    assert format_value("venue_loss", -3000) == "-$3,000" and format_value("venue_loss", 0) == "$0"
    probs = pd.DataFrame({"cell_id": ["base"], "design": ["a"], "n": [3], "p_adl": [0.5]})
    assert "50 %" in format_table(probs)
