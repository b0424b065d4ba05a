"""Compare waterfall designs across Monte Carlo runs (DESIGN.md §6, "Across Monte Carlo runs").

``compare(results)`` gives, per sweep cell x design x metric, the distribution of the metric
(mean, median, p95, p99, CVaR95, n) and, for every design but the baseline, the paired
difference *design minus baseline* on the same run indices (common random numbers) with a
percentile-bootstrap 95 % confidence interval. ``probabilities(results)`` gives, per cell x
design, the probability of ADL, of socialization and of insurance-fund depletion. Only rows
with ``status == "ok"`` count.

The statistics themselves (``describe``, ``cvar``, ``paired_bootstrap_ci``) live in
``simulator.world.metrics``: percentiles use numpy's default linear interpolation, CVaR95 is the
mean of the worst (largest) 5 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.experiments.batch.store import (
    CELL_PREFIX,
    MANIFEST,
    RESERVED_COLUMNS,
    _atomic_write_bytes,
    load_manifest,
    load_results,
)
from simulator.world.metrics import describe, paired_bootstrap_ci

__all__ = ["compare", "probabilities", "format_table", "format_value", "metric_unit", "display_compare",
           "display_probabilities", "write_compare", "metric_columns", "LEVEL"]

#: Confidence level of the bootstrap intervals.
LEVEL = 0.95
STAT_COLUMNS = ("n", "mean", "median", "p95", "p99", "cvar95")
DIFF_COLUMNS = ("baseline", "n_pairs", "diff_mean", "diff_low", "diff_high")
#: probability column -> (metric, event test on the metric's float value)
PROBABILITIES = {
    "p_adl": ("adl_notional", lambda v: v > 0),
    "p_socialization": ("socialized_total", lambda v: v > 0),
    "p_fund_depletion": ("fund_depleted", lambda v: v != 0),
}


# ---------------------------------------------------------------------- helpers
def _as_float(col: pd.Series) -> np.ndarray:
    """Float values of a metric column (bools as 0/1, None and non-numbers as NaN)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    conv = col.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v)
    return pd.to_numeric(conv, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _is_numeric_like(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return True
    if col.dtype != object:
        return False
    vals = col.dropna()
    return len(vals) > 0 and all(isinstance(v, (bool, int, float, np.bool_, np.number)) for v in vals)


def _ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("cell_id", "design", "run_index") if c not in results.columns]
    if missing:
        raise ValueError(f"results need the columns cell_id, design, run_index; missing {missing}")
    if "status" in results.columns:
        results = results[results["status"] == "ok"]
    return results


def metric_columns(results: pd.DataFrame) -> list[str]:
    """The metric columns of a results frame: numeric or boolean, not the batch's own columns."""
    return [
        c
        for c in results.columns
        if c not in RESERVED_COLUMNS and not str(c).startswith(CELL_PREFIX) and _is_numeric_like(results[c])
    ]


def _cell_params(ok: pd.DataFrame) -> dict[str, dict[str, Any]]:
    cols = [c for c in ok.columns if str(c).startswith(CELL_PREFIX)]
    first = ok.drop_duplicates("cell_id")
    return {r["cell_id"]: {c: r[c] for c in cols} for _, r in first.iterrows()}


def _paired(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    a = pd.Series(_as_float(base[metric]), index=base["run_index"].to_numpy())
    b = pd.Series(_as_float(other[metric]), index=other["run_index"].to_numpy())
    common = a.index.intersection(b.index).sort_values()
    return a.loc[common].to_numpy(), b.loc[common].to_numpy()


# ---------------------------------------------------------------------- compare
def compare(
    results: pd.DataFrame,
    baseline: str | None = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Distribution of each metric per cell x design, and paired differences to a baseline.

    Args:
        results: run rows (``load_results``); only ``status == "ok"`` rows count.
        baseline: the design the others are compared to (default: the first design in
            ``results``' row order).
        metrics: metric columns (default: every numeric or boolean metric column).
        n_boot: bootstrap replicates.
        seed: each paired comparison resamples with a fresh ``np.random.default_rng(seed)``, so
            an interval does not depend on which other metrics or cells were compared.

    Returns:
        one row per cell x metric x design (baseline first): ``cell_id``, the ``cell.*``
        parameters, ``design, metric, n, mean, median, p95, p99, cvar95, baseline, n_pairs,
        diff_mean, diff_low, diff_high``. The ``diff_*`` columns are *design minus baseline*,
        paired on ``run_index`` within the cell (pairs with a NaN dropped), NaN on the
        baseline's own rows.
    """
    ok = _ok_rows(results)
    designs = list(dict.fromkeys(ok["design"]))
    if baseline is None:
        baseline = designs[0] if designs else None
    elif designs and baseline not in designs:
        raise ValueError(f"baseline design {baseline!r} has no ok runs; designs: {designs}")
    if metrics is None:
        metrics = metric_columns(ok)
    else:
        metrics = list(metrics)
        absent = [m for m in metrics if m not in ok.columns]
        if absent:
            raise ValueError(f"metrics not in the results: {absent}; available: {metric_columns(ok)}")
    params = _cell_params(ok)
    param_cols = list(next(iter(params.values()), {}).keys())
    order = ([baseline] if baseline is not None else []) + [d for d in designs if d != baseline]

    rows = []
    for cell_id, cell in ok.groupby("cell_id", sort=False):
        by_design = {d: g for d, g in cell.groupby("design", sort=False)}
        for d, g in by_design.items():
            if g["run_index"].duplicated().any():
                raise ValueError(f"cell {cell_id!r}, design {d!r}: run_index values repeat; cannot pair runs")
        base = by_design.get(baseline)
        for metric in metrics:
            for d in order:
                g = by_design.get(d)
                if g is None:
                    continue
                row: dict[str, Any] = {"cell_id": cell_id, **params[cell_id], "design": d, "metric": metric}
                row.update(describe(_as_float(g[metric])))
                row.update({"baseline": baseline, "n_pairs": 0, "diff_mean": np.nan, "diff_low": np.nan, "diff_high": np.nan})
                if d != baseline and base is not None:
                    a, b = _paired(base, g, metric)
                    keep = ~(np.isnan(a) | np.isnan(b))
                    row["n_pairs"] = int(keep.sum())
                    mean, low, high = paired_bootstrap_ci(
                        a, b, n_boot=n_boot, level=LEVEL, rng=np.random.default_rng(seed)
                    )
                    row.update(diff_mean=mean, diff_low=low, diff_high=high)
                elif d == baseline:
                    row["n_pairs"] = np.nan
                rows.append(row)
    columns = ["cell_id", *param_cols, "design", "metric", *STAT_COLUMNS, *DIFF_COLUMNS]
    out = pd.DataFrame(rows, columns=columns)
    out["n"] = out["n"].astype("int64")
    out["n_pairs"] = out["n_pairs"].astype("Int64")  # <NA> on the baseline's rows
    return out


def probabilities(results: pd.DataFrame) -> pd.DataFrame:
    """Per cell x design: ``n`` ok runs and the probability of ADL (``adl_notional > 0``), of
    socialization (``socialized_total > 0``) and of fund depletion (``fund_depleted``).

    A probability whose metric is absent from ``results`` is left out; runs where the metric
    is NaN do not count toward it.
    """
    ok = _ok_rows(results)
    params = _cell_params(ok)
    param_cols = list(next(iter(params.values()), {}).keys())
    present = {name: spec for name, spec in PROBABILITIES.items() if spec[0] in ok.columns}
    rows = []
    for (cell_id, design), g in ok.groupby(["cell_id", "design"], sort=False):
        row: dict[str, Any] = {"cell_id": cell_id, **params[cell_id], "design": design, "n": int(len(g))}
        for name, (metric, event) in present.items():
            v = _as_float(g[metric])
            v = v[~np.isnan(v)]
            row[name] = float(np.mean(event(v))) if len(v) else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["cell_id", *param_cols, "design", "n", *present])


# ---------------------------------------------------------------------- output
def _fmt_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if np.isnan(v):
            return ""
        if v.is_integer() and abs(v) < 1e15:
            return f"{v:,.0f}" if abs(v) >= 1e6 else str(int(v))
        if 1e6 <= abs(v) < 1e15:
            return f"{v:,.0f}"
        return f"{v:.6g}"
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    return str(v)


_MONEY_WORDS = (
    "notional", "deficit", "covered_", "venue_loss", "surplus", "fund_start", "fund_min", "fund_end",
    "fund_drawdown", "fund_paid", "fund_received", "adl_pnl_taken", "adl_profit_taken", "adl_haircut",
    "adl_shortfall", "adl_overshoot", "adl_paid_beyond", "socialized_total", "socialize_pending", "backstop_",
    "engine_equity", "withdrawn", "withdrawal_haircut", "socialized_outstanding",
)
_FRACTIONS = ("overshoot", "max_drawdown", "adl_share_winners_hit", "socialized_share_zero_position",
              "fund_depleted", "adl_triggered", "socialization_triggered", "venue_loss_occurred")
_PRICES = ("index_min", "last_min", "mark_min")


def metric_unit(metric: str) -> str:
    """The unit a metric is printed in: ``USD``, ``%`` (fractions and probabilities, printed
    x 100), ``price`` (quote per unit), ``%`` for ``*_pct`` (already x 100), or ``""``."""
    m = str(metric)
    if m in _PRICES:
        return "price"
    if m.endswith("_pct") or m in _FRACTIONS or m.startswith("p_") or "_share" in m:
        return "%"
    if any(w in m for w in _MONEY_WORDS):
        return "USD"
    return ""


def format_value(metric: str, v: Any, signed: bool = False) -> str:
    """One number of ``metric`` in its unit, the same way everywhere in the printed tables:
    USD in whole dollars with separators ("$1,234,567", "-$3,000"; cents under $1), fractions
    as % with two decimals (differences in percentage points, "pp"), every other number with
    two decimals and separators. NaN is empty."""
    if v is None or isinstance(v, str):
        return "" if v is None else v
    if isinstance(v, (bool, np.bool_)):
        v = float(v)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if np.isnan(v):
        return ""
    plus = "+" if signed and v > 0 else ""
    unit = metric_unit(metric)
    if unit == "USD":
        a = abs(v)
        body = "$0" if a == 0 else (f"${a:,.2f}" if a < 1 else f"${a:,.0f}")
        return ("-" if v < 0 else plus) + body
    if unit == "%":
        v = v if str(metric).endswith("_pct") else v * 100
    if round(v, 2) == 0:
        v, plus = 0.0, ""  # no "-0.00"
    text = f"{plus}{v:,.2f}"
    return f"{text} {'pp' if signed else '%'}" if unit == "%" else text


def display_compare(df: pd.DataFrame) -> pd.DataFrame:
    """A ``compare`` frame as printed: a ``unit`` column after ``metric`` and every statistic
    and difference as text in the metric's unit (``format_value``)."""
    out = df.copy()
    stats = [c for c in ("mean", "median", "p95", "p99", "cvar95") if c in out.columns]
    diffs = [c for c in ("diff_mean", "diff_low", "diff_high") if c in out.columns]
    for c in stats + diffs:
        out[c] = [format_value(m, v, signed=c in diffs) for m, v in zip(df["metric"], df[c])]
    if "n_pairs" in out.columns:
        out["n_pairs"] = ["" if pd.isna(v) else str(int(v)) for v in df["n_pairs"]]
    out.insert(list(out.columns).index("metric") + 1, "unit", [metric_unit(m) for m in df["metric"]])
    out.attrs["right"] = set(stats + diffs + ["n_pairs"])
    return out


def display_probabilities(df: pd.DataFrame) -> pd.DataFrame:
    """A ``probabilities`` frame as printed: each probability in % (no decimals)."""
    out = df.copy()
    for c in [c for c in df.columns if str(c).startswith("p_")]:
        out[c] = ["" if pd.isna(v) else f"{float(v) * 100:.0f} %" for v in df[c]]
    out.attrs["right"] = {c for c in df.columns if str(c).startswith("p_")}
    return out


def format_table(df: pd.DataFrame, max_rows: int | None = None, max_width: int = 40) -> str:
    """A fixed-width text table of ``df`` (numbers right-aligned, text left-aligned).

    A ``compare`` frame (columns ``metric`` and ``mean``) or a ``probabilities`` frame (``p_*``
    columns) is printed in units first (``display_compare``, ``display_probabilities``: one
    number format per unit). NaN shows as an empty cell; text longer than ``max_width`` is cut
    with ``...``; ``max_rows`` keeps the first rows and says how many were left out.
    """
    if df is None or len(df.columns) == 0:
        return "(no rows)"
    if "metric" in df.columns and "mean" in df.columns and pd.api.types.is_numeric_dtype(df["mean"]):
        df = display_compare(df)
    elif any(str(c).startswith("p_") for c in df.columns) and "metric" not in df.columns:
        df = display_probabilities(df)
    right = df.attrs.get("right", set())
    shown = df if max_rows is None else df.head(max_rows)
    cols = [str(c) for c in df.columns]
    cells = [[_fmt_cell(v) for v in row] for row in shown.itertuples(index=False, name=None)]
    cells = [[s if len(s) <= max_width else s[: max_width - 3] + "..." for s in row] for row in cells]
    numeric = [
        (pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])) or c in right
        for c in df.columns
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(cols)]

    def line(items):
        return "  ".join(s.rjust(w) if num else s.ljust(w) for s, w, num in zip(items, widths, numeric)).rstrip()

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    if not cells:
        out.append("(no rows)")
    if max_rows is not None and len(df) > max_rows:
        out.append(f"... {len(df) - max_rows} more rows")
    return "\n".join(out)


def write_compare(
    out_dir: str | Path,
    baseline: str | None = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare a batch folder's results and write ``compare.csv`` and ``probabilities.csv`` into it.

    The default baseline is the first design of the batch's manifest (the scenario's first
    design). Returns ``(compare_frame, probabilities_frame)``.
    """
    out_dir = Path(out_dir)
    results = load_results(out_dir)
    if baseline is None and (out_dir / MANIFEST).exists():
        ok_designs = set(results.loc[results["status"] == "ok", "design"]) if len(results) else set()
        for d in load_manifest(out_dir).get("designs", []):
            if d in ok_designs:
                baseline = d
                break
    cmp = compare(results, baseline=baseline, metrics=metrics, n_boot=n_boot, seed=seed)
    prob = probabilities(results)
    _atomic_write_bytes(out_dir / "compare.csv", cmp.to_csv(index=False).encode())
    _atomic_write_bytes(out_dir / "probabilities.csv", prob.to_csv(index=False).encode())
    return cmp, prob
