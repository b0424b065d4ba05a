"""``plot_compare``: designs across a batch (box plots with every run, exceedance curves, a fan
chart of the insurance fund).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from simulator.figures._io import BatchFolder, _cell_text, _float, _need_batch, _shock_windows
from simulator.figures.style import DEFAULT_DPI, USD_FORMATTER, _new_figure, _shade, design_colors


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
    """Quantile bands per step over the paths (cell x run) of one design."""
    s = series[["cell_id", "run_index", "step", column]].copy()
    s[column] = pd.to_numeric(s[column], errors="coerce")
    if relative:
        first = s.sort_values("step").groupby(["cell_id", "run_index"])[column].transform("first")
        s[column] = s[column] - first
    wide = s.pivot_table(index="step", columns=["cell_id", "run_index"], values=column, aggfunc="first")
    arr = wide.to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = pd.DataFrame({"step": wide.index.to_numpy(), "n_paths": np.sum(~np.isnan(arr), axis=1)})
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


def plot_compare(
    folder,
    *,
    cell: str | None = None,
    metrics: dict[str, tuple[str, str]] | Sequence[str] | None = None,
    figsize: tuple[float, float] = (15, 15),
    dpi: int = DEFAULT_DPI,
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """Waterfall designs compared across a batch.

    Top: a box per design of each headline metric (``COMPARE_METRICS``) with every run as a
    point. Middle: exceedance curves P(X > x) of bad debt, venue loss, ADL notional and
    socialized loss (``EXCEEDANCE_METRICS``). Bottom: fan chart of the insurance fund per
    design (median, 25-75 % and 5-95 % bands over the kept series).

    Args:
        cell: one sweep cell's id, or ``None`` for every cell pooled (each design then has the
            same cells and run indices, so the distributions stay comparable).

    Returns:
        ``(fig, data)``; ``data``: ``runs`` (design, cell_id, run_index, metric, value: every
        point drawn), ``exceedance`` (design, metric, x, p_exceed), ``fund_fan`` (design, step,
        n_paths, q05, q25, median, q75, q95; USD, or change since step 0 when pooled cells
        start from different balances: see its ``attrs["relative"]``).
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

    run_rows = []
    for m in metrics:
        for d in designs:
            g = res[res["design"] == d]
            run_rows.append(pd.DataFrame({"design": d, "cell_id": g["cell_id"].to_numpy(),
                                          "run_index": g["run_index"].to_numpy(), "metric": m,
                                          "value": _float(g[m])}))
    runs = pd.concat(run_rows, ignore_index=True) if run_rows else pd.DataFrame(
        columns=["design", "cell_id", "run_index", "metric", "value"])

    exc_rows = []
    for m in EXCEEDANCE_METRICS:
        if m not in res.columns:
            continue
        for d in designs:
            e = exceedance(_float(res.loc[res["design"] == d, m]))
            e.insert(0, "metric", m)
            e.insert(0, "design", d)
            exc_rows.append(e)
    exc = pd.concat(exc_rows, ignore_index=True) if exc_rows else pd.DataFrame(columns=["design", "metric", "x", "p_exceed"])

    series = batch.series
    fan_rows, relative = [], False
    if not series.empty and "insurance_fund" in series.columns:
        s = series if cell is None else series[series["cell_id"] == cell]
        starts = s.sort_values("step").groupby(["cell_id", "design", "run_index"])["insurance_fund"].first()
        relative = bool(len(starts) and np.ptp(pd.to_numeric(starts).to_numpy(dtype=float)) > 0)
        for d in designs:
            g = s[s["design"] == d]
            if len(g):
                f = _fan(g, "insurance_fund", relative)
                f.insert(0, "design", d)
                fan_rows.append(f)
    fan = pd.concat(fan_rows, ignore_index=True) if fan_rows else pd.DataFrame(
        columns=["design", "step", "n_paths", "q05", "q25", "median", "q75", "q95"])
    fan.attrs["relative"] = relative

    n_runs = res.groupby("design")["run_index"].nunique().max() if len(res) else 0
    where = _cell_text(batch, cell)
    fig = _new_figure(figsize, dpi)
    fig.suptitle(f"{batch.name}: waterfall designs compared ({n_runs} paths per design"
                 f"{', ' + where if where else ''}; same random numbers for every design)",
                 fontsize=14, fontweight="bold")
    top, mid, bottom = fig.subfigures(3, 1, height_ratios=[2.2, 1.05, 1.05])

    # --- distributions
    ncols = min(4, max(1, len(metrics)))
    nrows = max(1, math.ceil(len(metrics) / ncols))
    axs = np.atleast_1d(top.subplots(nrows, ncols)).ravel()
    top.suptitle("Headline metrics per design (box: quartiles, whiskers 1.5 IQR; dots: individual runs)",
                 fontsize=11, x=0.01, ha="left")
    rng = np.random.default_rng(0)
    for ax, (m, (label, unit)) in zip(axs, metrics.items()):
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
        ax.set_xticks(pos, designs, rotation=20 if len(designs) > 2 else 0, ha="right" if len(designs) > 2 else "center",
                      fontsize=9)
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(unit)
        if unit == "USD":
            ax.yaxis.set_major_formatter(USD_FORMATTER)
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.25)
    for ax in axs[len(metrics):]:
        ax.set_visible(False)

    # --- exceedance
    mets = [m for m in EXCEEDANCE_METRICS if m in res.columns]
    axs = np.atleast_1d(mid.subplots(1, max(1, len(mets)))).ravel()
    mid.suptitle("Exceedance curves: probability that a run's loss is larger than x", fontsize=11, x=0.01, ha="left")
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
            ax.set_xscale("symlog", linthresh=10.0 ** math.floor(math.log10(pos.min())), linscale=0.5)
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
    bottom.suptitle(
        ("Insurance fund change since step 0" if relative else "Insurance fund balance")
        + " per design: median, 25-75 % and 5-95 % of the kept paths", fontsize=11, x=0.01, ha="left")
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
            ax.set_title(f"{d} ({int(f['n_paths'].max())} paths)", fontsize=10, color=c)
            ax.set_xlabel("step")
            ax.yaxis.set_major_formatter(USD_FORMATTER)
            ax.grid(alpha=0.25)
        axs[0].set_ylabel("change since step 0 (USD)" if relative else "balance (USD)")
        axs[0].legend(fontsize=8, loc="best")
    else:
        ax = bottom.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no per-step series kept in this batch", ha="center", va="center", color="0.4")

    return fig, {"runs": runs, "exceedance": exc, "fund_fan": fan}
