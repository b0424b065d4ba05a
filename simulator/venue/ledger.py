"""The venue's ledger: exact integer cash, lots and cost, struct-of-arrays.

Every account (trader, market maker, arbitrageur, backstop vault, insurance fund, fee pool,
pending-socialization pool) is one row. ``wallet[a]`` is cash, ``qty[a, m]`` signed lots and
``cost[a, m]`` the signed quote value of the open position in cash units, so the entry price in
ticks is ``cost / (qty * contract_value)``.

Conservation (DESIGN.md §2), exact:
``sum(wallet) + sum(qty * mark * cv) - sum(cost) == deposits - withdrawals + injections``.
Every cash movement inside the venue is a transfer between two rows, every position change is
a trade with two sides, so the identity holds by construction; ``conservation_residual`` checks.

Inverse markets (``simulator.venue.settlement``) value positions at ``V(q, P) = -q K / P``,
rounded per account, so for them the identity values each market's net position:
``sum(wallet) - sum(cost) + sum_m V(sum_a qty[a, m], mark_m) == flows``, where the net position
is 0 (``sum(qty) == 0`` per market, checked alongside) and so is its value. For a linear market
the two forms are the same integer (``sum_a q_a M cv == (sum_a q_a) M cv``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.venue import kernels, settlement
from simulator.venue.fixedpoint import muldiv

ACCOUNT_KINDS = (
    "trader",
    "market_maker",
    "arbitrageur",
    "insurance_fund",
    "backstop",
    "fee_pool",
    "loss_pool",
    "engine",
)
VENUE_KINDS = frozenset({"insurance_fund", "backstop", "fee_pool", "loss_pool", "engine"})
_KIND_CODE = {k: i for i, k in enumerate(ACCOUNT_KINDS)}
_VENUE_CODES = np.array([k in VENUE_KINDS for k in ACCOUNT_KINDS])


@dataclass
class CashFlow:
    """An external cash movement: a deposit, a withdrawal or an injection (venue's money)."""

    account: int
    kind: str
    amount: int
    reason: str = ""


class CashFlows:
    """The log of external cash movements, kept as one batch of arrays per call (a deposit to
    100,000 new accounts is two int64 arrays, not 100,000 objects); reading it yields
    ``CashFlow`` records in order."""

    def __init__(self):
        self._batches: list[tuple[np.ndarray, str, np.ndarray, str]] = []  # (accounts, kind, amounts, reason)

    def add(self, accounts, kind: str, amounts, reason: str = "") -> None:
        accounts = np.array(accounts, dtype=np.int64, ndmin=1)
        amounts = np.array(np.broadcast_to(np.asarray(amounts, dtype=np.int64), accounts.shape))
        if len(accounts):
            self._batches.append((accounts, kind, amounts, reason))

    def __len__(self) -> int:
        return sum(len(b[0]) for b in self._batches)

    def __iter__(self):
        for accounts, kind, amounts, reason in self._batches:
            for a, x in zip(accounts.tolist(), amounts.tolist()):
                yield CashFlow(a, kind, x, reason)

    def __getitem__(self, i):
        return list(self)[i]


class KindColumn:
    """The account kind of every row, stored as one small integer code per account (index into
    ``ACCOUNT_KINDS``). Answers ``ledger.kind == "trader"`` (a boolean mask), ``kind[a]`` (the
    name) and ``kind[rows]`` / iteration / ``np.asarray`` (names) like the string column it
    replaces, at 1 byte per account instead of 64."""

    def __init__(self, codes: np.ndarray):
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    def __eq__(self, name) -> np.ndarray:  # type: ignore[override]
        code = _KIND_CODE.get(name)
        return np.zeros(len(self.codes), dtype=bool) if code is None else self.codes == code

    def __ne__(self, name) -> np.ndarray:  # type: ignore[override]
        return ~(self == name)

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, i):
        c = self.codes[i]
        if np.ndim(c) == 0:
            return ACCOUNT_KINDS[int(c)]
        return np.asarray(ACCOUNT_KINDS, dtype=object)[c].astype(str)

    def __iter__(self):
        return (ACCOUNT_KINDS[c] for c in self.codes.tolist())

    def __array__(self, dtype=None, copy=None):
        names = np.asarray(ACCOUNT_KINDS)[self.codes]
        return names if dtype is None else names.astype(dtype)

    def counts(self) -> dict[str, int]:
        """Accounts per kind (kinds with at least one account), in name order."""
        n = np.bincount(self.codes, minlength=len(ACCOUNT_KINDS))
        return {k: int(n[i]) for i, k in sorted(enumerate(ACCOUNT_KINDS), key=lambda x: x[1]) if n[i]}


@dataclass
class Ledger:
    """Integer ledger over accounts x markets.

    Args:
        contract_values: per market, the integer contract constant: linear, cash units per
            (lot x tick); inverse, ``K`` (``simulator.venue.settlement``).
        inverse: per market, True for an inverse (coin-margined) contract; None: all linear.
    """

    contract_values: np.ndarray
    inverse: np.ndarray | None = None
    wallet: np.ndarray = field(init=False)
    qty: np.ndarray = field(init=False)
    cost: np.ndarray = field(init=False)
    kind_code: np.ndarray = field(init=False)
    deposits: int = 0
    withdrawals: int = 0
    injections: int = 0
    flows: CashFlows = field(default_factory=CashFlows)

    def __post_init__(self):
        self.contract_values = np.asarray(self.contract_values, dtype=np.int64)
        if self.contract_values.ndim != 1 or (self.contract_values <= 0).any():
            raise ValueError("contract_values must be positive integers, one per market")
        m = len(self.contract_values)
        self.inverse = np.zeros(m, dtype=bool) if self.inverse is None else np.asarray(self.inverse, dtype=bool)
        if self.inverse.shape != (m,):
            raise ValueError("inverse must hold one flag per market")
        self.any_inverse = bool(self.inverse.any())
        self.wallet = np.zeros(0, dtype=np.int64)
        self.qty = np.zeros((0, m), dtype=np.int64)
        self.cost = np.zeros((0, m), dtype=np.int64)
        self.kind_code = np.zeros(0, dtype=np.int8)  # index into ACCOUNT_KINDS (``kind`` names it)
        self._venue_mask = np.zeros(0, dtype=bool)

    # ------------------------------------------------------------------ accounts
    @property
    def n_accounts(self) -> int:
        return len(self.wallet)

    @property
    def n_markets(self) -> int:
        return len(self.contract_values)

    @property
    def kind(self) -> KindColumn:
        """Each account's kind: ``ledger.kind == "trader"`` is a mask, ``ledger.kind[a]`` a name."""
        return KindColumn(self.kind_code)

    def add_accounts(self, n: int, kind: str, deposit=0) -> np.ndarray:
        """Open ``n`` accounts of ``kind``, each funded with ``deposit`` (int or array)."""
        if kind not in ACCOUNT_KINDS:
            raise ValueError(f"unknown account kind {kind!r}; allowed: {ACCOUNT_KINDS}")
        start = self.n_accounts
        m = self.n_markets
        self.wallet = np.concatenate([self.wallet, np.zeros(n, dtype=np.int64)])
        self.qty = np.concatenate([self.qty, np.zeros((n, m), dtype=np.int64)])
        self.cost = np.concatenate([self.cost, np.zeros((n, m), dtype=np.int64)])
        self.kind_code = np.concatenate([self.kind_code, np.full(n, _KIND_CODE[kind], dtype=np.int8)])
        self._venue_mask = _VENUE_CODES[self.kind_code]
        ids = np.arange(start, start + n, dtype=np.int64)
        amounts = np.broadcast_to(np.asarray(deposit, dtype=np.int64), (n,))
        if (amounts > 0).any():
            self.deposit(ids[amounts > 0], amounts[amounts > 0])
        return ids

    def is_venue(self) -> np.ndarray:
        """Boolean mask of the venue's own rows (fund, backstop, fee pool, loss pool, engine)."""
        return self._venue_mask

    # ------------------------------------------------------------ external flows
    def deposit(self, ids, amounts) -> None:
        self._external(ids, amounts, "deposit", 1)

    def withdraw(self, ids, amounts, haircut=0, to=None) -> None:
        """Cash out; ``haircut`` of each amount (a socialized loss factor) goes to row ``to``
        instead of leaving the ledger, so only ``amounts - haircut`` is withdrawn."""
        if to is not None:
            ids, haircut = _pair(ids, haircut)
            self.transfer(ids, to, haircut)
            amounts = np.broadcast_to(np.asarray(amounts, dtype=np.int64), ids.shape) - haircut
        self._external(ids, amounts, "withdrawal", -1)

    def _external(self, ids, amounts, kind: str, sign: int) -> None:
        """Cash in (``sign`` 1) or out (-1) of the ledger, counted and logged."""
        ids, amounts = _pair(ids, amounts)
        if (amounts < 0).any():
            raise ValueError(f"a {kind} must be non-negative")
        np.add.at(self.wallet, ids, sign * amounts)
        if sign > 0:
            self.deposits += int(amounts.sum())
        else:
            self.withdrawals += int(amounts.sum())
        self.flows.add(ids, kind, amounts)

    def inject(self, account: int, amount: int, reason: str) -> None:
        """Money from outside the ledger (the venue's own balance sheet), logged with a reason."""
        self.wallet[account] += amount
        self.injections += int(amount)
        self.flows.add(account, "injection", amount, reason)

    # ---------------------------------------------------------- internal movements
    def transfer(self, src, dst, amounts) -> None:
        """Move cash between rows (fees, fund payouts, haircuts). Arrays or scalars."""
        src, dst, amounts = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in (src, dst, amounts))
        )
        np.subtract.at(self.wallet, src, amounts)
        np.add.at(self.wallet, dst, amounts)

    def trade(self, market: int, buyers, sellers, qty, price) -> None:
        """Settle fills of ``qty`` lots at ``price`` ticks from ``sellers`` to ``buyers``, in order.

        The result is exactly that of settling the fills one at a time in the given order (the
        realised / unrealised split matters: it feeds PnL% rankings). A side that reduces its
        position realises ``closed share of (proceeds - cost)`` into its wallet and removes that
        share of ``cost``; a side that grows adds ``q * P * cv`` to ``cost``.

        Vectorised: an account whose fills in the batch all grow its position the same way (or
        that appears once) is settled netted in one pass, which is exact because growing only
        adds to ``cost``. The other accounts (hit on both sides, or reducing more than once)
        are settled in rounds: round k applies every such account's k-th fill, so each account
        appears at most once per round and its fills are applied in order. A self-trade
        (buyer == seller) changes nothing and is skipped.
        """
        buyers = np.atleast_1d(np.asarray(buyers, dtype=np.int64))
        # full-length arrays pass through as they are (a broadcast view would be copied again
        # for the kernel); only scalars and short inputs are broadcast
        sellers, qty, price = (_fill_column(a, buyers.shape) for a in (sellers, qty, price))
        if (qty < 0).any() or (price <= 0).any():
            raise ValueError("fills need non-negative qty and positive price")
        k = kernels.get()
        if k is not None and self.inverse[market]:
            k.trade_values(self.wallet, self.qty, self.cost, int(market), kernels.i64(buyers), kernels.i64(sellers),
                           kernels.i64(qty), kernels.i64(self.fill_values(market, qty, price)))
            return
        if k is not None:
            k.trade(self.wallet, self.qty, self.cost, int(market), kernels.i64(buyers), kernels.i64(sellers),
                    kernels.i64(qty), kernels.i64(price), int(self.contract_values[market]))
            return
        self._trade_numpy(market, buyers, sellers, qty, price)

    def trade_reference(self, market: int, buyers, sellers, qty, price) -> None:
        """``trade`` in numpy only (the reference the compiled kernel is tested against)."""
        buyers = np.atleast_1d(np.asarray(buyers, dtype=np.int64))
        sellers = np.broadcast_to(np.asarray(sellers, dtype=np.int64), buyers.shape)
        qty = np.broadcast_to(np.asarray(qty, dtype=np.int64), buyers.shape)
        price = np.broadcast_to(np.asarray(price, dtype=np.int64), buyers.shape)
        if (qty < 0).any() or (price <= 0).any():
            raise ValueError("fills need non-negative qty and positive price")
        self._trade_numpy(market, buyers, sellers, qty, price)

    def _trade_numpy(self, market, buyers, sellers, qty, price) -> None:
        live = (buyers != sellers) & (qty > 0)
        if not live.all():
            buyers, sellers, qty, price = buyers[live], sellers[live], qty[live], price[live]
        if len(qty) == 0:
            return
        value = self.fill_values(market, qty, price)
        # one entry per side of every fill, in fill order (buyer and seller of a fill differ)
        n = len(qty)
        accounts = np.concatenate([buyers, sellers])
        dq_e = np.concatenate([qty, -qty])
        dv_e = np.concatenate([value, -value])
        fill = np.concatenate([np.arange(n), np.arange(n)])
        uniq, inv, counts = np.unique(accounts, return_inverse=True, return_counts=True)
        # simple: every entry of the account has the sign of its position (or it is flat) and of
        # its other entries, so the batch only opens / grows it
        q0 = self.qty[uniq, market]
        lo = np.full(len(uniq), 1, dtype=np.int64)
        hi = np.full(len(uniq), -1, dtype=np.int64)
        np.minimum.at(lo, inv, np.sign(dq_e))
        np.maximum.at(hi, inv, np.sign(dq_e))
        one_way = lo == hi
        simple = (counts == 1) | (one_way & ((q0 == 0) | (np.sign(q0) == hi)))
        e_simple = simple[inv]
        if e_simple.any():
            dq = np.zeros(len(uniq), dtype=np.int64)
            dv = np.zeros(len(uniq), dtype=np.int64)
            np.add.at(dq, inv[e_simple], dq_e[e_simple])
            np.add.at(dv, inv[e_simple], dv_e[e_simple])
            self._apply(market, uniq[simple], dq[simple], dv[simple])
        if e_simple.all():
            return
        # the rest in rounds: rank of each entry among its account's entries, in fill order
        rest = np.flatnonzero(~e_simple)
        order = rest[np.lexsort((fill[rest], accounts[rest]))]
        acc_sorted = accounts[order]
        starts = np.flatnonzero(np.r_[True, acc_sorted[1:] != acc_sorted[:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        for k in range(int(rank.max()) + 1):
            e = order[rank == k]
            self._apply(market, accounts[e], dq_e[e], dv_e[e])

    def fill_values(self, market: int, qty, price) -> np.ndarray:
        """The buyer's value of each fill (the seller's is its negative), computed once per fill:
        linear ``q * P * cv``, inverse ``-floor(q * K / P)`` (``simulator.venue.settlement``)."""
        return settlement.fill_values(qty, price, self.contract_values[market], bool(self.inverse[market]))

    def _apply(self, market: int, accounts, dq, dv) -> None:
        q = self.qty[accounts, market]
        c = self.cost[accounts, market]
        # dq == 0 with dv != 0: bought and sold the same lots in one batch (a market maker hit
        # on both sides); the netted value is realised PnL, the position and its cost stay
        roundtrip = dq == 0
        same = (q == 0) | (np.sign(q) == np.sign(dq))
        flip = ~same & (np.abs(dq) > np.abs(q))
        reduce = ~same & ~flip
        absq = np.maximum(np.abs(q), 1)
        absdq = np.maximum(np.abs(dq), 1)
        # reduce: remove the closed share of cost, realise proceeds minus that share
        closed_cost = np.where(reduce, muldiv(c, np.abs(dq), absq), c)
        # flip: the closing part of the trade value is |q|/|dq| of dv; the rest opens
        close_value = np.where(flip, muldiv(dv, np.abs(q), absdq), dv)
        realised = np.where(roundtrip, -dv, np.where(same, 0, -close_value - closed_cost))
        new_cost = np.where(roundtrip, c, np.where(same, c + dv, np.where(flip, dv - close_value, c - closed_cost)))
        self.wallet[accounts] += realised
        self.qty[accounts, market] = q + dq
        self.cost[accounts, market] = new_cost

    # ------------------------------------------------------------------- queries
    def value(self, qty, marks) -> np.ndarray:
        """Signed value ``V(q, mark)`` of ``qty[A, M]``, int64 (``simulator.venue.settlement``)."""
        marks = np.asarray(marks, dtype=np.int64)
        if not self.any_inverse:
            return qty * (marks * self.contract_values)[None, :]
        return settlement.value(qty, marks, self.contract_values, self.inverse)

    def exposure(self, qty, marks) -> np.ndarray:
        """Signed notional of ``qty[A, M]`` at ``marks`` (long positive), int64 cash."""
        marks = np.asarray(marks, dtype=np.int64)
        if not self.any_inverse:
            return qty * (marks * self.contract_values)[None, :]
        return settlement.exposure(qty, marks, self.contract_values, self.inverse)

    def notional(self, qty, marks) -> np.ndarray:
        """``|V(q, mark)|`` per account and market, int64 cash (what margin is charged on)."""
        marks = np.asarray(marks, dtype=np.int64)
        if not self.any_inverse:
            return np.abs(qty) * (marks * self.contract_values)[None, :]
        return np.abs(settlement.exposure(qty, marks, self.contract_values, self.inverse))

    def unrealised(self, marks) -> np.ndarray:
        """``U = V(qty, mark) - cost`` per account and market, int64 (linear ``qty*mark*cv - cost``)."""
        return self.value(self.qty, marks) - self.cost

    def unrealised_of(self, marks, accounts) -> np.ndarray:
        """``unrealised(marks)[accounts]``, valuing only those rows."""
        return self.value(self.qty[accounts], marks) - self.cost[accounts]

    def equity(self, marks, accounts=None) -> np.ndarray:
        """Cross-margin equity ``wallet + sum_m U_m`` per account (or for ``accounts``), int64."""
        marks = np.asarray(marks, dtype=np.int64)
        if accounts is None:
            return self.wallet + self.unrealised(marks).sum(axis=1)
        u = self.value(self.qty[accounts], marks) - self.cost[accounts]
        return self.wallet[accounts] + u.sum(axis=1)

    def entry_price(self) -> np.ndarray:
        """Entry price in ticks (float; NaN where flat)."""
        return settlement.entry_prices(self.qty, self.cost, self.contract_values, self.inverse)

    def conservation_residual(self, marks) -> int:
        """Must be exactly 0: ledger value minus net external flows (inverse markets valued at
        their net position, see the module docstring)."""
        marks = np.asarray(marks, dtype=np.int64)
        if not self.any_inverse:
            held = int(self.wallet.sum()) + int(self.unrealised(marks).sum())
        else:
            lin = ~self.inverse
            net = self.qty.sum(axis=0)[None, :]
            held = (int(self.wallet.sum()) + int(self.unrealised(marks)[:, lin].sum())
                    - int(self.cost[:, self.inverse].sum()) + int(self.value(net, marks)[0, self.inverse].sum()))
        return held - (self.deposits - self.withdrawals + self.injections)

    def totals(self, marks, scanned=None) -> tuple[int, np.ndarray, np.ndarray]:
        """One pass over the ledger: (conservation residual, net lots per market, long lots per
        market). The residual is exactly ``conservation_residual(marks)``.

        ``scanned``: the same sums already made by a scan of this ledger at these marks
        (``_nb_scan.scan_with_totals``, a linear ledger): no pass of its own."""
        if scanned is not None:
            m = len(self.contract_values)
            return (int(scanned[0]) + int(scanned[1]) - (self.deposits - self.withdrawals + self.injections),
                    scanned[2 : 2 + m], scanned[2 + m :])
        k = kernels.scan()
        if k is None:
            return self.conservation_residual(marks), self.qty.sum(axis=0), self.open_interest()
        if not self.any_inverse:
            w, u, net, oi = k.ledger_totals(self.wallet, self.qty, self.cost, kernels.i64(marks), self.contract_values)
            return int(w) + int(u) - (self.deposits - self.withdrawals + self.injections), net, oi
        # inverse columns: a zero contract value makes the kernel sum ``-cost`` only; their net
        # position is valued once
        cv = np.where(self.inverse, 0, self.contract_values)
        w, u, net, oi = k.ledger_totals(self.wallet, self.qty, self.cost, kernels.i64(marks), cv)
        net_value = int(self.value(net[None, :], marks)[0, self.inverse].sum())
        return int(w) + int(u) + net_value - (self.deposits - self.withdrawals + self.injections), net, oi

    def open_interest(self) -> np.ndarray:
        """Lots held long per market (equal to lots held short)."""
        return np.clip(self.qty, 0, None).sum(axis=0)


def _fill_column(a, shape) -> np.ndarray:
    """One int64 column of a fill batch, of the batch's ``shape`` (broadcast only if needed)."""
    a = np.asarray(a, dtype=np.int64)
    return a if a.shape == shape else np.broadcast_to(a, shape)


def _pair(ids, amounts):
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    amounts = np.broadcast_to(np.asarray(amounts, dtype=np.int64), ids.shape)
    return ids, amounts
