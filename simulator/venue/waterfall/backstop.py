"""``backstop``: a vault takes the case's position and margin over below a trigger.

Self-contained: imports only ``simulator.venue`` helpers and ``waterfall.base``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from simulator.venue.waterfall.base import Cases, Stage, take_over


@dataclass
class BackstopStage(Stage):
    """A backstop vault (Hyperliquid's liquidator vault) takes over below a fraction of MM.

    Args:
        trigger: take over when equity < ``trigger`` x maintenance margin (2/3 on Hyperliquid).
        max_leverage: cap on the vault's gross leverage after a takeover (None: the vault only
            has to stay above maintenance on what it holds).
    """

    name: ClassVar[str] = "backstop"
    trigger: float = 2 / 3
    max_leverage: float | None = None

    def run(self, venue, cases: Cases) -> None:
        eq = venue.equity()[cases.accounts]
        mm = venue.maintenance()[cases.accounts].sum(axis=1)
        eligible = cases.pending(venue) & (eq < self.trigger * mm)
        take_over(venue, cases, venue.backstop, eligible, self.name, self.max_leverage)
