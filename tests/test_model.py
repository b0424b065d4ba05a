"""The mesa model: agents, step order and every kind of scripted shock, on small runs."""

from __future__ import annotations

import numpy as np
import pytest

from agents.arbitrageurs import Arbitrageur
from agents.market_makers import MarketMaker
from agents.traders import LeveragedTrader
from simulator.world.model import PerpModel
from simulator.world.scenario import validate


def scenario(**extra) -> dict:
    base = {
        "name": "small",
        "seed": 4,
        "steps": 200,
        "index": {"models": [{"kind": "gbm", "start_price": 50_000, "volatility": 0.5}]},
        "agents": {"traders": {"count": 100, "trade_probability": 0.01},
                   "market_makers": {"count": 2, "capital": 2_000_000, "level_notional": 20_000},
                   "arbitrageurs": {"count": 1}},
        "venue": {"funding": {"interval_seconds": 50}},  # 1-second steps: settle every 50 steps
    }
    base.update(extra)
    return base


def run_model(**extra) -> PerpModel:
    model = PerpModel(validate(scenario(**extra)))
    model.run()
    return model


def test_agents_are_mesa_agents_with_one_account_each():
    model = PerpModel(validate(scenario()))
    by_type = model.agents_by_type
    assert len(by_type[LeveragedTrader]) == 100
    assert len(by_type[MarketMaker]) == 2 and len(by_type[Arbitrageur]) == 1
    accounts = [a.account for a in model.agents if hasattr(a, "account")]
    assert len(accounts) == len(set(accounts))  # no two agents share a ledger row


def test_same_seed_same_run_and_seed_sequence_reusable():
    a, b = run_model(), run_model()
    np.testing.assert_array_equal(a.venue.ledger.wallet, b.venue.ledger.wallet)
    ss = np.random.SeedSequence(9)
    sc = validate(scenario())
    m1, m2 = PerpModel(sc, ss), PerpModel(sc, ss)
    m1.run()
    m2.run()
    np.testing.assert_array_equal(m1.venue.ledger.qty, m2.venue.ledger.qty)


def test_oracle_stall_freezes_the_venue_index_only():
    m = run_model(shocks=[{"kind": "oracle_stall", "step": 50, "duration": 30}])
    seen, real = m.series["venue_index"], m.series["index"]
    assert (seen[50:80] == real[50]).all()
    assert np.ptp(real[50:80]) > 0
    np.testing.assert_array_equal(seen[80:], real[80:])


def test_oracle_lag_shows_the_index_some_steps_late():
    m = run_model(shocks=[{"kind": "oracle_stall", "step": 50, "duration": 30, "lag": 5}])
    np.testing.assert_array_equal(m.series["venue_index"][50:80], m.series["index"][45:75])


def test_liquidity_withdrawal_thins_the_book():
    # the shock withdraws market-maker depth; the arbitrageurs' basis ladder is not part of it,
    # so the makers' share is measured with takers-only arbitrageurs
    agents = scenario()["agents"] | {"arbitrageurs": {"count": 1, "quote_levels": 0}}
    calm = run_model(agents=agents)
    thin = run_model(agents=agents, shocks=[{"kind": "liquidity_withdrawal", "step": 100, "duration": 50, "fraction": 0.8}])
    window = slice(101, 150)
    assert np.nanmean(thin.series["depth_bid_1pct"][window]) < 0.35 * np.nanmean(calm.series["depth_bid_1pct"][window])
    np.testing.assert_array_equal(thin.series["depth_bid_1pct"][:100], calm.series["depth_bid_1pct"][:100])
    # with the basis ladder the withdrawn book keeps more depth: its bids within 1 % stay
    laddered = run_model(shocks=[{"kind": "liquidity_withdrawal", "step": 100, "duration": 50, "fraction": 0.8}])
    assert np.nanmean(laddered.series["depth_bid_1pct"][window]) > np.nanmean(thin.series["depth_bid_1pct"][window])


def test_funding_spike_raises_the_next_funding_rate_by_its_premium():
    # premium + interest (no clamp band), so the spike's premium passes straight into the rate
    plain = {"funding": {"interval_seconds": 50, "formula": "premium_plus_interest"}}
    calm = run_model(venue=plain)
    spiked = run_model(venue=plain, shocks=[{"kind": "funding_spike", "step": 50, "duration": 50, "rate": 0.001}])
    # settlement at step 99 averages 50 steps of premium; each carried +0.001
    rate_calm, rate_spiked = calm.series["funding_rate"][99], spiked.series["funding_rate"][99]
    assert rate_spiked == pytest.approx(min(rate_calm + 0.001, 0.0075), abs=1e-12)


def test_funding_settles_by_scenario_time_not_step_count():
    # 200 steps of 30 s = 6,000 s; settlement every 600 s: 10 settlements, at steps 19, 39, ...
    m = run_model(step_seconds=30, venue={"funding": {"interval_seconds": 600}})
    settled = np.flatnonzero(~np.isnan(m.series["funding_rate"]))
    assert settled.tolist() == list(range(19, 200, 20))
    # the default interval (8 h) never comes in 200 one-second steps
    assert np.isnan(run_model(venue={}).series["funding_rate"]).all()


def test_crowding_sets_the_long_share_during_its_window():
    m = run_model(shocks=[{"kind": "crowding", "step": 20, "duration": 40, "long_share": 0.95}])
    ls = m.series["long_share"]
    assert (ls[20:60] == 0.95).all() and (ls[:20] == 0.5).all() and (ls[60:] == 0.5).all()


def test_whale_opens_its_position_when_scripted():
    m = run_model(shocks=[{"kind": "whale", "step": 30, "notional": 500_000, "leverage": 10, "side": "short"}])
    whale = m.whales[0]
    assert m.venue.ledger.kind[whale] == "trader"
    ev = m.venue.events.to_frame()
    liquidated = whale in set(ev[ev.kind == "liquidation"].account)
    assert m.venue.ledger.qty[whale, 0] < 0 or liquidated


def test_fund_guard_caps_new_leverage_while_the_fund_is_low():
    # fund 1,000 USD against open interest of several million: the guard is on from step 1,
    # and an order needing 20x is refused at the guard's 5x although the trader may use 20x
    sc = validate(scenario(venue={"insurance_fund": 1_000, "fund_guard": {"threshold": 0.2, "max_leverage": 5}}))
    model = PerpModel(sc)
    model.step()
    venue = model.venue
    assert venue.fund_guard_active()
    trader = int(venue.add_accounts(1, "trader", 1_000 * 10**6, leverage=20)[0])
    lots = int(15_000 / (venue.marks[0] * venue.markets[0].tick_size * venue.markets[0].lot_size))  # $15k: 15x
    before = venue.rejections
    venue.submit_orders(0, [trader], [1], [lots])
    assert venue.rejections == before + 1 and venue.ledger.qty[trader, 0] == 0
    venue.submit_orders(0, [trader], [1], [lots // 4])  # $3.75k: 3.75x, inside the cap
    assert venue.ledger.qty[trader, 0] > 0
    # without a guard the same 15x order is accepted
    free = PerpModel(validate(scenario(venue={"insurance_fund": 1_000})))
    free.step()
    t2 = int(free.venue.add_accounts(1, "trader", 1_000 * 10**6, leverage=20)[0])
    free.venue.submit_orders(0, [t2], [1], [lots])
    assert free.venue.ledger.qty[t2, 0] > 0
    assert model.series["fund_guard"][0] == 1.0


def test_realised_vol_is_the_std_of_the_log_returns_in_the_window():
    # vol_window 20 at step 50: the 20 log returns of index[30..50]; at step 1 fewer than 3
    # prices, so 0. Recomputed here from the index path, independently of the model's cache.
    model = PerpModel(validate(scenario()))
    w = model.scenario.agents.market_makers.vol_window
    assert w == 20
    assert model.realised_vol().tolist() == [0.0]  # t = 0: one price, no return yet
    while model.t < 50:
        model.step()
    window = model.index_path[30:51, 0]
    r = [float(np.log(window[i + 1]) - np.log(window[i])) for i in range(20)]
    mean = sum(r) / 20
    by_hand = (sum((x - mean) ** 2 for x in r) / 20) ** 0.5
    assert model.realised_vol()[0] == pytest.approx(by_hand, rel=1e-12)


def test_venue_index_in_ticks_per_market_tick_size():
    # two markets, tick 0.5 and 0.01: 50_000.26 / 0.5 = 100_000.52 -> 100_001 ticks;
    # 3.004 / 0.01 = 300.4 -> 300 ticks; a price under half a tick still counts 1 tick
    class Spec:
        def __init__(self, tick_size):
            self.tick_size = tick_size

    venue = PerpModel(validate(scenario())).venue
    venue.markets = [Spec(0.5), Spec(0.01)]
    venue._tick_sizes = None
    seen = []
    venue.prices.set_index = lambda ticks: seen.append(np.asarray(ticks).tolist())
    venue.set_index([50_000.26, 3.004])
    venue.set_index([0.2, 0.004])
    assert seen == [[100_001.0, 300.0], [1.0, 1.0]]
