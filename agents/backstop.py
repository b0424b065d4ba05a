"""The backstop vault (Hyperliquid's liquidator vault): unwinds what it took over, over time."""

from __future__ import annotations

from agents.account import AccountAgent


class BackstopVault(AccountAgent):
    """Holds the venue's backstop account; each step sells part of its inherited positions.

    The takeover itself is the ``backstop`` waterfall stage; this agent is the slow unwind,
    which is why a backstop spreads a cascade's selling over time instead of dumping it.
    """

    def step(self) -> None:
        self.model.venue.unwind_venue_positions(holders=[self.account])
