"""Paying flat cases' deficits from a venue account (the fund, the backstop vault)."""

from __future__ import annotations

import numpy as np


def pay_deficits(venue, cases, payer: int, available: int, cap: int | None, stage: str) -> int:
    """``payer`` pays flat cases' deficits worst first up to ``available`` (and ``cap`` per
    case); returns what it paid."""
    need = cases.deficit(venue)
    if cap is not None:
        need = np.minimum(need, cap)
    paid_before = np.cumsum(need) - need
    pay = np.clip(available - paid_before, 0, need)
    hit = pay > 0
    if hit.any():
        venue.ledger.transfer(payer, cases.accounts[hit], pay[hit])
        kind = "fund_payout" if stage == "insurance_fund" else "backstop_payout"
        venue.events.add(kind, stage=stage, account=cases.accounts[hit], amount=pay[hit])
        cases.update(venue, stage)
    return int(pay.sum())
