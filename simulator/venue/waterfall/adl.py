"""``adl``: auto-deleveraging. Close a case's positions against the opposite side, ranked.

When ADL may act (``trigger``, DESIGN.md §5) matters as much as where it sits in the list:

* ``fund_cannot_pay`` (default; Binance: "the final step taken only when the Insurance Fund
  cannot accept the bankrupt client's positions"): a still-open case with negative equity
  whose deficit the deficit-paying stages (insurance fund, a backstop vault that pays
  deficits) cannot pay in full, given the cases ahead of it (worst first).
* ``negative_equity`` (Hyperliquid: only when account value < 0): a still-open case with
  negative equity.
* ``fund_drawdown`` (OKX: ADL when the risk reserve is insufficient *or* has fallen fast,
  "a straight-line decrease of 30 % from the peak value of the risk reserve within 8 hours"):
  what ``fund_cannot_pay`` takes, plus every still-open case with negative equity while the
  fund's balance is at least ``drawdown_threshold`` below its peak over the last
  ``window_seconds`` (the peak of the balances seen at liquidation rounds in the window).
* ``unfilled`` (the literal reading of "ADL what the book left"): every still-open case, even
  a solvent one; kept to study that artefact, no venue uses it.

A solvent case is never deleveraged except under ``unfilled``. Each ADL fill records why ADL
fired (``reason``): ``fund_empty``, ``fund_drawdown``, ``takeover_refused``, ``negative_equity``, or under
``unfilled`` the book's failure (``book_exhausted`` / ``price_band``).

Fill price: ``bankruptcy`` (the case ends at zero; BitMEX, Binance, Bybit, dYdX v4), ``mark``
(OKX) or ``previous_mark`` (Hyperliquid). Queue rankings pair each case with counterparties
down the queue, each paying its case's bankruptcy price; ``pro_rata`` and ``max_leverage``
share the cases' total loss in proportion to the notional each counterparty gives up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.venue import adl as adl_rank
from simulator.venue.fixedpoint import largest_remainder, muldiv
from simulator.venue.margin import bankruptcy_prices
from simulator.venue.settlement import fill_notional, fill_values
from simulator.venue.waterfall.stage import Stage

ADL_PRICES = ("bankruptcy", "mark", "previous_mark")
TRIGGERS = ("fund_cannot_pay", "negative_equity", "unfilled", "fund_drawdown")
REASONS = ("book_exhausted", "price_band", "takeover_refused", "fund_empty", "negative_equity", "fund_drawdown")
_POOLED = ("pro_rata", "max_leverage")


def payable(venue, need) -> np.ndarray:
    """Mask over cases (worst first): the deficit-paying stages can pay this case in full
    after every case before it. The walk stops at the first case they cannot pay."""
    caps = [c for c in (s.capacity(venue) for s in venue.waterfall) if c is not None]
    available = sum(c[0] for c in caps)
    cap = None if not caps or any(c[1] is None for c in caps) else sum(c[1] for c in caps)
    ok = np.cumsum(need) <= available
    if cap is not None:
        ok &= need <= cap
    prefix = np.cumsum(~ok) == 0
    return prefix | (need == 0)


def largest_remainder_by_case(totals, case, weights) -> tuple[np.ndarray, np.ndarray]:
    """``largest_remainder(totals[k], weights[case == k])`` for every case ``k`` at once.

    Exactly Hamilton's split of ``fixedpoint.largest_remainder`` per case (floor parts, the
    units left over to the largest remainders, ties to the earlier row), on the rows as given.

    Args:
        totals: non-negative int64 per case.
        case: per row, the index of its case in ``totals``.
        weights: non-negative int64 per row; every case with rows has a positive sum.

    Returns:
        (int64 parts per row, each case's parts adding up to its total; int64 weight sum per case).
    """
    totals = np.asarray(totals, dtype=np.int64)
    case = np.asarray(case, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.int64)
    if (totals < 0).any() or (weights < 0).any():
        raise ValueError("totals and weights must be non-negative")
    wsum = np.zeros(len(totals), np.int64)
    np.add.at(wsum, case, weights)
    if (wsum[case] == 0).any():
        raise ValueError("weights must not all be zero")
    # Python ints: total x weight overflows int64; the remainders are below the case's sum
    num = totals.astype(object)[case] * weights.astype(object)
    den = wsum.astype(object)[case]
    parts = np.array(num // den, dtype=np.int64).reshape(len(case))
    rem = np.array(num % den, dtype=np.int64).reshape(len(case))
    left = totals.copy()
    np.subtract.at(left, case, parts)
    # rank each row in its case by remainder (largest first), ties to the earlier row
    order = np.lexsort((np.arange(len(case)), -rem, case))
    in_order = case[order]
    rank = np.arange(len(case)) - np.searchsorted(in_order, in_order, side="left")
    parts[order] += rank < left[in_order]
    return parts, wsum


@dataclass
class ADLStage(Stage):
    """Auto-deleveraging.

    Args:
        ranking: one of ``simulator.adl.RANKINGS``.
        price: ``bankruptcy``, ``mark`` or ``previous_mark``.
        trigger: ``fund_cannot_pay``, ``negative_equity``, ``unfilled`` or ``fund_drawdown``
            (module docstring).
        drawdown_threshold: ``fund_drawdown``: fall from the window's peak, as a fraction of it.
        window_seconds: ``fund_drawdown``: look-back window for the peak, scenario seconds.
        profit_percentile: ``profit_bands`` only: the PnL% quantile of the opposite side at or
            above which a profitable position is in the first band (``simulator.venue.adl``).
    """

    name: ClassVar[str] = "adl"
    ranking: str = "pnl_x_leverage"
    price: str = "bankruptcy"
    trigger: str = "fund_cannot_pay"
    drawdown_threshold: float = 0.3
    window_seconds: float = 28_800.0
    profit_percentile: float = 0.5

    def __post_init__(self):
        if not 0 <= self.profit_percentile <= 1:
            raise ValueError(f"ADL profit_percentile {self.profit_percentile!r} must be in [0, 1]")
        if self.ranking not in adl_rank.RANKINGS:
            raise ValueError(f"ranking {self.ranking!r}; allowed: {adl_rank.RANKINGS}")
        if self.price not in ADL_PRICES:
            raise ValueError(f"ADL price {self.price!r}; allowed: {ADL_PRICES}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"ADL trigger {self.trigger!r}; allowed: {TRIGGERS}")
        if not 0 < self.drawdown_threshold < 1 or self.window_seconds <= 0:
            raise ValueError("drawdown_threshold must be in (0, 1) and window_seconds > 0")
        self._fund_seen: list[tuple[int, int]] = []  # (step, fund balance) at liquidation rounds

    def fund_drawdown(self, venue) -> float:
        """The fund's fall from its peak over the last ``window_seconds``, as a fraction of the
        peak (0 when it has no positive peak). Records the balance now."""
        fund = venue.insurance_fund
        bal = max(0, min(int(venue.ledger.wallet[fund]), int(venue.equity(np.array([fund]))[0])))
        step = int(venue.step)
        window_steps = self.window_seconds / venue.config.step_seconds  # the venue's clock
        seen = [(t, b) for t, b in self._fund_seen if step - t <= window_steps]
        seen.append((step, bal))
        # keep only balances that can still be a peak: drop older ones not above a newer one
        kept: list[tuple[int, int]] = []
        for t, b in seen:
            while kept and kept[-1][1] <= b:
                kept.pop()
            kept.append((t, b))
        self._fund_seen = kept
        peak = kept[0][1]
        return (peak - bal) / peak if peak > 0 else 0.0

    # ------------------------------------------------------------------ trigger
    def eligible(self, venue, cases) -> tuple[np.ndarray, np.ndarray]:
        """(mask of cases ADL acts on, reason per case)."""
        pending = cases.pending(venue)
        eq = venue.equity(cases.accounts)
        reason = np.full(len(eq), "", dtype=object)
        if self.trigger == "unfilled":
            take = pending
            reason[:] = np.where(cases.book_reason != "", cases.book_reason, "book_exhausted")
        else:
            take = pending & (eq < 0)
            if self.trigger in ("fund_cannot_pay", "fund_drawdown"):
                need = np.where(cases.open(venue), np.maximum(0, -eq), cases.deficit(venue))
                short = ~payable(venue, np.where(cases.restored, 0, need))
                reason[:] = "fund_empty"
                if self.trigger == "fund_drawdown" and self.fund_drawdown(venue) >= self.drawdown_threshold:
                    reason[:] = np.where(short, "fund_empty", "fund_drawdown")
                    short[:] = True
                take &= short
            else:
                reason[:] = "negative_equity"
        reason = np.where(cases.takeover_refused & (reason != "fund_empty"), "takeover_refused", reason)
        return take, reason

    # -------------------------------------------------------------------- close
    def close(self, venue, cases) -> None:
        take, reason = self.eligible(venue, cases)
        if not take.any():
            return
        led = venue.ledger
        cases.track(venue, take, self.name)
        eq_before = venue.equity(cases.accounts)
        notional_before = led.notional(led.qty[cases.accounts], venue.marks).sum(axis=1)
        fills = []  # per (market, side): case index, counterparty, notional at mark of the fill
        for m in range(venue.n_markets):
            for side in (1, -1):  # the cases' side
                sel = np.flatnonzero(take & (np.sign(led.qty[cases.accounts, m]) == side))
                if len(sel):
                    fills.append(self._deleverage_side(venue, cases, sel, m, side, reason, eq_before))
        fills = [f for f in fills if len(f[0])]
        cases.record_flat(venue, self.name)
        if fills and self.price == "bankruptcy":
            case_i, cpty, weight = (np.concatenate(x) for x in zip(*fills))
            self._settle_at_bankruptcy(venue, cases, eq_before, notional_before, case_i, cpty, weight)
        cases.update(venue, self.name)
        self._record_leverage_after(venue, fills)

    def _candidates(self, venue, cases, m: int, side: int) -> np.ndarray:
        """Opposite-side holders in market ``m``: traders and the venue's fund and vault (never
        the engine, never another case); the ``hyperliquid`` queue only ranks those in profit."""
        led = venue.ledger
        cand = np.flatnonzero(np.sign(led.qty[:, m]) == -side)
        cand = cand[(cand != venue.engine) & ~np.isin(cand, cases.accounts)]
        if self.ranking == "hyperliquid":
            u = led.value(led.qty[cand], venue.marks)[:, m] - led.cost[cand, m]
            cand = cand[u > 0]
        return cand

    def _deleverage_side(self, venue, cases, sel, m, side, reason, case_equity):
        led = venue.ledger
        acc = cases.accounts[sel]
        lots_needed = np.abs(led.qty[acc, m])
        candidates = self._candidates(venue, cases, m, side)
        cv = int(venue.contract_values[m])
        inverse = bool(venue.inverse[m])
        mark = int(venue.marks[m])
        lots = np.abs(led.qty[candidates, m])
        value = led.value(led.qty[candidates], venue.marks)[:, m]  # linear: qty * mark * cv
        u = value - led.cost[candidates, m]
        if self.ranking == "profit_bands":
            lots = np.where(u > 0, lots, 0)  # ranked (for the queue quantile) but never taken
        need = min(int(lots_needed.sum()), int(lots.sum()))
        if need == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        eq = venue.equity(candidates)
        # the counterparties' account leverage before the fill: gross notional at mark / equity
        gross = led.notional(led.qty[candidates], venue.marks).sum(axis=1).astype(float)
        venue.adl_profitable[candidates[u > 0]] = True
        if self.ranking == "pro_rata":
            take = adl_rank.allocate_pro_rata(lots, u > 0, need)
            score = u / np.maximum(np.abs(led.cost[candidates, m]), 1)
        elif self.ranking == "max_leverage":
            lot_value = venue.lot_cash(m, mark)
            take = adl_rank.allocate_max_leverage(lots, eq, lot_value, need)
            score = lots * lot_value / np.maximum(eq, 1)
        else:
            score = adl_rank.scores(
                self.ranking, qty=led.qty[candidates, m], cost=led.cost[candidates, m],
                wallet=led.wallet[candidates], equity=eq, mark=mark, cv=cv,
                mm=venue.maintenance(candidates).sum(axis=1), cash_per_usd=venue.markets[m].cash_per_quote,
                rng=venue.rng, percentile=self.profit_percentile,
                value=value.astype(float) if inverse else None,
                entry=led.entry_price()[candidates, m] if inverse else None,
                mark_high=float(venue.prices.mark_high[m]), mark_low=float(venue.prices.mark_low[m]),
            )
            take = adl_rank.allocate_queue(score, lots, need)
        rank_quantile = adl_rank.queue_quantile(score)
        # pair cases (worst first) with the counterparties' lots in queue order
        order = np.argsort(-score, kind="stable")
        order = order[take[order] > 0]
        case_cum = np.minimum(np.cumsum(lots_needed), need)
        cp_cum = np.cumsum(take[order])
        bounds = np.unique(np.concatenate([[0], case_cum, cp_cum]))
        bounds = bounds[bounds <= need]
        starts, sizes = bounds[:-1], np.diff(bounds)
        ci = np.searchsorted(case_cum, starts, side="right")
        cj = order[np.searchsorted(cp_cum, starts, side="right")]
        case_acc, cp_acc = acc[ci], candidates[cj]
        p_b = bankruptcy_prices(led, venue.marks, acc, m)[ci]
        price = int(venue.prices.previous_mark[m]) if self.price == "previous_mark" else mark
        pnl = muldiv(u[cj], sizes, np.maximum(lots[cj], 1))
        buyers = np.where(side > 0, cp_acc, case_acc)
        sellers = np.where(side > 0, case_acc, cp_acc)
        led.trade(m, buyers, sellers, sizes, price)
        if inverse:
            cases.liquidated_notional[sel[ci]] += fill_notional(sizes, price, cv, True)
            # the counterparty is the buyer of a long case's lots
            paid_in_price = side * (fill_values(sizes, price, cv, True) - fill_values(sizes, mark, cv, True))
        else:
            cases.liquidated_notional[sel[ci]] += sizes * price * cv
            paid_in_price = sizes * (price - mark) * cv * side  # what counterparties pay vs mark
        shown = p_b if self.price == "bankruptcy" else np.full(len(sizes), float(price))
        why = reason[sel[ci]]
        venue.events.add("liquidation", amount=0, stage=self.name, account=case_acc, counterparty=cp_acc, market=m,
                         qty=-side * sizes, price=shown, bankruptcy_price=p_b, reason=why,
                         equity=case_equity[sel[ci]])
        venue.events.add("adl", stage=self.name, account=cp_acc, counterparty=case_acc, market=m,
                         qty=side * sizes, price=shown, bankruptcy_price=p_b, amount=paid_in_price, pnl=pnl,
                         score=score[cj], rank_quantile=rank_quantile[cj], reason=why,
                         equity=eq[cj], weight=gross[cj] / np.maximum(eq[cj], 1))
        return sel[ci], cp_acc, (fill_notional(sizes, mark, cv, True) if inverse else sizes * mark * cv)

    def _settle_at_bankruptcy(self, venue, cases, eq_before, notional_before, case_i, cpty, weight):
        """Move each case's equity (its closed share) to the counterparties: per case down the
        queue, or pooled over every counterparty for the pro-rata rankings.

        Every case at once (a few array passes over the fills, not a loop over the cases): the
        cases' transfers touch only their own and their counterparties' wallets, and the events
        come out in the order a loop over the cases (ascending) would log them."""
        led = venue.ledger
        ks, inv = np.unique(case_i, return_inverse=True)
        closed = np.zeros(len(ks), np.int64)
        np.add.at(closed, inv, weight)
        # Python ints: equity x notional overflows int64 at real sizes
        share = np.array(
            eq_before[ks].astype(object) * closed.astype(object) // np.maximum(notional_before[ks], 1).astype(object),
            dtype=np.int64,
        ).reshape(len(ks))
        if self.ranking in _POOLED:
            # every counterparty pays the pooled loss by its share of the notional given up;
            # the loss pool clears the two legs within this call
            pool = venue.loss_pool
            led.transfer(pool, cases.accounts[ks], -share)
            amount = int(share.sum())
            parts = largest_remainder(abs(amount), weight) * np.sign(amount)
            led.transfer(pool, cpty, parts)
            venue.events.add("adl_haircut", stage=self.name, account=cpty, counterparty=cases.accounts[case_i],
                             amount=-parts, weight=weight / max(int(weight.sum()), 1))
            return
        # the fills of cases with a share to move, grouped by case (ascending), in fill order within
        rows = np.flatnonzero(share[inv] != 0)
        rows = rows[np.argsort(inv[rows], kind="stable")]
        if not len(rows):
            return
        group = inv[rows]
        w = weight[rows]
        parts, wsum = largest_remainder_by_case(np.abs(share), group, w)
        parts = parts * np.sign(share)[group]
        payer = cases.accounts[ks][group]
        led.transfer(payer, cpty[rows], parts)
        venue.events.add("adl_haircut", stage=self.name, account=cpty[rows], counterparty=payer, amount=-parts,
                         weight=w / np.maximum(wsum, 1)[group])

    def _record_leverage_after(self, venue, fills) -> None:
        """The deleveraged accounts' effective leverage after ADL (notional / equity)."""
        if not fills:
            return
        cp = np.unique(np.concatenate([f[1] for f in fills]))
        notional = venue.ledger.notional(venue.ledger.qty[cp], venue.marks).sum(axis=1)
        eq = venue.equity(cp)
        lev = np.where(eq > 0, notional / np.maximum(eq, 1), np.inf)
        venue.adl_leverage_after = float(np.nanmax([venue.adl_leverage_after, lev.max()]))
