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

Modules, one per figure family: ``timeline``, ``compare``, ``who_pays``, ``sweep``; ``style``
(colours per stage and design, formatters), ``_io`` (reading results folders, saving figures),
``report`` (the HTML report). This package re-exports the public names and holds ``plot_all``.
Figures read results folders, never the model; ``who_pays.replay`` re-runs one stored path
through ``simulator.experiments.run``. May import experiments, world and venue; never cli.

Colours are fixed: ``STAGE_COLORS`` for waterfall stages (the same in every figure) and, for
designs, ``PRESET_COLORS`` (the bundled presets and "default") or the name's hash into
``DESIGN_PALETTE`` (``design_color``): a design has the same colour in every folder.

Money is in the scenario's quote currency, labelled USD; time is in simulation steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from simulator.figures._io import (
    BatchFolder,
    RunFolder,
    design_waterfall,
    figure_bytes,
    folder_kind,
    open_folder,
    save_figure,
)
from simulator.figures.compare import (
    COMPARE_METRICS,
    EXCEEDANCE_METRICS,
    exceedance,
    paired_differences,
    plot_compare,
    zero_metrics,
)
from simulator.figures.style import (
    DESIGN_PALETTE,
    PRESET_COLORS,
    PRICE_COLORS,
    STAGES,
    STAGE_COLORS,
    STAGE_LABELS,
    design_color,
    design_colors,
)
from simulator.figures.sweep import plot_sweep, sweep_table
from simulator.figures.timeline import plot_timeline
from simulator.figures.who_pays import (
    REASON_COLUMNS,
    SPLIT_COLUMNS,
    lorenz,
    plot_who_pays,
    replay,
    worst_path,
    worst_path_text,
)


__all__ = [
    "STAGES",
    "STAGE_COLORS",
    "STAGE_LABELS",
    "PRICE_COLORS",
    "DESIGN_PALETTE",
    "PRESET_COLORS",
    "COMPARE_METRICS",
    "EXCEEDANCE_METRICS",
    "SPLIT_COLUMNS",
    "REASON_COLUMNS",
    "KINDS",
    "RunFolder",
    "BatchFolder",
    "open_folder",
    "folder_kind",
    "design_waterfall",
    "design_color",
    "design_colors",
    "exceedance",
    "paired_differences",
    "zero_metrics",
    "lorenz",
    "worst_path",
    "worst_path_text",
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


#: Figure kinds of ``plot_all`` / ``perpstress plot --kind``.
KINDS = ("timeline", "compare", "who-pays", "sweep")


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
            c, r = worst_path(f, cell)
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
