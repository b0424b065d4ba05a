"""What ADL and socialization cost each agent class, hedgers first (issue 11, item 6)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from simulator.venue.events import EventLog
from simulator.world.metrics import HEDGER_KEYS, SUMMARY_KEYS
from simulator.world.who_paid import hedger_metrics, who_paid

CLASSES = {10: "trader:hedger", 11: "trader:hedger", 12: "trader:trend", 20: "market_maker", 1: "insurance_fund"}


def events() -> pd.DataFrame:
    log = EventLog()
    log.step = 5
    log.add("liquidation", stage="adl", account=12, counterparty=10, qty=3, amount=0)
    log.add("deficit", stage="adl", account=12, amount=9_999)
    # hedger 10: ADL'd at the bankruptcy price (fill at mark, settled by an adl_haircut)
    log.add("adl", stage="adl", account=10, counterparty=12, amount=0, pnl=5_000_000)
    log.add("adl_haircut", stage="adl", account=10, counterparty=12, amount=1_200_000)
    # hedger 11: two fills at a previous mark, one worse (pays 0.30) and one better than mark
    log.add("adl", stage="adl", account=[11, 11], counterparty=12, amount=[300_000, -100_000],
            pnl=[2_000_000, 1_000_000])
    log.add("adl_haircut", stage="adl", account=11, counterparty=12, amount=-50_000)
    log.add("socialize", stage="socialize", account=[10, 20], amount=[400_000, 700_000])
    log.add("fund_payout", stage="insurance_fund", account=1, amount=123)
    return log.to_frame()


def test_hand_worked_table():
    t = who_paid(events(), CLASSES).set_index("class")
    assert list(t.index) == ["insurance_fund", "market_maker", "trader:hedger", "trader:trend"]
    h = t.loc["trader:hedger"]
    assert (h.accounts, h.accounts_hit, h.adl_fills) == (2, 2, 3)
    assert h.adl_price_haircut == 300_000  # paid vs mark; the -0.10 fill is a gain, not netted here
    assert h.adl_settlement_haircut == 1_200_000
    assert h.adl_received == 150_000  # 100_000 + 50_000
    assert h.socialized == 400_000
    assert h.shortfall == 1_900_000  # 0.30 + 1.20 + 0.40
    assert h.net_vs_mark == 1_750_000
    assert h.pnl_at_mark == 8_000_000
    assert h.pnl_received == 8_000_000 - 300_000 - 1_200_000 + 150_000 == 6_650_000
    assert h.shortfall_usd == pytest.approx(1.9)
    assert h.shortfall_pct == pytest.approx(23.75)  # 1.9 of 8.0
    mm = t.loc["market_maker"]
    assert (mm.shortfall, mm.socialized, mm.accounts_hit) == (700_000, 700_000, 1)
    assert math.isnan(mm.shortfall_pct)  # nothing ADL'd: no expected PnL to compare against
    # the trend trader is the bankrupt case, not a payer; the fund's payout is not a haircut
    assert t.loc["trader:trend"].shortfall == 0 and t.loc["trader:trend"].accounts_hit == 0
    assert t.loc["insurance_fund"].shortfall == 0
    # integers stay integers
    assert str(t["shortfall"].dtype) == "int64"


def test_hedger_summary_keys():
    assert SUMMARY_KEYS[-2:] == HEDGER_KEYS == ("hedger_shortfall", "hedger_shortfall_pct")
    got = hedger_metrics(events(), {"account_class": CLASSES, "cash_unit": 1e-6})
    assert got["hedger_shortfall"] == pytest.approx(1.9)
    assert got["hedger_shortfall_pct"] == pytest.approx(23.75)
    none = hedger_metrics(events(), {"account_class": {20: "market_maker"}})
    assert none["hedger_shortfall"] == 0.0 and math.isnan(none["hedger_shortfall_pct"])
    assert math.isnan(hedger_metrics(events(), {})["hedger_shortfall"])


def test_unknown_accounts_are_reported_not_dropped():
    t = who_paid(events(), {10: "trader:hedger"}).set_index("class")
    assert t.loc["unknown", "shortfall"] == 300_000 + 700_000
    assert t["shortfall"].sum() == 1_900_000 + 700_000


def test_real_run_with_adl_agrees_with_the_summary(tmp_path):
    from golden_runs import ROOT
    from simulator.experiments import run

    sc = run.load_scenario(ROOT / "scenarios/cascade.yaml", {
        "agents.traders.count": 50, "steps": 400, "venue.insurance_fund": 0, "shocks.0.move": -0.08,
        # an empty fund that takes no positions and keeps no surplus cannot pay: ADL fires
        "venue.waterfall.1.takeover": False, "venue.waterfall.1.surplus_policy": "none",
        # takers-only arbitrageurs: at 50 traders the basis ladder (sized for 1,000) holds the dip
        "agents.arbitrageurs.quote_levels": 0})
    result = run.run_scenario(sc, seed=1)
    s = result.summary
    assert s["adl_fills"] > 0
    folder = run.write_run(result, tmp_path / "r")
    t = pd.read_csv(folder / "who_paid.csv").set_index("class")
    ledger_rows = json.loads((folder / "audit.json").read_text())["snapshots"][-1]["accounts"]
    assert t["accounts"].sum() == ledger_rows  # every account in exactly one class
    assert t.loc[[c for c in t.index if c.startswith("trader:")], "accounts"].sum() == 50
    paid = (t["adl_price_haircut"] + t["adl_settlement_haircut"]).sum()
    assert paid * 1e-6 == pytest.approx(s["adl_haircut"], abs=1e-6)
    assert t["socialized"].sum() * 1e-6 == pytest.approx(s["socialized_total"], abs=1e-6)
    assert t["adl_fills"].sum() == s["adl_fills"]
    assert s["hedger_shortfall"] == pytest.approx(t.loc["trader:hedger", "shortfall_usd"])


def test_account_classes_name_population_traders_whales_and_venue_rows():
    from types import SimpleNamespace

    import numpy as np

    from simulator.venue.ledger import Ledger
    from simulator.world.who_paid import account_classes

    led = Ledger(np.array([1]))
    led.add_accounts(1, "market_maker")
    led.add_accounts(3, "trader")  # rows 1, 2 in the population; row 3 a whale
    led.add_accounts(1, "insurance_fund")
    pop = SimpleNamespace(accounts=np.array([1, 2]), strategy=np.array([0, 3]))  # trend, hedger
    model = SimpleNamespace(venue=SimpleNamespace(ledger=led), traders=pop)
    got = account_classes(model)
    assert dict(got) == {0: "market_maker", 1: "trader:trend", 2: "trader:hedger", 3: "whale", 4: "insurance_fund"}
    assert got.series().tolist() == ["market_maker", "trader:trend", "trader:hedger", "whale", "insurance_fund"]
