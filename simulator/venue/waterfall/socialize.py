"""``socialize``: spread what is left of the deficit over solvent accounts as a haircut
(equity-weighted: the seed article; profit clawback: OKEx 2018; position-weighted: Drift v2;
a haircut on later withdrawals: Paradex's socialized loss factor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from simulator.venue.fixedpoint import PPB, largest_remainder
from simulator.venue.waterfall.stage import Stage

WEIGHTS = ("equity", "profit", "position", "withdrawal_factor")
TIMINGS = ("immediate", "settlement")
SCOPES = ("all_equity", "derivatives_only", "settlement_asset_holders")


@dataclass
class SocializeStage(Stage):
    """Charge the remaining deficit to solvent accounts.

    Args:
        weights: ``equity`` (every account with positive equity, positions or not), ``profit``
            (net profit over the settlement window), ``position`` (notional at mark of open
            positions, both sides, in the markets the socialized cases held), or
            ``withdrawal_factor`` (Paradex, docs "Socialized Losses"): nobody is charged now;
            the loss pool fronts the deficit (the ``socialize_pending`` cover) and every later
            withdrawal pays a haircut of ``factor`` into the pool until it is repaid (see
            ``withdrawal_haircut``). What is still owed at the end of the run stays pending.
        when: ``immediate``, or ``settlement``: the loss pool fronts the deficit (recorded as
            the ``socialize_pending`` cover) and the charge is made at the end of the window (a
            clawback of profits that looked final); what the charge cannot collect then is
            the venue's loss.
        scope: who can be charged: ``all_equity`` (every account, spot wallets included: the
            seed article), ``derivatives_only`` (spot wallets, ``Venue.spot`` rows such as
            isolated traders' spare capital, are insulated), ``settlement_asset_holders``
            (everyone holding the settlement asset: the same as ``all_equity`` on this
            single-asset venue, where every balance is in the settlement asset; kept so a design
            says what it means and stays right once balances in other assets exist).
        delay_seconds: with ``when: immediate``, charge this many scenario seconds after the
            deficit (the reference: adjustments land within 90 s of the final deficit
            confirmation; equity moves in between). The loss pool fronts the deficit (the
            ``socialize_pending`` cover) and the charge is made at the first liquidation pass at
            or after ``time + delay_seconds`` (``Stage.due``); collected -> ``cover`` stage
            ``socialize`` on the loss pool row, uncollectable -> venue loss, as at settlement.
            0: no delay.
    """

    name: ClassVar[str] = "socialize"
    weights: str = "equity"
    when: str = "immediate"
    scope: str = "all_equity"
    delay_seconds: float = 0.0
    pending_markets: set = field(default_factory=set, repr=False)
    delayed: list = field(default_factory=list, repr=False)  # [(due time, amount fronted)]

    outstanding: int = field(default=0, repr=False)  # withdrawal_factor: fronted, not yet repaid

    def __post_init__(self):
        if self.weights == "withdrawal_factor" and (self.when != "immediate" or self.delay_seconds > 0):
            raise ValueError("socialize weights withdrawal_factor is repaid by withdrawals: no when: settlement or delay")
        if self.scope not in SCOPES:
            raise ValueError(f"socialize scope {self.scope!r}; allowed: {SCOPES}")
        if not self.delay_seconds >= 0:
            raise ValueError(f"socialize delay_seconds {self.delay_seconds!r} must be >= 0")
        if self.delay_seconds > 0 and self.when == "settlement":
            raise ValueError("socialize delay_seconds applies to when: immediate; settlement has its own timing")
        if self.weights not in WEIGHTS:
            raise ValueError(f"socialize weights {self.weights!r}; allowed: {WEIGHTS}")
        if self.when not in TIMINGS:
            raise ValueError(f"socialize when {self.when!r}; allowed: {TIMINGS}")

    def cover(self, venue, cases) -> None:
        need = cases.deficit(venue)
        hit = need > 0
        if not hit.any():
            return
        self.pending_markets.update(np.flatnonzero(cases.markets_held[hit].any(axis=0)).tolist())
        if self.when == "settlement" or self.delay_seconds > 0 or self.weights == "withdrawal_factor":
            venue.ledger.transfer(venue.loss_pool, cases.accounts[hit], need[hit])
            venue.events.add("socialize_pending", stage=self.name, account=cases.accounts[hit], amount=need[hit])
            cases.update(venue, "socialize_pending")
            if self.delay_seconds > 0:
                self.delayed.append((venue.time + self.delay_seconds, int(need[hit].sum())))
            if self.weights == "withdrawal_factor":
                self.outstanding += int(need[hit].sum())
            return
        collected = self._charge(venue, int(need.sum()), exclude=cases.accounts)
        self.pending_markets.clear()
        paid_before = np.cumsum(need) - need
        give = np.clip(collected - paid_before, 0, need)
        venue.ledger.transfer(venue.loss_pool, cases.accounts[hit], give[hit])
        cases.update(venue, self.name)

    def settle(self, venue) -> None:
        """Charge what the loss pool fronted; what cannot be collected is the venue's loss."""
        if self.delay_seconds > 0 or self.weights == "withdrawal_factor":
            return  # charged when due / repaid by withdrawals, not at settlement
        # what the loss pool fronted, less what other stages recover on their own: a withdrawal
        # factor's outstanding loss, and a delayed stage's charges not yet due
        recovered_elsewhere = sum(
            getattr(s, "outstanding", 0) + sum(a for _, a in getattr(s, "delayed", ())) for s in venue.waterfall)
        owed = -int(venue.ledger.wallet[venue.loss_pool]) - recovered_elsewhere
        self._collect(venue, owed)
        self.pending_markets.clear()

    def due(self, venue) -> None:
        """Delayed socialization: charge the fronted deficits whose delay has run out.
        Withdrawal factor: a recapitalized insurance fund repays what is outstanding."""
        if self.weights == "withdrawal_factor":
            self._fund_repays(venue)
            return
        if not self.delayed:
            return
        now = venue.time + 1e-9  # a float clock: 0.1 x 900 steps is 90 s
        owed = sum(a for t, a in self.delayed if t <= now)
        self.delayed = [(t, a) for t, a in self.delayed if t > now]
        self._collect(venue, owed)
        if not self.delayed:
            self.pending_markets.clear()

    def _collect(self, venue, owed: int) -> None:
        """Charge ``owed`` (fronted by the loss pool) to the payers; the rest is the venue's loss."""
        if owed > 0:
            collected = self._charge(venue, owed, exclude=np.zeros(0, dtype=np.int64))
            pool = venue.loss_pool
            venue.events.add("cover", stage="socialize_pending", account=pool, amount=-owed)
            if collected:
                venue.events.add("cover", stage=self.name, account=pool, amount=collected)
            short = owed - collected
            if short:
                venue.ledger.inject(pool, short, "venue_loss")
                venue.events.add("venue_loss", account=pool, amount=short)
                venue.events.add("cover", stage="venue", account=pool, amount=short)

    # --------------------------------------------------------- withdrawal factor
    def factor_ppb(self, venue) -> int:
        """The socialized loss factor now, in parts per billion, rounded up (the venue's favour).

        Paradex: factor = exchange bankruptcy amount / (total exchange balance + exchange
        bankruptcy amount). The total balance is the sum of every account's equity, which is the
        solvent accounts' positive equity less what the bankrupt ones owe, so the denominator is
        the total positive equity of the solvent accounts: here of the accounts in ``scope``
        (the venue's own rows are no claimants). The numerator is what the loss pool still has
        to recover (``outstanding``). 0 when nothing is outstanding or nobody holds equity.
        """
        if self.outstanding <= 0:
            return 0
        total = int(self.weights_of(venue).sum())
        if total <= 0:
            return 0
        return min(PPB, -(-self.outstanding * PPB // total))

    def withdrawal_haircut(self, venue, accounts, amounts) -> np.ndarray | None:
        """Withdrawal factor: the haircut of each withdrawal, charged into the loss pool.

        Each withdrawal of ``W`` pays ``ceil(W x factor_ppb / 1e9)`` (at most ``W``) in the
        given order, until the outstanding loss is repaid: the last one pays only what is left.
        Logged as ``socialize`` charges (reason ``withdrawal_factor``, weight = the factor) and
        on the loss pool as ``socialize_pending`` repaid by ``socialize``, as a delayed charge.
        The caller moves the cash (``Ledger.withdraw`` with ``haircut``).
        """
        if self.weights != "withdrawal_factor":
            return None
        f = self.factor_ppb(venue)
        cut = np.zeros(len(amounts), dtype=np.int64)
        if f == 0:
            return cut
        left = self.outstanding
        for k, w in enumerate(int(x) for x in amounts):
            cut[k] = min(-(-w * f // PPB), w, left)
            left -= int(cut[k])
        hit = cut > 0
        if hit.any():
            paid = int(cut.sum())
            self.outstanding -= paid
            pool = venue.loss_pool
            venue.events.add("socialize", stage=self.name, account=accounts[hit], amount=cut[hit], weight=f / PPB,
                             qty=np.abs(venue.ledger.qty[accounts[hit]]).sum(axis=1),
                             score=venue.equity(accounts[hit]), reason="withdrawal_factor")
            venue.events.add("cover", stage="socialize_pending", account=pool, amount=-paid)
            venue.events.add("cover", stage=self.name, account=pool, amount=paid)
        return cut

    def _fund_repays(self, venue) -> None:
        """Paradex: the exchange bankruptcy amount is net of the fund's balance, so a fund that
        is recapitalized (liquidation surplus) repays the outstanding loss first."""
        fund = venue.insurance_fund
        have = min(int(venue.ledger.wallet[fund]), int(venue.equity(np.array([fund]))[0]))
        pay = min(self.outstanding, have)
        if pay <= 0:
            return
        pool = venue.loss_pool
        venue.ledger.transfer(fund, pool, pay)
        self.outstanding -= pay
        venue.events.add("fund_payout", stage="insurance_fund", account=pool, amount=pay)
        venue.events.add("cover", stage="socialize_pending", account=pool, amount=-pay)
        venue.events.add("cover", stage="insurance_fund", account=pool, amount=pay)

    def weights_of(self, venue) -> np.ndarray:
        led = venue.ledger
        if self.weights in ("equity", "withdrawal_factor"):
            w = venue.equity()
        elif self.weights == "profit":
            w = venue.window_profit()
        else:
            markets = sorted(self.pending_markets) or list(range(venue.n_markets))
            w = led.notional(led.qty, venue.marks)[:, markets].sum(axis=1)
        excluded = led.is_venue() | venue.spot if self.scope == "derivatives_only" else led.is_venue()
        return np.where(excluded, 0, np.clip(w, 0, None))

    def _charge(self, venue, amount: int, exclude) -> int:
        """Charge ``amount`` to the payers into the loss pool; returns what was collected."""
        w = self.weights_of(venue)
        w[exclude] = 0
        payers = np.flatnonzero(w > 0)
        if len(payers) == 0:
            return 0
        equity = venue.equity(payers)
        charge = np.minimum(largest_remainder(amount, w[payers]), np.clip(equity, 0, None))
        hit = charge > 0
        venue.ledger.transfer(payers[hit], venue.loss_pool, charge[hit])
        open_lots = np.abs(venue.ledger.qty[payers[hit]]).sum(axis=1)
        venue.events.add("socialize", stage=self.name, account=payers[hit], amount=charge[hit],
                         weight=w[payers][hit] / w[payers].sum(), qty=open_lots, score=equity[hit])
        return int(charge.sum())
