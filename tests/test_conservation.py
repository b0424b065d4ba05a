"""Property test: whatever the traders, prices and waterfall, the ledger is exact.

After every step (index move, quotes, market orders, marks, funding, unwind, liquidation rounds):
``conservation_residual() == 0``, ``sum(qty) == 0`` per market, a flat position carries no cost,
the books are not crossed, and the deficit events are exactly covered by the stages' events
(withdrawals and withdrawal waves included: a withdrawal factor's haircuts repay exactly what the
loss pool fronted).
"""

from __future__ import annotations

import numpy as np
import os

from hypothesis import HealthCheck, event, example, given, settings

from simulator.venue.margin import MarginTiers
from simulator.venue.market import MarketSpec
from strategies import build_venue, play_step, venue_runs

#: ``PERPSTRESS_EXAMPLES=10000 pytest tests/test_conservation.py`` for a thorough local run
EXAMPLES = int(os.environ.get("PERPSTRESS_EXAMPLES", 150))


#: Falsifying examples found with fresh draws, kept (see the module docstring).
#: ADL at the previous mark, two markets of different contract values (found 2026-12-03:
#: the old attribution left a gap of -2 cash units).
PREVIOUS_MARK_TWO_MARKETS = {'markets': [MarketSpec(name='M0',
tick_size=1.0,
lot_size=1.0,
cash_unit=1.0,
max_leverage=100.0,
taker_fee_ppm=0,
maker_fee_ppm=0,
tiers=MarginTiers(floors=(0,), mmr_ppm=(4000,))),
MarketSpec(name='M1',
tick_size=0.1,
lot_size=0.001,
cash_unit=1e-06,
max_leverage=100.0,
taker_fee_ppm=0,
maker_fee_ppm=0,
tiers=MarginTiers(floors=(0, 10000), mmr_ppm=(50000, 100000)))],
'prices': [1000.0, 50.0],
'waterfall': [{'stage': 'adl', 'ranking': 'pnl_x_leverage', 'price': 'previous_mark'}],
'mark': 'median',
'fund': 0.0,
'backstop': 0.0,
'deposits': [1.0, 1.0, 1.0, 0.25, 1.0],
'leverage': [5.0, 5.0, 5.0, 20.0, 5.0],
'funding_every': 1,
'funding_formula': 'binance',
'seed': 0,
'steps': [{'returns': [0.0, 0.25],
'quotes': [[(0, 1, 0.0, 0),
(0, 1, 0.0, 0),
(0, 1, 0.0, 0),
(0, 1, 0.0, 0),
(0, 1, 0.03125, 1),
(0, -1, 0.0, 3)],
[(0, 1, 0.0, 0), (0, 1, 0.0, 0), (0, -1, 0.0, 3)]],
'orders': [(0, 0, 1, 1, False),
(0, 0, 1, 1, False),
(3, 0, 1, 1, False),
(3, 1, 1, 3, False)],
'deposit': None,
'withdraw': None},
{'returns': [0.0, 0.0],
'quotes': [[(0, 1, 0.0, 0)], [(0, 1, 0.0, 0)]],
'orders': [(0, 0, 1, 1, False)],
'deposit': None,
'withdraw': None},
{'returns': [0.0, 0.0],
'quotes': [[(0, 1, 0.0, 0)], [(0, 1, 0.0, 0)]],
'orders': [(0, 0, 1, 1, False)],
'deposit': None,
'withdraw': None}]}


def attribution_gaps(venue) -> tuple[int, dict]:
    """(total deficit minus total cover, per-case gaps that are not 0).

    Every ``deficit`` event is covered by ``cover`` events (fund, backstop, adl, socialize,
    socialize_pending, venue) of the same case in the same round; a deferred socialization's
    settlement moves covers from ``socialize_pending`` to ``socialize`` / ``venue`` on the loss
    pool's row, netting to zero.
    """
    ev = venue.events.to_frame()
    if not len(ev):
        return 0, {}
    d = ev[ev.kind == "deficit"]
    c = ev[ev.kind == "cover"]
    total = int(d.amount.sum()) - int(c.amount.sum())
    key = ["step", "round", "account"]
    per_case = d.groupby(key)["amount"].sum().sub(
        c[c.account != venue.loss_pool].groupby(key)["amount"].sum(), fill_value=0)
    return total, {k: int(v) for k, v in per_case.items() if v != 0}


# A delayed and a settlement socialize stage: the settlement charged the delayed stage's fronted
# deficit too (the loss pool ended at +10); found by the fresh-draw run after the loss pool's
# `<= 0` check was added.
DELAYED_THEN_SETTLEMENT = {'markets': [MarketSpec(name='M0',
       tick_size=1.0,
       lot_size=1.0,
       cash_unit=1.0,
       max_leverage=100.0,
       taker_fee_ppm=0,
       maker_fee_ppm=0,
       tiers=MarginTiers(floors=(0,), mmr_ppm=(4000,)),
       settlement='linear',
       quote_per_coin=1.0),
      MarketSpec(name='M1',
       tick_size=1.0,
       lot_size=1.0,
       cash_unit=1.0,
       max_leverage=100.0,
       taker_fee_ppm=0,
       maker_fee_ppm=0,
       tiers=MarginTiers(floors=(0,), mmr_ppm=(4000,)),
       settlement='linear',
       quote_per_coin=1.0),
      MarketSpec(name='M2',
       tick_size=1.0,
       lot_size=1.0,
       cash_unit=1.0,
       max_leverage=100.0,
       taker_fee_ppm=0,
       maker_fee_ppm=0,
       tiers=MarginTiers(floors=(0,), mmr_ppm=(4000,)),
       settlement='linear',
       quote_per_coin=1.0)],
     'prices': [50.0, 50.0, 50.0],
     'waterfall': [{'stage': 'socialize', 'weights': 'equity', 'delay_seconds': 30.0}, {'stage': 'socialize', 'weights': 'equity', 'when': 'settlement'}],
     'mark': 'median',
     'fund': 0.0,
     'backstop': 0.0,
     'deposits': [1.0, 1.0, 1.0],
     'leverage': [5.0, 5.0, 5.0],
     'funding_every': 1,
     'guard': None,
     'funding_formula': 'binance',
     'seed': 0,
     'steps': [{'returns': [0.0, 0.0, 0.0],
       'quotes': [[(0, 1, 0.0, 0)], [(0, 1, 0.0, 0)], [(0, 1, 0.0, 5)]],
       'orders': [(0, 0, 1, 1, False),
        (0, 0, 1, 1, False),
        (0, 0, 1, 1, False),
        (0, 0, 1, 1, False),
        (0, 0, 1, 1, False),
        (0, 0, 1, 1, False),
        (0, 0, 1, 1, False),
        (0, 0, 1, 1, False),
        (0, 2, -1, 5, False)],
       'deposit': None,
       'withdraw': None,
       'wave': None},
      {'returns': [0.0, 0.0, 0.25],
       'quotes': [[(0, 1, 0.0, 0)], [(0, 1, 0.0, 0)], [(0, 1, 0.0, 0)]],
       'orders': [(0, 0, 1, 1, False)],
       'deposit': None,
       'withdraw': None,
       'wave': None},
      {'returns': [0.0, 0.0, 0.0],
       'quotes': [[(0, 1, 0.0, 0)], [(0, 1, 0.0, 0)], [(0, 1, 0.0, 0)]],
       'orders': [(0, 0, 1, 1, False)],
       'deposit': None,
       'withdraw': None,
       'wave': None}]}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(run=venue_runs())
@example(run=PREVIOUS_MARK_TWO_MARKETS)
@example(run=DELAYED_THEN_SETTLEMENT)
def test_ledger_stays_exact_through_random_runs(run):
    venue, makers, traders, prices, unit = build_venue(run)
    led = venue.ledger
    assert venue.conservation_residual() == 0
    deferred = any(s["stage"] == "socialize" and (s.get("when") == "settlement" or s.get("delay_seconds", 0) > 0
                                                  or s.get("weights") == "withdrawal_factor")
                   for s in run["waterfall"])
    for i, step in enumerate(run["steps"]):
        prices = play_step(venue, makers, traders, prices, unit, step, i, run["funding_every"])
        assert venue.conservation_residual() == 0
        assert (led.qty.sum(axis=0) == 0).all()
        assert (led.cost[led.qty == 0] == 0).all()
        for book in venue.books:
            if book.best_bid() is not None and book.best_ask() is not None:
                assert book.best_bid() < book.best_ask()
        if not deferred:  # an immediate socialization pays out only what it collected
            assert led.wallet[venue.loss_pool] == 0
        assert attribution_gaps(venue) == (0, {})
        ev = venue.events.to_frame()
        pending = ev.query("kind == 'cover' and stage == 'socialize_pending'").amount.sum()
        assert led.wallet[venue.loss_pool] == -pending
        # the loss pool only fronts: what it charges back never exceeds what it fronted (a
        # deficit charged twice, by two stages, would leave it above 0)
        assert led.wallet[venue.loss_pool] <= 0
        # every withdrawal is logged with what it paid out; a withdrawal factor's outstanding
        # loss is exactly what the loss pool is owed
        assert led.withdrawals == ev.query("kind == 'withdrawal'").amount.sum()
        for stage in venue.waterfall:
            if getattr(stage, "weights", None) == "withdrawal_factor":
                assert stage.outstanding == -led.wallet[venue.loss_pool] >= 0
    ev = venue.events.to_frame()
    if sum(s["stage"] == "socialize" for s in run["waterfall"]) > 1 and len(ev.query("kind == 'socialize_pending'")):
        event("two socialize stages, a deficit fronted")
    if (ev.reason == "withdrawal_factor").any():  # --hypothesis-show-statistics: how often it was hit
        event("withdrawal factor charged a withdrawal")
    elif any(s.get("weights") == "withdrawal_factor" for s in run["waterfall"]) and len(ev.query("kind == 'socialize_pending'")):
        event("withdrawal factor fronted a deficit, no withdrawal charged")
