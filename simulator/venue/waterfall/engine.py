"""The venue's liquidation engine: the last resort of every round, not a configurable stage.

After the position stages, a case that is still open with equity <= 0 is taken by the engine
at mark (its own ledger row, unwound into the book over the following steps like the fund's
and the vault's inventory), so its deficit is realised and goes down the deficit stages. After
the deficit stages, whatever is still owed is the venue's own loss: injected from outside the
ledger and recorded, never hidden. A solvent case that no stage could close stays open and is
retried next round or step.

Taken-over inventory is marked to market: once per step, a venue row holding it (the engine,
the insurance fund, the backstop vault) whose equity is below zero owes that loss as a deficit
of its own row, covered by the same deficit stages (``inventory_loss_case``): a fund or vault
cannot pay for itself once broke, so the loss goes on to socialization or the venue. A loss
made closing a bankrupt position is never left on the venue's books unrecorded. Gains stay with
the holder (``engine_equity_end`` in the summary).
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
    """The venue rows that hold taken-over inventory (the engine, the fund, the backstop vault)
    and whose equity is below zero, as cases owing that mark-to-market loss; None if none is."""
    rows = np.array([venue.engine, venue.insurance_fund, venue.backstop])
    broke = rows[venue.equity(rows) < 0]
    if len(broke) == 0:
        return None
    cases = Cases.flagged(venue, broke)
    cases.inventory = True
    cases.track(venue, np.ones(len(broke), dtype=bool), STAGE)
    return cases
