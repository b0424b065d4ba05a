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
from simulator.figures._io import _fmt_value

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
    "venue_loss",
    "fund_end",
    "fund_drawdown",
    "adl_notional",
    "adl_overshoot",
    "adl_gini",
    "socialized_total",
    "socialized_accounts",
    "overshoot",
)
_USD_KEYS = (
    "notional", "deficit", "covered_", "venue_loss", "surplus", "fund_start", "fund_min", "fund_end",
    "fund_drawdown", "fund_paid", "fund_received", "adl_pnl_taken", "adl_profit_taken", "adl_haircut",
    "adl_shortfall", "adl_overshoot", "socialized_total", "socialize_pending",
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
    "venue_loss": "venue's own loss",
    "fund_end": "insurance fund at end",
    "fund_drawdown": "insurance fund drawdown",
    "adl_notional": "ADL notional",
    "adl_overshoot": "ADL overshoot",
    "adl_gini": "ADL Gini",
    "socialized_total": "socialized loss",
    "socialized_accounts": "accounts socialized",
    "overshoot": "last-trade undershoot of index low",
}

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1560px;padding:18px 28px;
color:#1d1d1f;line-height:1.4}
h1{font-size:26px;margin:4px 0 2px}h2{font-size:20px;margin:30px 0 8px;border-bottom:2px solid #ddd;padding-bottom:3px}
h3{font-size:16px;margin:18px 0 6px}.meta{color:#555;font-size:13px}.desc{font-size:15px;margin:8px 0 4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}th,td{border:1px solid #d0d0d0;padding:3px 8px;
vertical-align:top}th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}.swatch{display:inline-block;width:11px;height:11px;
border-radius:2px;margin-right:5px;vertical-align:-1px}.stage{font-weight:600}.settings{color:#555;font-size:12px}
figure{margin:10px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #e2e2e2}
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


def _money(v: float) -> str:
    v = float(v)
    if abs(v) >= 100:
        return f"${v:,.0f}" if v >= 0 else f"-${-v:,.0f}"
    return f"${v:,.2f}" if v >= 0 else f"-${-v:,.2f}"


def _fmt(key: str, v: Any) -> str:
    """A metric value as text, by what the key measures."""
    if _is_nan(v):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    v = float(v)
    if key.endswith("_pct"):
        return f"{v:.2f} %"
    if key in _PCT_KEYS:
        return f"{v:.2%}"
    if key in _PRICE_KEYS:
        return f"{v:,.2f}"
    if any(k in key for k in _USD_KEYS):
        return _money(v)
    if key.startswith("p_"):
        return f"{v:.0%}"
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"


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
    name = str(st.get("stage", "?"))
    defaults = _stage_defaults(name)
    changed = {k: v for k, v in st.items() if k != "stage" and (k not in defaults or defaults[k] != v)}
    full = ", ".join(f"{k}={v}" for k, v in st.items() if k != "stage")
    color = plots.STAGE_COLORS.get(name, "#999")
    settings = ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"
    return (f'<span title="{_e(full)}">{_swatch(color)}<span class="stage">{_e(plots.STAGE_LABELS.get(name, name))}'
            f'</span> <span class="settings">({_e(settings)})</span></span>')


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
def _compare_frames(batch: BatchFolder, baseline: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    from simulator.experiments.compare import compare, probabilities

    csv_c, csv_p = batch.path / "compare.csv", batch.path / "probabilities.csv"
    metrics = [m for m in TABLE_METRICS if m in batch.results.columns]
    source = "computed for this report"
    cmp = None
    if csv_c.exists():
        try:
            cmp = pd.read_csv(csv_c)
            if set(metrics) - set(cmp["metric"]) or set(cmp["design"]) != set(batch.results["design"]):
                cmp = None
            else:
                source = "compare.csv of the batch"
        except Exception:
            cmp = None
    if cmp is None:
        cmp = compare(batch.results, baseline=baseline, metrics=metrics, n_boot=1000)
    prob = pd.read_csv(csv_p) if csv_p.exists() else probabilities(batch.results)
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
        row += [(_fmt("p_", rd[c]), True) for c in cols]
        rows.append(row)
    return _table(header, rows)


def _cmp_html(cmp: pd.DataFrame, batch: BatchFolder, cell: str, colors: dict[str, str]) -> str:
    """One cell's comparison: a row per metric x design (designs side by side within a metric)."""
    c = cmp[cmp["cell_id"] == cell]
    if c.empty:
        return "<p class='note'>no finished runs in this cell</p>"
    designs = [d for d in batch.designs if d in set(c["design"])]
    baseline = str(c["baseline"].dropna().iloc[0]) if c["baseline"].notna().any() else designs[0]
    header = ["metric", "design", "runs", "mean", "median", "p95", "p99", "CVaR95",
              f"design &minus; {_e(baseline)}: mean [95 % CI]"]
    out = ['<div class="wide"><table><thead><tr>', "".join(f"<th>{h}</th>" for h in header), "</tr></thead><tbody>"]
    metrics = [m for m in TABLE_METRICS if m in set(c["metric"])]
    for k, m in enumerate(metrics):
        rows = [(d, c[(c["metric"] == m) & (c["design"] == d)]) for d in designs]
        rows = [(d, g.iloc[0]) for d, g in rows if not g.empty]
        shade = ' style="background:#f6f8fb"' if k % 2 else ""
        for i, (d, r) in enumerate(rows):
            tds = []
            if i == 0:
                tds.append(f'<td rowspan="{len(rows)}"{shade}><b>{_e(_LABELS.get(m, m))}</b></td>')
            tds.append(f"<td{shade}>{_swatch(colors.get(d, '#999'))}{_e(d)}</td>")
            tds.append(f'<td class="num"{shade}>{int(r["n"])}</td>')
            for col in ("mean", "median", "p95", "p99", "cvar95"):
                tds.append(f'<td class="num"{shade}>{_e(_fmt(m, r[col]))}</td>')
            if d == baseline:
                tds.append(f'<td class="num"{shade}>baseline</td>')
            else:
                dm, lo, hi = r["diff_mean"], r["diff_low"], r["diff_high"]
                if _is_nan(dm):
                    txt, sig = "n/a", False
                else:
                    txt = f"{'+' if float(dm) > 0 else ''}{_fmt(m, dm)} [{_fmt(m, lo)}, {_fmt(m, hi)}]"
                    sig = not (_is_nan(lo) or _is_nan(hi)) and (float(lo) > 0 or float(hi) < 0)
                body = f'<span class="sig">{_e(txt)}</span>' if sig else _e(txt)
                tds.append(f'<td class="num"{shade}>{body}</td>')
            out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


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
    out.append("<h2>Scenario</h2>")
    out.append(_scenario_html(sc))
    out.append("<h2>Loss waterfall</h2>")
    v = sc.get("venue") or {}
    wf = {name: (list(v.get("waterfall") or []), {"insurance_fund": v.get("insurance_fund"),
                                                   "backstop_capital": v.get("backstop_capital"),
                                                   "description": "the venue's waterfall"})}
    out.append(_designs_html([name], wf, plots.design_colors([name])))
    out.append("<h2>Figures</h2>")
    out.append(_figure(lambda: plots.plot_timeline(f), "cascade timeline",
                       "Prices, liquidated notional per step by the waterfall stage that absorbed it, bad debt per "
                       "step with the part socialized or left to the venue, insurance fund (and backstop) balance, "
                       "and maker depth within 1 % of mid. Grey bands: shock windows."))
    out.append(_figure(lambda: plots.plot_who_pays(f), "who pays",
                       "How the deficit was covered, and how concentrated ADL PnL taken and socialization charges "
                       "were across the accounts hit (Lorenz curves; Gini 0 = equal shares, 1 = one account pays all)."))
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
        out.append(_table(["parameter", "values"], [(p, ", ".join(_fmt_value(x) for x in v)) for p, v in vals.items()]))

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

    baseline = designs[0]
    cmp, prob, source = _compare_frames(b, baseline)
    baseline = str(cmp["baseline"].dropna().iloc[0]) if "baseline" in cmp.columns and cmp["baseline"].notna().any() else baseline
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
    pooled = " (all sweep cells pooled)" if len(b.cells) > 1 else ""
    out.append(_figure(lambda: plots.plot_compare(b), "design comparison",
                       f"Design comparison{pooled}: the distribution of each headline metric per design with every "
                       "run as a dot; exceedance curves P(X &gt; x) of bad debt, venue loss, ADL notional and "
                       "socialized loss; the insurance fund's path per design (median and quantile bands of the "
                       "kept series; grey: shock windows)."))
    out.append(_figure(lambda: plots.plot_who_pays(b), "who pays",
                       "How the deficit was split between insurance fund, backstop, ADL, socialization and the "
                       "venue (mean per run), and how concentrated ADL PnL taken and socialization charges were "
                       "across accounts on one bad path, replayed exactly from its seed for every design."))
    if b.sweep_params:
        out.append(_figure(lambda: plots.plot_sweep(b, "p_socialization"), "sweep heatmap: P(socialization)",
                           "Probability of socialization in each sweep cell, per design."))
        out.append(_figure(lambda: plots.plot_sweep(b, "deficit_total"), "sweep heatmap: mean bad debt",
                           "Mean bad debt per run in each sweep cell, per design."))
        out.append('<p class="note">One sweep cell\'s comparison figure: <code>perpstress plot FOLDER --kind '
                   'compare --cell CELL_ID</code>.</p>')
    if timelines and not b.series.empty:
        try:
            wc, wr = plots.worst_path(b, kept_only=True)
        except ValueError:
            wc = None
        if wc is not None:
            where = f" in cell {_e(wc)}" if len(b.cells) > 1 else ""
            out.append(f"<h3>Timelines of the worst kept path (run {wr}{where}) under each design</h3>")
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
