"""Shared by every stage: ``Cases`` (the accounts in this liquidation round), the ``Stage``
base class, ``take_over`` (a taker absorbs a case's positions; used by ``backstop`` and
``insurance_fund``) and ``cover_venue_loss`` (after the last stage).

Conventions that make "at the bankruptcy price" exact in integers: a takeover or an ADL fill
trades at the mark (whole ticks), and the case's remaining equity (positive or negative) then
moves in cash to the other side, so the case ends at exactly zero, which is what a fill at the
(fractional) bankruptcy price would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from simulator.venue.margin import bankruptcy_prices


@dataclass
class Cases:
    """Accounts being liquidated in this round, worst first."""

    accounts: np.ndarray
    liquidated_notional: np.ndarray = field(init=False)
    fee_taken: np.ndarray = field(init=False)
    restored: np.ndarray = field(init=False)  # a partial book close got it back above MM
    recorded: np.ndarray = field(init=False)  # its deficit/surplus event has been logged

    def __post_init__(self):
        self.accounts = np.asarray(self.accounts, dtype=np.int64)
        self.liquidated_notional = np.zeros(len(self.accounts), dtype=np.int64)
        self.fee_taken = np.zeros(len(self.accounts), dtype=bool)
        self.restored = np.zeros(len(self.accounts), dtype=bool)
        self.recorded = np.zeros(len(self.accounts), dtype=bool)

    def open(self, venue) -> np.ndarray:
        """Mask: the case still holds a position."""
        return (venue.ledger.qty[self.accounts] != 0).any(axis=1)

    def pending(self, venue) -> np.ndarray:
        """Mask: the case holds a position that later position stages must still close (a
        partial book close that brought the case back above maintenance leaves it the rest)."""
        return self.open(venue) & ~self.restored

    def record_outcome(self, venue, stage: str) -> None:
        """Log a ``deficit`` (wallet < 0) or ``surplus`` (wallet > 0) event for every case that
        is now flat and not yet logged; called when positions are gone and before any cover."""
        new = ~self.open(venue) & ~self.recorded
        self.recorded |= new
        w = venue.ledger.wallet[self.accounts]
        for kind, hit in (("deficit", new & (w < 0)), ("surplus", new & (w > 0))):
            if hit.any():
                venue.events.add(kind, stage=stage, account=self.accounts[hit], amount=np.abs(w[hit]))

    def deficit(self, venue) -> np.ndarray:
        """Deficit per case (> 0 only for flat cases with a negative wallet)."""
        w = venue.ledger.wallet[self.accounts]
        return np.where(~self.open(venue) & (w < 0), -w, 0)


class Stage:
    """Base class: a waterfall stage configured from a scenario's stage entry."""

    name: ClassVar[str] = ""

    def run(self, venue, cases: Cases) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def settle(self, venue) -> None:
        """End of a settlement window (funding time). Default: nothing deferred."""


def take_over(venue, cases: Cases, taker: int, eligible: np.ndarray, stage: str,
              max_leverage: float | None = None) -> None:
    """``taker`` takes the eligible cases' positions and margin, as far as its capital allows.

    Trades at mark, then moves the case's whole remaining equity (signed) to the taker: the
    same as taking the positions at the bankruptcy price. Cases are served worst first while the
    taker's equity stays at or above the maintenance margin of everything it then holds, or,
    with ``max_leverage``, at or above gross notional / ``max_leverage``.
    """
    led = venue.ledger
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return
    acc = cases.accounts[idx]
    eq = venue.equity()
    if max_leverage is None:
        mm = venue.maintenance()
        need_taker, need_cases = mm[taker].sum(), mm[acc].sum(axis=1)
    else:
        gross = np.abs(led.qty) * (venue.marks * venue.contract_values)[None, :]
        need_taker = gross[taker].sum() / max_leverage
        need_cases = gross[acc].sum(axis=1) / max_leverage
    room = eq[taker] - need_taker + np.cumsum(eq[acc] - need_cases)
    fits = room >= 0
    n = len(fits) if fits.all() else int(np.argmin(fits))  # serve the prefix that fits
    if n == 0:
        return
    acc, idx = acc[:n], idx[:n]
    for m in range(venue.n_markets):
        q = led.qty[acc, m]
        held = q != 0
        if not held.any():
            continue
        p_b = bankruptcy_prices(led, venue.marks, acc[held], m)
        a, qh = acc[held], q[held]
        buyers = np.where(qh > 0, taker, a)
        sellers = np.where(qh > 0, a, taker)
        led.trade(m, buyers, sellers, np.abs(qh), venue.marks[m])
        cases.liquidated_notional[idx[held]] += np.abs(qh) * venue.marks[m] * venue.contract_values[m]
        venue.events.add("liquidation", amount=0, stage=stage, account=a, counterparty=taker, market=m,
                         qty=-qh, price=float(venue.marks[m]), bankruptcy_price=p_b)
    cases.record_outcome(venue, stage)
    margin = led.wallet[acc].copy()  # flat now: wallet is the remaining equity, either sign
    led.transfer(acc, taker, margin)
    venue.events.add("takeover", stage=stage, account=acc, counterparty=taker, amount=margin)


def cover_venue_loss(venue, cases: Cases) -> None:
    """After the last stage: the venue injects what is still negative and records it.

    (An immediate socialization pays out only what it collected, so the loss pool carries a
    balance between rounds only for a deferred, ``settlement`` socialization.)
    """
    cases.record_outcome(venue, "venue")
    need = cases.deficit(venue)
    for k in np.flatnonzero(need > 0):
        venue.ledger.inject(int(cases.accounts[k]), int(need[k]), "venue_loss")
    if need.any():
        venue.events.add("venue_loss", account=cases.accounts[need > 0], amount=need[need > 0])
