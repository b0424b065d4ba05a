"""``plot_timeline``: one run's cascade, step by step (prices, liquidations by stage, bad debt,
fund and backstop, maker depth; shock windows shaded).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from simulator.figures._io import RunFolder, _check_cell, _col, _shock_windows, open_folder
from simulator.figures.style import (
    DEFAULT_DPI,
    DEPTH_COLORS,
    PRICE_COLORS,
    LIQUIDATING,
    STAGE_COLORS,
    STAGE_LABELS,
    USD_FORMATTER,
    _new_figure,
    _shade,
    _usd,
)
from simulator.figures.who_pays import worst_path


# ========================================================================== timeline
def _timeline_source(folder, design, cell, run_index):
    f = open_folder(folder)
    if isinstance(f, RunFolder):
        if design is not None or cell is not None or run_index is not None:
            raise ValueError("design, cell and run_index select a kept run of a batch; this is a run folder")
        seed = f.info.get("seed")
        title = f"{f.name}: timeline of one run" + (f" (seed {seed})" if isinstance(seed, int) else "")
        return f.timeseries.reset_index(drop=True), f.scenario, title, {"folder": "run"}
    series = f.series
    if series.empty:
        raise ValueError(f"{f.path}: the batch kept no per-step series (run it with keep_series > 0)")
    design = design if design is not None else f.designs[0]
    if design not in f.designs:
        raise ValueError(f"no design {design!r}; designs: {f.designs}")
    if cell is None:
        cell = next(iter(f.cells))
    _check_cell(f, cell)
    kept = series[(series["design"] == design) & (series["cell_id"] == cell)]
    if kept.empty:
        raise ValueError(f"no kept series for design {design!r} in cell {cell!r}")
    if run_index is None:
        run_index = worst_path(f, cell=cell, kept_only=True)[1]
    ts = kept[kept["run_index"] == run_index]
    if ts.empty:
        raise ValueError(f"run {run_index} of design {design!r} in cell {cell!r} has no kept series; "
                         f"kept: {sorted(kept['run_index'].unique().tolist())}")
    ts = ts.drop(columns=["run_index", "design", "cell_id"]).reset_index(drop=True)
    where = f", {cell}" if len(f.cells) > 1 else ""
    title = f"{f.name}: timeline of run {run_index}, design {design}{where}"
    return ts, f.cell_scenario(cell), title, {"folder": "batch", "design": design, "cell": cell, "run_index": int(run_index)}


def plot_timeline(
    folder,
    *,
    design: str | None = None,
    cell: str | None = None,
    run_index: int | None = None,
    steps: tuple[int, int] | None = None,
    figsize: tuple[float, float] = (12, 13),
    dpi: int = DEFAULT_DPI,
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """Cascade timeline of one run.

    Args:
        folder: a run folder, or a batch folder (then ``design`` (default the first),
            ``cell`` (default the first) and ``run_index`` (default: the kept path with the
            largest mean bad debt across designs) pick one kept run).
        steps: ``(first, last)`` steps to show (default all).

    Returns:
        ``(fig, data)``; ``data`` holds DataFrames ``prices`` (step, index, mark, last, USD),
        ``liquidations`` (step, book, backstop, insurance_fund, adl, total: liquidated notional
        per step by the stage that absorbed it, USD; ``total`` is the run's ``liq_notional``),
        ``losses`` (step, deficit, socialized, venue_loss, USD), ``fund`` (step,
        insurance_fund, backstop_equity, USD), ``depth`` (step, bid, ask: maker depth within
        1 % of mid, USD) and ``shocks`` (kind, start, end, label).
    """
    ts, scenario, title, meta = _timeline_source(folder, design, cell, run_index)
    if steps is not None:
        lo, hi = steps
        ts = ts[(ts["step"] >= lo) & (ts["step"] <= hi)].reset_index(drop=True)
    step = ts["step"].to_numpy()
    prices = pd.DataFrame({"step": step, "index": _col(ts, "index"), "mark": _col(ts, "mark"), "last": _col(ts, "last")})
    liq = pd.DataFrame({"step": step})
    for s in LIQUIDATING:
        liq[s] = _col(ts, f"liq_{s}")
    liq["total"] = _col(ts, "liq_notional")
    losses = pd.DataFrame({"step": step, "deficit": _col(ts, "deficit"), "socialized": _col(ts, "socialized"),
                           "venue_loss": _col(ts, "venue_loss")})
    fund = pd.DataFrame({"step": step, "insurance_fund": _col(ts, "insurance_fund"),
                         "backstop_equity": _col(ts, "backstop_equity")})
    depth = pd.DataFrame({"step": step, "bid": _col(ts, "depth_bid_1pct"), "ask": _col(ts, "depth_ask_1pct")})
    shocks = _shock_windows(scenario)
    if steps is not None:
        shocks = shocks[(shocks["end"] >= steps[0]) & (shocks["start"] <= steps[1])].reset_index(drop=True)

    fig = _new_figure(figsize, dpi)
    axes = fig.subplots(5, 1, sharex=True, height_ratios=[3, 2, 1.5, 1.5, 1.5])
    desc = str(scenario.get("description") or "").strip()
    fig.suptitle(title + (f"\n{desc}" if desc else ""), fontsize=13, fontweight="bold")

    # prices
    ax = axes[0]
    ax.plot(step, prices["index"], color=PRICE_COLORS["index"], lw=1.6, label="index (spot)", zorder=3)
    ax.plot(step, prices["mark"], color=PRICE_COLORS["mark"], lw=1.2, label="mark", zorder=4)
    ax.plot(step, prices["last"], color=PRICE_COLORS["last"], lw=0.9, alpha=0.9, label="last trade", zorder=5)
    handles = _shade(ax, shocks, label=True)
    lows = []
    for key, name in (("index", "index"), ("last", "last trade")):
        v = prices[key].to_numpy()
        if np.isfinite(v).any():
            i = int(np.nanargmin(v))
            lows.append((step[i], v[i], name, PRICE_COLORS[key]))
    for x, y, name, c in lows:
        ax.plot([x], [y], marker="v", color=c, ms=7, zorder=6)
        ax.annotate(f"{name} low {y:,.0f}", (x, y), xytext=(6, -4), textcoords="offset points",
                    fontsize=8, color=c, va="top")
    ax.set_ylabel("price (USD)")
    ax.set_title("Prices", loc="left", fontsize=11)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    h, _ = ax.get_legend_handles_labels()
    ax.legend(handles=h + handles, loc="best", fontsize=9, framealpha=0.85)
    ax.grid(alpha=0.25)

    # liquidations by stage (stacked bars)
    ax = axes[1]
    bottom = np.zeros(len(step))
    for s in LIQUIDATING:
        v = liq[s].to_numpy()
        if np.nansum(v) > 0:
            nz = np.nan_to_num(v) != 0  # only the steps with something to draw (thousands of empty bars are slow)
            ax.bar(step[nz], v[nz], bottom=bottom[nz], width=1.0, color=STAGE_COLORS[s], edgecolor=STAGE_COLORS[s],
                   linewidth=0.6, label=f"{STAGE_LABELS[s]} ({_usd(np.nansum(v))})")
        bottom = bottom + np.nan_to_num(v)
    _shade(ax, shocks)
    ax.set_ylabel("notional per step (USD)")
    ax.set_title(f"Liquidated notional per step, by the stage that absorbed it (total {_usd(np.nansum(liq['total']))})",
                 loc="left", fontsize=11)
    ax.yaxis.set_major_formatter(USD_FORMATTER)
    if np.nansum(liq["total"]) > 0:
        ax.legend(loc="upper right", fontsize=9, framealpha=0.85)
    else:
        ax.text(0.5, 0.5, "no liquidations", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.grid(alpha=0.25)

    # bad debt, socialized, venue loss
    ax = axes[2]
    d = losses["deficit"].to_numpy()
    nz = np.nan_to_num(d) != 0
    ax.bar(step[nz], d[nz], width=1.0, color="#A9A9A9", edgecolor="#A9A9A9", linewidth=0.6,
           label=f"bad debt (deficit) ({_usd(np.nansum(d))})")
    bottom = np.zeros(len(step))
    for col, s in (("socialized", "socialize"), ("venue_loss", "venue")):
        v = losses[col].to_numpy()
        if np.nansum(v) > 0:
            nz = np.nan_to_num(v) != 0
            ax.bar(step[nz], v[nz], bottom=bottom[nz], width=0.6, color=STAGE_COLORS[s], edgecolor=STAGE_COLORS[s],
                   linewidth=0.6, label=f"{STAGE_LABELS[s]} ({_usd(np.nansum(v))})")
        bottom = bottom + np.nan_to_num(v)
    _shade(ax, shocks)
    ax.set_ylabel("per step (USD)")
    ax.set_title("Bad debt per step, and the part socialized or left to the venue", loc="left", fontsize=11)
    ax.yaxis.set_major_formatter(USD_FORMATTER)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.85)
    ax.grid(alpha=0.25)

    # insurance fund and backstop
    ax = axes[3]
    ax.plot(step, fund["insurance_fund"], color=STAGE_COLORS["insurance_fund"], lw=1.6, label="insurance fund")
    if np.nanmax(np.abs(fund["backstop_equity"].to_numpy()), initial=0) > 0:
        ax.plot(step, fund["backstop_equity"], color=STAGE_COLORS["backstop"], lw=1.4, label="backstop vault equity")
    ax.axhline(0, color="0.3", lw=0.8)
    _shade(ax, shocks)
    ax.set_ylabel("balance (USD)")
    ax.set_title("Insurance fund" + (" and backstop vault" if len(ax.lines) > 2 else ""), loc="left", fontsize=11)
    ax.yaxis.set_major_formatter(USD_FORMATTER)
    ax.legend(loc="best", fontsize=9, framealpha=0.85)
    ax.grid(alpha=0.25)

    # depth
    ax = axes[4]
    ax.plot(step, depth["bid"], color=DEPTH_COLORS["bid"], lw=1.2, label="bids within 1 % of mid")
    ax.plot(step, depth["ask"], color=DEPTH_COLORS["ask"], lw=1.2, label="asks within 1 % of mid")
    _shade(ax, shocks)
    ax.set_ylabel("depth (USD)")
    ax.set_title("Market-maker depth near mid", loc="left", fontsize=11)
    ax.yaxis.set_major_formatter(USD_FORMATTER)
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=9, framealpha=0.85)
    ax.grid(alpha=0.25)
    ax.set_xlabel("step (steps of {:g} s)".format(float(scenario.get("step_seconds", 1.0) or 1.0)))
    if len(step):
        ax.set_xlim(step.min() - 0.5, step.max() + 0.5)

    data = {"prices": prices, "liquidations": liq, "losses": losses, "fund": fund, "depth": depth, "shocks": shocks}
    data["meta"] = pd.DataFrame([meta])
    return fig, data
