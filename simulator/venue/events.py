"""The venue's event log: liquidations, fund movements, ADL fills, socialization charges.

Events are appended in batches of arrays (one call per stage per round, not per account) and
become one long pandas DataFrame, one row per event, with a ``kind`` column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = {
    "step": np.int64,
    "round": np.int64,
    "kind": object,
    "stage": object,
    "account": np.int64,
    "counterparty": np.int64,
    "market": np.int64,
    "qty": np.int64,
    "price": float,
    "bankruptcy_price": float,
    "amount": np.int64,
    "pnl": np.int64,
    "score": float,
    "weight": float,
    "liquidation_price": float,
    "equity": np.int64,
    "reason": object,
    "rank_quantile": float,
}
KINDS = (
    "liquidation",  # a position closed or taken over by a stage; amount = 0
    "deficit",  # negative equity left after the position is gone; amount > 0
    "surplus",  # equity left after the position is gone; amount > 0
    "cover",  # who paid a case's deficit: stage = insurance_fund / backstop / adl / socialize / socialize_pending / venue
    "fund_payout",  # insurance fund paid a deficit
    "backstop_payout",  # the backstop vault paid a flat case's deficit
    "fund_surplus",  # insurance fund received a surplus or clearance fee
    "takeover",  # backstop or fund took a position (qty) and the margin (amount, signed)
    "adl",  # one ADL fill: amount = paid vs mark in the price, pnl = unrealised PnL closed, reason = why ADL fired, rank_quantile = queue position (1 = front), equity = the counterparty's equity and weight = its account leverage (gross notional at mark / equity) before the fill
    "adl_haircut",  # cash a counterparty paid (amount > 0) or got to settle at bankruptcy
    "socialize",  # one charge: amount, weight = share; qty = payer's open lots (0: no position), score = its equity before
    "socialize_pending",  # a deficit parked until the next settlement
    "venue_loss",  # what no stage covered
    "unwind",  # a venue-held position reduced in the book
    "withdrawal",  # cash paid out to an account (amount); weight = share kept by a withdrawal factor
)


_GIVEN = frozenset(COLUMNS) - {"step", "round", "kind"}
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
# pandas >= 3 is always copy-on-write: a shallow copy of a frame is independent of it. Before,
# only a deep copy is.
_SHALLOW_IS_SAFE = int(pd.__version__.split(".")[0]) >= 3


def _length(shapes) -> int:
    """The number of events in columns of these shapes (numpy broadcasting; one when none)."""
    shapes = list(shapes)
    if all(len(s) <= 1 for s in shapes):  # scalars and 1-D columns, the usual case
        lengths = {s[0] for s in shapes if s and s[0] != 1}
        if len(lengths) <= 1:
            return lengths.pop() if lengths else 1
    return int(np.prod(np.broadcast_shapes(*shapes)))


class EventLog:
    """Columnar append-only log.

    ``add`` converts only the columns it is given (the others take their defaults when the
    frame is built), so logging one event costs a few numpy calls, not one per column.
    """

    def __init__(self):
        self._parts: list[tuple] = []  # (n, step, round, kind, {column: array of length n})
        self._frame: tuple[int, pd.DataFrame] | None = None  # (parts it was built from, frame)
        self.step = 0
        self.round = 0

    def add(self, kind: str, **cols) -> None:
        """Append one or more events; every column broadcasts to the longest array given."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        unknown = set(cols) - _GIVEN
        if unknown:
            raise ValueError(f"unknown event columns {sorted(unknown)}")
        # numpy broadcasting: scalars stretch, a zero-length array means nothing to log
        arrays = {name: np.asarray(v, dtype=COLUMNS[name]) for name, v in cols.items()}
        n = _length(a.shape for a in arrays.values())
        if n == 0:
            return
        given = {name: a if a.shape == (n,) else (np.full(n, a, dtype=a.dtype) if a.ndim == 0 else np.broadcast_to(a, (n,)))
                 for name, a in arrays.items()}
        self._parts.append((n, self.step, self.round, kind, given))

    def __len__(self) -> int:
        return sum(p[0] for p in self._parts)

    def to_frame(self) -> pd.DataFrame:
        """The events as one DataFrame. Built once per state of the log (the time series, the
        run's metadata and the summary all ask for it); each caller gets its own shallow copy,
        which copy-on-write keeps independent of the others (a deep copy on pandas 2)."""
        if self._frame is None or self._frame[0] != len(self._parts):
            self._frame = (len(self._parts), self._build_frame())
        return self._frame[1].copy(deep=not _SHALLOW_IS_SAFE)

    def _build_frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame({k: pd.Series(dtype=v) for k, v in COLUMNS.items()})
        # column by column, each written once into its full-length array: no per-part filler
        # arrays, no concatenation, and the frame takes the arrays without copying them
        sizes = np.array([p[0] for p in self._parts])
        ends = np.cumsum(sizes)
        total = int(ends[-1])
        data = {
            "step": np.repeat(np.array([p[1] for p in self._parts], dtype=np.int64), sizes),
            "round": np.repeat(np.array([p[2] for p in self._parts], dtype=np.int64), sizes),
            # each kind (a str from KINDS) converted once, then repeated by position
            "kind": pd.array(np.array(KINDS, dtype=object), dtype="string").take(
                np.repeat(np.array([_KIND_CODE[p[3]] for p in self._parts], dtype=np.intp), sizes)),
        }
        for name, dtype in COLUMNS.items():
            if name in data:
                continue
            default = "" if dtype is object else (np.nan if dtype is float else -1)
            col = np.full(total, default, dtype=dtype)
            for (n, _, _, _, given), end in zip(self._parts, ends.tolist()):
                if name in given:
                    col[end - n:end] = given[name]
            data[name] = pd.array(col, dtype="string") if dtype is object else col
        return pd.DataFrame(data, copy=False)

    def count(self, kind: str) -> int:
        return sum(p[0] for p in self._parts if p[3] == kind)
