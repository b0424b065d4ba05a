"""``plot_sweep``: heatmaps of a metric over two swept parameters, one panel per design.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from simulator.figures._io import _float, _need_batch, param_label, param_value
from simulator.figures.compare import COMPARE_METRICS
from simulator.figures.style import DEFAULT_DPI, USD_FORMATTER, _new_figure, _usd, design_colors


#: Probability "metrics" of the sweep heatmap: name -> (column, event, label).
PROBABILITY_METRICS = {
    "p_socialization": ("socialized_total", lambda v: v > 0, "P(socialization)"),
    "p_adl": ("adl_notional", lambda v: v > 0, "P(ADL)"),
    "p_fund_depletion": ("fund_depleted", lambda v: v != 0, "P(insurance fund depleted)"),
    "p_venue_loss": ("venue_loss", lambda v: v > 0, "P(venue loss)"),
}
STATS = ("mean", "median", "p95", "p99", "max", "min")


# ============================================================================ sweep
def _sort_values(vals: Sequence) -> list:
    vals = list(dict.fromkeys(v for v in vals if not (isinstance(v, float) and math.isnan(v))))
    try:
        return sorted(vals, key=float)
    except (TypeError, ValueError):
        return sorted(vals, key=str)


def _metric_label(metric: str, stat: str) -> str:
    if metric in PROBABILITY_METRICS:
        return PROBABILITY_METRICS[metric][2]
    label, unit = COMPARE_METRICS.get(metric, (metric.replace("_", " "), ""))
    return f"{stat} {label}" + (f" ({unit})" if unit else "")


def _aggregate(values: np.ndarray, metric: str, stat: str) -> float:
    v = values[~np.isnan(values)]
    if not len(v):
        return float("nan")
    if metric in PROBABILITY_METRICS:
        return float(np.mean(PROBABILITY_METRICS[metric][1](v)))
    if stat == "mean":
        return float(np.mean(v))
    if stat == "median":
        return float(np.median(v))
    if stat in ("p95", "p99"):
        return float(np.percentile(v, int(stat[1:])))
    if stat == "max":
        return float(np.max(v))
    if stat == "min":
        return float(np.min(v))
    raise ValueError(f"stat {stat!r}: allowed {STATS}")


def sweep_table(
    folder, metric: str = "p_socialization", x: str | None = None, y: str | None = None, stat: str = "mean"
) -> pd.DataFrame:
    """The numbers of the sweep heatmap: one row per design x (x value, y value) with ``value``
    (the probability for a ``p_*`` metric, else ``stat`` of the metric over the runs) and ``n``
    runs. Swept parameters other than ``x`` and ``y`` are pooled."""
    batch = _need_batch(folder, "the sweep heatmap")
    params = batch.sweep_params
    if not params:
        raise ValueError(f"{batch.path}: the batch has no sweep (no swept parameters to draw a heatmap over)")
    x = x or params[0]
    if y is None and len(params) > 1:
        y = next(p for p in params if p != x)
    for p in (x, y):
        if p is not None and p not in params:
            raise ValueError(f"{p!r} is not a swept parameter; swept: {params}")
    if stat not in STATS:
        raise ValueError(f"stat {stat!r}: allowed {STATS}")
    column = PROBABILITY_METRICS[metric][0] if metric in PROBABILITY_METRICS else metric
    res = batch.results
    if column not in res.columns:
        from simulator.experiments.compare import metric_columns

        raise ValueError(f"metric {metric!r} not in the results; use one of {sorted(PROBABILITY_METRICS)} "
                         f"or a metric column: {metric_columns(res)}")
    xv = res["cell_id"].map(lambda c: batch.cells.get(c, {}).get(x))
    yv = res["cell_id"].map(lambda c: batch.cells.get(c, {}).get(y)) if y else pd.Series([None] * len(res))
    frame = pd.DataFrame({"design": res["design"].to_numpy(), "x": xv.to_numpy(), "y": yv.to_numpy(),
                          "v": _float(res[column])})
    rows = []
    xs = _sort_values(frame["x"])
    ys = _sort_values(frame["y"]) if y else [None]
    for d in [d for d in batch.designs if d in set(frame["design"])]:
        for yy in ys:
            for xx in xs:
                sel = (frame["design"] == d) & (frame["x"] == xx)
                if y:
                    sel &= frame["y"] == yy
                v = frame.loc[sel, "v"].to_numpy(dtype=float)
                rows.append({"design": d, x: xx, **({y: yy} if y else {}), "value": _aggregate(v, metric, stat),
                             "n": int((~np.isnan(v)).sum())})
    out = pd.DataFrame(rows)
    out.attrs.update({"x": x, "y": y, "metric": metric, "stat": stat, "label": _metric_label(metric, stat)})
    return out


def plot_sweep(
    folder,
    metric: str = "p_socialization",
    *,
    x: str | None = None,
    y: str | None = None,
    stat: str = "mean",
    figsize: tuple[float, float] | None = None,
    dpi: int = DEFAULT_DPI,
) -> tuple[Figure, pd.DataFrame]:
    """Heatmap of ``metric`` over two swept parameters, one panel per design, shared colour scale.

    ``metric``: ``p_socialization`` (default: share of runs with ``socialized_total > 0``),
    ``p_adl``, ``p_fund_depletion``, ``p_venue_loss``, or any metric column (then ``stat``:
    mean, median, p95, p99, max, min over the runs of the cell). ``x``, ``y``: swept
    parameters (default the first two). Axes are labelled in the parameters' units
    (``param_label``, ``param_value``). A design that sets a swept parameter itself (a preset
    with its own ``insurance_fund``) ignores the sweep along it: its panel is hatched and says
    so. Returns ``(fig, sweep_table(...))``; the table's ``attrs["overridden"]`` maps design ->
    the swept parameters it overrides.
    """
    batch = _need_batch(folder, "the sweep heatmap")
    table = sweep_table(batch, metric, x, y, stat)
    x, y, label = table.attrs["x"], table.attrs["y"], table.attrs["label"]
    designs = list(dict.fromkeys(table["design"]))
    colors = design_colors(batch.designs)
    xs = _sort_values(table[x])
    ys = _sort_values(table[y]) if y else [None]
    prob = metric in PROBABILITY_METRICS
    vals = table["value"].to_numpy(dtype=float)
    vmin, vmax = (0.0, 1.0) if prob else (float(np.nanmin(vals)) if np.isfinite(vals).any() else 0.0,
                                          float(np.nanmax(vals)) if np.isfinite(vals).any() else 1.0)
    if vmax <= vmin:
        vmax = vmin + 1.0
    overridden = {d: {p: v for p, v in batch.overridden(d).items() if p in (x, y)} for d in designs}
    table.attrs["overridden"] = {d: list(o) for d, o in overridden.items() if o}
    n = len(designs)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    if figsize is None:
        figsize = (max(5.2 * ncols + 1.6, 9.0), 4.4 * nrows + 1.6)
    fig = _new_figure(figsize, dpi)
    axs = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    usd = (not prob) and COMPARE_METRICS.get(metric, ("", ""))[1] == "USD"
    img = None
    for ax, d in zip(axs, designs):
        g = table[table["design"] == d]
        grid = np.full((len(ys), len(xs)), np.nan)
        for xx, yy, v in zip(g[x], g[y] if y else [None] * len(g), g["value"]):
            grid[ys.index(yy) if y else 0, xs.index(xx)] = v
        img = ax.imshow(grid, origin="lower", cmap="YlOrRd", vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(len(ys)):
            for j in range(len(xs)):
                v = grid[i, j]
                txt = "n/a" if np.isnan(v) else (f"{v:.0%}" if prob else (_usd(v) if usd else f"{v:.3g}"))
                dark = (not np.isnan(v)) and (v - vmin) / (vmax - vmin) > 0.6
                ax.text(j, i, txt, ha="center", va="center", fontsize=10, color="white" if dark else "black")
        ax.set_xticks(range(len(xs)), [param_value(x, v) for v in xs])
        ax.set_yticks(range(len(ys)), [param_value(y, v) for v in ys] if y else [""])
        ax.set_xlabel(param_label(x))
        if y:
            ax.set_ylabel(param_label(y))
        title = d
        own = overridden.get(d) or {}
        if own:
            for p, v in own.items():
                if p == x:
                    ax.axvspan(-0.5, len(xs) - 0.5, facecolor="none", edgecolor="0.35", hatch="//", lw=0, zorder=2)
                else:
                    ax.axhspan(-0.5, len(ys) - 0.5, facecolor="none", edgecolor="0.35", hatch="//", lw=0, zorder=2)
            fixed = "; ".join(f"{param_label(p).split(' (')[0]} fixed at {param_value(p, v)}" if v is not None
                              else f"{param_label(p).split(' (')[0]} set by the design" for p, v in own.items())
            title = f"{d}\n({fixed} by the design: the sweep does not move it)"
        ax.set_title(title, fontsize=10 if own else 11, color=colors.get(d, "black"), fontweight="bold")
    for ax in axs[n:]:
        ax.set_visible(False)
    if img is not None:
        cb = fig.colorbar(img, ax=axs[:n].tolist(), shrink=0.9)
        cb.set_label(label)
        if prob:
            cb.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        elif usd:
            cb.ax.yaxis.set_major_formatter(USD_FORMATTER)
    runs = int(table["n"].max()) if len(table) else 0
    pooled = [param_label(p).split(" (")[0] for p in batch.sweep_params if p not in (x, y)]
    extra = f"; pooled over {', '.join(pooled)}" if pooled else ""
    what = param_label(x).split(" (")[0] + (f" and {param_label(y).split(' (')[0]}" if y else "")
    text = f"{batch.name}: {label} by {what} (up to {runs} runs per cell{extra})"
    fig.suptitle(textwrap.fill(text, int(figsize[0] * 8.5)), fontsize=13, fontweight="bold")
    return fig, table
