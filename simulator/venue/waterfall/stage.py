"""The interface every waterfall stage implements.

A round runs in two passes over the scenario's stage list (see ``simulator.venue.waterfall``):
``close`` (take positions off the cases: book, backstop and fund takeovers, ADL), then
``cover`` (pay what is still owed: fund, backstop vault, socialization). A stage implements
the passes it takes part in; ``settle`` runs at the end of each settlement window, ``due``
at the start of every liquidation pass and ``withdrawal_haircut`` at every withdrawal.
"""

from __future__ import annotations

from typing import ClassVar


class Stage:
    """Base class: a waterfall stage configured from a scenario's stage entry."""

    name: ClassVar[str] = ""

    def close(self, venue, cases) -> None:
        """Pass 1: close (part of) the pending cases' positions. Default: nothing."""

    def cover(self, venue, cases) -> None:
        """Pass 2: pay (part of) the flat cases' deficits. Default: nothing."""

    def capacity(self, venue) -> tuple[int, int | None] | None:
        """What this stage could pay toward deficits now, and its per-case cap (None: no cap);
        None if the stage never pays deficits. ADL's ``fund_cannot_pay`` trigger reads it."""
        return None

    def settle(self, venue) -> None:
        """End of a settlement window (funding time). Default: nothing deferred."""

    def due(self, venue) -> None:
        """Start of every liquidation pass (``venue.time`` is the scenario time): charge what
        has come due. Default: nothing deferred."""

    def withdrawal_haircut(self, venue, accounts, amounts):
        """What this stage keeps of each withdrawal (int64 per withdrawal, logged by the stage;
        the venue moves the cash), or None if it takes nothing from withdrawals. Default: None."""
        return None
