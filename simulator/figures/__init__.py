"""Figures of cascade outcomes, from a run folder (``perpstress run --out``) or a batch folder
(``perpstress batch --out``), with matplotlib.

Every ``plot_*`` function returns ``(fig, data)``: a ``matplotlib.figure.Figure`` and the exact
numbers it drew (a pandas DataFrame, or a dict of them), so what a figure shows can be checked
against the results. Figures are made with the object API on an Agg canvas: nothing touches
pyplot's global state and nothing is ever shown; ``save_figure`` writes PNG (default) or SVG.

=================  ======================================================================
``plot_timeline``   one run's cascade: index / mark / last price, liquidated notional per
                    step stacked by waterfall stage, bad debt per step with what was
                    socialized or left to the venue, insurance fund and backstop, maker depth
                    within 1 % of mid; shock windows shaded. Run folder, or one kept run of a
                    batch.
``plot_compare``    designs across a batch: box plots with every run as a point for headline
                    metrics, exceedance curves P(X > x) of bad debt, venue loss, ADL notional
                    and socialized loss, fan chart of the insurance fund per design.
``plot_who_pays``   how the deficit was split (fund, backstop, ADL, socialization, venue) per
                    design, and Lorenz curves of ADL PnL taken and socialization charges per
                    account (from the run's events; a batch keeps no events, so the batch's
                    worst path is replayed exactly from its seed for every design).
``plot_sweep``      heatmap of a metric (default P(socialization)) over two swept parameters,
                    one panel per design, one shared colour scale.
=================  ======================================================================

Colours are fixed: ``STAGE_COLORS`` for waterfall stages (the same in every figure) and
``design_colors`` (designs in the batch manifest's order) for designs.

Money is in the scenario's quote currency, labelled USD; time is in simulation steps.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

__all__ = [
    "STAGES",
    "STAGE_COLORS",
    "STAGE_LABELS",
    "PRICE_COLORS",
    "DESIGN_PALETTE",
    "COMPARE_METRICS",
    "EXCEEDANCE_METRICS",
    "SPLIT_COLUMNS",
    "KINDS",
    "RunFolder",
    "BatchFolder",
    "open_folder",
    "folder_kind",
    "design_waterfall",
    "design_colors",
    "exceedance",
    "lorenz",
    "worst_path",
    "replay",
    "plot_timeline",
    "plot_compare",
    "plot_who_pays",
    "plot_sweep",
    "sweep_table",
    "save_figure",
    "figure_bytes",
    "plot_all",
]

# ============================================================================ style
#: Waterfall stages in waterfall order, plus what no stage covered ("venue").
STAGES = ("book", "backstop", "insurance_fund", "adl", "socialize", "venue")
#: One fixed colour per stage, used by every figure.
STAGE_COLORS = {
    "book": "#3B75AF",
    "backstop": "#8E63B5",
    "insurance_fund": "#E3A21A",
    "adl": "#D6472B",
    "socialize": "#8C1D40",
    "venue": "#2B2B2B",
}
STAGE_LABELS = {
    "book": "order book",
    "backstop": "backstop vault",
    "insurance_fund": "insurance fund",
    "adl": "ADL",
    "socialize": "socialized",
    "venue": "venue's own loss",
}
PRICE_COLORS = {"index": "#222222", "mark": "#1F77B4", "last": "#FF7F0E"}
DEPTH_COLORS = {"bid": "#2E8B57", "ask": "#B22222"}
SHOCK_COLOR = "#9E9E9E"
#: Design colours, assigned in the order of the batch manifest's designs (Dark2, then more).
DESIGN_PALETTE = (
    "#1B9E77", "#7570B3", "#E7298A", "#66A61E", "#E6AB02", "#A6761D", "#666666", "#D95F02",
    "#1F78B4", "#B15928", "#6A3D9A", "#33A02C",
)
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
#: Who covered the deficit: summary column -> stage (colour key).
SPLIT_COLUMNS = {
    "covered_insurance_fund": "insurance_fund",
    "covered_backstop": "backstop",
    "covered_adl": "adl",
    "covered_socialize": "socialize",
    "venue_loss": "venue",
}
#: Probability "metrics" of the sweep heatmap: name -> (column, event, label).
PROBABILITY_METRICS = {
    "p_socialization": ("socialized_total", lambda v: v > 0, "P(socialization)"),
    "p_adl": ("adl_notional", lambda v: v > 0, "P(ADL)"),
    "p_fund_depletion": ("fund_depleted", lambda v: v != 0, "P(insurance fund depleted)"),
    "p_venue_loss": ("venue_loss", lambda v: v > 0, "P(venue loss)"),
}
STATS = ("mean", "median", "p95", "p99", "max", "min")
#: Figure kinds of ``plot_all`` / ``perpstress plot --kind``.
KINDS = ("timeline", "compare", "who-pays", "sweep")
DEFAULT_DPI = 100
#: Ledger cash unit (micro-USD): events' amount and pnl columns are in these.
CASH_UNIT = 1e-6
_PATHS_QUANTILES = (0.05, 0.25, 0.75, 0.95)


def design_colors(designs: Sequence[str]) -> dict[str, str]:
    """Design -> colour, by position in ``designs`` (give the manifest's order for stability)."""
    return {d: DESIGN_PALETTE[i % len(DESIGN_PALETTE)] for i, d in enumerate(dict.fromkeys(designs))}


def _usd(x: float, _pos=None) -> str:
    """Compact money label: $1.2M, $350k, $12, -$3.4k."""
    if x is None or not np.isfinite(x):
        return ""
    sign = "-" if x < 0 else ""
    a = abs(float(x))
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            v = a / div
            return f"{sign}${v:.3g}{suffix}"
    if a == 0:
        return "$0"
    return f"{sign}${a:.3g}"


USD_FORMATTER = FuncFormatter(_usd)


def _new_figure(figsize, dpi) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fmt_value(v: Any) -> str:
    """Short text of a sweep parameter value."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f.is_integer() and abs(f) >= 1e4:
            return f"{f:.3g}" if abs(f) >= 1e6 else f"{f:,.0f}"
        return f"{f:g}"
    return str(v)


# ========================================================================== folders
@dataclass
class RunFolder:
    """A run folder written by ``perpstress run --out`` (``simulator.experiments.run.write_run``)."""

    path: Path
    kind: str = field(default="run", init=False)

    @cached_property
    def scenario(self) -> dict:
        f = self.path / "scenario.yaml"
        return yaml.safe_load(f.read_text()) if f.exists() else {}

    @cached_property
    def info(self) -> dict:
        f = self.path / "run.json"
        return json.loads(f.read_text()) if f.exists() else {}

    @cached_property
    def summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "timeseries.parquet")

    @cached_property
    def events(self) -> pd.DataFrame | None:
        f = self.path / "events.parquet"
        return pd.read_parquet(f) if f.exists() else None

    @property
    def name(self) -> str:
        return str(self.scenario.get("name") or self.info.get("scenario") or self.path.name)

    @property
    def designs(self) -> list[str]:
        return [self.name]


@dataclass
class BatchFolder:
    """A batch folder written by ``simulator.experiments.batch.run_batch`` / ``perpstress batch``."""

    path: Path
    kind: str = field(default="batch", init=False)

    @cached_property
    def manifest(self) -> dict:
        from simulator.experiments.batch import load_manifest

        return load_manifest(self.path)

    @cached_property
    def scenario(self) -> dict:
        return dict(self.manifest.get("scenario") or {})

    @cached_property
    def all_results(self) -> pd.DataFrame:
        from simulator.experiments.batch import load_results

        return load_results(self.path)

    @cached_property
    def results(self) -> pd.DataFrame:
        """The ok run rows (failed runs have no metrics)."""
        df = self.all_results
        if "status" in df.columns:
            df = df[df["status"] == "ok"]
        return df.reset_index(drop=True)

    @cached_property
    def series(self) -> pd.DataFrame:
        from simulator.experiments.batch import load_series

        return load_series(self.path)

    @property
    def name(self) -> str:
        return str(self.scenario.get("name") or self.path.name)

    @cached_property
    def designs(self) -> list[str]:
        """Designs in the manifest's order (then any other design found in the results)."""
        names = list(self.manifest.get("designs") or [])
        if "design" in self.all_results.columns:
            names += [d for d in dict.fromkeys(self.all_results["design"]) if d not in names]
        return names

    @cached_property
    def cells(self) -> dict[str, dict]:
        """cell_id -> {dotted parameter: value}, in the manifest's order."""
        out = {c["cell_id"]: dict(c.get("params") or {}) for c in self.manifest.get("cells") or []}
        if not out and "cell_id" in self.all_results.columns:
            out = {c: {} for c in dict.fromkeys(self.all_results["cell_id"])}
        return out

    @property
    def sweep_params(self) -> list[str]:
        """The swept parameters (dotted paths), in the sweep's order."""
        keys: list[str] = []
        for params in self.cells.values():
            keys += [k for k in params if k not in keys]
        return keys

    def cell_scenario(self, cell_id: str | None) -> dict:
        """The scenario dict of one cell (the sweep's overrides applied)."""
        from simulator.world.scenario import apply_overrides

        if cell_id is None:
            return self.scenario
        return apply_overrides(self.scenario, self.cells.get(cell_id, {}))

    def design_waterfall(self, design: str, cell_id: str | None = None) -> tuple[list[dict], dict]:
        """A design's waterfall stages and venue settings in one cell (see ``design_waterfall``)."""
        return design_waterfall(self.cell_scenario(cell_id), design)

    def select(self, cell: str | None = None) -> pd.DataFrame:
        """Ok run rows of one cell (``None``: every cell)."""
        df = self.results
        if cell is not None:
            _check_cell(self, cell)
            df = df[df["cell_id"] == cell]
        return df


def design_waterfall(scenario: dict, design: str) -> tuple[list[dict], dict]:
    """A design's waterfall stages and its venue settings (insurance_fund, backstop_capital,
    description) in a scenario dict; a name that is not among ``designs:`` is the scenario's
    own venue waterfall (``perpstress batch`` calls it "default")."""
    venue = dict(scenario.get("venue") or {})
    for d in scenario.get("designs") or []:
        if d.get("name") == design:
            fund, back = d.get("insurance_fund"), d.get("backstop_capital")
            return list(d.get("waterfall") or []), {
                "insurance_fund": venue.get("insurance_fund") if fund is None else fund,
                "backstop_capital": venue.get("backstop_capital") if back is None else back,
                "description": d.get("description", ""),
            }
    return list(venue.get("waterfall") or []), {
        "insurance_fund": venue.get("insurance_fund"),
        "backstop_capital": venue.get("backstop_capital"),
        "description": "the scenario's own venue waterfall",
    }


def folder_kind(path: str | Path) -> str:
    """``"run"`` or ``"batch"``; ``FileNotFoundError`` if the folder is neither."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such folder")
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: not a folder (give a run folder or a batch folder)")
    if (p / "manifest.json").is_file():
        return "batch"
    if (p / "summary.json").is_file() and (p / "timeseries.parquet").is_file():
        return "run"
    raise FileNotFoundError(
        f"{p}: not a results folder: a run folder holds summary.json and timeseries.parquet "
        f"(perpstress run --out DIR), a batch folder holds manifest.json and runs/ "
        f"(perpstress batch --out DIR)"
    )


def open_folder(folder: str | Path | RunFolder | BatchFolder) -> RunFolder | BatchFolder:
    """A ``RunFolder`` or ``BatchFolder`` (loaded lazily); passes loaded folders through."""
    if isinstance(folder, (RunFolder, BatchFolder)):
        return folder
    kind = folder_kind(folder)
    return BatchFolder(Path(folder)) if kind == "batch" else RunFolder(Path(folder))


def _need_batch(folder, what: str) -> BatchFolder:
    f = open_folder(folder)
    if not isinstance(f, BatchFolder):
        raise ValueError(f"{what} needs a batch folder (perpstress batch --out DIR); {f.path} is a single run")
    if f.results.empty:
        raise ValueError(f"{f.path}: the batch has no finished (ok) runs to plot")
    return f


def _check_cell(batch: BatchFolder, cell: str) -> None:
    if cell not in batch.cells:
        raise ValueError(f"{batch.path}: no sweep cell {cell!r}; cells: {list(batch.cells)}")


def _cell_text(batch: BatchFolder, cell: str | None) -> str:
    if len(batch.cells) <= 1:
        return ""
    if cell is None:
        return f"all {len(batch.cells)} sweep cells pooled"
    return f"cell {cell}"


# ============================================================================ shocks
def _shock_windows(scenario: dict) -> pd.DataFrame:
    rows = []
    for s in scenario.get("shocks") or []:
        start = int(s.get("step", 0))
        dur = int(s.get("duration", 1) or 1)
        kind = str(s.get("kind", "shock"))
        label = kind.replace("_", " ")
        if kind == "index_move" and s.get("move") is not None:
            label = f"index {float(s['move']):+.1%} over {dur} steps"
        elif kind == "liquidity_withdrawal" and s.get("fraction") is not None:
            label = f"makers pull {float(s['fraction']):.0%} of depth"
        elif kind == "oracle_stall":
            label = "oracle stall"
        elif kind == "whale":
            label = f"whale {s.get('side', 'long')} {_usd(float(s.get('notional', 0)))}"
        rows.append({"kind": kind, "start": start, "end": start + dur, "label": label})
    return pd.DataFrame(rows, columns=["kind", "start", "end", "label"])


def _shade(ax, shocks: pd.DataFrame, label: bool = False) -> list:
    handles = []
    for i, r in enumerate(shocks.itertuples(index=False)):
        ax.axvspan(r.start - 0.5, r.end - 0.5, color=SHOCK_COLOR, alpha=0.18, linewidth=0, zorder=0)
        if label:
            handles.append(Patch(facecolor=SHOCK_COLOR, alpha=0.35, label=f"shock: {r.label}"))
    return handles


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


def _col(ts: pd.DataFrame, name: str) -> np.ndarray:
    if name in ts.columns:
        return pd.to_numeric(ts[name], errors="coerce").to_numpy(dtype=float)
    return np.zeros(len(ts))


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
    for s in ("book", "backstop", "insurance_fund", "adl"):
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
    for s in ("book", "backstop", "insurance_fund", "adl"):
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


def _float(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float).to_numpy()
    conv = col.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v) if col.dtype == object else col
    return pd.to_numeric(conv, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


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


# ========================================================================= who pays
def lorenz(amounts) -> pd.DataFrame:
    """Lorenz curve of non-negative per-account amounts.

    Rows from ``(0, 0)``: accounts sorted from the smallest amount, ``share_accounts`` the
    cumulative share of accounts and ``share_amount`` the cumulative share of the total.
    ``attrs["gini"]`` is the Gini coefficient (``simulator.world.metrics.gini``).
    """
    from simulator.world.metrics import gini

    a = np.sort(np.clip(np.asarray(amounts, dtype=float), 0, None))
    a = a[~np.isnan(a)]
    n = len(a)
    total = float(a.sum())
    if n == 0:
        out = pd.DataFrame({"share_accounts": [0.0], "share_amount": [0.0]})
    else:
        cum = np.cumsum(a) / total if total > 0 else np.linspace(1 / n, 1, n)
        out = pd.DataFrame({"share_accounts": np.concatenate([[0.0], np.arange(1, n + 1) / n]),
                            "share_amount": np.concatenate([[0.0], cum])})
    out.attrs["gini"] = gini(a) if n else float("nan")
    out.attrs["n_accounts"] = n
    out.attrs["total"] = total
    return out


def _per_account(events: pd.DataFrame | None) -> dict[str, pd.Series]:
    """ADL PnL taken (positive part of each account's summed pnl) and socialization charges
    per account, in USD."""
    out = {"adl": pd.Series(dtype=float), "socialize": pd.Series(dtype=float)}
    if events is None or events.empty:
        return out
    kind = events["kind"].astype(str)
    adl = events[kind == "adl"]
    if len(adl):
        per = adl.groupby("account")["pnl"].sum().astype(float) * CASH_UNIT
        out["adl"] = per.clip(lower=0)
    soc = events[kind == "socialize"]
    if len(soc):
        out["socialize"] = soc.groupby("account")["amount"].sum().astype(float) * CASH_UNIT
    return out


def worst_path(batch: BatchFolder, cell: str | None = None, kept_only: bool = False,
               by: str = "deficit") -> tuple[str, int]:
    """``(cell_id, run_index)`` of the worst path, averaged over designs (the same path for
    every design: common random numbers).

    ``by="deficit"``: the largest bad debt (``deficit_total``); ``by="haircuts"``: the most
    taken from traders (``covered_adl + covered_socialize``), ties broken by bad debt. Then the
    first cell and the lowest run index. ``kept_only``: among paths whose series were kept.
    """
    if by not in ("deficit", "haircuts"):
        raise ValueError(f"by={by!r}: use 'deficit' or 'haircuts'")
    res = batch.select(cell)
    if kept_only and not batch.series.empty:
        kept = batch.series[["cell_id", "run_index"]].drop_duplicates()
        res = res.merge(kept, on=["cell_id", "run_index"])
    if res.empty:
        raise ValueError(f"{batch.path}: no runs to choose a path from")

    def col(name):
        return np.nan_to_num(_float(res[name])) if name in res.columns else np.zeros(len(res))

    score = res.assign(_d=col("deficit_total"), _h=col("covered_adl") + col("covered_socialize"))
    g = score.groupby(["cell_id", "run_index"], sort=False)[["_h", "_d"]].mean().reset_index()
    order = {c: i for i, c in enumerate(batch.cells)}
    g["_cell_order"] = g["cell_id"].map(order).fillna(len(order))
    keys = (["_h"] if by == "haircuts" else []) + ["_d", "_cell_order", "run_index"]
    g = g.sort_values(keys, ascending=[False] * (len(keys) - 2) + [True, True], kind="stable")
    top = g.iloc[0]
    return str(top["cell_id"]), int(top["run_index"])


def replay(batch: BatchFolder, design: str, cell: str, run_index: int):
    """Run one task of a batch again from its stored seed (``simulator.experiments.run.RunResult``).

    Runs are deterministic in their seed, so this reproduces the stored run exactly (same
    code version); used for what a batch does not keep (the events).
    """
    from simulator.experiments import run
    from simulator.experiments.batch import seed_sequence_from_row
    from simulator.world.scenario import validate

    res = batch.results
    row = res[(res["design"] == design) & (res["cell_id"] == cell) & (res["run_index"] == run_index)]
    if row.empty:
        raise ValueError(f"no ok run {run_index} of design {design!r} in cell {cell!r}")
    data = batch.cell_scenario(cell)
    base_dir = Path(__file__).resolve().parents[2] / "scenarios"
    sc = validate(data, f"{batch.path}/manifest.json", base_dir=base_dir)
    if any(d.name == design for d in sc.designs):
        sc = sc.design(design)
    return run.run_scenario(sc, seed=seed_sequence_from_row(row.iloc[0].to_dict()))


def plot_who_pays(
    folder,
    *,
    cell: str | None = None,
    replay_worst: bool = True,
    figsize: tuple[float, float] = (15, 6.5),
    dpi: int = DEFAULT_DPI,
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """Who paid for the bad debt.

    Left: one stacked bar per design of how the deficit was covered (insurance fund, backstop,
    ADL, socialization, venue's own loss; mean per run over the selected runs, USD), labelled
    with each part's share, and a black marker at the bad debt (``deficit_total``; the bar
    reaches it unless a stage paid more than the deficit). Middle and right: Lorenz curves of ADL PnL taken and of
    socialization charges per account, with their Gini coefficient. For a run folder the
    Lorenz curves come from its events. A batch keeps no events: with ``replay_worst`` the
    path with the largest bad debt (``worst_path``) is run again for every design (exactly,
    from its stored seed), so every design's curve is on the same path.

    Returns:
        ``(fig, data)``; ``data``: ``split`` (design, n_runs, the ``SPLIT_COLUMNS`` means and
        ``deficit_total`` mean, USD), ``lorenz`` (design, kind (adl | socialize),
        share_accounts, share_amount), ``lorenz_stats`` (design, kind, cell_id, run_index,
        n_accounts, total_usd, gini, top10_share).
    """
    f = open_folder(folder)
    if isinstance(f, RunFolder):
        designs = f.designs
        s = f.summary
        split = pd.DataFrame([{"design": designs[0], "n_runs": 1,
                               **{c: float(s.get(c) or 0.0) for c in SPLIT_COLUMNS},
                               "deficit_total": float(s.get("deficit_total") or 0.0)}])
        per_design_events = {designs[0]: (_per_account(f.events), None, None)}
        source = "Lorenz curves: the accounts of this run"
    else:
        res = f.select(cell)
        if res.empty:
            raise ValueError(f"{f.path}: the batch has no finished (ok) runs to plot")
        designs = [d for d in f.designs if d in set(res["design"])]
        rows = []
        for d in designs:
            g = res[res["design"] == d]
            row = {"design": d, "n_runs": int(len(g))}
            for c in list(SPLIT_COLUMNS) + ["deficit_total"]:
                row[c] = float(np.nanmean(_float(g[c]))) if c in g.columns and len(g) else 0.0
            rows.append(row)
        split = pd.DataFrame(rows)
        per_design_events = {}
        if replay_worst:
            wc, wr = worst_path(f, cell, by="haircuts")
            for d in designs:
                r = replay(f, d, wc, wr)
                per_design_events[d] = (_per_account(r.events), wc, wr)
            where = f", cell {wc}" if len(f.cells) > 1 else ""
            source = (f"Lorenz curves: run {wr}{where}, the path with the largest ADL + socialized amounts, "
                      f"replayed from its seed for every design")
        else:
            source = "Lorenz curves: not available (a batch keeps no per-account events)"
    colors = design_colors(designs if isinstance(f, RunFolder) else f.designs)

    lor_rows, stat_rows = [], []
    for d, (per, wc, wr) in per_design_events.items():
        for kind in ("adl", "socialize"):
            amounts = per[kind]
            if not len(amounts):
                continue
            lc = lorenz(amounts.to_numpy())
            lor_rows.append(lc.assign(design=d, kind=kind)[["design", "kind", "share_accounts", "share_amount"]])
            a = np.sort(amounts.to_numpy())[::-1]
            k = max(1, int(math.ceil(0.1 * len(a))))
            stat_rows.append({"design": d, "kind": kind, "cell_id": wc, "run_index": wr,
                              "n_accounts": lc.attrs["n_accounts"], "total_usd": lc.attrs["total"],
                              "gini": lc.attrs["gini"],
                              "top10_share": float(a[:k].sum() / a.sum()) if a.sum() > 0 else float("nan")})
    lor = pd.concat(lor_rows, ignore_index=True) if lor_rows else pd.DataFrame(
        columns=["design", "kind", "share_accounts", "share_amount"])
    stats = pd.DataFrame(stat_rows, columns=["design", "kind", "cell_id", "run_index", "n_accounts", "total_usd",
                                             "gini", "top10_share"])

    fig = _new_figure(figsize, dpi)
    name = f.name
    where = _cell_text(f, cell) if isinstance(f, BatchFolder) else ""
    fig.suptitle(f"{name}: who pays for the bad debt" + (f" ({where})" if where else ""), fontsize=14,
                 fontweight="bold")
    fig.supxlabel(textwrap.fill(source, 160), fontsize=9, color="0.3")
    ax_bar, ax_adl, ax_soc = fig.subplots(1, 3, width_ratios=[1.25, 1, 1])

    pos = np.arange(len(split))
    bottom = np.zeros(len(split))
    tot = split[list(SPLIT_COLUMNS)].sum(axis=1).to_numpy(dtype=float)
    deficit = split["deficit_total"].to_numpy(dtype=float)
    ymax = float(np.nanmax(np.concatenate([tot, deficit]))) if len(tot) else 0.0
    for c, stage in SPLIT_COLUMNS.items():
        v = split[c].to_numpy(dtype=float)
        ax_bar.bar(pos, v, bottom=bottom, width=0.6, color=STAGE_COLORS[stage], label=STAGE_LABELS[stage],
                   edgecolor="white", linewidth=0.5)
        for x, b, h, t in zip(pos, bottom, v, tot):
            if t > 0 and h / t >= 0.06 and h >= 0.05 * ymax:
                ax_bar.text(x, b + h / 2, f"{h / t:.0%}", ha="center", va="center", fontsize=8,
                            color="white" if stage in ("book", "adl", "socialize", "venue", "backstop") else "black")
        bottom = bottom + v
    # the bad debt itself: the bar should reach it; covers beyond it (e.g. ADL fills at a price
    # worse than mark) show as a bar above the marker
    ax_bar.scatter(pos, deficit, marker="_", s=900, linewidths=2.2, color="black", zorder=4,
                   label="bad debt (deficit)")
    for x, t in zip(pos, bottom):
        ax_bar.text(x, t + ymax * 0.01, _usd(t), ha="center", va="bottom", fontsize=9, fontweight="bold")
    ax_bar.set_xticks(pos, split["design"], rotation=20 if len(split) > 2 else 0,
                      ha="right" if len(split) > 2 else "center", fontsize=9)
    for lbl in ax_bar.get_xticklabels():
        lbl.set_color(colors.get(lbl.get_text(), "black"))
    per_run = "per run, mean" if isinstance(f, BatchFolder) else "this run"
    ax_bar.set_ylabel(f"deficit covered ({per_run}, USD)")
    ax_bar.yaxis.set_major_formatter(USD_FORMATTER)
    ax_bar.set_ylim(0, ymax * 1.35 if ymax > 0 else 1)
    ax_bar.set_title("How the deficit was covered (label: share of the bar)", fontsize=11)
    ax_bar.legend(fontsize=8, loc="upper left", framealpha=0.9, ncol=3, markerscale=0.3)
    ax_bar.grid(axis="y", alpha=0.25)
    if ymax == 0:
        ax_bar.text(0.5, 0.5, "no bad debt", transform=ax_bar.transAxes, ha="center", va="center", color="0.4")

    for ax, kind, title in ((ax_adl, "adl", "ADL: PnL taken per account"),
                            (ax_soc, "socialize", "Socialization: charge per account")):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="equal shares")
        drawn = 0
        for d in designs:
            g = lor[(lor["design"] == d) & (lor["kind"] == kind)]
            if g.empty:
                continue
            st = stats[(stats["design"] == d) & (stats["kind"] == kind)].iloc[0]
            ax.plot(g["share_accounts"], g["share_amount"], color=colors[d], lw=1.8,
                    drawstyle="default", marker="o" if len(g) <= 12 else None, ms=3,
                    label=f"{d}: Gini {st['gini']:.2f}, {int(st['n_accounts'])} accts, {_usd(st['total_usd'])}")
            drawn += 1
        if not drawn:
            msg = "no ADL in the runs shown" if kind == "adl" else "nothing socialized in the runs shown"
            if not per_design_events:
                msg = "per-account data not kept in a batch\n(plot with replay_worst=True)"
            ax.text(0.5, 0.55, msg, transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal", adjustable="box")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("share of accounts hit (smallest first)")
        ax.set_ylabel("cumulative share of the amount (USD)")
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=8, loc="upper left", framealpha=0.85)
        ax.grid(alpha=0.25)
    return fig, {"split": split, "lorenz": lor, "lorenz_stats": stats}


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
    parameters (default the first two). Returns ``(fig, sweep_table(...))``.
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
    n = len(designs)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    if figsize is None:
        figsize = (min(4.3 * ncols + 1.5, 20), 3.8 * nrows + 1.2)
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
        ax.set_xticks(range(len(xs)), [_fmt_value(v) for v in xs])
        ax.set_yticks(range(len(ys)), [_fmt_value(v) for v in ys] if y else [""])
        ax.set_xlabel(x)
        if y:
            ax.set_ylabel(y)
        ax.set_title(d, fontsize=11, color=colors.get(d, "black"), fontweight="bold")
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
    pooled = [p for p in batch.sweep_params if p not in (x, y)]
    extra = f"; pooled over {', '.join(pooled)}" if pooled else ""
    fig.suptitle(f"{batch.name}: {label} by {x}" + (f" and {y}" if y else "") + f" (up to {runs} runs per cell{extra})",
                 fontsize=13, fontweight="bold")
    return fig, table


# ============================================================================ output
def figure_bytes(fig: Figure, format: str = "png", quantize: bool = True) -> bytes:
    """The figure as PNG or SVG bytes, at the figure's own size and dpi (pixels = inches x dpi).

    PNGs are reduced to a 256-colour palette (``quantize``): plots have few colours, so this
    looks the same and is about a third of the size."""
    buf = io.BytesIO()
    _save(fig, buf, format, quantize)
    return buf.getvalue()


def _save(fig: Figure, target, format: str, quantize: bool = True) -> None:
    format = format.lower()
    if format not in ("png", "svg"):
        raise ValueError(f"format {format!r}: use png or svg")
    if format == "png":
        if not quantize:
            fig.savefig(target, format="png", dpi=fig.dpi, metadata={"Software": None}, pil_kwargs={"optimize": True})
            return
        from PIL import Image

        raw = io.BytesIO()
        fig.savefig(raw, format="png", dpi=fig.dpi, metadata={"Software": None})
        raw.seek(0)
        with Image.open(raw) as im:
            _quantize(im.convert("RGB")).save(target, format="PNG", optimize=True)
    else:
        import matplotlib

        with matplotlib.rc_context({"svg.hashsalt": "perpstress", "svg.fonttype": "none"}):
            fig.savefig(target, format="svg", dpi=fig.dpi, metadata={"Date": None})


def _fixed_colors() -> list[int]:
    """The fixed palette colours (stages, designs, prices, depth, black, white) as flat RGB."""
    from matplotlib.colors import to_rgb

    hexes = [*STAGE_COLORS.values(), *DESIGN_PALETTE, *PRICE_COLORS.values(), *DEPTH_COLORS.values(),
             "#ffffff", "#000000"]
    hexes = list(dict.fromkeys(h.lower() for h in hexes))
    return [int(round(v * 255)) for h in hexes for v in to_rgb(h)]


def _quantize(rgb):
    """A 256-colour palette image of ``rgb``: an adaptive (median cut) palette plus the fixed
    palette colours, exactly, so stage and design colours stay the same in every figure."""
    from PIL import Image

    fixed = _fixed_colors()
    n = 256 - len(fixed) // 3
    adaptive = rgb.quantize(colors=n, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal = adaptive.getpalette()[: 3 * n]
    pal += [0] * (3 * n - len(pal)) + fixed
    palette = Image.new("P", (1, 1))
    palette.putpalette(pal)
    return rgb.quantize(palette=palette, dither=Image.Dither.NONE)


def save_figure(fig: Figure, path: str | Path, format: str | None = None, quantize: bool = True) -> Path:
    """Write ``fig`` to ``path`` (format from ``format`` or the suffix; PNG by default, see
    ``figure_bytes`` for ``quantize``). The image is ``fig.get_size_inches() * fig.dpi`` pixels."""
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "png").lower()
    if path.suffix.lower() != f".{fmt}":
        path = path.with_name(path.name + f".{fmt}") if not path.suffix else path.with_suffix(f".{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path, fmt, quantize)
    return path


def _figures(folder, kinds: Sequence[str], metric: str | None, cell: str | None = None,
             steps: tuple[int, int] | None = None):
    """``(file stem, thunk)`` for each figure of ``kinds`` that the folder supports."""
    f = open_folder(folder)
    kinds = list(KINDS) if "all" in kinds else list(kinds)
    explicit = len(kinds) == 1
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"kind {k!r}: allowed {KINDS + ('all',)}")
    out = []
    if "timeline" in kinds:
        if isinstance(f, RunFolder):
            out.append(("timeline", lambda: plot_timeline(f, steps=steps)))
        elif not f.series.empty:
            c, r = worst_path(f, cell, kept_only=True)
            for d in f.designs:
                if ((f.series["design"] == d) & (f.series["cell_id"] == c) & (f.series["run_index"] == r)).any():
                    out.append((f"timeline_{_safe(d)}",
                                lambda d=d: plot_timeline(f, design=d, cell=c, run_index=r, steps=steps)))
        elif explicit:
            raise ValueError(f"{f.path}: the batch kept no per-step series; no timeline to draw")
    if "compare" in kinds:
        if isinstance(f, BatchFolder):
            out.append(("compare", lambda: plot_compare(f, cell=cell)))
        elif explicit:
            raise ValueError(f"{f.path}: the design comparison needs a batch folder (perpstress batch --out DIR)")
    if "who-pays" in kinds:
        out.append(("who_pays", lambda: plot_who_pays(f, cell=cell)))
    if "sweep" in kinds:
        if isinstance(f, BatchFolder) and f.sweep_params:
            stem = "sweep" if metric in (None, "p_socialization") else f"sweep_{_safe(metric)}"
            out.append((stem, lambda: plot_sweep(f, metric or "p_socialization")))
        elif explicit:
            raise ValueError(f"{f.path}: the sweep heatmap needs a batch folder with a sweep")
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def plot_all(folder, out_dir: str | Path | None = None, kinds: Sequence[str] = ("all",), format: str = "png",
             metric: str | None = None, cell: str | None = None, steps: tuple[int, int] | None = None) -> list[Path]:
    """Draw and save every figure of ``kinds`` the folder supports; returns the files written
    (default ``out_dir``: ``FOLDER/plots``). ``metric``: the sweep heatmap's; ``cell``: one
    sweep cell for the batch figures; ``steps``: the timeline's window ``(first, last)``."""
    f = open_folder(folder)
    out_dir = Path(out_dir) if out_dir is not None else f.path / "plots"
    written = []
    for stem, make in _figures(f, kinds, metric, cell, steps):
        fig, _ = make()
        written.append(save_figure(fig, out_dir / f"{stem}.{format}", format))
        fig.clear()
    return written
