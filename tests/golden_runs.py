"""Golden summaries of the bundled scenarios at a small size (SimPy-style checked examples).

Regenerate on purpose only, after a change that is meant to move the numbers:

    python tests/golden_runs.py --update

and review the diff of tests/golden/*.json like any other change.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
SMALL = {"agents.traders.count": 300}
KEYS = (
    "index_min", "last_min", "mark_min", "overshoot", "max_drawdown", "liquidation_count",
    "liquidation_notional", "max_cascade_depth", "liq_notional_book", "liq_notional_backstop",
    "liq_notional_insurance_fund", "liq_notional_adl", "deficit_total", "covered_insurance_fund",
    "covered_backstop", "covered_adl", "covered_socialize", "venue_loss", "socialize_pending",
    "fund_start", "fund_min", "fund_end", "fund_depleted", "adl_accounts", "adl_notional",
    "adl_pnl_taken", "socialized_total", "socialized_accounts", "conservation_residual_max_abs", "steps",
    "two_sided_share", "two_sided_share_pre_shock", "steps_empty_side", "makers_liquidated",
    "liquidations_pre_shock", "opening_unfilled_share",
)

#: Keys a scenario's golden adds to ``KEYS`` (kept out of the others so their files stay as they were).
EXTRA_KEYS = {"bank_run": ("withdrawn", "withdrawal_haircut", "socialized_outstanding")}


#: Kept as well for a run not settled in USD (an inverse scenario): the asset money is counted in
#: and the insurance fund's dollar value (the wrong-way risk of a fund held in the coin).
SETTLEMENT_KEYS = ("settlement_asset", "cash_unit", "fund_start_usd", "fund_min_usd", "fund_end_usd")


def scenario_files() -> list[Path]:
    return sorted((ROOT / "scenarios").glob("*.yaml"))


def small_summary(path: Path) -> dict:
    from simulator.experiments import run

    result = run.run_scenario(run.load_scenario(path, SMALL))
    keys = KEYS + EXTRA_KEYS.get(path.stem, ()) + (SETTLEMENT_KEYS if result.summary["settlement_asset"] != "USD" else ())
    return {k: _plain(result.summary[k]) for k in keys}


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def golden_path(path: Path) -> Path:
    return GOLDEN / f"{path.stem}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true", help="rewrite tests/golden/*.json")
    args = parser.parse_args()
    GOLDEN.mkdir(exist_ok=True)
    for path in scenario_files():
        summary = small_summary(path)
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        target = golden_path(path)
        if args.update:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
        else:
            same = target.exists() and json.loads(target.read_text()) == summary
            print(f"{path.name}: {'matches' if same else 'DIFFERS'}")


if __name__ == "__main__":
    main()
