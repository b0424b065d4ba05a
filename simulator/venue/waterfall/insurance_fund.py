"""``insurance_fund``: takes liquidation surplus, optionally takes over what the book could not
close (BitMEX, Binance, Bybit: the engine holds it at the bankruptcy price), and pays deficits
up to its balance (Drift: up to a per-event cap)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.venue.fixedpoint import PPM, muldiv
from simulator.venue.waterfall.payout import pay_deficits
from simulator.venue.waterfall.stage import Stage
from simulator.venue.waterfall.takeover import take_over, take_share

SURPLUS_POLICIES = ("all_remaining_margin", "fee", "none")


@dataclass
class InsuranceFundStage(Stage):
    """The insurance fund.

    Args:
        surplus_policy: ``all_remaining_margin`` (BitMEX, Bybit, Binance), ``fee`` (a clearance
            fee of liquidated notional, the trader keeps the rest) or ``none``.
        clearance_fee: fee rate for the ``fee`` policy (dYdX v4: up to 1.5 %).
        cap_per_event: most the fund pays for one case (Drift-style cap), cash units.
        takeover: the fund takes over positions the stages before could not close, while its
            balance covers their loss to bankruptcy (DESIGN.md §5: capacity is the balance
            against the loss, not a leverage multiple).
        takeover_max_leverage: optional explicit cap on the fund's gross leverage after a
            takeover (no venue publishes one; None: no cap).
        takeover_share_step: Paradex's partial liquidation (with ``takeover``): the fund takes
            the same share of every position of a solvent case, the smallest multiple of this
            step that brings the margin ratio below ``takeover_target_ratio``, and the case pays
            ``share x takeover_penalty x maintenance`` to the fund (None: whole positions).
        takeover_target_ratio: margin ratio (maintenance / equity) to get below.
        takeover_penalty: penalty as a fraction of the maintenance margin of a full liquidation.
    """

    name: ClassVar[str] = "insurance_fund"
    surplus_policy: str = "all_remaining_margin"
    clearance_fee: float = 0.0
    cap_per_event: int | None = None
    takeover: bool = False
    takeover_max_leverage: float | None = None
    takeover_share_step: float | None = None
    takeover_target_ratio: float = 0.9
    takeover_penalty: float = 0.7

    def __post_init__(self):
        if self.surplus_policy not in SURPLUS_POLICIES:
            raise ValueError(f"surplus_policy {self.surplus_policy!r}; allowed: {SURPLUS_POLICIES}")

    def close(self, venue, cases) -> None:
        if self.takeover and self.takeover_share_step is not None:
            solvent = cases.pending(venue) & (venue.equity(cases.accounts) > 0)
            take_share(venue, cases, venue.insurance_fund, solvent, self.name, _ppm(self.takeover_share_step),
                       _ppm(self.takeover_target_ratio), _ppm(self.takeover_penalty))
        if self.takeover:
            take_over(venue, cases, venue.insurance_fund, cases.pending(venue), self.name, "loss",
                      self.takeover_max_leverage)

    def capacity(self, venue):
        fund = venue.insurance_fund
        available = max(0, min(int(venue.ledger.wallet[fund]), int(venue.equity(np.array([fund]))[0])))
        return available, self.cap_per_event

    def cover(self, venue, cases) -> None:
        self._take_surplus(venue, cases)
        available, cap = self.capacity(venue)
        pay_deficits(venue, cases, venue.insurance_fund, available, cap, self.name)

    def _take_surplus(self, venue, cases) -> None:
        led = venue.ledger
        w = led.wallet[cases.accounts]
        flat = ~cases.open(venue)
        if self.surplus_policy == "all_remaining_margin":
            take = np.where(flat & (w > 0) & (cases.liquidated_notional > 0), w, 0)
        elif self.surplus_policy == "fee":
            fee = muldiv(cases.liquidated_notional, int(round(self.clearance_fee * PPM)), PPM)
            eq = venue.equity(cases.accounts)
            take = np.where(~cases.fee_taken, np.clip(np.minimum(fee, eq), 0, None), 0)
            cases.fee_taken |= take > 0
        else:
            return
        hit = take > 0
        if hit.any():
            led.transfer(cases.accounts[hit], venue.insurance_fund, take[hit])
            venue.events.add("fund_surplus", stage=self.name, account=cases.accounts[hit], amount=take[hit])


def _ppm(x: float) -> int:
    return int(round(x * PPM))
