"""The accounts being liquidated in one round (*cases*) and the exact attribution of their loss.

Attribution rule (one for every stage and every stage order):

* A case's **deficit** starts being tracked the first time a stage other than the book acts on
  it (its negative equity at mark then), or when it becomes flat (its negative wallet: a book
  fill below the bankruptcy price makes the deficit at the fill price).
* From then on ``owed[k] == max(0, -equity_k)`` always. Every later change of a tracked case's
  equity is attributed to the stage that made it: a rise is that stage's **cover** of the
  deficit (fund payout, takeover margin, ADL haircut, socialization, venue loss), a fall is
  more **deficit** (an ADL fill at a price worse than mark, a book fill worse than mark).
* Hence, per case and in total, exactly: ``sum(deficit events) == sum(cover events)`` once the
  round has ended; ``Cases.check_settled`` proves it at the end of every round.

``deficit``, ``surplus`` and ``cover`` events carry the case as ``account`` and the acting
stage as ``stage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The bundled stages that cover deficits (``cover`` events' ``stage``).
COVER_STAGES = ("insurance_fund", "backstop", "adl", "socialize", "socialize_pending", "venue")


@dataclass
class Cases:
    """Accounts being liquidated in this round, worst first.

    Attributes:
        accounts: ledger rows of the cases.
        markets_held: ``[case, market]`` mask of the markets each case held when flagged.
        liquidated_notional: cash value of what stages closed, per case.
        restored: a partial book close brought the case back above maintenance; later
            position stages leave the rest of its position alone.
        tracked: the case's deficit is being attributed (see module docstring).
        owed: ``max(0, -equity)`` of tracked cases, cash units.
        surplus_recorded: the case's surplus (equity left when flat) was logged.
        book_reason: why the book did not close the case: ``book_exhausted`` (the other side
            of the book ran dry) or ``price_band`` (liquidity was left beyond the order's limit).
        takeover_refused: a takeover stage wanted the case but had no capacity for it.
    """

    accounts: np.ndarray
    markets_held: np.ndarray = field(init=False)
    liquidated_notional: np.ndarray = field(init=False)
    fee_taken: np.ndarray = field(init=False)
    restored: np.ndarray = field(init=False)
    tracked: np.ndarray = field(init=False)
    owed: np.ndarray = field(init=False)
    surplus_recorded: np.ndarray = field(init=False)
    book_reason: np.ndarray = field(init=False)
    takeover_refused: np.ndarray = field(init=False)

    def __post_init__(self):
        self.accounts = np.asarray(self.accounts, dtype=np.int64)
        n = len(self.accounts)
        self.markets_held = np.zeros((n, 0), dtype=bool)
        self.liquidated_notional = np.zeros(n, dtype=np.int64)
        self.fee_taken = np.zeros(n, dtype=bool)
        self.restored = np.zeros(n, dtype=bool)
        self.tracked = np.zeros(n, dtype=bool)
        self.owed = np.zeros(n, dtype=np.int64)
        self.surplus_recorded = np.zeros(n, dtype=bool)
        self.book_reason = np.full(n, "", dtype=object)
        self.takeover_refused = np.zeros(n, dtype=bool)

    inventory: bool = False  # the engine's own inventory: its loss is owed while it is open

    @classmethod
    def flagged(cls, venue, accounts) -> "Cases":
        """Cases for ``accounts``, remembering which markets they held."""
        cases = cls(accounts)
        cases.markets_held = venue.ledger.qty[cases.accounts] != 0
        return cases

    # ------------------------------------------------------------------ state
    def open(self, venue) -> np.ndarray:
        """Mask: the case still holds a position."""
        return (venue.ledger.qty[self.accounts] != 0).any(axis=1)

    def pending(self, venue) -> np.ndarray:
        """Mask: open and not restored, so later position stages must still close it."""
        if self.inventory:
            return np.zeros(len(self.accounts), dtype=bool)
        return self.open(venue) & ~self.restored

    def equity(self, venue) -> np.ndarray:
        return venue.equity(self.accounts)

    # ------------------------------------------------------------- attribution
    def track(self, venue, mask, stage: str) -> None:
        """Start attributing the deficit of the cases in ``mask`` (their negative equity now)."""
        new = np.asarray(mask, dtype=bool) & ~self.tracked
        if not new.any():
            return
        eq = self.equity(venue)
        self.tracked |= new
        self.owed[new] = np.maximum(0, -eq[new])
        hit = new & (self.owed > 0)
        if hit.any():
            venue.events.add("deficit", stage=stage, account=self.accounts[hit], amount=self.owed[hit])

    def record_flat(self, venue, stage: str) -> None:
        """Cases that are flat now: start tracking their deficit and log a surplus once."""
        flat = ~self.open(venue)
        self.track(venue, flat, stage)
        w = venue.ledger.wallet[self.accounts]
        new = flat & ~self.surplus_recorded & (w > 0)
        if new.any():
            self.surplus_recorded |= new
            venue.events.add("surplus", stage=stage, account=self.accounts[new], amount=w[new])

    def update(self, venue, stage: str, covering: bool = True) -> None:
        """Attribute every change of tracked cases' equity since the last call to ``stage``:
        with ``covering`` a rise is ``stage``'s cover; without (a fill in the book or by the
        engine) any change moves the deficit itself."""
        if not self.tracked.any():
            return
        eq = self.equity(venue)
        now = np.where(self.tracked, np.maximum(0, -eq), 0)
        diff = self.owed - now  # > 0: covered by ``stage``; < 0: more deficit
        self.owed = now
        if covering:
            up = diff > 0
            if up.any():
                venue.events.add("cover", stage=stage, account=self.accounts[up], amount=diff[up])
            down = diff < 0
        else:
            down = diff != 0  # a book or engine fill moving the deficit either way
        if down.any():
            venue.events.add("deficit", stage=stage, account=self.accounts[down], amount=-diff[down])

    def deficit(self, venue) -> np.ndarray:
        """What is still owed per case (only flat cases can owe once a round's positions are
        settled: a bankrupt case left open is closed by the venue's liquidation engine; the
        engine's inventory owes its mark-to-market loss while open)."""
        return self.owed.copy() if self.inventory else np.where(self.open(venue), 0, self.owed)

    def check_settled(self, venue) -> None:
        """End of round: every deficit fully attributed, no bankrupt case left open."""
        eq = self.equity(venue)
        bad = (self.owed != 0) | (eq < 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise RuntimeError(
                f"waterfall left account {int(self.accounts[k])} with equity {int(eq[k])} and "
                f"{int(self.owed[k])} unattributed: a stage moved money without recording it"
            )
