"""The backstop vault (Hyperliquid's liquidator vault): unwinds what it took over, over time."""

from __future__ import annotations

import mesa


class BackstopVault(mesa.Agent):
    """Holds the venue's backstop account; each step sells part of its inherited positions.

    The takeover itself is the ``backstop`` waterfall stage; this agent is the slow unwind,
    which is why a backstop spreads a cascade's selling over time instead of dumping it.
    """

    def __init__(self, model, account: int):
        super().__init__(model)
        self.account = account

    def step(self) -> None:
        self.model.venue.unwind_venue_positions(holders=[self.account])
