"""Reading results folders (``RunFolder``, ``BatchFolder``, ``open_folder``) and writing figures
(``save_figure``, ``figure_bytes``: PNG quantised to a fixed palette, or SVG).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from simulator.figures.style import (
    DEPTH_COLORS,
    DESIGN_PALETTE,
    PRESET_COLORS,
    PRICE_COLORS,
    STAGE_COLORS,
    _usd,
    usd_text,
)


#: Ledger cash unit (micro-USD): events' amount and pnl columns are in these.
CASH_UNIT = 1e-6


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


_USD_PARAMS = ("insurance_fund", "backstop_capital", "capital", "notional", "level_notional", "start_price",
               "max_trade_notional", "median")
_PCT_PARAMS = ("move", "fraction", "price_band", "recovery", "trigger", "level_spacing", "long_share",
               "initial_positions", "threshold", "volatility")


def param_label(path: str) -> str:
    """A readable axis label for a dotted scenario field: ``venue.insurance_fund`` ->
    "insurance fund (USD)", ``shocks.0.move`` -> "shock 1: move (%)"."""
    parts = str(path).split(".")
    leaf = parts[-1]
    unit = " (USD)" if leaf in _USD_PARAMS else (" (%)" if leaf in _PCT_PARAMS else "")
    words = leaf.replace("_", " ")
    if len(parts) >= 3 and parts[-2].isdigit():
        owner = parts[-3].rstrip("s").replace("_", " ")
        return f"{owner} {int(parts[-2]) + 1}: {words}{unit}"
    if len(parts) >= 2 and parts[0] == "agents":
        return f"{parts[1].replace('_', ' ')}: {words}{unit}"
    return f"{words}{unit}"


def param_value(path: str, v: Any, tex: bool = True) -> str:
    """A swept value as text in the parameter's unit: ``1e5`` -> "$100k", ``-0.06`` -> "-6 %"
    (``tex``: the dollar escaped for matplotlib; ``False`` for HTML)."""
    leaf = str(path).split(".")[-1]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return _fmt_value(v)
    f = float(v)
    if leaf in _USD_PARAMS:
        return _usd(f) if tex else usd_text(f)
    if leaf in _PCT_PARAMS:
        return f"{f * 100:+g} %" if leaf == "move" else f"{f * 100:g} %"
    return _fmt_value(v)


def cell_text(params: dict, tex: bool = True) -> str:
    """A sweep cell's values, readable: "insurance fund $100k, shock 1: move -6 %"."""
    return ", ".join(f"{param_label(k).split(' (')[0]} {param_value(k, v, tex)}" for k, v in params.items())


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

    def overridden(self, design: str) -> dict[str, Any]:
        """Swept parameters a design sets itself (so the sweep does not move them for it):
        ``venue.insurance_fund`` / ``venue.backstop_capital`` when the design gives its own,
        any ``venue.waterfall...`` field for a design with its own waterfall. Parameter ->
        the design's value (``None`` for a waterfall field)."""
        out: dict[str, Any] = {}
        for d in self.scenario.get("designs") or []:
            if d.get("name") != design:
                continue
            for p in self.sweep_params:
                key = p.split(".", 1)[1] if p.startswith("venue.") else None
                if key in ("insurance_fund", "backstop_capital") and d.get(key) is not None:
                    out[p] = d[key]
                elif p.startswith("venue.waterfall"):
                    out[p] = None
        return out

    def stages(self, design: str, cell_id: str | None = None) -> list[str]:
        """The stage names of a design's waterfall in one cell (first cell when ``None``)."""
        if cell_id is None and self.cells:
            cell_id = next(iter(self.cells))
        return [str(st.get("stage")) for st in self.design_waterfall(design, cell_id)[0]]

    def baseline(self) -> str:
        """The baseline design: ``compare.csv``'s when the batch has one, else the first design
        with ok runs in the manifest's order (``perpstress compare``'s default)."""
        f = self.path / "compare.csv"
        ok = [d for d in self.designs if d in set(self.results.get("design", pd.Series(dtype=object)))]
        if f.exists():
            try:
                b = pd.read_csv(f, usecols=["baseline"])["baseline"].dropna()
                if len(b) and str(b.iloc[0]) in ok:
                    return str(b.iloc[0])
            except (ValueError, KeyError, pd.errors.ParserError):
                pass
        return ok[0] if ok else (self.designs[0] if self.designs else "")

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


def _col(ts: pd.DataFrame, name: str) -> np.ndarray:
    if name in ts.columns:
        return pd.to_numeric(ts[name], errors="coerce").to_numpy(dtype=float)
    return np.zeros(len(ts))


def _float(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float).to_numpy()
    conv = col.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v) if col.dtype == object else col
    return pd.to_numeric(conv, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


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

    hexes = [*STAGE_COLORS.values(), *PRESET_COLORS.values(), *DESIGN_PALETTE, *PRICE_COLORS.values(), *DEPTH_COLORS.values(),
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
