"""Property test: whatever the traders, prices and waterfall, the ledger is exact.

After every step (index move, quotes, market orders, marks, funding, unwind, liquidation rounds):
``conservation_residual() == 0``, ``sum(qty) == 0`` per market, a flat position carries no cost,
the books are not crossed, and the deficit events are exactly covered by the stages' events.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

from simulator.world.metrics import adl_cover

from strategies import build_venue, play_step, venue_runs


def deficit_cover_gap(venue, waterfall) -> int:
    """Sum of ``deficit`` events minus what the stages paid for them (must be 0).

    Covers: fund payouts, deficits absorbed by a takeover (negative margin), what ADL
    counterparties paid toward each case's deficit (at the bankruptcy price, or in the price of a
    previous-mark fill, capped at the case's deficit at mark), socialization (the pending amount when deferred, since the
    loss pool fronts it) and the venue's own loss.
    """
    ev = venue.events.to_frame()
    if not len(ev):
        return 0
    amt = ev.amount.to_numpy(dtype=np.int64)
    k = ev.kind.to_numpy(dtype=str)
    deferred = any(s.get("stage") == "socialize" and s.get("when") == "settlement" for s in waterfall)
    covered = (
        amt[k == "fund_payout"].sum()
        - amt[(k == "takeover") & (amt < 0)].sum()
        + adl_cover(ev[ev.kind == "adl"], ev[ev.kind == "adl_haircut"], ev[ev.kind == "deficit"])
        + amt[k == ("socialize_pending" if deferred else "socialize")].sum()
        + amt[k == "venue_loss"].sum()
    )
    return int(amt[k == "deficit"].sum() - covered)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(run=venue_runs())
def test_ledger_stays_exact_through_random_runs(run):
    venue, makers, traders, prices, unit = build_venue(run)
    led = venue.ledger
    assert venue.conservation_residual() == 0
    deferred = any(s["stage"] == "socialize" and s.get("when") == "settlement" for s in run["waterfall"])
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
        assert deficit_cover_gap(venue, run["waterfall"]) == 0
