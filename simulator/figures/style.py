"""How figures look: the fixed colours of waterfall stages and designs, price and depth colours,
labels, the USD formatter, a new Agg figure, shock-window shading.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter


# ============================================================================ style
#: Waterfall stages in waterfall order, plus what no stage covered ("venue").
STAGES = ("book", "backstop", "insurance_fund", "adl", "engine", "socialize", "venue")
#: Stages that close positions (the timeline's stacked liquidation bars).
LIQUIDATING = ("book", "backstop", "insurance_fund", "adl", "engine")
#: One fixed colour per stage, used by every figure.
STAGE_COLORS = {
    "book": "#3B75AF",
    "backstop": "#8E63B5",
    "insurance_fund": "#E3A21A",
    "adl": "#D6472B",
    "engine": "#6B8E23",
    "socialize": "#8C1D40",
    "venue": "#2B2B2B",
}
STAGE_LABELS = {
    "book": "order book",
    "backstop": "backstop vault",
    "insurance_fund": "insurance fund",
    "adl": "ADL",
    "engine": "liquidation engine",
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


DEFAULT_DPI = 100


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


def _shade(ax, shocks: pd.DataFrame, label: bool = False) -> list:
    handles = []
    for i, r in enumerate(shocks.itertuples(index=False)):
        ax.axvspan(r.start - 0.5, r.end - 0.5, color=SHOCK_COLOR, alpha=0.18, linewidth=0, zorder=0)
        if label:
            handles.append(Patch(facecolor=SHOCK_COLOR, alpha=0.35, label=f"shock: {r.label}"))
    return handles
