"""How figures look: the fixed colours of waterfall stages and designs, price and depth colours,
labels, the USD formatter, a new Agg figure, shock-window shading.
"""

from __future__ import annotations

import zlib
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
    "socialize_pending": "#D98AA5",
    "venue": "#2B2B2B",
}
STAGE_LABELS = {
    "book": "order book",
    "backstop": "backstop vault",
    "insurance_fund": "insurance fund",
    "adl": "ADL",
    "engine": "liquidation engine",
    "socialize": "socialized",
    "socialize_pending": "socialization pending (settlement)",
    "venue": "venue's own loss",
}
#: Why ADL fired (the ``reason`` of ADL events) -> colour and label.
ADL_REASON_COLORS = {
    "fund_empty": "#D6472B",
    "fund_drawdown": "#F08C5A",
    "negative_equity": "#8C1D40",
    "takeover_refused": "#E3A21A",
    "book_exhausted": "#3B75AF",
    "price_band": "#8E63B5",
}
ADL_REASON_LABELS = {
    "fund_empty": "insurance fund empty",
    "fund_drawdown": "insurance fund fell past its drawdown threshold",
    "negative_equity": "case had negative equity",
    "takeover_refused": "takeover refused",
    "book_exhausted": "book exhausted",
    "price_band": "outside the price band",
}
PRICE_COLORS = {"index": "#222222", "mark": "#1F77B4", "last": "#FF7F0E"}
DEPTH_COLORS = {"bid": "#2E8B57", "ask": "#B22222"}
SHOCK_COLOR = "#9E9E9E"
#: Fixed colours of the scenario's own waterfall ("default") and of the bundled venue presets
#: (``scenarios/presets/``): the same in every folder and every figure.
PRESET_COLORS = {
    "default": "#1B9E77",
    "bitmex": "#A6761D",
    "binance": "#E6AB02",
    "bybit": "#D95F02",
    "okx": "#666666",
    "hyperliquid": "#7570B3",
    "dydx_v4": "#1F78B4",
    "drift": "#E7298A",
    "seed_article": "#66A61E",
    "paradex": "#B8860B",
}
#: Colours of other design names: the name's hash picks one (see ``design_color``).
DESIGN_PALETTE = (
    "#17BECF", "#B15928", "#6A3D9A", "#33A02C", "#FB9A99", "#BCBD22", "#8C564B", "#E377C2",
    "#2CA02C", "#9467BD", "#FF7F0E", "#4E79A7",
)


DEFAULT_DPI = 100


def design_color(name: str) -> str:
    """The colour of a design name, the same in every folder: a preset's fixed colour, else the
    name's CRC-32 (stable across processes and machines) into ``DESIGN_PALETTE``."""
    name = str(name)
    if name in PRESET_COLORS:
        return PRESET_COLORS[name]
    return DESIGN_PALETTE[zlib.crc32(name.encode("utf-8")) % len(DESIGN_PALETTE)]


def design_colors(designs: Sequence[str]) -> dict[str, str]:
    """Design -> colour for the designs of one figure: ``design_color`` of each name.

    Two hashed names of one figure that land on the same colour: the later one (in sorted
    name order, so not in the order given) moves to the next colour that no design of the
    figure uses; with at most a dozen designs every colour stays distinct."""
    names = list(dict.fromkeys(str(d) for d in designs))
    out = {d: PRESET_COLORS[d] for d in names if d in PRESET_COLORS}
    pool = list(dict.fromkeys(DESIGN_PALETTE + tuple(PRESET_COLORS.values())))
    for d in sorted(n for n in names if n not in PRESET_COLORS):
        c = design_color(d)
        if c in out.values():
            start = pool.index(c)
            free = [pool[(start + k) % len(pool)] for k in range(1, len(pool))]
            c = next((x for x in free if x not in out.values()), c)
        out[d] = c
    return {d: out[d] for d in names}


def usd_text(x: float) -> str:
    """Compact money text: $1.2M, $350k, $12, -$3.4k (plain text, for HTML and terminals)."""
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


def _usd(x: float, _pos=None) -> str:
    """``usd_text`` for matplotlib: the dollar sign escaped, so two amounts in one label are
    never read as mathtext."""
    return usd_text(x).replace("$", r"\$")


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
