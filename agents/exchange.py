"""The exchange agent: owns the venue and runs its part of every step, in DESIGN.md §8's order."""

from __future__ import annotations

import mesa

from simulator.venue.venue import Venue


class Exchange(mesa.Agent):
    """Runs mark, funding, liquidation rounds and the waterfall on its venue.

    The model calls ``open_step`` before the other agents trade and ``close_step`` after.
    """

    def __init__(self, model, venue: Venue):
        super().__init__(model)
        self.venue = venue
        self.cascade_depth = 0
        self.funding_rate = None

    def open_step(self, index_prices) -> None:
        self.venue.start_step(self.model.t)
        self.venue.roll_marks(index_prices)  # set_index, then update_marks(roll=True)

    def close_step(self, funding_due: bool, premium_add=None) -> None:
        venue = self.venue
        venue.update_marks(roll=False)
        if premium_add is not None:
            venue.add_funding_premium(premium_add)
        self.funding_rate = venue.apply_funding() if funding_due else None
        self.cascade_depth = venue.liquidate()
