"""``backstop``: a vault with its own capital takes cases over below a fraction of maintenance
(Hyperliquid's liquidator vault, HLP: below 2/3 of MM), and optionally pays the deficits of
cases the book closed below their bankruptcy price."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.venue.waterfall.payout import pay_deficits
from simulator.venue.waterfall.stage import Stage
from simulator.venue.waterfall.takeover import take_over


@dataclass
class BackstopStage(Stage):
    """A backstop vault.

    Args:
        trigger: take over when equity < ``trigger`` x maintenance margin (2/3 on Hyperliquid).
        max_leverage: cap on the vault's gross leverage after a takeover (None: the vault only
            has to stay above maintenance on what it holds).
        pays_deficits: the vault also absorbs the deficits of flat cases (a book fill below the
            bankruptcy price), from its equity above its own maintenance margin.
    """

    name: ClassVar[str] = "backstop"
    trigger: float = 2 / 3
    max_leverage: float | None = None
    pays_deficits: bool = False

    def close(self, venue, cases) -> None:
        eq = venue.equity(cases.accounts)
        mm = venue.maintenance(cases.accounts).sum(axis=1)
        eligible = cases.pending(venue) & (eq < self.trigger * mm)
        take_over(venue, cases, venue.backstop, eligible, self.name, "maintenance", self.max_leverage)

    def capacity(self, venue):
        if not self.pays_deficits:
            return None
        vault = np.array([venue.backstop])
        free = int(venue.equity(vault)[0]) - int(venue.maintenance(vault).sum())
        return max(0, min(free, int(venue.ledger.wallet[venue.backstop]))), None

    def cover(self, venue, cases) -> None:
        if not self.pays_deficits:
            return
        pay_deficits(venue, cases, venue.backstop, self.capacity(venue)[0], None, self.name)

