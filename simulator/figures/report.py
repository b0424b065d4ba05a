"""One self-contained HTML report of a run folder or a batch folder (``perpstress report``).

The report holds the scenario (description, market, agents, venue, shocks, sweep), the
waterfall designs side by side, the comparison tables of ``simulator.experiments.compare`` (probabilities
of ADL, socialization and fund depletion; distribution of each headline metric per design and
its paired difference to the baseline design with a bootstrap 95 % interval) and every figure
of ``simulator.figures``. Figures are embedded as base64 PNG ``data:`` URIs and the styles are
inline: the file opens in any browser, offline, with no server and no other file.

For a single run folder: the scenario, its waterfall, the run's summary and its timeline and
who-pays figures.

A small script in the page sets ``data-images-loaded="N/N"`` and ``data-report-ready="1"`` on
``<body>`` once every image has loaded (``complete`` and ``naturalWidth > 0``), so a headless
browser can check the report renders.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator import figures as plots
from simulator.figures import BatchFolder, RunFolder, open_folder
from simulator.figures._io import _fmt_value, cell_text, param_label, param_value
from simulator.figures.style import ADL_REASON_LABELS

__all__ = ["write_report", "build_report", "REPORT_NAME"]

REPORT_NAME = "report.html"
#: Metrics of the report's comparison tables (the comparison figure's plus a few).
TABLE_METRICS = (
    "liquidation_notional",
    "max_cascade_depth",
    "amplification_r",
    "deficit_total",
    "covered_insurance_fund",
    "covered_backstop",
    "covered_adl",
    "covered_socialize",
    "socialize_pending",
    "venue_loss",
    "fund_end",
    "fund_drawdown",
    "backstop_equity_end",
    "backstop_pnl",
    "adl_notional",
    "adl_haircut",
    "adl_profit_taken",
    "adl_overshoot",
    "adl_gini",
    "socialized_total",
    "socialized_accounts",
    "overshoot",
)
_USD_KEYS = (
    "notional", "deficit", "covered_", "venue_loss", "surplus", "fund_start", "fund_min", "fund_end",
    "fund_drawdown", "fund_paid", "fund_received", "adl_pnl_taken", "adl_profit_taken", "adl_haircut",
    "adl_shortfall", "adl_overshoot", "socialized_total", "socialize_pending", "backstop_", "engine_equity",
    "adl_paid_beyond", "withdrawn", "withdrawal_haircut", "socialized_outstanding",
)
_PCT_KEYS = ("overshoot", "max_drawdown", "adl_share_winners_hit", "socialized_share_zero_position")
_PRICE_KEYS = ("index_min", "last_min", "mark_min")
_LABELS = {
    "liquidation_notional": "liquidated notional",
    "max_cascade_depth": "max cascade depth (rounds)",
    "amplification_r": "amplification R",
    "deficit_total": "bad debt (deficit)",
    "covered_insurance_fund": "covered by insurance fund",
    "covered_backstop": "covered by backstop",
    "covered_adl": "covered by ADL",
    "covered_socialize": "socialized",
    "socialize_pending": "socialization pending (settlement)",
    "venue_loss": "venue's own loss",
    "fund_end": "insurance fund at end",
    "fund_drawdown": "insurance fund drawdown",
    "backstop_equity_end": "backstop vault equity at end",
    "backstop_pnl": "backstop vault P&L",
    "adl_notional": "ADL notional",
    "adl_haircut": "ADL haircut (cash lost vs mark)",
    "adl_profit_taken": "ADL profit realised early (not a loss)",
    "adl_overshoot": "ADL overshoot",
    "adl_gini": "ADL Gini",
    "socialized_total": "socialized loss",
    "socialized_accounts": "accounts socialized",
    "overshoot": "last-trade undershoot of index low",
}
#: The stage a metric needs: for a design without it the metric is "n/a" (never "significant").
_NEEDS = {
    "covered_insurance_fund": "insurance_fund", "fund_end": "insurance_fund", "fund_drawdown": "insurance_fund",
    "fund_min": "insurance_fund", "fund_depleted": "insurance_fund", "p_fund_depletion": "insurance_fund",
    "covered_backstop": "backstop", "backstop_equity_end": "backstop", "backstop_pnl": "backstop",
    "covered_adl": "adl", "adl_notional": "adl", "adl_haircut": "adl", "adl_profit_taken": "adl",
    "adl_overshoot": "adl", "adl_gini": "adl", "p_adl": "adl",
    "covered_socialize": "socialize", "socialize_pending": "socialize", "socialized_total": "socialize",
    "socialized_accounts": "socialize", "p_socialization": "socialize",
}
#: The cover lines of a headline: they add up to the bad debt.
COVER_KEYS = ("covered_insurance_fund", "covered_backstop", "covered_adl", "covered_socialize", "socialize_pending",
              "venue_loss")
_REASONS = ("fund_empty", "fund_drawdown", "negative_equity", "takeover_refused", "book_exhausted", "price_band")


def applies(metric: str, stages) -> bool:
    """Whether ``metric`` means anything for a design with these waterfall ``stages``."""
    need = _NEEDS.get(metric)
    if need is None and metric.startswith("adl_notional_"):
        need = "adl"
    return need is None or need in set(stages)

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1560px;padding:18px 28px;
color:#1d1d1f;line-height:1.4}
h1{font-size:26px;margin:4px 0 2px}h2{font-size:20px;margin:30px 0 8px;border-bottom:2px solid #ddd;padding-bottom:3px}
h3{font-size:16px;margin:18px 0 6px}.meta{color:#555;font-size:13px}.desc{font-size:15px;margin:8px 0 4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}th,td{border:1px solid #d0d0d0;padding:3px 8px;
vertical-align:top}th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}.swatch{display:inline-block;width:11px;height:11px;
border-radius:2px;margin-right:5px;vertical-align:-1px}.stage{font-weight:600}.settings{color:#555;font-size:12px}
figure{margin:10px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #e2e2e2;box-sizing:border-box}
figcaption{color:#444;font-size:13px;margin-top:4px;max-width:1100px}.note{color:#555;font-size:13px;max-width:1100px}
.sig{font-weight:700}details{margin:8px 0}summary{cursor:pointer;font-weight:600}
.wide{overflow-x:auto}
"""

SCRIPT = """
(function () {
  function check() {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
    if (ok === imgs.length) { document.body.setAttribute('data-report-ready', '1'); }
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
"""


# ============================================================================ helpers
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _is_nan(v: Any) -> bool:
    try:
        return v is None or (isinstance(v, (float, np.floating)) and math.isnan(float(v))) or v is pd.NA
    except (TypeError, ValueError):
        return False


def _money(v: float, signed: bool = False) -> str:
    """Whole dollars with thousands separators ("$300,000", "$0"); cents only under $1."""
    v = float(v)
    sign = "-" if v < 0 else ("+" if signed and v > 0 else "")
    a = abs(v)
    if a == 0:
        return "$0"
    body = f"${a:,.2f}" if a < 1 else f"${a:,.0f}"
    return sign + body


def _fmt(key: str, v: Any, signed: bool = False) -> str:
    """A metric value as text, by what the key measures: money in whole dollars, fractions in
    % (differences of fractions in percentage points), counts with separators, ratios with two
    decimals. ``signed``: a difference (leading + on positive values)."""
    if _is_nan(v):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    v = float(v)
    plus = "+" if signed and v > 0 else ""
    if key.endswith("_pct"):
        return f"{plus}{v:.2f} {'pp' if signed else '%'}"
    if key.startswith("p_"):
        return f"{plus}{v * 100:.0f} {'pp' if signed else '%'}"
    if key in _PCT_KEYS or key.endswith("_share") or "_share_" in key:
        return f"{plus}{v * 100:.2f} {'pp' if signed else '%'}"
    if key in _PRICE_KEYS:
        return f"{plus}{v:,.2f}"
    if any(k in key for k in _USD_KEYS):
        return _money(v, signed)
    if v.is_integer() and abs(v) < 1e15:
        return f"{plus}{int(v):,}"
    return f"{plus}{v:,.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[tuple[str, bool] | str]], cls: str = "") -> str:
    """An HTML table; a cell is text (escaped) or ``(html, numeric)``."""
    out = [f'<div class="wide"><table class="{cls}">']
    if any(header):
        out += ["<thead><tr>", *[f"<th>{h}</th>" for h in header], "</tr></thead>"]
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>")
        for c in r:
            if isinstance(c, tuple):
                body, num = c
                out.append(f'<td class="num">{body}</td>' if num else f"<td>{body}</td>")
            else:
                out.append(f"<td>{_e(c)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{_e(color)}"></span>'


def _img(fig, alt: str) -> str:
    data = plots.figure_bytes(fig, "png")
    w, h = (fig.get_size_inches() * fig.dpi).round().astype(int)
    fig.clear()
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{_e(alt)}" width="{w}" height="{h}">'


def _figure(make, alt: str, caption: str) -> str:
    try:
        fig, _ = make()
    except Exception as exc:  # a figure that cannot be drawn must not lose the rest of the report
        return f'<p class="note">{_e(alt)}: not drawn ({_e(type(exc).__name__)}: {_e(exc)}).</p>'
    return f"<figure>{_img(fig, alt)}<figcaption>{caption}</figcaption></figure>"


# ======================================================================== scenario
_STAGE_MODELS: dict[str, Any] | None = None


def _stage_defaults(stage: str) -> dict:
    global _STAGE_MODELS
    if _STAGE_MODELS is None:
        from simulator.world import scenario as S

        _STAGE_MODELS = {"book": S.BookStage, "backstop": S.BackstopStage, "insurance_fund": S.InsuranceFundStage,
                         "adl": S.ADLStage, "socialize": S.SocializeStage}
    model = _STAGE_MODELS.get(stage)
    if model is None:
        return {}
    try:
        return model(stage=stage).model_dump(mode="json")
    except Exception:
        return {}


def _stage_html(st: dict) -> str:
    """A stage with every setting that drives results (defaults filled in), non-defaults first."""
    name = str(st.get("stage", "?"))
    defaults = _stage_defaults(name)
    full = {**{k: v for k, v in defaults.items() if k != "stage"}, **{k: v for k, v in st.items() if k != "stage"}}
    changed = [k for k in full if k not in defaults or defaults.get(k) != full[k]]
    order = changed + [k for k in full if k not in changed]
    color = plots.STAGE_COLORS.get(name, "#999")
    settings = ", ".join(f"{k}={_setting(full[k])}" for k in order) or "no settings"
    return (f'{_swatch(color)}<span class="stage">{_e(plots.STAGE_LABELS.get(name, name))}'
            f'</span> <span class="settings">({_e(settings)})</span>')


def _setting(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _resolved(sc: dict) -> dict:
    """The scenario with every default filled in (as ``perpstress run`` writes it), else as given."""
    try:
        from simulator.world.scenario import Scenario

        return Scenario.model_validate(sc).model_dump(mode="json")
    except Exception:
        return sc


def _scenario_html(sc: dict) -> str:
    sc = _resolved(sc)
    parts = []
    rows = []
    steps = sc.get("steps")
    secs = float(sc.get("step_seconds") or 1.0)
    if steps is not None:
        rows.append(("length", f"{int(steps):,} steps of {secs:g} s ({int(steps) * secs / 60:,.1f} minutes)"))
    if sc.get("seed") is not None:
        rows.append(("scenario seed", str(sc.get("seed"))))
    models = (sc.get("index") or {}).get("models") or []
    for i, m in enumerate(sc.get("markets") or []):
        model = models[i] if i < len(models) else {}
        idx = ", ".join(f"{k}={v}" for k, v in model.items() if k != "kind")
        text = ", ".join(f"{label} {m[k]}" for k, label in (("tick_size", "tick"), ("lot_size", "lot")) if m.get(k) is not None)
        if m.get("max_leverage") is not None:
            text += f", max leverage {m['max_leverage']:g}x"
        if model:
            text += f"; index: {model.get('kind', '')} ({idx})"
        rows.append((f"market {m.get('name', i)}", text))
    ag = sc.get("agents") or {}
    t = ag.get("traders") or {}
    if t:
        bits = [f"{int(t.get('count', 0)):,}"]
        cap, lev = t.get("capital") or {}, t.get("leverage") or {}
        if cap.get("median") is not None:
            bits.append(f"capital median {_money(cap['median'])}")
        if lev.get("median") is not None:
            bits.append(f"leverage median {lev['median']:g}x" + (f" (cap {lev['cap']:g}x)" if lev.get("cap") else ""))
        if t.get("long_share") is not None:
            bits.append(f"{float(t['long_share']):.0%} of new positions long")
        if t.get("initial_positions") is not None:
            bits.append(f"{float(t['initial_positions']):.0%} holding a position at step 0")
        rows.append(("traders", "; ".join(bits)))
    mm = ag.get("market_makers") or {}
    if mm:
        bits = [f"{mm.get('count')}" + (f" x {_money(mm['capital'])}" if mm.get("capital") is not None else "")]
        if mm.get("levels") is not None and mm.get("level_notional") is not None:
            bits.append(f"{mm['levels']} levels of {_money(mm['level_notional'])} a side")
        if mm.get("level_spacing") is not None:
            bits.append(f"spacing {float(mm['level_spacing']):.2%}")
        rows.append(("market makers", "; ".join(bits)))
    ar = ag.get("arbitrageurs") or {}
    if ar:
        rows.append(("arbitrageurs", f"{ar.get('count')}" + (f" x {_money(ar['capital'])}" if ar.get("capital") else "")))
    v = sc.get("venue") or {}
    if v:
        bits = []
        if v.get("insurance_fund") is not None:
            bits.append(f"insurance fund {_money(v['insurance_fund'])}")
        if v.get("backstop_capital"):
            bits.append(f"backstop capital {_money(v['backstop_capital'])}")
        if (v.get("mark") or {}).get("method"):
            bits.append(f"mark price: {v['mark']['method']}")
        if v.get("max_rounds") is not None:
            bits.append(f"up to {v['max_rounds']} liquidation rounds per step")
        rows.append(("venue", "; ".join(bits)))
    parts.append(_table(["", ""], rows))
    shocks = sc.get("shocks") or []
    if shocks:
        parts.append("<h3>Shocks</h3>")
        srows = []
        for sh in shocks:
            rest = ", ".join(f"{k}={val}" for k, val in sh.items() if k not in ("kind", "step", "duration") and val is not None)
            srows.append((sh.get("kind", ""), (str(sh.get("step", "")), True), (str(sh.get("duration", 1)), True), rest))
        parts.append(_table(["kind", "step", "duration (steps)", "settings"], srows))
    return "".join(parts)


def _designs_html(names: list[str], waterfalls: dict[str, tuple[list[dict], dict]], colors: dict[str, str],
                  swept: dict[str, list] | None = None, own: dict[str, dict] | None = None) -> str:
    """Designs side by side. ``swept``: sweep parameter -> values; ``own``: the settings a design
    sets itself (those win over the sweep)."""
    swept, own = swept or {}, own or {}
    n_stages = max((len(w[0]) for w in waterfalls.values()), default=0)
    header = ["", *[f"{_swatch(colors[d])}{_e(d)}" for d in names]]

    def money_row(d: str, key: str) -> tuple[str, bool]:
        if own.get(d, {}).get(key) is None and f"venue.{key}" in swept:
            vals = ", ".join(_money(float(x)) for x in swept[f"venue.{key}"])
            return f"swept: {_e(vals)}", True
        if f"venue.{key}" in swept:
            return f"{_e(_money(own[d][key]))} (set by the design; the sweep does not move it)", True
        return _money(waterfalls[d][1].get(key) or 0), True

    rows = []
    rows.append([("description", False), *[(_e(waterfalls[d][1].get("description") or ""), False) for d in names]])
    rows.append([("insurance fund at start", False), *[money_row(d, "insurance_fund") for d in names]])
    rows.append([("backstop capital", False), *[money_row(d, "backstop_capital") for d in names]])
    for i in range(n_stages):
        row = [(f"stage {i + 1}", False)]
        for d in names:
            st = waterfalls[d][0]
            row.append((_stage_html(st[i]) if i < len(st) else "", False))
        rows.append(row)
    rows.append([("then", False), *[("venue's own loss (whatever no stage covered)", False) for _ in names]])
    return _table(header, rows)


# ======================================================================== comparison
def _compare_frames(batch: BatchFolder, baseline: str, res: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The comparison (``compare.csv`` of the batch when it has every table metric, with the
    report's own metrics (backstop P&L) computed beside it) and the probabilities."""
    from simulator.experiments.compare import compare, probabilities

    csv_c, csv_p = batch.path / "compare.csv", batch.path / "probabilities.csv"
    metrics = [m for m in TABLE_METRICS if m in res.columns]
    source = "computed for this report"
    cmp = None
    if csv_c.exists():
        try:
            cmp = pd.read_csv(csv_c)
            have = set(cmp["metric"])
            if set(cmp["design"]) != set(res["design"]) or not have & set(metrics):
                cmp = None
            else:
                source = "compare.csv of the batch"
                extra = [m for m in metrics if m not in have]
                if extra:
                    cmp = pd.concat([cmp, compare(res, baseline=baseline, metrics=extra, n_boot=1000)],
                                    ignore_index=True)
                    source += f"; {', '.join(_LABELS.get(m, m) for m in extra)} computed for this report"
        except Exception:
            cmp = None
    if cmp is None:
        cmp = compare(res, baseline=baseline, metrics=metrics, n_boot=1000)
    prob = pd.read_csv(csv_p) if csv_p.exists() else probabilities(res)
    return cmp, prob, source


def _prob_html(prob: pd.DataFrame, batch: BatchFolder, colors: dict[str, str]) -> str:
    cols = [c for c in ("p_adl", "p_socialization", "p_fund_depletion") if c in prob.columns]
    names = {"p_adl": "P(ADL)", "p_socialization": "P(socialization)", "p_fund_depletion": "P(fund depleted)"}
    multi = len(batch.cells) > 1
    header = (["cell"] if multi else []) + ["design", "runs"] + [names[c] for c in cols]
    rows = []
    order = {c: i for i, c in enumerate(batch.cells)}
    dorder = {d: i for i, d in enumerate(batch.designs)}
    prob = prob.assign(_c=prob["cell_id"].map(order), _d=prob["design"].map(dorder)).sort_values(["_c", "_d"])
    for r in prob.itertuples(index=False):
        rd = r._asdict()
        row = ([str(rd["cell_id"])] if multi else []) + [
            (f"{_swatch(colors.get(rd['design'], '#999'))}{_e(rd['design'])}", False), (str(int(rd["n"])), True)]
        stages = batch.stages(rd["design"], rd["cell_id"] if rd["cell_id"] in batch.cells else None)
        row += [(_fmt(c, rd[c]) if applies(c, stages) else "n/a", True) for c in cols]
        rows.append(row)
    return _table(header, rows)


def _cmp_html(cmp: pd.DataFrame, batch: BatchFolder, cell: str, colors: dict[str, str]) -> str:
    """One cell's comparison: a row per metric x design (designs side by side within a metric).
    A metric that does not apply to a design (``applies``: fund end without a fund) is "n/a",
    and so is its difference to the baseline."""
    c = cmp[cmp["cell_id"] == cell]
    if c.empty:
        return "<p class='note'>no finished runs in this cell</p>"
    designs = [d for d in batch.designs if d in set(c["design"])]
    baseline = str(c["baseline"].dropna().iloc[0]) if c["baseline"].notna().any() else designs[0]
    stages = {d: batch.stages(d, cell) for d in designs}
    header = ["metric", "design", "runs", "mean", "median", "p95", "p99", "CVaR95",
              f"design &minus; {_e(baseline)}: mean [95 % CI]"]
    out = ['<div class="wide"><table><thead><tr>', "".join(f"<th>{h}</th>" for h in header), "</tr></thead><tbody>"]
    metrics = [m for m in TABLE_METRICS if m in set(c["metric"])]
    for k, m in enumerate(metrics):
        rows = [(d, c[(c["metric"] == m) & (c["design"] == d)]) for d in designs]
        rows = [(d, g.iloc[0]) for d, g in rows if not g.empty]
        shade = ' style="background:#f6f8fb"' if k % 2 else ""
        for i, (d, r) in enumerate(rows):
            ok = applies(m, stages[d])
            tds = []
            if i == 0:
                tds.append(f'<td rowspan="{len(rows)}"{shade}><b>{_e(_LABELS.get(m, m))}</b></td>')
            tds.append(f"<td{shade}>{_swatch(colors.get(d, '#999'))}{_e(d)}</td>")
            tds.append(f'<td class="num"{shade}>{int(r["n"])}</td>')
            for col in ("mean", "median", "p95", "p99", "cvar95"):
                tds.append(f'<td class="num"{shade}>{_e(_fmt(m, r[col]) if ok else "n/a")}</td>')
            if d == baseline:
                tds.append(f'<td class="num"{shade}>baseline</td>')
            else:
                dm, lo, hi = r["diff_mean"], r["diff_low"], r["diff_high"]
                if _is_nan(dm) or not ok or not applies(m, stages.get(baseline, [])):
                    txt, sig = "n/a", False
                else:
                    txt = f"{_fmt(m, dm, signed=True)} [{_fmt(m, lo, signed=True)}, {_fmt(m, hi, signed=True)}]"
                    sig = not (_is_nan(lo) or _is_nan(hi)) and (float(lo) > 0 or float(hi) < 0)
                body = f'<span class="sig">{_e(txt)}</span>' if sig else _e(txt)
                tds.append(f'<td class="num"{shade}>{body}</td>')
            out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _with_backstop_pnl(batch: BatchFolder, res: pd.DataFrame) -> pd.DataFrame:
    """``res`` with ``backstop_pnl``: the vault's end equity minus its starting capital (the
    design's ``backstop_capital`` in the run's cell), when the runs carry ``backstop_equity_end``."""
    if "backstop_equity_end" not in res.columns or res.empty:
        return res
    cap = {}
    for (d, c) in res[["design", "cell_id"]].drop_duplicates().itertuples(index=False):
        cap[(d, c)] = float(batch.design_waterfall(d, c)[1].get("backstop_capital") or 0.0)
    start = np.array([cap[(d, c)] for d, c in zip(res["design"], res["cell_id"])], dtype=float)
    end = pd.to_numeric(res["backstop_equity_end"], errors="coerce").to_numpy(dtype=float)
    return res.assign(backstop_pnl=end - start)


def _headline_rows(means: dict[str, float], stages, reasons=_REASONS) -> list[tuple[str, str]]:
    """The headline: bad debt, every cover (they add up to it), ADL by reason, the ADL
    haircut and the profit it realised early; "n/a" for what the design has no stage for."""
    def f(k):
        return _fmt(k, means.get(k)) if applies(k, stages) else "n/a"

    rows = [("bad debt (deficit)", _fmt("deficit_total", means.get("deficit_total")))]
    for k in COVER_KEYS:
        rows.append((f"&nbsp;&nbsp;{_e(_LABELS.get(k, k))}", f(k)))
    covers = sum(float(means.get(k) or 0.0) for k in COVER_KEYS)
    rows.append(("&nbsp;&nbsp;sum of the covers", _fmt("deficit_total", covers)))
    rows.append(("ADL notional", f("adl_notional")))
    for r in reasons:
        rows.append((f"&nbsp;&nbsp;ADL fired because: {_e(ADL_REASON_LABELS.get(r, r))}", f(f"adl_notional_{r}")))
    rows.append(("ADL haircut (cash lost vs mark)", f("adl_haircut")))
    rows.append(("ADL profit realised early (not a loss)", f("adl_profit_taken")))
    rows.append(("insurance fund at end", f("fund_end")))
    rows.append(("backstop vault equity at end", f("backstop_equity_end")))
    rows.append(("backstop vault P&amp;L", f("backstop_pnl")))
    rows.append(("venue's own loss", _fmt("venue_loss", means.get("venue_loss"))))
    return rows


def _headline_html(batch: BatchFolder, res: pd.DataFrame, colors: dict[str, str], designs: list[str]) -> str:
    cols = {}
    for d in designs:
        g = res[res["design"] == d]
        m = {}
        for k in g.columns:
            if pd.api.types.is_numeric_dtype(g[k]) or pd.api.types.is_bool_dtype(g[k]):
                v = pd.to_numeric(g[k], errors="coerce").to_numpy(dtype=float)
                m[k] = float(np.mean(v[~np.isnan(v)])) if np.any(~np.isnan(v)) else np.nan
        cols[d] = m
    reasons = [r for r in _REASONS if any((cols[d].get(f"adl_notional_{r}") or 0) > 0 for d in designs)]
    cols = {d: _headline_rows(cols[d], batch.stages(d), reasons) for d in designs}
    header = ["mean per run", *[f"{_swatch(colors[d])}{_e(d)}" for d in designs]]
    rows = []
    for i, (label, _) in enumerate(cols[designs[0]]):
        rows.append([(label, False), *[(_e(cols[d][i][1]), True) for d in designs]])
    return _table(header, rows)


# ============================================================================ report
def _head(title: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>")


def _tail() -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<p class="meta" style="margin-top:30px">Written by perpstress {_e(_version())} on {stamp}. '
            f"Money in the scenario's quote currency (USD); time in simulation steps.</p>"
            f"<script>{SCRIPT}</script></body></html>")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("perpstress")
    except Exception:
        return "unknown"


def _run_report(f: RunFolder) -> str:
    from simulator.world.metrics import SUMMARY_KEYS

    sc = f.scenario
    name = f.name
    seed = f.info.get("seed")
    out = [_head(f"perpstress: {name} run")]
    out.append(f"<h1>{_e(name)}: one run</h1>")
    out.append(f'<p class="meta">run folder <code>{_e(f.path)}</code>; seed {_e(seed)}; '
               f"perpstress {_e(f.info.get('version', '?'))}</p>")
    if sc.get("description"):
        out.append(f'<p class="desc">{_e(sc["description"])}</p>')
    s = f.summary
    out.append("<h2>Headline</h2>")
    head = [("last-trade low", "last_min"), ("index low", "index_min"), ("overshoot", "overshoot"),
            ("liquidated notional", "liquidation_notional"), ("bad debt", "deficit_total"),
            ("socialized", "socialized_total"), ("venue's own loss", "venue_loss"), ("ADL notional", "adl_notional"),
            ("insurance fund at end", "fund_end")]
    out.append(_table([_e(h) for h, _ in head], [[(_e(_fmt(k, s.get(k))), True) for _, k in head]]))
    v = sc.get("venue") or {}
    stages = [str(st.get("stage")) for st in v.get("waterfall") or []]
    m = dict(s)
    ts = f.timeseries
    if "backstop_equity" in ts.columns and len(ts):
        m["backstop_equity_end"] = float(ts["backstop_equity"].iloc[-1])
        m["backstop_pnl"] = m["backstop_equity_end"] - float(v.get("backstop_capital") or 0.0)
    reasons = [r for r in _REASONS if (s.get(f"adl_notional_{r}") or 0) > 0]
    out.append("<h3>Where the bad debt went</h3>")
    out.append('<p class="note">Every dollar of bad debt is covered by exactly one of the lines under it. The ADL '
               "haircut is the cash deleveraged traders lost versus mark; the profit realised early is what ADL "
               "made them realise (theirs to keep: not a loss). n/a: the waterfall has no such stage.</p>")
    out.append(_table(["", "this run"], [[(label, False), (_e(val), True)]
                                          for label, val in _headline_rows(m, stages, reasons)]))
    out.append("<h2>Scenario</h2>")
    out.append(_scenario_html(sc))
    out.append("<h2>Loss waterfall</h2>")
    wf = {name: (list(v.get("waterfall") or []), {"insurance_fund": v.get("insurance_fund"),
                                                   "backstop_capital": v.get("backstop_capital"),
                                                   "description": "the venue's waterfall"})}
    out.append(_designs_html([name], wf, plots.design_colors([name])))
    out.append("<h2>Figures</h2>")
    out.append(_figure(lambda: plots.plot_timeline(f), "cascade timeline",
                       "Prices, liquidated notional per step by the waterfall stage that absorbed it, bad debt per "
                       "step split by who covered it, insurance fund (and backstop) balance, "
                       "and maker depth within 1 % of mid. Grey bands: shock windows."))
    out.append(_figure(lambda: plots.plot_who_pays(f), "who pays",
                       "How the deficit was covered, ADL notional by why ADL fired, and how concentrated the ADL "
                       "haircut and socialization charges were across the accounts hit (Lorenz curves; Gini 0 = equal shares, 1 = one account pays all)."))
    out.append("<h2>Summary (DESIGN.md §6)</h2>")
    rows = [(_e(k), (_e(_fmt(k, s.get(k))), True)) for k in SUMMARY_KEYS if k in s]
    rows += [(_e(k), (_e(_fmt(k, val)), True)) for k, val in s.items() if k not in SUMMARY_KEYS]
    out.append(_table(["metric", "value"], rows))
    out.append(_tail())
    return "".join(out)


def _batch_report(b: BatchFolder, timelines: bool) -> str:
    sc = b.scenario
    name = b.name
    res_all = b.all_results
    ok = b.results
    designs = [d for d in b.designs if d in set(ok["design"])] if len(ok) else list(b.designs)
    colors = plots.design_colors(b.designs)
    n_runs = int(b.manifest.get("n_runs") or (ok["run_index"].nunique() if len(ok) else 0))
    failed = res_all[res_all["status"] != "ok"] if "status" in res_all.columns else res_all.iloc[0:0]
    out = [_head(f"perpstress: {name} batch")]
    out.append(f"<h1>{_e(name)}: waterfall designs compared</h1>")
    out.append(f'<p class="meta">batch folder <code>{_e(b.path)}</code>; {n_runs} paths per design and cell; '
               f"{len(b.designs)} designs; {len(b.cells)} sweep cell(s); {len(ok)} runs ok, {len(failed)} failed; "
               f"seed {_e(b.manifest.get('seed'))}; perpstress {_e(b.manifest.get('perpstress', '?'))}. Run i of every "
               f"design and cell uses the same random numbers, so designs are compared path by path.</p>")
    if sc.get("description"):
        out.append(f'<p class="desc">{_e(sc["description"])}</p>')

    out.append("<h2>Scenario</h2>")
    out.append(_scenario_html(sc))
    if b.sweep_params:
        out.append("<h3>Sweep</h3>")
        vals = {p: list(dict.fromkeys(c.get(p) for c in b.cells.values())) for p in b.sweep_params}
        out.append(_table(["parameter", "field", "values"],
                          [(param_label(p), p, ", ".join(param_value(p, x, tex=False) for x in v)) for p, v in vals.items()]))

    out.append("<h2>Designs side by side</h2>")
    resolved = _resolved(sc)
    wf = {d: plots.design_waterfall(resolved, d) for d in b.designs}
    swept = {p: list(dict.fromkeys(c.get(p) for c in b.cells.values())) for p in b.sweep_params}
    own = {d.get("name"): d for d in (sc.get("designs") or [])}
    out.append(_designs_html(list(b.designs), wf, colors, swept, own))

    if ok.empty:
        out.append("<p class='note'>No finished runs yet: nothing to compare.</p>")
        out.append(_tail())
        return "".join(out)

    baseline = b.baseline()
    res = _with_backstop_pnl(b, ok)
    cmp, prob, source = _compare_frames(b, baseline, res)
    baseline = str(cmp["baseline"].dropna().iloc[0]) if "baseline" in cmp.columns and cmp["baseline"].notna().any() else baseline
    out.append("<h2>Headline: where the bad debt went</h2>")
    pooled = f" (all {len(b.cells)} sweep cells pooled)" if len(b.cells) > 1 else ""
    out.append(f'<p class="note">Mean per run{pooled}. Every dollar of bad debt is covered by exactly one of the '
               "lines under it (they add up to it). ADL notional is split by why ADL fired; the ADL haircut is the "
               "cash deleveraged traders lost versus mark (the ADL cover of the bad debt), the profit realised early "
               "is what ADL made them realise before they chose to (theirs to keep: not a loss). n/a: the design "
               "has no such stage.</p>")
    out.append(_headline_html(b, res, colors, designs))
    out.append("<h2>How often the waterfall reaches its last stages</h2>")
    out.append(_prob_html(prob, b, colors))
    out.append("<h2>Comparison table</h2>")
    out.append(f'<p class="note">Per design: mean, median, 95th percentile and CVaR95 (mean of the worst 5 %) over '
               f"the runs; for every design but the baseline <b>{_e(baseline)}</b>, the paired difference design "
               f"&minus; baseline on the same paths with a bootstrap 95 % interval (bold: the interval excludes 0; {_e(source)}). Money in USD.</p>")
    for i, cell in enumerate(b.cells):
        if len(b.cells) > 1:
            out.append(f"<details{' open' if i == 0 else ''}><summary>cell {_e(cell)}</summary>")
        out.append(_cmp_html(cmp, b, cell, colors))
        if len(b.cells) > 1:
            out.append("</details>")

    out.append("<h2>Figures</h2>")
    try:
        worst = plots.worst_path_text(b)
    except ValueError:
        worst = ""
    out.append(_figure(lambda: plots.plot_compare(b, baseline=baseline), "design comparison",
                       f"Design comparison{pooled}: the distribution of each headline metric per design with every "
                       f"run as a dot; the paired difference of each design minus the baseline {_e(baseline)} on the "
                       "same path (dots: paths; black bar: median; diamond and caps: mean and its bootstrap 95 % "
                       "interval, pooled over cells, so it can differ a little from a cell's interval in the table); "
                       "exceedance curves P(X &gt; x) of bad debt, venue loss, ADL notional and socialized loss; the "
                       "insurance fund's path per design, or the backstop vault's for a design without a fund "
                       "(median and quantile bands over every run; grey: shock windows). A metric that is 0 in "
                       "every run is one line of text."))
    out.append(_figure(lambda: plots.plot_who_pays(b), "who pays",
                       "How the deficit was split between insurance fund, backstop, ADL haircut, socialization "
                       "(and what is pending settlement) and the venue (mean per run); ADL notional by why ADL "
                       "fired; how concentrated the ADL haircut and socialization charges were across accounts on "
                       f"the worst path ({_e(worst)}), replayed exactly from its seed for every design."))
    if b.sweep_params:
        out.append(_figure(lambda: plots.plot_sweep(b, "p_socialization"), "sweep heatmap: P(socialization)",
                           "Probability of socialization in each sweep cell, per design."))
        out.append(_figure(lambda: plots.plot_sweep(b, "deficit_total"), "sweep heatmap: mean bad debt",
                           "Mean bad debt per run in each sweep cell, per design."))
        out.append('<p class="note">One sweep cell\'s comparison figure: <code>perpstress plot FOLDER --kind '
                   'compare --cell CELL_ID</code>.</p>')
    if timelines and not b.series.empty:
        try:
            wc, wr = plots.worst_path(b)
        except ValueError:
            wc = None
        if wc is not None:
            out.append(f"<h3>Timelines of the worst path under each design</h3>")
            out.append(f'<p class="note">The worst path is {_e(worst)}; the same path as the who-pays figure.</p>')
            for d in designs:
                kept = b.series
                if not ((kept["design"] == d) & (kept["cell_id"] == wc) & (kept["run_index"] == wr)).any():
                    continue
                out.append(_figure(lambda d=d: plots.plot_timeline(b, design=d, cell=wc, run_index=wr),
                                   f"timeline of design {d}",
                                   f"Design {_e(d)}: the same path (same random numbers) as the other designs."))
    if len(failed):
        out.append("<h2>Failed runs</h2>")
        rows = [(str(r["cell_id"]), str(r["design"]), (str(r["run_index"]), True), str(r.get("error") or ""))
                for _, r in failed.head(50).iterrows()]
        out.append(_table(["cell", "design", "run", "error"], rows))
    out.append(_tail())
    return "".join(out)


def build_report(folder, timelines: bool = True) -> str:
    """The report's HTML text for a run folder or a batch folder."""
    f = open_folder(folder)
    if isinstance(f, RunFolder):
        return _run_report(f)
    return _batch_report(f, timelines)


def write_report(batch_or_run_folder, out_html: str | Path | None = None, timelines: bool = True) -> Path:
    """Write one self-contained HTML report of a run folder or a batch folder.

    Args:
        batch_or_run_folder: a folder from ``perpstress run --out`` or ``perpstress batch --out``.
        out_html: the file to write (default ``FOLDER/report.html``).
        timelines: for a batch, add the timeline of the worst kept path under each design.

    Returns the path written. ``FileNotFoundError`` if the folder is neither kind.
    """
    f = open_folder(batch_or_run_folder)
    text = build_report(f, timelines=timelines)
    out = Path(out_html) if out_html is not None else f.path / REPORT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
