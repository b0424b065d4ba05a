"""The loss waterfall: an ordered list of stages, each one small unit.

A liquidation round hands every account below maintenance (a *case*) to the stages in the
scenario's order. Position stages (``book``, ``backstop``, ``adl``, and ``insurance_fund``
when it takes positions over) close what is left of the case's positions; once a case is flat,
its wallet is its *surplus* (> 0) or *deficit* (< 0), and deficit stages (``insurance_fund``,
``socialize``) cover what they can. Whatever is still negative after the last stage is the
venue's own loss (``cover_venue_loss``): injected from outside and recorded, never hidden.

When a case's positions are gone, its wallet is logged once as a ``deficit`` or ``surplus``
event, before any stage covers or takes it (``Cases.record_outcome``), so the deficit events add
up to what the covers (fund payouts, negative takeover margins, ADL haircuts, socialization,
venue loss) paid. A partial book close that brings a case back above maintenance marks it
``restored``: later position stages leave the rest of its position alone.

Every stage is a class with ``run(venue, cases)`` and, if it defers work to the end of a
settlement window, ``settle(venue)``. A new stage is one new class registered in ``STAGES``.

Conventions that make "at the bankruptcy price" exact in integers: a takeover or an ADL fill
trades at the mark (whole ticks), and the case's remaining equity (positive or negative) then
moves in cash to the other side, so the case ends at exactly zero, which is what a fill at the
(fractional) bankruptcy price would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from simulator.venue import adl as adl_rank
from simulator.venue.book import BUY, SELL
from simulator.venue.fixedpoint import PPM, largest_remainder, muldiv
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


# ---------------------------------------------------------------------------- book
@dataclass
class BookStage(Stage):
    """Close into the order book with IOC orders.

    Args:
        partial: close only enough to get back above maintenance (plus ``partial_buffer``).
        price_band: worst fill allowed, as a fraction away from mark (None: no band).
        limit_at_bankruptcy: never fill worse than the bankruptcy price (BitMEX, Bybit,
            Binance place the liquidation order at the bankruptcy price).
    """

    name: ClassVar[str] = "book"
    partial: bool = False
    partial_buffer: float = 0.1
    price_band: float | None = None
    limit_at_bankruptcy: bool = False

    def run(self, venue, cases: Cases) -> None:
        led = venue.ledger
        if self.partial:
            eq = venue.equity()[cases.accounts].astype(float)
            mm = venue.maintenance()[cases.accounts].sum(axis=1).astype(float)
            frac = np.where(eq > 0, np.clip(1 - eq / np.maximum(mm, 1) + self.partial_buffer, 0, 1), 1.0)
        else:
            frac = np.ones(len(cases.accounts))
        for m in range(venue.n_markets):
            sel = np.flatnonzero(led.qty[cases.accounts, m] != 0)
            if len(sel) == 0:
                continue
            acc = cases.accounts[sel]
            q = led.qty[acc, m]
            size = np.minimum(np.ceil(np.abs(q) * frac[sel]).astype(np.int64), np.abs(q))
            sides = np.where(q > 0, SELL, BUY)
            p_b = bankruptcy_prices(led, venue.marks, acc, m)
            mark = float(venue.marks[m])
            band = np.inf if self.price_band is None else self.price_band
            limit = np.where(sides == SELL, mark * (1 - band), mark * (1 + band))
            if self.limit_at_bankruptcy:
                limit = np.where(sides == SELL, np.maximum(limit, np.ceil(p_b)), np.minimum(limit, np.floor(p_b)))
            limit = np.where(sides == SELL, np.clip(limit, 0, None), np.clip(limit, None, 2**62))
            # whole ticks inside the band: a sell limit rounds up, a buy limit down
            limit = np.where(sides == SELL, np.ceil(limit), np.floor(limit))
            limit = np.nan_to_num(limit, nan=0.0, posinf=2**62).astype(np.int64)
            fills = venue.books[m].submit(acc, sides, size, limit)
            venue.settle(m, fills, fees=False)
            if len(fills):
                filled = np.zeros(len(acc), dtype=np.int64)
                value = np.zeros(len(acc), dtype=np.int64)
                np.add.at(filled, fills.order_index, fills.qty)
                np.add.at(value, fills.order_index, fills.qty * fills.price)
                hit = filled > 0
                cases.liquidated_notional[sel[hit]] += value[hit] * venue.contract_values[m]
                venue.events.add(
                    "liquidation", amount=0, stage=self.name, account=acc[hit], market=m,
                    qty=filled[hit] * sides[hit], price=value[hit] / filled[hit], bankruptcy_price=p_b[hit],
                )
        if self.partial:
            back = venue.equity()[cases.accounts] >= venue.maintenance()[cases.accounts].sum(axis=1)
            cases.restored |= cases.open(venue) & back
        cases.record_outcome(venue, self.name)


# ------------------------------------------------------------- takeover (shared)
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


# ------------------------------------------------------------------ insurance fund
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


# --------------------------------------------------------------------------- ADL
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


# ---------------------------------------------------------------------- socialize
WEIGHTS = ("equity", "profit", "position")
TIMINGS = ("immediate", "settlement")


@dataclass
class SocializeStage(Stage):
    """Spread what is left of the deficit over solvent accounts as a haircut.

    Args:
        weights: ``equity`` (every account with positive equity, positions or not), ``profit``
            (net profit over the settlement window), ``position`` (open size, both sides).
        when: ``immediate``, or ``settlement``: the loss pool fronts the deficit and the charge
            is made at the end of the window (a clawback of profits that looked final).
    """

    name: ClassVar[str] = "socialize"
    weights: str = "equity"
    when: str = "immediate"
    pending_markets: set = field(default_factory=set, repr=False)

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise ValueError(f"socialize weights {self.weights!r}; allowed: {WEIGHTS}")
        if self.when not in TIMINGS:
            raise ValueError(f"socialize when {self.when!r}; allowed: {TIMINGS}")

    def run(self, venue, cases: Cases) -> None:
        cases.record_outcome(venue, self.name)
        need = cases.deficit(venue)
        if not need.any():
            return
        markets = np.flatnonzero((venue.ledger.qty[cases.accounts] != 0).any(axis=0))
        self.pending_markets.update(markets.tolist() or range(venue.n_markets))
        hit = need > 0
        if self.when == "settlement":
            venue.ledger.transfer(np.full(hit.sum(), venue.loss_pool), cases.accounts[hit], need[hit])
            venue.events.add("socialize_pending", stage=self.name, account=cases.accounts[hit], amount=need[hit])
            return
        collected = self._charge(venue, int(need.sum()), exclude=cases.accounts)
        paid_before = np.cumsum(need) - need
        give = np.clip(collected - paid_before, 0, need)
        venue.ledger.transfer(np.full(hit.sum(), venue.loss_pool), cases.accounts[hit], give[hit])

    def settle(self, venue) -> None:
        owed = -int(venue.ledger.wallet[venue.loss_pool])
        if owed > 0:
            self._charge(venue, owed, exclude=np.zeros(0, dtype=np.int64))
        self.pending_markets.clear()

    def weights_of(self, venue) -> np.ndarray:
        led = venue.ledger
        if self.weights == "equity":
            w = venue.equity()
        elif self.weights == "profit":
            w = venue.window_profit()
        else:
            markets = sorted(self.pending_markets) or list(range(venue.n_markets))
            w = np.abs(led.qty[:, markets]).sum(axis=1)
        return np.where(led.is_venue(), 0, np.clip(w, 0, None))

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


STAGES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (BookStage, BackstopStage, InsuranceFundStage, ADLStage, SocializeStage)
}


def build_waterfall(config: list[dict]) -> list[Stage]:
    """Stages from the scenario's list of ``{"stage": name, **settings}``, in order."""
    stages = []
    for i, entry in enumerate(config):
        entry = dict(entry)
        name = entry.pop("stage", None)
        if name not in STAGES:
            raise ValueError(f"waterfall[{i}].stage is {name!r}; allowed: {sorted(STAGES)}")
        stages.append(STAGES[name](**entry))
    return stages
