"""``plot_who_pays``: how the deficit was split and Lorenz curves of ADL and socialization
charges; a batch's worst path is replayed from its seed (``replay``).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from simulator.figures._io import BatchFolder, CASH_UNIT, RunFolder, _cell_text, _float, open_folder
from simulator.figures.style import (
    ADL_REASON_COLORS,
    ADL_REASON_LABELS,
    DEFAULT_DPI,
    STAGE_COLORS,
    STAGE_LABELS,
    USD_FORMATTER,
    _new_figure,
    _usd,
    design_colors,
)


#: Who covered the deficit: summary column -> stage (colour key). Every deficit is attributed
#: exactly, so these add up to ``deficit_total`` in every run.
SPLIT_COLUMNS = {
    "covered_insurance_fund": "insurance_fund",
    "covered_backstop": "backstop",
    "covered_adl": "adl",
    "covered_socialize": "socialize",
    "socialize_pending": "socialize_pending",
    "venue_loss": "venue",
}
#: ADL notional by why ADL fired: summary column -> reason.
REASON_COLUMNS = {f"adl_notional_{r}": r for r in ADL_REASON_COLORS}


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


def _per_account(events: pd.DataFrame | None, cash_unit: float = CASH_UNIT) -> dict[str, pd.Series]:
    """Per account, in USD: ``adl`` the ADL haircut actually lost (cash paid versus mark:
    positive ``amount`` of ``adl`` and ``adl_haircut`` events; their total is the summary's
    ``adl_haircut``), ``adl_profit`` the profit realised early by ADL (positive ``pnl`` of its
    ADL fills: realised, not lost; the total is the summary's ``adl_profit_taken``) and ``socialize`` the socialization charges.
    ``cash_unit``: the run's (an inverse run counts satoshis of its coin: 1e-8)."""
    CASH_UNIT = cash_unit  # noqa: N806
    out = {"adl": pd.Series(dtype=float), "adl_profit": pd.Series(dtype=float), "socialize": pd.Series(dtype=float)}
    if events is None or events.empty:
        return out
    kind = events["kind"].astype(str)
    adl = events[kind == "adl"]
    if len(adl):
        pnl = adl["pnl"].astype(float)
        per = adl.assign(_p=pnl.where(pnl > 0, 0.0)).groupby("account")["_p"].sum() * CASH_UNIT
        out["adl_profit"] = per[per > 0]
    hc = events[kind.isin(["adl", "adl_haircut"])]
    if len(hc):
        amt = hc["amount"].astype(float)
        paid = hc.assign(_p=amt.where(amt > 0, 0.0)).groupby("account")["_p"].sum() * CASH_UNIT
        out["adl"] = paid[paid > 0]
    soc = events[kind == "socialize"]
    if len(soc):
        out["socialize"] = soc.groupby("account")["amount"].sum().astype(float) * CASH_UNIT
    return out


def worst_path(batch: BatchFolder, cell: str | None = None, kept_only: bool | None = None,
               by: str = "deficit") -> tuple[str, int]:
    """``(cell_id, run_index)`` of the worst path, averaged over designs (the same path for
    every design: common random numbers). Every batch figure and the report use this one path.

    ``by="deficit"``: the largest mean bad debt (``deficit_total``), ties broken by the most
    taken from traders (``covered_adl + covered_socialize``); ``by="haircuts"``: the other way
    round. Then the first cell and the lowest run index. ``kept_only`` (default: when the batch
    kept any series): among the paths whose per-step series were kept, so the path has a
    timeline; ``worst_path_text`` says which runs it was chosen from.
    """
    if by not in ("deficit", "haircuts"):
        raise ValueError(f"by={by!r}: use 'deficit' or 'haircuts'")
    res = batch.select(cell)
    if kept_only is None:
        kept_only = not batch.series.empty
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
    keys = (["_h", "_d"] if by == "haircuts" else ["_d", "_h"]) + ["_cell_order", "run_index"]
    g = g.sort_values(keys, ascending=[False, False, True, True], kind="stable")
    top = g.iloc[0]
    return str(top["cell_id"]), int(top["run_index"])


def worst_path_text(batch: BatchFolder, cell: str | None = None) -> str:
    """Which path ``worst_path`` picked and from which runs, for captions."""
    wc, wr = worst_path(batch, cell)
    res = batch.select(cell)
    n_paths = res[["cell_id", "run_index"]].drop_duplicates().shape[0]
    where = f" of cell {wc}" if len(batch.cells) > 1 else ""
    if not batch.series.empty:
        kept = batch.series[["cell_id", "run_index"]].drop_duplicates()
        if cell is not None:
            kept = kept[kept["cell_id"] == cell]
        runs = sorted(kept["run_index"].unique().tolist())
        span = f"runs {runs[0]}-{runs[-1]}" if len(runs) > 1 and runs == list(range(runs[0], runs[-1] + 1)) else \
            "runs " + ", ".join(map(str, runs))
        src = f"chosen among the {len(kept)} kept paths ({span}) of {n_paths}"
    else:
        src = f"chosen among all {n_paths} paths"
    return f"run {wr}{where}: the largest mean bad debt across designs, {src}"


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


def _bars(ax, split: pd.DataFrame, columns: dict[str, str], colors: dict, labels: dict, total: np.ndarray,
          text_colors: set) -> float:
    """Stacked bars of ``split[columns]`` per design, share labels on parts >= 6 %; returns ymax."""
    pos = np.arange(len(split))
    bottom = np.zeros(len(split))
    tot = split[list(columns)].sum(axis=1).to_numpy(dtype=float)
    ymax = float(np.nanmax(np.concatenate([tot, total]))) if len(tot) else 0.0
    for c, key in columns.items():
        v = split[c].to_numpy(dtype=float)
        if not np.any(v > 0):
            bottom = bottom + v
            continue
        ax.bar(pos, v, bottom=bottom, width=0.6, color=colors[key], label=labels[key], edgecolor="white", linewidth=0.5)
        for x, b, h, t in zip(pos, bottom, v, tot):
            if t > 0 and h / t >= 0.06 and h >= 0.05 * ymax:
                ax.text(x, b + h / 2, f"{h / t:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if key in text_colors else "black")
        bottom = bottom + v
    for x, t in zip(pos, bottom):
        if t > 0:
            ax.text(x, t + ymax * 0.01, _usd(t), ha="center", va="bottom", fontsize=9, fontweight="bold")
    ax.yaxis.set_major_formatter(USD_FORMATTER)
    ax.set_ylim(0, ymax * 1.45 if ymax > 0 else 1)
    ax.grid(axis="y", alpha=0.25)
    return ymax


def _design_ticks(ax, names, colors, notes=None) -> None:
    """Design names under the bars in their colours, with a line of ``notes`` under each."""
    names = list(names)
    pos = np.arange(len(names))
    text = [f"{d}\n{n}" if n else d for d, n in zip(names, notes or [""] * len(names))]
    ax.set_xticks(pos, text, fontsize=8.5)
    for lbl, d in zip(ax.get_xticklabels(), names):
        lbl.set_color(colors.get(d, "black"))


_SHORT = {"insurance_fund": "fund", "backstop": "backstop", "adl": "ADL", "socialize": "socialized",
          "socialize_pending": "pending", "venue": "venue", **{r: r.replace("_", " ") for r in ADL_REASON_COLORS}}


def _shares(row: pd.Series, columns: dict[str, str], k: int = 2) -> str:
    """The ``k`` largest parts of a bar as text: "ADL 98 %, fund 2 %"."""
    v = {key: float(row[c]) for c, key in columns.items() if float(row[c]) > 0}
    tot = sum(v.values())
    if tot <= 0:
        return "none"
    top = sorted(v.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{_SHORT[key]} {val / tot:.0%}" if val / tot >= 0.005 else f"{_SHORT[key]} <1%"
                     for key, val in top)


def plot_who_pays(
    folder,
    *,
    cell: str | None = None,
    replay_worst: bool = True,
    figsize: tuple[float, float] = (15, 12),
    dpi: int = DEFAULT_DPI,
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """Who paid for the bad debt, and why ADL fired.

    Top left: one stacked bar per design of how the deficit was covered (insurance fund,
    backstop, ADL haircut, socialized, socialization pending settlement, venue's own loss;
    ``SPLIT_COLUMNS``, mean per run, USD): every deficit is attributed, so the bar reaches the
    bad debt (black marker). Top right: ADL notional per design stacked by why ADL fired
    (``REASON_COLUMNS``). Bottom: Lorenz curves of the ADL haircut actually lost per account
    (cash paid versus mark; the profit ADL made them realise early is not a loss and is
    given beside it) and of the socialization charge per account, with their Gini
    coefficient. For a run folder the Lorenz curves come from its events; a batch keeps no
    events, so with ``replay_worst`` the worst path (``worst_path``, the same path as the
    timelines) is run again for every design, exactly, from its stored seed.

    Returns:
        ``(fig, data)``; ``data``: ``split`` (design, n_runs, the ``SPLIT_COLUMNS`` means,
        ``deficit_total`` mean, USD), ``reasons`` (design, n_runs, the ``REASON_COLUMNS``
        means and ``adl_notional``), ``lorenz`` (design, kind (adl | socialize),
        share_accounts, share_amount), ``lorenz_stats`` (design, kind, cell_id, run_index,
        n_accounts, total_usd, gini, top10_share, profit_realised_usd).
    """
    f = open_folder(folder)
    cols = list(SPLIT_COLUMNS) + ["deficit_total"] + list(REASON_COLUMNS) + ["adl_notional", "adl_profit_taken",
                                                                               "adl_haircut"]
    if isinstance(f, RunFolder):
        designs = f.designs
        s = f.summary
        means = pd.DataFrame([{"design": designs[0], "n_runs": 1, **{c: float(s.get(c) or 0.0) for c in cols}}])
        per_design_events = {designs[0]: (_per_account(f.events, float(s.get("cash_unit") or CASH_UNIT)), None, None)}
        source = "Lorenz curves: the accounts of this run."
    else:
        res = f.select(cell)
        if res.empty:
            raise ValueError(f"{f.path}: the batch has no finished (ok) runs to plot")
        designs = [d for d in f.designs if d in set(res["design"])]
        rows = []
        for d in designs:
            g = res[res["design"] == d]
            row = {"design": d, "n_runs": int(len(g))}
            for c in cols:
                row[c] = float(np.nanmean(_float(g[c]))) if c in g.columns and len(g) else 0.0
            rows.append(row)
        means = pd.DataFrame(rows)
        per_design_events = {}
        if replay_worst:
            wc, wr = worst_path(f, cell)
            for d in designs:
                r = replay(f, d, wc, wr)
                per_design_events[d] = (_per_account(r.events, float(r.summary.get("cash_unit") or CASH_UNIT)), wc, wr)
            source = f"Lorenz curves: {worst_path_text(f, cell)}; replayed from its seed for every design."
        else:
            source = "Lorenz curves: not available (a batch keeps no per-account events)."
    source += (" ADL makes the deleveraged winners realise their profit early at the ADL price: that profit "
               "is theirs to keep, not a loss; the haircut (cash they paid versus mark) is what they lost, "
               "and it is the ADL part of the deficit split.")
    colors = design_colors(designs if isinstance(f, RunFolder) else f.designs)
    split = means[["design", "n_runs", *SPLIT_COLUMNS, "deficit_total"]].copy()
    reasons = means[["design", "n_runs", *REASON_COLUMNS, "adl_notional"]].copy()

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
                              "top10_share": float(a[:k].sum() / a.sum()) if a.sum() > 0 else float("nan"),
                              "profit_realised_usd": float(per["adl_profit"].sum()) if kind == "adl" else float("nan")})
    lor = pd.concat(lor_rows, ignore_index=True) if lor_rows else pd.DataFrame(
        columns=["design", "kind", "share_accounts", "share_amount"])
    stats = pd.DataFrame(stat_rows, columns=["design", "kind", "cell_id", "run_index", "n_accounts", "total_usd",
                                             "gini", "top10_share", "profit_realised_usd"])

    fig = _new_figure(figsize, dpi)
    where = _cell_text(f, cell) if isinstance(f, BatchFolder) else ""
    fig.suptitle(f"{f.name}: who pays for the bad debt, and why ADL fired" + (f" ({where})" if where else ""),
                 fontsize=14, fontweight="bold")
    fig.supxlabel(textwrap.fill(source, 170), fontsize=9, color="0.3")
    (ax_bar, ax_why), (ax_adl, ax_soc) = fig.subplots(2, 2)
    per_run = "per run, mean" if isinstance(f, BatchFolder) else "this run"

    # deficit split
    deficit = split["deficit_total"].to_numpy(dtype=float)
    ymax = _bars(ax_bar, split, SPLIT_COLUMNS, STAGE_COLORS, STAGE_LABELS, deficit,
                 {"book", "adl", "socialize", "venue", "backstop"})
    ax_bar.scatter(np.arange(len(split)), deficit, marker="_", s=900, linewidths=2.2, color="black", zorder=4,
                   label="bad debt (deficit)")
    _design_ticks(ax_bar, split["design"], colors, [_shares(r, SPLIT_COLUMNS) for _, r in split.iterrows()])
    ax_bar.set_ylabel(f"deficit covered ({per_run}, USD)")
    ax_bar.set_title("How the deficit was covered (label: share of the bar)", fontsize=11)
    if ymax == 0:
        ax_bar.text(0.5, 0.5, f"no bad debt in any of the {int(split['n_runs'].sum())} runs", transform=ax_bar.transAxes,
                    ha="center", va="center", color="0.4")
    else:
        ax_bar.legend(fontsize=8, loc="upper left", framealpha=0.9, ncol=2, markerscale=0.3)

    # ADL notional by reason
    ymax = _bars(ax_why, reasons, REASON_COLUMNS, ADL_REASON_COLORS, ADL_REASON_LABELS,
                 reasons["adl_notional"].to_numpy(dtype=float), set(ADL_REASON_COLORS) - {"takeover_refused"})
    _design_ticks(ax_why, reasons["design"], colors,
                  [f"haircut {_usd(r['adl_haircut'])}\nprofit realised early {_usd(r['adl_profit_taken'])}"
                   if r["adl_notional"] > 0 else "no ADL" for _, r in means.iterrows()])
    ax_why.set_ylabel(f"ADL notional ({per_run}, USD)")
    ax_why.set_title("ADL notional by why ADL fired; under each design: the haircut lost and the profit realised early",
                     fontsize=10)
    if ymax == 0:
        ax_why.text(0.5, 0.5, f"no ADL in any of the {int(reasons['n_runs'].sum())} runs", transform=ax_why.transAxes,
                    ha="center", va="center", color="0.4")
    else:
        ax_why.legend(fontsize=8, loc="upper left", framealpha=0.9, ncol=2)

    for ax, kind, title in ((ax_adl, "adl", "ADL: haircut actually lost, per account"),
                            (ax_soc, "socialize", "Socialization: charge per account")):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="equal shares")
        drawn = 0
        for d in designs:
            g = lor[(lor["design"] == d) & (lor["kind"] == kind)]
            if g.empty:
                continue
            st = stats[(stats["design"] == d) & (stats["kind"] == kind)].iloc[0]
            extra = f"; profit realised early {_usd(st['profit_realised_usd'])}" if kind == "adl" else ""
            ax.plot(g["share_accounts"], g["share_amount"], color=colors[d], lw=1.8,
                    drawstyle="default", marker="o" if len(g) <= 12 else None, ms=3,
                    label=f"{d}: Gini {st['gini']:.2f}, {int(st['n_accounts'])} accts, lost {_usd(st['total_usd'])}{extra}")
            drawn += 1
        if not drawn:
            msg = "no ADL haircut on the path shown" if kind == "adl" else "nothing socialized on the path shown"
            if not per_design_events:
                msg = "per-account data not kept in a batch\n(plot with replay_worst=True)"
            ax.text(0.5, 0.55, msg, transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal", adjustable="box")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("share of accounts hit (smallest first)")
        ax.set_ylabel("cumulative share of the total (%)")
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=8, loc="upper left", framealpha=0.85)
        ax.grid(alpha=0.25)
    return fig, {"split": split, "reasons": reasons, "lorenz": lor, "lorenz_stats": stats}
