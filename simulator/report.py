"""One self-contained HTML report of a run folder or a batch folder (``perpstress report``).

The report holds the scenario (description, market, agents, venue, shocks, sweep), the
waterfall designs side by side, the comparison tables of ``simulator.compare`` (probabilities
of ADL, socialization and fund depletion; distribution of each headline metric per design and
its paired difference to the baseline design with a bootstrap 95 % interval) and every figure
of ``simulator.plots``. Figures are embedded as base64 PNG ``data:`` URIs and the styles are
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

from simulator import plots
from simulator.plots import COMPARE_METRICS, BatchFolder, RunFolder, open_folder

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
white-space:nowrap}tr:nth-child(even) td{background:#fafafa}.swatch{display:inline-block;width:11px;height:11px;
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
    out = [f'<div class="wide"><table class="{cls}"><thead><tr>']
    out += [f"<th>{h}</th>" for h in header]
    out.append("</tr></thead><tbody>")
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
        from simulator import scenario as S

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


def _scenario_html(sc: dict) -> str:
    parts = []
    steps = sc.get("steps")
    secs = float(sc.get("step_seconds") or 1.0)
    rows = []
    if steps is not None:
        rows.append(("length", f"{int(steps):,} steps of {secs:g} s ({int(steps) * secs / 60:,.1f} minutes)"))
    rows.append(("scenario seed", str(sc.get("seed", ""))))
    for i, m in enumerate(sc.get("markets") or []):
        model = ((sc.get("index") or {}).get("models") or [{}])[i] if i < len((sc.get("index") or {}).get("models") or []) else {}
        idx = ", ".join(f"{k}={v}" for k, v in model.items()) if model else ""
        rows.append((f"market {m.get('name', i)}",
                     f"tick {m.get('tick_size')}, lot {m.get('lot_size')}, max leverage {m.get('max_leverage')}x; index: {idx}"))
    ag = sc.get("agents") or {}
    t = ag.get("traders") or {}
    if t:
        cap = t.get("capital") or {}
        lev = t.get("leverage") or {}
        rows.append(("traders", f"{int(t.get('count', 0)):,}; capital median {_money(cap.get('median', 0))}; "
                                f"leverage median {lev.get('median')}x (cap {lev.get('cap')}); "
                                f"long share {float(t.get('long_share', 0.5)):.0%}; "
                                f"holding a position at step 0: {float(t.get('initial_positions', 0)):.0%}"))
    mm = ag.get("market_makers") or {}
    if mm:
        rows.append(("market makers", f"{mm.get('count')} x {_money(mm.get('capital', 0))}; {mm.get('levels')} levels of "
                                      f"{_money(mm.get('level_notional', 0))}, spacing {float(mm.get('level_spacing', 0)):.2%}"))
    ar = ag.get("arbitrageurs") or {}
    if ar:
        rows.append(("arbitrageurs", f"{ar.get('count')} x {_money(ar.get('capital', 0))}, leverage {ar.get('leverage')}x"))
    v = sc.get("venue") or {}
    if v:
        rows.append(("venue", f"insurance fund {_money(v.get('insurance_fund', 0))}; backstop capital "
                              f"{_money(v.get('backstop_capital', 0))}; mark {((v.get('mark') or {}).get('method'))}; "
                              f"up to {v.get('max_rounds')} liquidation rounds per step"))
    parts.append(_table(["", ""], [(k, val) for k, val in rows]))
    shocks = sc.get("shocks") or []
    if shocks:
        parts.append("<h3>Shocks</h3>")
        srows = []
        for s in shocks:
            rest = ", ".join(f"{k}={val}" for k, val in s.items() if k not in ("kind", "step", "duration"))
            srows.append((s.get("kind", ""), (str(s.get("step", "")), True), (str(s.get("duration", 1)), True), rest))
        parts.append(_table(["kind", "step", "duration (steps)", "settings"], srows))
    return "".join(parts)


def _designs_html(names: list[str], waterfalls: dict[str, tuple[list[dict], dict]], colors: dict[str, str]) -> str:
    n_stages = max((len(w[0]) for w in waterfalls.values()), default=0)
    header = ["", *[f"{_swatch(colors[d])}{_e(d)}" for d in names]]
    rows = []
    rows.append([("description", False), *[(_e(waterfalls[d][1].get("description") or ""), False) for d in names]])
    rows.append([("insurance fund at start", False),
                 *[(_money(waterfalls[d][1].get("insurance_fund") or 0), True) for d in names]])
    rows.append([("backstop capital", False),
                 *[(_money(waterfalls[d][1].get("backstop_capital") or 0), True) for d in names]])
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
    from simulator.compare import compare, probabilities

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
    c = cmp[cmp["cell_id"] == cell]
    designs = [d for d in batch.designs if d in set(c["design"])]
    if c.empty:
        return "<p class='note'>no finished runs in this cell</p>"
    baseline = str(c["baseline"].dropna().iloc[0]) if c["baseline"].notna().any() else designs[0]
    header = ["metric"]
    for d in designs:
        sw = f"{_swatch(colors.get(d, '#999'))}{_e(d)}"
        header += [f"{sw}<br>mean", "median", "p95", "CVaR95"]
        if d != baseline:
            header.append(f"&minus; {_e(baseline)}<br>mean [95 % CI]")
    rows = []
    metrics = [m for m in TABLE_METRICS if m in set(c["metric"])]
    for m in metrics:
        row: list = [(_e(_LABELS.get(m, m)), False)]
        for d in designs:
            g = c[(c["metric"] == m) & (c["design"] == d)]
            if g.empty:
                row += [("", True)] * (4 + (d != baseline))
                continue
            r = g.iloc[0]
            row += [(_e(_fmt(m, r["mean"])), True), (_e(_fmt(m, r["median"])), True), (_e(_fmt(m, r["p95"])), True),
                    (_e(_fmt(m, r["cvar95"])), True)]
            if d != baseline:
                dm, lo, hi = r["diff_mean"], r["diff_low"], r["diff_high"]
                if _is_nan(dm):
                    row.append(("n/a", True))
                else:
                    sign = "+" if float(dm) > 0 else ""
                    txt = f"{sign}{_fmt(m, dm)} [{_fmt(m, lo)}, {_fmt(m, hi)}]"
                    cls = ""
                    if not (_is_nan(lo) or _is_nan(hi)) and (float(lo) > 0 or float(hi) < 0):
                        cls = "sig"
                    row.append((f'<span class="{cls}">{_e(txt)}</span>' if cls else _e(txt), True))
        rows.append(row)
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
    from simulator.metrics import SUMMARY_KEYS

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
        out.append(_table(["parameter", "values"], [(p, ", ".join(plots._fmt_value(x) for x in v)) for p, v in vals.items()]))

    out.append("<h2>Designs side by side</h2>")
    wf = {d: b.design_waterfall(d) for d in b.designs}
    out.append(_designs_html(list(b.designs), wf, colors))

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
    for cell in b.cells:
        if len(b.cells) > 1:
            out.append(f"<h3>cell {_e(cell)}</h3>")
        out.append(_cmp_html(cmp, b, cell, colors))

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
        out.append("<details><summary>Design comparison per sweep cell</summary>")
        for cell in b.cells:
            out.append(_figure(lambda cell=cell: plots.plot_compare(b, cell=cell), f"design comparison, cell {cell}",
                               f"Design comparison in cell {_e(cell)}."))
        out.append("</details>")
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
