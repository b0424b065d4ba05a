"""Who paid for the deficit that reached ADL and socialization, per agent class (issue 11, item 6).

``who_paid(events, classes)`` is pure: the event table (``EventLog.to_frame()``) and a mapping
account -> class (``account_classes(model)``: ``trader:<strategy>`` for trend, mean_revert,
noise and hedger traders, ``whale``, ``market_maker``, ``arbitrageur``, ``backstop``, and the
venue's own rows ``insurance_fund``, ``fee_pool``, ``loss_pool``).

Definitions (ledger cash units, integers; ``*_usd`` columns are quote currency). Two event
kinds move an ADL'd counterparty's cash against closing at mark; per event row ``amount > 0`` is
cash paid vs mark, ``amount < 0`` cash received vs mark:

* ``adl`` (the counterparty's fill): ``amount = size x (fill price - mark) x side`` (0 when the
  fill is at mark, as for ``price: bankruptcy``, which settles through ``adl_haircut``);
* ``adl_haircut``: the cash the counterparty paid to settle at the bankrupt account's
  bankruptcy price (> 0), or got when the case still had equity at mark (< 0).

Columns:

* ``adl_price_haircut``, ``adl_settlement_haircut``: sums of the positive amounts of the
  class's ``adl`` and ``adl_haircut`` rows (the summary's ``adl_haircut`` convention).
* ``adl_received``: minus the sum of their negative amounts (cash got vs mark), >= 0.
* ``socialized``: sum of the class's ``socialize`` charges.
* ``shortfall = adl_price_haircut + adl_settlement_haircut + socialized``: cash the class
  paid against holding its positions at mark. Profit that ADL *realised early* is not a loss
  (closing at mark would have paid it out exactly), so it is not in the shortfall.
  ``net_vs_mark = shortfall - adl_received`` nets the rows where ADL paid them more than mark.
* ``pnl_at_mark``: sum of ``adl`` rows' ``pnl``, the unrealised PnL at mark of the positions
  ADL closed: the hedge P&L the class expected. ``pnl_received = pnl_at_mark -
  adl_price_haircut - adl_settlement_haircut + adl_received`` (socialization is charged on
  equity, not on a closed position, so it is not in it). ``shortfall_pct = 100 x shortfall /
  pnl_at_mark`` (NaN when ``pnl_at_mark <= 0``, i.e. nothing profitable was ADL'd; the dollar
  shortfall still counts socialization, so the percentage can exceed 100).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

NAN = float("nan")
HEDGER = "trader:hedger"
COLUMNS = ("class", "accounts", "accounts_hit", "adl_fills", "adl_price_haircut", "adl_settlement_haircut",
           "adl_received", "socialized", "shortfall", "net_vs_mark", "pnl_at_mark", "pnl_received",
           "shortfall_usd", "pnl_at_mark_usd", "shortfall_pct")
_INT = COLUMNS[1:12]


class AccountClasses(Mapping):
    """account -> class as one small code per account (100,000 traders: 200 kB, not a dict of
    100,000 entries); reads like the dict ``{account: class}`` in account order."""

    def __init__(self, codes: np.ndarray, names: list[str]):
        self.codes = codes
        self.names = names

    def __getitem__(self, account) -> str:
        a = int(account)
        if not 0 <= a < len(self.codes):
            raise KeyError(account)
        return self.names[self.codes[a]]

    def __iter__(self):
        return iter(range(len(self.codes)))

    def __len__(self) -> int:
        return len(self.codes)

    def series(self) -> pd.Series:
        """The classes as an object Series indexed by account."""
        return pd.Series(np.asarray(self.names, dtype=object)[self.codes], dtype=object)


def account_classes(model) -> AccountClasses:
    """account -> class for a ``PerpModel`` (duck-typed: ``venue.ledger.kind_code``, ``traders``,
    ``whales``)."""
    from agents.traders import STRATEGIES
    from simulator.venue.ledger import ACCOUNT_KINDS

    names = [*ACCOUNT_KINDS, "whale", *(f"trader:{s}" for s in STRATEGIES)]
    kinds = model.venue.ledger.kind_code
    codes = kinds.astype(np.int16)
    # traders outside the population are the scenario's whales
    codes[kinds == ACCOUNT_KINDS.index("trader")] = len(ACCOUNT_KINDS)
    pop = model.traders
    codes[pop.accounts] = len(ACCOUNT_KINDS) + 1 + np.asarray(pop.strategy, dtype=np.int16)
    return AccountClasses(codes, names)


def who_paid(events: pd.DataFrame, classes: Mapping[int, str], cash_unit: float = 1e-6) -> pd.DataFrame:
    """One row per class (every class in ``classes``, sorted): see the module docstring.

    Summed per class with numpy on the class's rows (integer sums, exact in any order): the
    table of ``who_paid_reference``, which the tests compare it with."""
    table = _who_paid_columns(events, classes, cash_unit)
    if table is None:
        return who_paid_reference(events, classes, cash_unit)
    return pd.DataFrame(table, columns=list(COLUMNS))


def _who_paid_columns(events: pd.DataFrame, classes: Mapping[int, str], cash_unit: float) -> dict | None:
    """``who_paid``'s columns as arrays (None when ``classes`` is empty)."""
    names, accounts_per_class, class_of = _class_lookup(classes)
    if not names:
        return None
    kind_codes, kinds = pd.factorize(events["kind"]) if len(events) else (np.zeros(0, dtype=np.intp), [])
    code = {str(k): i for i, k in enumerate(kinds)}
    kind = np.full(len(kinds) + 1, -1, dtype=np.int8)  # -1: not one of the three kinds
    for i, k in enumerate(("adl", "adl_haircut", "socialize")):
        if k in code:
            kind[code[k]] = i
    row_kind = kind[kind_codes]
    rows = np.flatnonzero(row_kind >= 0)
    row_kind = row_kind[rows]
    account = events["account"].to_numpy()[rows].astype(np.int64)
    cls = class_of(account)  # index into names; len(names) for an account of no class
    if (cls == len(names)).any():
        names = [*names, "unknown"]
        accounts_per_class = np.append(accounts_per_class, 0)
    n = len(names)
    amount = events["amount"].to_numpy()[rows].astype(np.int64)
    pnl_col = events["pnl"].to_numpy()[rows].astype(np.int64)
    adl, haircut, social = row_kind == 0, row_kind == 1, row_kind == 2

    def total(where, values) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        np.add.at(out, cls[where], values[where])
        return out

    price_h = total(adl & (amount > 0), amount)
    settle_h = total(haircut & (amount > 0), amount)
    got = -total((adl | haircut) & (amount < 0), amount)
    soc = total(social, amount)
    pnl = total(adl, pnl_col)
    fills = np.bincount(cls[adl], minlength=n)
    # distinct (class, account) pairs: one int64 key each, class-major
    low = int(account.min()) if len(rows) else 0
    width = int(account.max()) - low + 1 if len(rows) else 1
    if width * (n + 1) < 2**62:
        hit = np.bincount(np.unique(cls * width + (account - low)) // width, minlength=n)
    else:  # accounts too far apart for one key
        hit = np.bincount(np.unique(np.stack([cls, account]), axis=1)[0], minlength=n)
    short = price_h + settle_h + soc
    table = {
        "class": names, "accounts": accounts_per_class.astype(np.int64), "accounts_hit": hit.astype(np.int64),
        "adl_fills": fills.astype(np.int64), "adl_price_haircut": price_h, "adl_settlement_haircut": settle_h,
        "adl_received": got, "socialized": soc, "shortfall": short, "net_vs_mark": short - got,
        "pnl_at_mark": pnl, "pnl_received": pnl - price_h - settle_h + got,
        # Python's int x float and int / int, as the reference's rows compute them
        "shortfall_usd": np.array([int(v) * cash_unit for v in short], dtype=float),
        "pnl_at_mark_usd": np.array([int(v) * cash_unit for v in pnl], dtype=float),
        "shortfall_pct": np.array([100.0 * int(v) / int(p) if p > 0 else NAN for v, p in zip(short, pnl)], dtype=float),
    }
    return table


def _class_lookup(classes: Mapping[int, str]):
    """(sorted class names, accounts per class, account ids -> index into the names, or
    ``len(names)`` for an account with no class)."""
    if isinstance(classes, AccountClasses):
        codes = np.asarray(classes.codes)
        per_code = np.bincount(codes, minlength=len(classes.names)) if len(codes) else np.zeros(len(classes.names), int)
        count: dict[str, int] = {}
        for c, k in zip(classes.names, per_code.tolist()):
            if k:
                count[c] = count.get(c, 0) + k
        names = sorted(count)
        index = {c: i for i, c in enumerate(names)}
        code_to_index = np.array([index.get(c, len(names)) for c in classes.names], dtype=np.int64)

        def class_of(accounts: np.ndarray) -> np.ndarray:
            inside = (accounts >= 0) & (accounts < len(codes))
            out = np.full(len(accounts), len(names), dtype=np.int64)
            out[inside] = code_to_index[codes[accounts[inside]]]
            return out

        return names, np.array([count[c] for c in names], dtype=np.int64), class_of
    mapping = {int(a): str(c) for a, c in dict(classes).items()}
    names = sorted(set(mapping.values()))
    index = {c: i for i, c in enumerate(names)}
    known = pd.Index(np.fromiter(mapping, dtype=np.int64, count=len(mapping)))
    known_class = np.array([index[c] for c in mapping.values()], dtype=np.int64)

    def class_of(accounts: np.ndarray) -> np.ndarray:
        at = known.get_indexer(accounts)
        return np.where(at >= 0, known_class[at], len(names))

    return names, np.bincount(known_class, minlength=len(names)).astype(np.int64), class_of


def who_paid_reference(events: pd.DataFrame, classes: Mapping[int, str], cash_unit: float = 1e-6) -> pd.DataFrame:
    """``who_paid`` through pandas groupbys (the definition it is tested against)."""
    if isinstance(classes, AccountClasses):
        cls = classes.series()
    else:
        cls = pd.Series({int(a): str(c) for a, c in dict(classes).items()}, dtype=object)
    names = sorted(set(cls.tolist()))
    ev = events[events["kind"].isin(["adl", "adl_haircut", "socialize"])]
    ev = ev.assign(cls=ev["account"].map(cls).fillna("unknown"))
    if ev["cls"].eq("unknown").any():
        names.append("unknown")

    def total(kinds, col, keep=lambda v: np.ones(len(v), dtype=bool)):
        sel = ev[ev["kind"].isin(kinds)]
        v = sel[col].to_numpy(dtype=np.int64)
        return sel.assign(v=np.where(keep(v), v, 0)).groupby("cls")["v"].sum()

    price_h = total(["adl"], "amount", lambda v: v > 0)
    settle_h = total(["adl_haircut"], "amount", lambda v: v > 0)
    got = -total(["adl", "adl_haircut"], "amount", lambda v: v < 0)
    soc = total(["socialize"], "amount")
    pnl = total(["adl"], "pnl")
    fills = ev[ev["kind"] == "adl"].groupby("cls").size()
    hit = ev.groupby("cls")["account"].nunique()
    size = cls.value_counts()
    rows = []
    for c in names:
        ph, sh, rc, so, p = (int(s.get(c, 0)) for s in (price_h, settle_h, got, soc, pnl))
        short = ph + sh + so
        rows.append({
            "class": c, "accounts": int(size.get(c, 0)), "accounts_hit": int(hit.get(c, 0)),
            "adl_fills": int(fills.get(c, 0)), "adl_price_haircut": ph, "adl_settlement_haircut": sh,
            "adl_received": rc, "socialized": so, "shortfall": short, "net_vs_mark": short - rc,
            "pnl_at_mark": p, "pnl_received": p - ph - sh + rc,
            "shortfall_usd": short * cash_unit, "pnl_at_mark_usd": p * cash_unit,
            "shortfall_pct": 100.0 * short / p if p > 0 else NAN,
        })
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({k: np.int64 for k in _INT})


def hedger_metrics(events: pd.DataFrame, meta: Mapping) -> dict:
    """``hedger_shortfall`` (quote currency) and ``hedger_shortfall_pct`` for the summary;
    NaN when the run's meta has no ``account_class``; 0 and NaN when the run has no hedger."""
    classes = meta.get("account_class")
    if classes is None:
        return {"hedger_shortfall": NAN, "hedger_shortfall_pct": NAN}
    table = _who_paid_columns(events, classes, meta.get("cash_unit", 1e-6))  # the table's columns, no frame
    if table is None or HEDGER not in table["class"]:
        return {"hedger_shortfall": 0.0, "hedger_shortfall_pct": NAN}
    row = table["class"].index(HEDGER)
    return {"hedger_shortfall": float(table["shortfall_usd"][row]),
            "hedger_shortfall_pct": float(table["shortfall_pct"][row])}
