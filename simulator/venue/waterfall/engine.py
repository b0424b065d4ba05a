"""The venue's liquidation engine: the last resort of every round, not a configurable stage.

After the position stages, a case that is still open with equity <= 0 is taken by the engine
at mark (its own ledger row, unwound into the book over the following steps like the fund's
and the vault's inventory), so its deficit is realised and goes down the deficit stages. After
the deficit stages, whatever is still owed is the venue's own loss: injected from outside the
ledger and recorded, never hidden. A solvent case that no stage could close stays open and is
retried next round or step.

The engine's inventory is marked to market: once per step, a negative engine equity (its
unwind realised or its inventory lost more than the cases' deficits at takeover) is a deficit
of the engine's own row, covered by the same deficit stages (``cover_inventory_loss``), so a
loss made closing a bankrupt position is never left on the venue's books unrecorded. Gains
stay with the engine (``engine_equity_end`` in the summary).
"""

from __future__ import annotations

import numpy as np

from simulator.venue.waterfall.cases import Cases
from simulator.venue.waterfall.takeover import take_over

STAGE = "engine"


def take_bankrupt(venue, cases) -> None:
    """The engine takes every pending case with equity <= 0 at mark."""
    broke = cases.pending(venue) & (venue.equity(cases.accounts) <= 0)
    if broke.any():
        take_over(venue, cases, venue.engine, broke, STAGE, room_needed="none", move_margin=False)


def cover_venue_loss(venue, cases) -> None:
    """The venue injects what is still owed and records it."""
    need = cases.deficit(venue)
    hit = need > 0
    for k in np.flatnonzero(hit):
        venue.ledger.inject(int(cases.accounts[k]), int(need[k]), "venue_loss")
    if hit.any():
        venue.events.add("venue_loss", account=cases.accounts[hit], amount=need[hit])
        cases.update(venue, "venue")


def inventory_loss_case(venue) -> Cases | None:
    """The engine's own row as a case owing its mark-to-market loss, or None if it has none."""
    if int(venue.equity(np.array([venue.engine]))[0]) >= 0:
        return None
    cases = Cases.flagged(venue, [venue.engine])
    cases.inventory = True
    cases.track(venue, np.ones(1, dtype=bool), STAGE)
    return cases
