"""``adl``: auto-deleverage the case against ranked opposite-side winners.

Self-contained: imports only ``simulator.venue`` helpers and ``waterfall.base``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.venue import adl as adl_rank
from simulator.venue.fixedpoint import largest_remainder, muldiv
from simulator.venue.margin import bankruptcy_prices
from simulator.venue.waterfall.base import Cases, Stage


ADL_PRICES = ("bankruptcy", "mark", "previous_mark")


@dataclass
class ADLStage(Stage):
    """Auto-deleveraging: close the cases' positions against the opposite side, ranked.

    Args:
        ranking: one of ``simulator.venue.adl.RANKINGS``.
        price: ``bankruptcy`` (case ends at zero; BitMEX, Binance, Bybit, dYdX), ``mark`` (OKX)
            or ``previous_mark`` (Hyperliquid); at mark prices the case's deficit stays for
            the stages after.
    """

    name: ClassVar[str] = "adl"
    ranking: str = "pnl_x_leverage"
    price: str = "bankruptcy"

    def __post_init__(self):
        if self.ranking not in adl_rank.RANKINGS:
            raise ValueError(f"ranking {self.ranking!r}; allowed: {adl_rank.RANKINGS}")
        if self.price not in ADL_PRICES:
            raise ValueError(f"ADL price {self.price!r}; allowed: {ADL_PRICES}")

    def run(self, venue, cases: Cases) -> None:
        led = venue.ledger
        pending = cases.pending(venue)
        if not pending.any():
            return
        eq_before = venue.equity()[cases.accounts]
        notional_before = (np.abs(led.qty[cases.accounts]) * venue.marks * venue.contract_values).sum(axis=1)
        fills = []  # (case index, counterparty, market, lots)
        for m in range(venue.n_markets):
            for side in (1, -1):  # the cases' side
                sel = np.flatnonzero(pending & (np.sign(led.qty[cases.accounts, m]) == side))
                if len(sel):
                    fills.append(self._deleverage_side(venue, cases, sel, m, side))
        if not fills:
            return
        case_i, cpty, mkt, lots, haircut_weight = (np.concatenate(x) for x in zip(*fills))
        if self.price == "previous_mark":
            # the deficit is the negative equity at mark: counterparties filled at the previous
            # mark have already paid part of it in the price, and that part is ADL's cover
            hit = ~cases.open(venue) & ~cases.recorded & (eq_before < 0)
            cases.recorded |= hit
            if hit.any():
                venue.events.add("deficit", stage=self.name, account=cases.accounts[hit], amount=-eq_before[hit])
                # a previous mark above the bankruptcy price can leave the case more than zero
                w = venue.ledger.wallet[cases.accounts]
                extra = hit & (w > 0)
                if extra.any():
                    venue.events.add("surplus", stage=self.name, account=cases.accounts[extra], amount=w[extra])
        cases.record_outcome(venue, self.name)  # at the fill price, before any cash moves
        if self.price == "bankruptcy":
            self._settle_at_bankruptcy(venue, cases, eq_before, notional_before, case_i, cpty, haircut_weight)

    def _deleverage_side(self, venue, cases, sel, m, side):
        led = venue.ledger
        acc = cases.accounts[sel]
        lots_needed = np.abs(led.qty[acc, m])
        candidates = np.flatnonzero((np.sign(led.qty[:, m]) == -side) & ~led.is_venue())
        candidates = candidates[~np.isin(candidates, cases.accounts)]
        cv = int(venue.contract_values[m])
        mark = int(venue.marks[m])
        lots = np.abs(led.qty[candidates, m])
        need = min(int(lots_needed.sum()), int(lots.sum()))
        eq = venue.equity()[candidates]
        u = led.qty[candidates, m] * mark * cv - led.cost[candidates, m]
        if self.ranking == "pro_rata":
            take = adl_rank.allocate_pro_rata(lots, u > 0, need)
            score = u / np.maximum(np.abs(led.cost[candidates, m]), 1)
        elif self.ranking == "max_leverage":
            take = adl_rank.allocate_max_leverage(lots, eq, mark * cv, need)
            score = lots * mark * cv / np.maximum(eq, 1)
        else:
            score = adl_rank.scores(
                self.ranking, qty=led.qty[candidates, m], cost=led.cost[candidates, m],
                wallet=led.wallet[candidates], equity=eq, mark=mark, cv=cv,
                mm=venue.maintenance()[candidates].sum(axis=1), cash_per_usd=1 / venue.markets[m].cash_unit,
                rng=venue.rng,
            )
            take = adl_rank.allocate_queue(score, lots, need)
        # pair cases (worst first) with the counterparties' lots in queue order
        order = np.argsort(-score, kind="stable")
        order = order[take[order] > 0]
        c_take = take[order]
        case_cum = np.minimum(np.cumsum(lots_needed), need)
        cp_cum = np.cumsum(c_take)
        bounds = np.unique(np.concatenate([[0], case_cum, cp_cum]))
        bounds = bounds[bounds <= need]
        starts, sizes = bounds[:-1], np.diff(bounds)
        ci = np.searchsorted(case_cum, starts, side="right")
        cj = order[np.searchsorted(cp_cum, starts, side="right")]
        case_acc, cp_acc = acc[ci], candidates[cj]
        price = int(venue.prices.previous_mark[m]) if self.price == "previous_mark" else mark
        pnl = muldiv(u[cj], sizes, np.maximum(lots[cj], 1))
        buyers = np.where(side > 0, cp_acc, case_acc)
        sellers = np.where(side > 0, case_acc, cp_acc)
        p_b = bankruptcy_prices(led, venue.marks, case_acc, m)
        led.trade(m, buyers, sellers, sizes, price)
        cases.liquidated_notional[sel[ci]] += sizes * price * cv
        haircut_vs_mark = sizes * (price - mark) * cv * side  # what counterparties lose vs mark
        venue.events.add("liquidation", amount=0, stage=self.name, account=case_acc, counterparty=cp_acc, market=m,
                         qty=-side * sizes, price=float(price), bankruptcy_price=p_b)
        venue.events.add("adl", stage=self.name, account=cp_acc, counterparty=case_acc, market=m,
                         qty=side * sizes, price=float(price), bankruptcy_price=p_b,
                         amount=haircut_vs_mark, pnl=pnl, score=score[cj])
        return sel[ci], cp_acc, np.full(len(sizes), m), sizes, sizes * mark * cv

    def _settle_at_bankruptcy(self, venue, cases, eq_before, notional_before, case_i, cpty, weight):
        """Move each case's remaining equity to its counterparties, pro rata by notional."""
        led = venue.ledger
        for k in np.unique(case_i):
            a = cases.accounts[k]
            mine = case_i == k
            closed = int(weight[mine].sum())
            total = int(notional_before[k])
            if venue.ledger.qty[a].any():
                # Python ints: equity * closed overflows int64 for real notionals
                equity = int(venue.equity()[a]) * closed // max(total, 1)
                if equity != 0:  # the closed share of a case ADL could not close entirely
                    venue.events.add("deficit" if equity < 0 else "surplus", stage=self.name,
                                     account=a, amount=abs(equity))
            else:
                equity = int(led.wallet[a])
            if equity == 0:
                continue
            parts = largest_remainder(abs(equity), weight[mine]) * np.sign(equity)
            led.transfer(np.full(len(parts), a), cpty[mine], parts)
            venue.events.add("adl_haircut", stage=self.name, account=cpty[mine], counterparty=a, amount=-parts,
                             weight=weight[mine] / closed)
