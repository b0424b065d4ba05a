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
    DEFAULT_DPI,
    STAGE_COLORS,
    STAGE_LABELS,
    USD_FORMATTER,
    _new_figure,
    _usd,
    design_colors,
)


#: Who covered the deficit: summary column -> stage (colour key).
SPLIT_COLUMNS = {
    "covered_insurance_fund": "insurance_fund",
    "covered_backstop": "backstop",
    "covered_adl": "adl",
    "covered_socialize": "socialize",
    "venue_loss": "venue",
}


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
