"""``insurance_fund``: takes surplus in, pays deficits out, optionally takes positions over.

Self-contained: imports only ``simulator.venue`` helpers and ``waterfall.base``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.venue.fixedpoint import PPM, muldiv
from simulator.venue.waterfall.base import Cases, Stage, take_over


SURPLUS_POLICIES = ("all_remaining_margin", "fee", "none")


@dataclass
class InsuranceFundStage(Stage):
    """The insurance fund: takes surplus, pays deficits up to its balance.

    Args:
        surplus_policy: ``all_remaining_margin`` (BitMEX, Bybit, Binance), ``fee`` (a clearance
            fee of liquidated notional, the trader keeps the rest) or ``none``.
        clearance_fee: fee rate for the ``fee`` policy (dYdX v4: up to 1.5 %).
        cap_per_event: most the fund pays for one case (Drift-style cap), cash units.
        takeover: the fund takes over positions the stages before could not close (the
            engine holding them at the bankruptcy price), while its capital allows.
        takeover_max_leverage: the fund's gross leverage cap after a takeover (None: it only
            has to stay above maintenance, which lets a small fund hold a large book).
    """

    name: ClassVar[str] = "insurance_fund"
    surplus_policy: str = "all_remaining_margin"
    clearance_fee: float = 0.0
    cap_per_event: int | None = None
    takeover: bool = False
    takeover_max_leverage: float | None = 5.0

    def __post_init__(self):
        if self.surplus_policy not in SURPLUS_POLICIES:
            raise ValueError(f"surplus_policy {self.surplus_policy!r}; allowed: {SURPLUS_POLICIES}")

    def run(self, venue, cases: Cases) -> None:
        led, fund = venue.ledger, venue.insurance_fund
        if self.takeover:
            take_over(venue, cases, fund, cases.pending(venue), self.name, self.takeover_max_leverage)
        cases.record_outcome(venue, self.name)
        self._take_surplus(venue, cases)
        need = cases.deficit(venue)
        if self.cap_per_event is not None:
            need = np.minimum(need, self.cap_per_event)
        available = max(0, min(int(led.wallet[fund]), int(venue.equity()[fund])))
        paid_before = np.cumsum(need) - need
        pay = np.clip(available - paid_before, 0, need)
        hit = pay > 0
        if hit.any():
            led.transfer(fund, cases.accounts[hit], pay[hit])
            venue.events.add("fund_payout", stage=self.name, account=cases.accounts[hit], amount=pay[hit])

    def _take_surplus(self, venue, cases: Cases) -> None:
        led = venue.ledger
        w = led.wallet[cases.accounts]
        flat = ~cases.open(venue)
        if self.surplus_policy == "all_remaining_margin":
            take = np.where(flat & (w > 0) & (cases.liquidated_notional > 0), w, 0)
        elif self.surplus_policy == "fee":
            fee = muldiv(cases.liquidated_notional, int(round(self.clearance_fee * PPM)), PPM)
            eq = venue.equity()[cases.accounts]
            take = np.where(~cases.fee_taken, np.clip(np.minimum(fee, eq), 0, None), 0)
            cases.fee_taken |= take > 0
        else:
            return
        hit = take > 0
        if hit.any():
            led.transfer(cases.accounts[hit], venue.insurance_fund, take[hit])
            venue.events.add("fund_surplus", stage=self.name, account=cases.accounts[hit], amount=take[hit])
