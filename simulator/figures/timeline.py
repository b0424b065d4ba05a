"""``plot_timeline``: one run's cascade, step by step (prices, liquidations by stage, bad debt,
fund and backstop, maker depth; shock windows shaded).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from simulator.figures._io import RunFolder, _check_cell, _col, _shock_windows, cell_text, open_folder
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
        cell = worst_path(f)[0] if run_index is None else next(iter(f.cells))
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
    params = f.cells.get(cell) or {}
    scenario = dict(f.cell_scenario(cell))
    if params:
        # the scenario's description speaks of its own values (a 4 % dip), not this cell's
        scenario["description"] = f"sweep cell {cell}: {cell_text(params)}"
    title = f"{f.name}: timeline of run {run_index}, design {design}"
    return ts, scenario, title, {"folder": "batch", "design": design, "cell": cell, "run_index": int(run_index)}


#: The bad-debt panel's covers: timeseries column -> stage (colour key), in waterfall order.
COVER_COLUMNS = {
    "cover_insurance_fund": "insurance_fund",
    "cover_backstop": "backstop",
    "cover_adl": "adl",
    "cover_socialize": "socialize",
    "cover_socialize_pending": "socialize_pending",
    "cover_venue": "venue",
}
#: Bars per panel at most: longer windows are aggregated into bins of N steps.
MAX_BARS = 150


def _bin(frame: pd.DataFrame, width: int) -> pd.DataFrame:
    """Sum of every column over bins of ``width`` steps; ``step`` is each bin's first step."""
    if width <= 1 or frame.empty:
        return frame.copy()
    key = (frame["step"] - frame["step"].iloc[0]) // width
    out = frame.drop(columns="step").groupby(key.to_numpy()).sum()
    out.insert(0, "step", frame["step"].groupby(key.to_numpy()).first().to_numpy())
    return out.reset_index(drop=True)


def _bars(ax, frame: pd.DataFrame, columns: dict[str, str], width: int) -> None:
    """Stacked bars of ``frame[columns]`` (binned), each bin ``width`` steps wide; empty bins skipped."""
    step = frame["step"].to_numpy(dtype=float)
    x = step - 0.5 + width / 2
    bottom = np.zeros(len(frame))
    for col, stage in columns.items():
        v = np.nan_to_num(frame[col].to_numpy(dtype=float))
        if v.sum() > 0:
            nz = v != 0
            ax.bar(x[nz], v[nz], bottom=bottom[nz], width=width * 0.9, color=STAGE_COLORS[stage],
                   edgecolor=STAGE_COLORS[stage], linewidth=0.8, label=f"{STAGE_LABELS[stage]} ({_usd(v.sum())})")
        bottom = bottom + v


def _label_lows(ax, lows, step) -> None:
    """Mark the price lows and label them in boxes under the lowest of them (nothing is drawn
    there: it is the window's minimum), so the labels never cover a line nor leave the axes;
    to the left of the low when it is in the right half of the window."""
    if not len(step) or not lows:
        return
    lo, hi = ax.get_ylim()
    span = hi - lo
    ax.set_ylim(lo - 0.24 * span, hi)  # room under the lows for the labels
    floor = min(y for _, y, _, _ in lows)
    x0, x1 = float(np.min(step)), float(np.max(step))
    for k, (x, y, name, c) in enumerate(lows):
        right_half = (x - x0) > 0.5 * max(x1 - x0, 1)
        ax.plot([x], [y], marker="v", color=c, ms=7, zorder=6)
        ax.annotate(f"{name} low {y:,.0f}", (x, y), xytext=(-14 if right_half else 14, floor - (0.06 + 0.09 * k) * span),
                    textcoords=("offset points", "data"), fontsize=8, color=c,
                    ha="right" if right_half else "left", va="top", zorder=7,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": c, "alpha": 0.9, "lw": 0.6},
                    arrowprops={"arrowstyle": "-", "color": c, "lw": 0.6})


def _empty_strip(ax, text: str) -> None:
    """Turn a panel with nothing to draw into a strip that says so: no y axis, no grid."""
    ax.set_yticks([])
    ax.set_ylabel("")
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def plot_timeline(
    folder,
    *,
    design: str | None = None,
    cell: str | None = None,
    run_index: int | None = None,
    steps: tuple[int, int] | None = None,
    bin_steps: int | None = None,
    depth_median: int | None = None,
    figsize: tuple[float, float] = (12, 14),
    dpi: int = DEFAULT_DPI,
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """Cascade timeline of one run.

    Args:
        folder: a run folder, or a batch folder (then ``design`` (default the first),
            ``cell`` (default: the worst path's, else the first) and ``run_index`` (default: ``worst_path``, the
            path every batch figure uses) pick one kept run).
        steps: ``(first, last)`` steps to show (default all).
        bin_steps: steps per bar of the liquidation and bad-debt panels (default: 1, or
            enough to draw at most ``MAX_BARS`` bars, so a one-step event is never a hairline).
        depth_median: draw maker depth as a rolling median over this many steps (the raw
            series faint behind it).

    Returns:
        ``(fig, data)``; ``data`` holds DataFrames ``prices`` (step, index, mark, last, USD),
        ``liquidations`` (step, book, backstop, insurance_fund, adl, engine, total: liquidated
        notional per step by the stage that absorbed it, USD; ``total`` is the run's
        ``liq_notional``), ``liquidation_bars`` (the same summed per bar, as drawn; ``step``
        is the bar's first step, ``attrs["bin_steps"]`` its width), ``losses`` (step,
        deficit, socialized, venue_loss and the ``COVER_COLUMNS``: who covered each step's
        bad debt, USD; the covers add up to ``deficit``), ``loss_bars`` (the same per bar, as
        drawn), ``fund`` (step, insurance_fund, backstop_equity, USD), ``depth`` (step, bid,
        ask: maker depth within 1 % of mid, USD; plus bid_median and ask_median with
        ``depth_median``) and ``shocks`` (kind, start, end, label).
    """
    ts, scenario, title, meta = _timeline_source(folder, design, cell, run_index)
    if steps is not None:
        lo, hi = steps
        ts = ts[(ts["step"] >= lo) & (ts["step"] <= hi)].reset_index(drop=True)
    step = ts["step"].to_numpy()
    # money panels are in the run's settlement asset: an inverse run (it records the fund's
    # dollar value too) counts bad debt and the fund in its coin
    m0 = ((scenario or {}).get("markets") or [{}])[0]
    coin = m0.get("coin") or "BTC"
    asset = coin if ("insurance_fund_usd" in ts.columns or m0.get("settlement") == "inverse") else "USD"
    prices = pd.DataFrame({"step": step, "index": _col(ts, "index"), "mark": _col(ts, "mark"), "last": _col(ts, "last")})
    liq = pd.DataFrame({"step": step})
    for s in LIQUIDATING:
        liq[s] = _col(ts, f"liq_{s}")
    liq["total"] = _col(ts, "liq_notional")
    losses = pd.DataFrame({"step": step, "deficit": _col(ts, "deficit"), "socialized": _col(ts, "socialized"),
                           "venue_loss": _col(ts, "venue_loss")})
    for c in COVER_COLUMNS:
        losses[c] = _col(ts, c)
    fund = pd.DataFrame({"step": step, "insurance_fund": _col(ts, "insurance_fund"),
                         "backstop_equity": _col(ts, "backstop_equity")})
    depth = pd.DataFrame({"step": step, "bid": _col(ts, "depth_bid_1pct"), "ask": _col(ts, "depth_ask_1pct")})
    if depth_median and depth_median > 1:
        for side in ("bid", "ask"):
            depth[f"{side}_median"] = depth[side].rolling(int(depth_median), min_periods=1, center=True).median()
    shocks = _shock_windows(scenario)
    if steps is not None:
        shocks = shocks[(shocks["end"] >= steps[0]) & (shocks["start"] <= steps[1])].reset_index(drop=True)
    width = int(bin_steps) if bin_steps else max(1, int(np.ceil(len(step) / MAX_BARS)))
    liq_bars = _bin(liq, width)
    liq_bars.attrs["bin_steps"] = width
    loss_bars = _bin(losses, width)
    loss_bars.attrs["bin_steps"] = width
    per = "per step" if width == 1 else f"per {width} steps"

    total_liq = float(np.nansum(liq["total"]))
    total_deficit = float(np.nansum(losses["deficit"]))
    fig = _new_figure(figsize, dpi)
    # a panel with nothing to show is a one-line strip (its text), not an empty pair of axes
    axes = fig.subplots(5, 1, sharex=True, height_ratios=[3, 2 if total_liq > 0 else 0.45,
                                                          1.7 if total_deficit > 0 else 0.45, 1.5, 1.5])
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
    _label_lows(ax, lows, step)
    ax.set_ylabel("price (USD)")
    ax.set_title("Prices", loc="left", fontsize=11)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    h, _ = ax.get_legend_handles_labels()
    ax.legend(handles=h + handles, loc="upper right", fontsize=9, framealpha=0.85)
    ax.grid(alpha=0.25)

    # liquidations by stage (stacked bars)
    ax = axes[1]
    _bars(ax, liq_bars, {s: s for s in LIQUIDATING}, width)
    _shade(ax, shocks)
    ax.set_ylabel(f"notional {per} (USD)")
    ax.set_title(f"Liquidated notional {per}, by the stage that absorbed it (total {_usd(np.nansum(liq['total']))})",
                 loc="left", fontsize=11)
    ax.yaxis.set_major_formatter(USD_FORMATTER)
    if total_liq > 0:
        ax.legend(loc="upper right", fontsize=9, framealpha=0.85)
        ax.grid(alpha=0.25)
    else:
        _empty_strip(ax, "no liquidations")

    # bad debt, split by who covered it
    ax = axes[2]
    _bars(ax, loss_bars, COVER_COLUMNS, width)
    _shade(ax, shocks)
    ax.set_ylabel(f"{per} ({asset})")
    total_text = _usd(total_deficit) if asset == "USD" else f"{total_deficit:,.4f} {asset}"
    ax.set_title(f"Bad debt {per} (total {total_text}), split by who covered it", loc="left", fontsize=11)
    if asset == "USD":
        ax.yaxis.set_major_formatter(USD_FORMATTER)
    if total_deficit > 0:
        ax.legend(loc="upper right", fontsize=9, framealpha=0.85)
        ax.grid(alpha=0.25)
    else:
        _empty_strip(ax, "no bad debt")

    # insurance fund and backstop
    ax = axes[3]
    ax.plot(step, fund["insurance_fund"], color=STAGE_COLORS["insurance_fund"], lw=1.6, label="insurance fund")
    if np.nanmax(np.abs(fund["backstop_equity"].to_numpy()), initial=0) > 0:
        ax.plot(step, fund["backstop_equity"], color=STAGE_COLORS["backstop"], lw=1.4, label="backstop vault equity")
    ax.axhline(0, color="0.3", lw=0.8)
    _shade(ax, shocks)
    ax.set_ylabel(f"balance ({asset})")
    ax.set_title("Insurance fund" + (" and backstop vault" if len(ax.lines) > 2 else "")
                 + ("" if asset == "USD" else f" (held in {asset})"), loc="left", fontsize=11)
    if asset == "USD":
        ax.yaxis.set_major_formatter(USD_FORMATTER)
    ax.legend(loc="best", fontsize=9, framealpha=0.85)
    ax.grid(alpha=0.25)

    # depth
    ax = axes[4]
    smooth = "bid_median" in depth.columns
    for side, name in (("bid", "bids"), ("ask", "asks")):
        ax.plot(step, depth[side], color=DEPTH_COLORS[side], lw=0.8 if smooth else 1.2, alpha=0.3 if smooth else 1.0,
                label=None if smooth else f"{name} within 1 % of mid")
        if smooth:
            ax.plot(step, depth[f"{side}_median"], color=DEPTH_COLORS[side], lw=1.6,
                    label=f"{name} within 1 % of mid (rolling median, {int(depth_median)} steps)")
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

    data = {"prices": prices, "liquidations": liq, "liquidation_bars": liq_bars, "losses": losses,
            "loss_bars": loss_bars, "fund": fund, "depth": depth, "shocks": shocks}
    data["meta"] = pd.DataFrame([meta])
    return fig, data
