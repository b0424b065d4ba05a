"""Inverse (coin-margined) runs end to end: schema, conversion to coin, reporting, and the
wrong-way risk of an insurance fund held in the coin it insures."""

from __future__ import annotations

import pytest

from simulator.experiments import run
from simulator.world.bundled import scenario_path
from simulator.world.scenario import ScenarioError, load_design, read_yaml, validate

#: A quiet market (no traders, no volatility, mark = index) and a scripted -20 % move: nobody is
#: liquidated, so the fund pays nothing and its balance only moves with the price.
QUIET = {"agents.traders.count": 0, "index.models.0.volatility": 0.0, "venue.mark.method": "index",
         "shocks.0.move": -0.2, "shocks.0.recovery": 0.0, "steps": 420}


def _inverse_crash(overrides=None) -> dict:
    data = read_yaml(scenario_path("inverse_crash"))
    for path, value in (overrides or {}).items():
        node = data
        *head, last = path.split(".")
        for k in head:
            node = node[int(k)] if k.isdigit() else node.setdefault(k, {})
        node[last] = value
    return data


def _linear(data: dict) -> dict:
    """The same scenario on a linear BTC-PERP (USD margin, fund in USD)."""
    m = data["markets"][0]
    for k in ("settlement", "coin"):
        m.pop(k, None)
    m.update(name="BTC-PERP", tick_size=0.1, lot_size=0.001)
    return data


def test_wrong_way_risk_fund_in_coin_loses_dollar_value_with_the_crash():
    # Both funds start at 300,000 USD. The inverse fund holds 300,000 / 100,000 = 3 BTC from the
    # opening price on; the index (and mark) falls 20 % to 80,000 and nobody is liquidated, so
    # neither fund pays anything:
    #   linear:  fund_min_usd = 300,000 (the fund is dollars)
    #   inverse: fund_min_usd = 3 BTC x 80,000 = 240,000 = start x (low / start) = 300,000 x 0.8
    # the inverse fund can cover 60,000 USD (20 %) less of the crash's losses at its low.
    inv = run.run_scenario(validate(_inverse_crash(QUIET), "inverse"))
    lin = run.run_scenario(validate(_linear(_inverse_crash(QUIET)), "linear"))
    si, sl = inv.summary, lin.summary
    assert si["liquidation_count"] == sl["liquidation_count"] == 0
    assert si["fund_paid"] == sl["fund_paid"] == 0
    assert si["mark_min"] == sl["mark_min"] == pytest.approx(80_000.0)
    assert (si["settlement_asset"], si["cash_unit"]) == ("BTC", 1e-8)
    assert (sl["settlement_asset"], sl["cash_unit"]) == ("USD", 1e-6)
    assert si["fund_start"] == 3.0 and si["fund_min"] == 3.0  # in BTC: the balance never moved
    assert si["fund_start_usd"] == pytest.approx(300_000.0)
    assert si["fund_min_usd"] == pytest.approx(240_000.0, abs=1e-6)
    assert si["fund_min_usd"] == pytest.approx(si["fund_start_usd"] * si["mark_min"] / 100_000.0)
    assert sl["fund_start_usd"] == sl["fund_min_usd"] == sl["fund_start"] == 300_000.0
    assert si["fund_min_usd"] < sl["fund_min_usd"]
    assert si["conservation_residual_max_abs"] == 0
    # perpstress run prints money in the coin and the fund's dollar value; notionals stay in USD
    from simulator.cli.run_cmd import summary_table

    text = summary_table(si)
    assert "money in                         BTC (cash unit 1e-08 BTC); notionals in USD" in text
    assert "insurance fund at end            3.00000000 BTC" in text
    assert "insurance fund low (USD)         $240,000" in text
    assert "liquidated notional              $0" in text
    assert "BTC" not in summary_table(sl)


def test_quote_amounts_become_coin_at_the_opening_price():
    # fund 300,000 USD at 100,000 -> 3 BTC = 3e8 sats; a maker's 30,000,000 USD -> 300 BTC
    from simulator.world.model import PerpModel

    model = PerpModel(validate(_inverse_crash({"agents.traders.count": 5}), "inverse"))
    venue = model.venue
    assert venue.ledger.wallet[venue.insurance_fund] == 300_000_000
    assert int(venue.ledger.wallet[model.maker_accounts[0]]) == 30_000_000_000
    # tier floors 100,000 and 1,000,000 USD -> 1 and 10 BTC
    assert venue.tiers[0].floors == (0, 100_000_000, 1_000_000_000)
    assert venue.contract_values[0] == 200_000_000  # K = 1 USD / (0.5 USD x 1e-8 BTC)


def test_mixed_settlements_are_refused_naming_the_field():
    data = _inverse_crash()
    second = dict(data["markets"][0], name="BTC-PERP", settlement="linear", tick_size=0.1, lot_size=0.001)
    second.pop("coin")
    data["markets"].append(second)
    data["index"]["models"].append(dict(data["index"]["models"][0]))
    with pytest.raises(ScenarioError, match=r"mixed\.yaml: markets\.1\.settlement: 'linear', but markets\.0 is 'inverse'"):
        validate(data, "mixed.yaml")


def test_inverse_contract_constant_must_be_whole_satoshis():
    # tick 0.3 USD: 1 / (0.3 x 1e-8) = 333,333,333.3 sats per contract-tick
    data = _inverse_crash({"markets.0.tick_size": 0.3})
    with pytest.raises(ScenarioError, match=r"bad\.yaml: markets\.0: inverse: .* is not whole"):
        validate(data, "bad.yaml")


def test_bitmex_inverse_preset_settles_a_linear_scenario_in_coin():
    design = load_design("bitmex_inverse")
    assert design.contract.settlement == "inverse"
    data = read_yaml(scenario_path("cascade"))
    data["designs"] = [design.model_dump(mode="json")]
    sc = validate(data, "cascade").design("bitmex_inverse")
    m = sc.markets[0]
    assert (m.settlement, m.lot_size, m.tick_size, m.coin) == ("inverse", 1.0, 0.5, "BTC")
    # a contract no ledger can hold is refused with the design's field
    data["designs"][0]["contract"]["tick_size"] = 0.3
    with pytest.raises(ScenarioError, match=r"designs\.0\.contract: markets\.0: inverse"):
        validate(data, "cascade")
