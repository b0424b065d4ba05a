"""``perpstress validate``, ``perpstress run`` and ``perpstress scenarios``: check scenario and
design files; run one path and write a results folder; list what is bundled."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from simulator.cli._common import CliError, parse_set, resolve_scenario, seed_int

HEADLINE = (
    ("index_min", "index low", "{:,.2f}"),
    ("last_min", "last-trade low", "{:,.2f}"),
    ("overshoot", "overshoot (index vs last low)", "{:.2%}"),
    ("liquidation_count", "liquidations", "{:,.0f}"),
    ("liquidation_notional", "liquidated notional", "${:,.0f}"),
    ("max_cascade_depth", "max cascade depth (rounds)", "{:,.0f}"),
    ("deficit_total", "deficit", "${:,.0f}"),
    ("covered_insurance_fund", "  paid by insurance fund", "${:,.0f}"),
    ("covered_backstop", "  paid by backstop vault", "${:,.0f}"),
    ("covered_adl", "  covered by ADL haircut", "${:,.0f}"),
    ("covered_socialize", "  socialized", "${:,.0f}"),
    ("socialize_pending", "  socialization pending", "${:,.0f}"),
    ("venue_loss", "  venue's own loss", "${:,.0f}"),
    ("withdrawn", "withdrawn (paid out)", "${:,.0f}"),
    ("withdrawal_haircut", "  kept by the withdrawal factor", "${:,.0f}"),
    ("socialized_outstanding", "socialized loss outstanding", "${:,.0f}"),
    ("fund_end", "insurance fund at end", "${:,.0f}"),
    ("adl_notional", "ADL notional", "${:,.0f}"),
    ("adl_notional_fund_empty", "  fired: insurance fund empty", "${:,.0f}"),
    ("adl_notional_fund_drawdown", "  fired: fund fell past threshold", "${:,.0f}"),
    ("adl_notional_negative_equity", "  fired: negative equity", "${:,.0f}"),
    ("adl_notional_takeover_refused", "  fired: takeover refused", "${:,.0f}"),
    ("adl_notional_book_exhausted", "  fired: book exhausted", "${:,.0f}"),
    ("adl_notional_price_band", "  fired: outside price band", "${:,.0f}"),
    ("adl_haircut", "ADL haircut (cash lost vs mark)", "${:,.0f}"),
    ("adl_profit_taken", "ADL profit realised early", "${:,.0f}"),
    ("conservation_residual_max_abs", "conservation residual", "{:.0f}"),
    ("two_sided_share", "two-sided book (share of steps)", "{:.1%}"),
    ("two_sided_share_pre_shock", "  before the first shock", "{:.1%}"),
    ("steps_empty_side", "steps with an empty book side", "{:,.0f}"),
    ("makers_liquidated", "market makers liquidated", "{:,.0f}"),
    ("opening_unfilled_share", "opening position not taken", "{:.1%}"),
)


#: The inverse fund's dollar value (coin x mark), printed for a run not settled in USD.
FUND_USD = (
    ("fund_start_usd", "insurance fund at start (USD)", "${:,.0f}"),
    ("fund_min_usd", "insurance fund low (USD)", "${:,.0f}"),
    ("fund_end_usd", "insurance fund at end (USD)", "${:,.0f}"),
)


def summary_table(summary: dict) -> str:
    """The printed summary. Every cover line of the deficit is printed (they add up to it); an
    ADL reason line only when ADL fired for that reason, withdrawal lines only when there were any. Money is in the run's settlement asset
    (``$`` for USD; an inverse run's coin, e.g. ``1.23456789 BTC``, plus the fund's dollar
    value); notionals are always in the quote currency."""
    asset = summary.get("settlement_asset") or "USD"
    rows = []
    headline = HEADLINE
    if asset != "USD":
        rows.append(f"  {'money in':<32} {asset} (cash unit {summary.get('cash_unit', 1e-8):g} {asset}); notionals in USD")
        headline = HEADLINE + FUND_USD
    for key, label, fmt in headline:
        if key.startswith(("adl_notional_", "withdraw", "socialized_outstanding")) and not summary.get(key):
            continue
        if key in summary and summary[key] is not None:
            try:
                v = summary[key]
                if asset != "USD" and fmt.startswith("$") and "notional" not in key and not key.endswith("_usd"):
                    text = f"{v:,.8f} {asset}"
                else:
                    text = ("-" if v < 0 else "") + fmt.format(abs(v)) if fmt.startswith("$") else fmt.format(v)
                rows.append(f"  {label:<32} {text}")
            except (TypeError, ValueError):
                rows.append(f"  {label:<32} {summary[key]}")
    return "\n".join(rows)


def _is_design(data) -> bool:
    return isinstance(data, dict) and "waterfall" in data and "index" not in data


def cmd_validate(args) -> int:
    from simulator.world import bundled
    from simulator.world.scenario import apply_overrides, load, load_design, read_yaml, validate_sweep

    overrides = parse_set(args.set)
    for f in args.files:
        path = Path(f)
        if not path.exists() and bundled.preset_path(f) is not None and bundled.scenario_path(f) is None:
            path = bundled.preset_path(f)
        else:
            path = resolve_scenario(f)
        data = read_yaml(path)
        if _is_design(data):
            d = load_design(path)
            print(f"{f}: ok (design {d.name}: waterfall {[s.stage for s in d.waterfall]})")
            continue
        sc = load(path, overrides)
        cells = validate_sweep(apply_overrides(data, overrides, str(path)), str(path), path.parent)
        extra = f", {len(cells)} sweep cells" if sc.sweep else ""
        print(f"{f}: ok ({sc.name}: {sc.steps} steps, {len(sc.markets)} market(s), "
              f"{sc.agents.traders.count} traders, waterfall {[s.stage for s in sc.venue.waterfall]}{extra})")
    return 0


def cmd_scenarios(args) -> int:
    from simulator.world import bundled

    print(f"bundled scenarios ({bundled.scenarios_dir()}):  perpstress run NAME")
    for name in bundled.scenario_names():
        print(f"  {name:<16} {bundled.first_comment(bundled.scenario_path(name))}")
    print("venue presets (waterfall designs):  perpstress batch NAME --preset PRESET")
    from simulator.world.scenario import read_yaml

    for name in bundled.preset_names():
        path = bundled.preset_path(name)
        try:
            desc = (read_yaml(path) or {}).get("description") or bundled.first_comment(path)
        except Exception:
            desc = bundled.first_comment(path)
        print(f"  {name:<16} {desc}")
    return 0


def cmd_run(args) -> int:
    from simulator.experiments import run

    path = resolve_scenario(args.file)
    scenario = run.load_scenario(path, parse_set(args.set))
    if args.steps is not None:  # validated now, not after the model is built
        scenario = run.with_overrides(scenario, {"steps": int(args.steps)})
    out = Path(args.out) if args.out else Path("results") / f"{scenario.name}-{_stamp()}"
    try:
        run.check_out_dir(out, force=args.force)  # before simulating
    except (FileExistsError, NotADirectoryError, PermissionError) as exc:
        raise CliError(str(exc)) from None
    result = run.run_scenario(scenario, seed=args.seed, progress=sys.stderr.isatty())
    run.write_run(result, out, force=args.force)
    print(f"{scenario.name}: {scenario.steps} steps, seed {result.seed}")
    print(summary_table(result.summary))
    print(f"results written to {out}")
    _warn_degenerate(result.summary)
    return 0


def _warn_degenerate(summary: dict) -> None:
    """A loud stderr warning when the run's market was not alive: its figures measure a dead market."""
    from simulator.world.metrics import health_warnings

    problems = health_warnings(summary)
    if not problems:
        return
    bar = "!" * 78
    lines = [bar, "WARNING: degenerate run: the market was not alive", *(f"  - {p}" for p in problems),
             "  Its liquidation and ADL figures describe a dead market; give the liquidity providers more",
             "  capital (agents.market_makers / agents.arbitrageurs, scale_with_traders) or fewer traders.", bar]
    print("\n".join(lines), file=sys.stderr)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")


def add_commands(sub) -> None:
    v = sub.add_parser("validate", help="check scenario, design and preset files (and their sweep cells and "
                       "replay data); run nothing")
    v.add_argument("files", nargs="+", metavar="FILE",
                   help="scenario or design YAML files, bundled scenario names or preset names")
    v.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a scenario field before checking (repeatable; default: none)")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help="run one scenario path and write a results folder")
    r.add_argument("file", metavar="SCENARIO", help="a scenario YAML file or a bundled scenario name (e.g. cascade)")
    r.add_argument("--seed", type=seed_int, default=None, help="random seed, >= 0 (default: the scenario's seed)")
    r.add_argument("--steps", type=int, default=None, help="number of steps, >= 1 (default: the scenario's steps)")
    r.add_argument("--out", default=None, help="results folder (default: results/NAME-TIMESTAMP)")
    r.add_argument("--force", action="store_true", help="replace an existing --out folder (default: refuse)")
    r.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a scenario field, e.g. agents.traders.count=500 (repeatable; default: none)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("scenarios", help="list the bundled scenarios and venue presets, one line each")
    s.set_defaults(func=cmd_scenarios)
