"""``plot_compare``: designs across a batch (box plots with every run, paired differences to the
baseline, exceedance curves, a fan chart of the insurance fund or the backstop vault).
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from simulator.figures._io import BatchFolder, _cell_text, _float, _need_batch, _shock_windows
from simulator.figures.style import DEFAULT_DPI, USD_FORMATTER, _new_figure, _shade, _usd, design_colors


#: Headline metrics of the comparison figure: column -> (title, unit).
COMPARE_METRICS = {
    "liquidation_notional": ("Liquidated notional", "USD"),
    "max_cascade_depth": ("Max cascade depth", "rounds in one step"),
    "deficit_total": ("Bad debt (deficit)", "USD"),
    "fund_drawdown": ("Insurance fund drawdown", "USD"),
    "adl_notional": ("ADL notional", "USD"),
    "adl_overshoot": ("ADL overshoot (profit taken beyond shortfall)", "USD"),
    "socialized_total": ("Socialized loss", "USD"),
    "venue_loss": ("Venue's own loss", "USD"),
}
#: Exceedance curves of the comparison figure: column -> title.
EXCEEDANCE_METRICS = {
    "deficit_total": "Bad debt (deficit)",
    "venue_loss": "Venue's own loss",
    "adl_notional": "ADL notional",
    "socialized_total": "Socialized loss",
}


_PATHS_QUANTILES = (0.05, 0.25, 0.75, 0.95)


# =========================================================================== compare
def exceedance(values) -> pd.DataFrame:
    """Empirical exceedance curve ``P(X > x)`` of ``values`` (NaN dropped).

    Rows: ``x`` = 0 (when every value is >= 0) and each distinct value, ascending, and
    ``p_exceed`` = share of values strictly greater than ``x``. Drawn as a step that holds
    each ``p_exceed`` from its ``x`` to the next.
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return pd.DataFrame({"x": [], "p_exceed": []})
    xs = np.unique(v)
    if xs[0] > 0:
        xs = np.concatenate([[0.0], xs])
    p = np.array([(v > x).mean() for x in xs])
    return pd.DataFrame({"x": xs, "p_exceed": p})


def _fan(series: pd.DataFrame, column: str, relative: bool) -> pd.DataFrame:
    """Quantile bands per step over the paths (cell x run) of one design, from long rows
    (cell_id, run_index, step, column)."""
    s = series[["cell_id", "run_index", "step", column]].copy()
    s[column] = pd.to_numeric(s[column], errors="coerce")
    if relative:
        first = s.sort_values("step").groupby(["cell_id", "run_index"])[column].transform("first")
        s[column] = s[column] - first
    wide = s.pivot_table(index="step", columns=["cell_id", "run_index"], values=column, aggfunc="first",
                         dropna=False)
    return _bands(wide.index.to_numpy(), wide.to_numpy(dtype=float))


def _bands(steps: np.ndarray, arr: np.ndarray) -> pd.DataFrame:
    """Quantiles per row of ``arr`` (steps x paths), NaN ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = pd.DataFrame({"step": steps, "n_paths": np.sum(~np.isnan(arr), axis=1)})
        for q in _PATHS_QUANTILES[:2]:
            out[f"q{round(q * 100):02d}"] = np.nanquantile(arr, q, axis=1)
        out["median"] = np.nanquantile(arr, 0.5, axis=1)
        for q in _PATHS_QUANTILES[2:]:
            out[f"q{round(q * 100):02d}"] = np.nanquantile(arr, q, axis=1)
    return out


def _common_shocks(batch: BatchFolder, cell: str | None) -> pd.DataFrame:
    """Shock windows of a cell, or of all cells when they agree (else none)."""
    cells = [cell] if cell is not None else (list(batch.cells) or [None])
    windows = [_shock_windows(batch.cell_scenario(c)) for c in cells]
    first = windows[0]
    if all(w[["start", "end"]].equals(first[["start", "end"]]) for w in windows[1:]):
        return first
    return first.iloc[0:0]


def _fmt_metric(v: float, unit: str, signed: bool = False) -> str:
    """A metric value for a label: compact USD, or a short number."""
    if v is None or not np.isfinite(v):
        return "n/a"
    if unit == "USD":
        t = _usd(v)
    else:
        t = f"{v:,.3g}"
    return ("+" + t) if signed and v > 0 else t


def fan_series(batch: BatchFolder, design: str, cell: str | None = None) -> str:
    """The balance a design's fan chart shows: ``insurance_fund``, or ``backstop_equity`` for a
    design with a backstop stage and no insurance fund stage (its fund is a flat 0)."""
    stages = set(batch.stages(design, cell))
    return "backstop_equity" if "insurance_fund" not in stages and "backstop" in stages else "insurance_fund"


def path_frame(res: pd.DataFrame, column: str) -> pd.DataFrame:
    """Long rows (cell_id, run_index, step, ``column``) from the runs' thin paths
    (``path_step`` and ``path_<column>``, see ``simulator.experiments.paths``); empty when the
    batch has none."""
    from simulator.experiments.paths import read_path

    key = f"path_{column}"
    if key not in res.columns or "path_step" not in res.columns:
        return pd.DataFrame(columns=["cell_id", "run_index", "step", column])
    parts = []
    for cell_id, run_index, st, v in zip(res["cell_id"], res["run_index"], res["path_step"], res[key]):
        steps, vals = read_path(st), read_path(v)
        if len(steps) and len(steps) == len(vals):
            parts.append(pd.DataFrame({"cell_id": cell_id, "run_index": int(run_index), "step": steps.astype(np.int64),
                                       column: vals}))
    if not parts:
        return pd.DataFrame(columns=["cell_id", "run_index", "step", column])
    return pd.concat(parts, ignore_index=True)


def zero_metrics(res: pd.DataFrame, metrics: Sequence[str]) -> dict[str, int]:
    """Metrics that are 0 (or undefined) in every run of ``res``: metric -> number of runs."""
    out = {}
    for m in metrics:
        v = _float(res[m]) if m in res.columns else np.zeros(0)
        if len(v) and not np.any(np.nan_to_num(v) != 0):
            out[m] = int(len(v))
    return out


def paired_differences(batch: BatchFolder, metrics: Sequence[str], baseline: str | None = None,
                       cell: str | None = None, n_boot: int = 2000, seed: int = 0
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each design minus the baseline on the same path (same cell and run index).

    Returns ``(diffs, stats)``: ``diffs`` one row per design x metric x path (design, metric,
    cell_id, run_index, diff); ``stats`` per design x metric: ``n_pairs``, ``median`` and
    ``mean`` of the differences and the bootstrap 95 % interval of the mean (``low``,
    ``high``; ``simulator.world.metrics.paired_bootstrap_ci`` with ``n_boot`` replicates and
    ``default_rng(seed)``: for one cell, the same numbers as ``perpstress compare`` with the
    same ``n_boot``)."""
    from simulator.world.metrics import paired_bootstrap_ci

    res = batch.select(cell)
    baseline = baseline or batch.baseline()
    designs = [d for d in batch.designs if d in set(res["design"]) and d != baseline]
    key = ["cell_id", "run_index"]
    base = res[res["design"] == baseline].set_index(key)
    drows, srows = [], []
    for m in metrics:
        if m not in res.columns:
            continue
        a_all = pd.Series(_float(base[m]), index=base.index)
        for d in designs:
            g = res[res["design"] == d].set_index(key)
            b_all = pd.Series(_float(g[m]), index=g.index)
            common = a_all.index.intersection(b_all.index).sort_values()
            a, b = a_all.loc[common].to_numpy(), b_all.loc[common].to_numpy()
            keep = ~(np.isnan(a) | np.isnan(b))
            diff = (b - a)[keep]
            idx = common[keep]
            drows.append(pd.DataFrame({"design": d, "metric": m, "cell_id": idx.get_level_values(0),
                                       "run_index": idx.get_level_values(1).astype(int), "diff": diff}))
            mean, low, high = paired_bootstrap_ci(a, b, n_boot=n_boot, rng=np.random.default_rng(seed))
            srows.append({"design": d, "metric": m, "baseline": baseline, "n_pairs": int(keep.sum()),
                          "median": float(np.median(diff)) if len(diff) else np.nan,
                          "mean": mean, "low": low, "high": high})
    diffs = pd.concat(drows, ignore_index=True) if drows else pd.DataFrame(
        columns=["design", "metric", "cell_id", "run_index", "diff"])
    stats = pd.DataFrame(srows, columns=["design", "metric", "baseline", "n_pairs", "median", "mean", "low", "high"])
    stats.attrs["baseline"] = baseline
    return diffs, stats


def _zero_text(zero: dict[str, int], labels: dict[str, str]) -> str:
    return "; ".join(f"{labels.get(m, m)}: 0 in all {n} runs" for m, n in zero.items())


def _grid(sub, n: int, ncols: int = 4):
    ncols = min(ncols, max(1, n))
    nrows = max(1, math.ceil(n / ncols))
    axs = np.atleast_1d(sub.subplots(nrows, ncols)).ravel()
    for ax in axs[n:]:
        ax.set_visible(False)
    return axs[:n]


def _note(sub, text: str) -> None:
    ax = sub.subplots()
    ax.axis("off")
    ax.text(0.0, 0.5, textwrap.fill(text, 170), ha="left", va="center", color="0.35", fontsize=10,
            transform=ax.transAxes)


def plot_compare(
    folder,
    *,
    cell: str | None = None,
    metrics: dict[str, tuple[str, str]] | Sequence[str] | None = None,
    baseline: str | None = None,
    n_boot: int = 2000,
    figsize: tuple[float, float] = (15, 21),
    dpi: int = DEFAULT_DPI,
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """Waterfall designs compared across a batch.

    1. a box per design of each headline metric (``COMPARE_METRICS``) with every run as a dot;
    2. the paired differences *design minus baseline* on the same path, per headline metric:
       a dot per path, the median (black bar) and the mean with its bootstrap 95 % interval
       (``paired_differences``; numbers in the tick labels);
    3. exceedance curves P(X > x) of bad debt, venue loss, ADL notional and socialized loss
       (``EXCEEDANCE_METRICS``);
    4. a fan chart per design (median, 25-75 % and 5-95 % bands) of the insurance fund, or of
       the backstop vault's equity for a design with a backstop and no fund, over **every**
       run (the runs' thin paths, ``simulator.experiments.paths``; the kept series of a batch
       written without them).

    A metric that is 0 in every run of every design gets one line of text, not an axis.

    Args:
        cell: one sweep cell's id, or ``None`` for every cell pooled (pairs are then the same
            cell and run index).
        baseline: default ``BatchFolder.baseline()`` (compare.csv's, else the first design).

    Returns:
        ``(fig, data)``; ``data``: ``runs`` (design, cell_id, run_index, metric, value: every
        point drawn), ``zero`` (metric, n_runs: metrics drawn as a line of text),
        ``diffs`` / ``diff_stats`` (``paired_differences``), ``exceedance`` (design, metric,
        x, p_exceed), ``fund_fan`` (design, series, step, n_paths, q05, q25, median, q75, q95;
        USD, or change since step 0 when pooled cells start from different balances: see its
        ``attrs["relative"]``; ``attrs["source"]`` "all runs" or "kept series").
    """
    batch = _need_batch(folder, "the design comparison")
    res = batch.select(cell)
    designs = [d for d in batch.designs if d in set(res["design"])]
    colors = design_colors(batch.designs)
    if metrics is None:
        metrics = COMPARE_METRICS
    elif not isinstance(metrics, dict):
        metrics = {m: COMPARE_METRICS.get(m, (m.replace("_", " "), "")) for m in metrics}
    metrics = {m: v for m, v in metrics.items() if m in res.columns}
    labels = {m: v[0] for m, v in metrics.items()} | dict(EXCEEDANCE_METRICS)
    zero = zero_metrics(res, list(metrics))
    shown = {m: v for m, v in metrics.items() if m not in zero}
    baseline = baseline or batch.baseline()

    run_rows = []
    for m in metrics:
        for d in designs:
            g = res[res["design"] == d]
            run_rows.append(pd.DataFrame({"design": d, "cell_id": g["cell_id"].to_numpy(),
                                          "run_index": g["run_index"].to_numpy(), "metric": m,
                                          "value": _float(g[m])}))
    runs = pd.concat(run_rows, ignore_index=True) if run_rows else pd.DataFrame(
        columns=["design", "cell_id", "run_index", "metric", "value"])

    diffs, dstats = paired_differences(batch, list(shown), baseline, cell, n_boot=n_boot)

    exc_metrics = [m for m in EXCEEDANCE_METRICS if m in res.columns]
    exc_zero = zero_metrics(res, exc_metrics)
    exc_rows = []
    for m in exc_metrics:
        if m in exc_zero:
            continue
        for d in designs:
            e = exceedance(_float(res.loc[res["design"] == d, m]))
            e.insert(0, "metric", m)
            e.insert(0, "design", d)
            exc_rows.append(e)
    exc = pd.concat(exc_rows, ignore_index=True) if exc_rows else pd.DataFrame(columns=["design", "metric", "x", "p_exceed"])

    fan, relative, source = _fan_frame(batch, res, designs, cell)

    n_runs = res.groupby("design")["run_index"].size().max() if len(res) else 0
    where = _cell_text(batch, cell)
    fig = _new_figure(figsize, dpi)
    fig.suptitle(f"{batch.name}: waterfall designs compared ({n_runs} runs per design"
                 f"{', ' + where if where else ''}; the same random numbers for every design)",
                 fontsize=14, fontweight="bold")
    rows = 4 if shown else 3
    heights = ([2.0, 1.25] if shown else [0.25]) + [1.05, 1.05]
    if not shown:
        heights = [0.25, 1.05, 1.05]
    subs = fig.subfigures(rows if shown else 3, 1, height_ratios=heights)
    if shown:
        top, dif, mid, bottom = subs
    else:
        top, mid, bottom = subs
        dif = None
    zero_line = _zero_text(zero, labels)

    # --- distributions
    top.suptitle("Headline metrics per design (box: quartiles, whiskers 1.5 IQR; dots: individual runs)"
                 + (f"\n{zero_line}" if zero_line and shown else ""), fontsize=11, x=0.01, ha="left")
    if shown:
        rng = np.random.default_rng(0)
        for ax, (m, (label, unit)) in zip(_grid(top, len(shown)), shown.items()):
            vals = [runs.loc[(runs["metric"] == m) & (runs["design"] == d), "value"].dropna().to_numpy() for d in designs]
            pos = np.arange(1, len(designs) + 1)
            bp = ax.boxplot([v if len(v) else [np.nan] for v in vals], positions=pos, widths=0.55, patch_artist=True,
                            showfliers=False, medianprops={"color": "black", "lw": 1.4})
            for patch, d in zip(bp["boxes"], designs):
                patch.set_facecolor(colors[d])
                patch.set_alpha(0.35)
                patch.set_edgecolor(colors[d])
            for p, v, d in zip(pos, vals, designs):
                jitter = rng.uniform(-0.16, 0.16, size=len(v))
                ax.scatter(p + jitter, v, s=16, color=colors[d], edgecolor="white", linewidth=0.4, zorder=3)
            _design_ticks(ax, pos, designs, colors)
            ax.set_title(label, fontsize=10)
            ax.set_ylabel(unit)
            _value_axis(ax, unit)
            ax.grid(axis="y", alpha=0.25)
    else:
        _note(top, f"Headline metrics: {zero_line}")

    # --- paired differences
    if dif is not None:
        others = [d for d in designs if d != baseline]
        dif.suptitle(f"Paired difference: design \u2212 {baseline} on the same path. Dots: paths; black bar: "
                     "median; diamond: mean with its bootstrap 95 % interval (numbers under each design)",
                     fontsize=11, x=0.01, ha="left")
        if not others:
            _note(dif, f"only the baseline {baseline} has runs: nothing to pair")
        else:
            rng = np.random.default_rng(1)
            for ax, (m, (label, unit)) in zip(_grid(dif, len(shown)), shown.items()):
                pos = np.arange(1, len(others) + 1)
                ticks = []
                for p, d in zip(pos, others):
                    v = diffs.loc[(diffs["metric"] == m) & (diffs["design"] == d), "diff"].to_numpy(dtype=float)
                    st = dstats[(dstats["metric"] == m) & (dstats["design"] == d)]
                    ax.scatter(p - 0.12 + rng.uniform(-0.1, 0.1, size=len(v)), v, s=14, color=colors[d], alpha=0.75,
                               edgecolor="white", linewidth=0.3, zorder=3)
                    if len(st):
                        r = st.iloc[0]
                        ax.hlines(r["median"], p - 0.3, p + 0.06, color="black", lw=2.0, zorder=4)
                        if np.isfinite(r["mean"]):
                            ax.errorbar([p + 0.2], [r["mean"]], yerr=[[r["mean"] - r["low"]], [r["high"] - r["mean"]]],
                                        fmt="D", color=colors[d], ecolor=colors[d], ms=5, capsize=4, lw=1.8, zorder=5,
                                        markeredgecolor="black", markeredgewidth=0.6)
                        # the interval on one line fits two designs per panel; with more it takes two
                        sep = ",\n" if len(others) > 2 else ", "
                        ticks.append(f"{d}\n{_fmt_metric(r['mean'], unit, True)}\n"
                                     f"[{_fmt_metric(r['low'], unit)}{sep}{_fmt_metric(r['high'], unit)}]")
                    else:
                        ticks.append(d)
                ax.axhline(0, color="0.3", lw=0.9)
                ax.set_xticks(pos, ticks, fontsize=8)
                for lbl, d in zip(ax.get_xticklabels(), others):
                    lbl.set_color(colors[d])
                ax.set_xlim(0.4, len(others) + 0.6)
                ax.set_title(f"{label}: \u2212 {baseline}", fontsize=10)
                ax.set_ylabel(f"difference ({unit})" if unit else "difference")
                _value_axis(ax, unit)
                ax.grid(axis="y", alpha=0.25)

    # --- exceedance
    mets = [m for m in exc_metrics if m not in exc_zero]
    line = _zero_text(exc_zero, EXCEEDANCE_METRICS)
    mid.suptitle("Exceedance curves: probability that a run's loss is larger than x" + (f"\n{line}" if line and mets else ""),
                 fontsize=11, x=0.01, ha="left")
    if mets:
        axs = np.atleast_1d(mid.subplots(1, len(mets))).ravel()
    else:
        axs = []
        _note(mid, f"Exceedance curves: {line}")
    for ax, m in zip(axs, mets):
        for d in designs:
            e = exc[(exc["design"] == d) & (exc["metric"] == m)]
            if e.empty:
                continue
            p0 = float(e["p_exceed"].iloc[0]) if float(e["x"].iloc[0]) == 0 else 1.0
            ax.step(e["x"], e["p_exceed"], where="post", color=colors[d], lw=1.8,
                    label=f"{d} (P(>0) = {p0:.0%})")
            ax.plot(e["x"], e["p_exceed"], "o", color=colors[d], ms=3)
        ax.set_title(EXCEEDANCE_METRICS[m], fontsize=10)
        pos = exc.loc[(exc["metric"] == m) & (exc["x"] > 0), "x"].to_numpy(dtype=float)
        log = len(pos) > 0 and pos.max() / pos.min() > 100  # designs orders of magnitude apart
        if log:
            lin = 10.0 ** math.floor(math.log10(pos.min()))
            ax.set_xscale("symlog", linthresh=lin, linscale=0.5)
            # 0, then decades from 10 x the linear threshold: the threshold's own tick sits too
            # close to 0 to read; every other decade when there would be more than five
            decades = [lin * 10 ** k for k in range(1, int(math.log10(pos.max() / lin)) + 2)]
            ax.set_xticks([0.0] + decades[:: 2 if len(decades) > 5 else 1])
        ax.set_xlabel(f"x: {EXCEEDANCE_METRICS[m].lower()} (USD{', log scale' if log else ''})")
        ax.set_ylabel("P(X > x)")
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_formatter(USD_FORMATTER)
        if not log:
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.legend(fontsize=8, loc="best", framealpha=0.85)
        ax.grid(alpha=0.25)

    # --- fan chart
    fan_designs = [d for d in designs if d in set(fan["design"])]
    n_paths = int(fan["n_paths"].max()) if len(fan) else 0
    bottom.suptitle(
        ("Change since step 0" if relative else "Balance") + " of the insurance fund (or, for a design without one, "
        f"its backstop vault's equity): median, 25-75 % and 5-95 % of {source}", fontsize=11, x=0.01, ha="left")
    if fan_designs:
        axs = np.atleast_1d(bottom.subplots(1, len(fan_designs), sharey=True)).ravel()
        shocks = _common_shocks(batch, cell)
        for ax, d in zip(axs, fan_designs):
            f = fan[fan["design"] == d]
            c = colors[d]
            ax.fill_between(f["step"], f["q05"], f["q95"], color=c, alpha=0.15, linewidth=0, label="5-95 %")
            ax.fill_between(f["step"], f["q25"], f["q75"], color=c, alpha=0.35, linewidth=0, label="25-75 %")
            ax.plot(f["step"], f["median"], color=c, lw=1.8, label="median")
            _shade(ax, shocks)
            what = "backstop vault" if f["series"].iloc[0] == "backstop_equity" else "insurance fund"
            ax.set_title(f"{d}: {what} ({int(f['n_paths'].max())} paths)", fontsize=10, color=c)
            ax.set_xlabel("step")
            ax.yaxis.set_major_formatter(USD_FORMATTER)
            ax.grid(alpha=0.25)
        axs[0].set_ylabel("change since step 0 (USD)" if relative else "balance (USD)")
        axs[0].legend(fontsize=8, loc="best")
    else:
        _note(bottom, "no per-step fund series in this batch")
    fan.attrs["n_paths"] = n_paths

    zero_df = pd.DataFrame({"metric": list(zero), "n_runs": list(zero.values())}, columns=["metric", "n_runs"])
    return fig, {"runs": runs, "zero": zero_df, "diffs": diffs, "diff_stats": dstats, "exceedance": exc,
                 "fund_fan": fan}


def _design_ticks(ax, pos, designs, colors) -> None:
    ax.set_xticks(pos, designs, rotation=20 if len(designs) > 2 else 0,
                  ha="right" if len(designs) > 2 else "center", fontsize=9)
    for lbl, d in zip(ax.get_xticklabels(), designs):
        lbl.set_color(colors[d])


def _value_axis(ax, unit: str) -> None:
    if unit == "USD":
        ax.yaxis.set_major_formatter(USD_FORMATTER)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _fan_frame(batch: BatchFolder, res: pd.DataFrame, designs: list[str], cell: str | None):
    """The fan chart's quantile bands per design, from every run's thin path when the batch has
    them, else from the kept series. Returns ``(fan, relative, source text)``."""
    cols = ["design", "series", "step", "n_paths", "q05", "q25", "median", "q75", "q95"]
    thin = "path_step" in res.columns and res["path_step"].notna().any()
    long_by: dict[str, pd.DataFrame] = {}
    for d in designs:
        col = fan_series(batch, d, cell)
        if thin:
            long = path_frame(res[res["design"] == d], col)
        else:
            s = batch.series
            if s.empty or col not in s.columns:
                continue
            s = s[s["design"] == d] if cell is None else s[(s["design"] == d) & (s["cell_id"] == cell)]
            long = s[["cell_id", "run_index", "step", col]]
        if len(long):
            long_by[d] = long.rename(columns={col: "value"}).assign(series=col)
    starts = [g.sort_values("step").groupby(["cell_id", "run_index"])["value"].first() for g in long_by.values()]
    relative = False
    if cell is None and len(batch.cells) > 1:
        relative = any(len(s) and np.ptp(pd.to_numeric(s).to_numpy(dtype=float)) > 0 for s in starts)
    rows = []
    for d, g in long_by.items():
        f = _fan(g, "value", relative)
        f.insert(0, "series", g["series"].iloc[0])
        f.insert(0, "design", d)
        rows.append(f)
    fan = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)
    fan = fan[cols]
    n = int(fan["n_paths"].max()) if len(fan) else 0
    source = f"all {n} runs per design" if thin else f"the {n} kept series per design"
    fan.attrs.update(relative=relative, source="all runs" if thin else "kept series")
    return fan, relative, source
