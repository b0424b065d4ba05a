"""A verifiable audit trail: a hash chain over the event log and Merkle roots of balances.

Pure (hashlib, numpy, pandas); no agents, no files. ``simulator.experiments.audit_trail``
writes and checks run folders with it, ``perpstress verify`` is its command line.

Merkle tree (RFC 6962 / RFC 9162 "Merkle Tree Hash", sha256)
    leaf hash ``LH(d) = sha256(0x00 || d)``; node hash ``NH(l, r) = sha256(0x01 || l || r)``;
    built level by level from the leaves in order, pairing neighbours; an odd node at the end
    of a level is promoted unchanged to the next level (not duplicated). This is exactly
    RFC 6962's recursive split at the largest power of two below n, so any RFC 6962 verifier
    (e.g. ``pymerkle``) checks our proofs. The root of zero leaves is ``sha256(b"")``.
    Five leaves a..e: ``root = NH(NH(NH(a, b), NH(c, d)), e)``.

Balance leaf (``balance_leaf``), one per ledger account (venue rows included), in account order:
    big-endian signed int64 fields, ``8 * (2 + 2 * n_markets)`` bytes:
    ``account || wallet || qty[0] || cost[0] || ... || qty[M-1] || cost[M-1]``
    (wallet and cost in ledger cash units, 1e-6 USD; qty in lots). The account id is in the
    leaf, so a proof also shows *whose* balance it is.

Fund leaf (``fund_leaf``): the insurance fund's own tree has one leaf,
    ``b"insurance_fund" || balance_leaf(fund row) || equity_at_mark`` (int64 big-endian),
    so ``fund_root = LH(fund_leaf)``; ``fund_balance`` is its wallet, ``fund_equity`` its
    equity at the snapshot's marks (it differs from the wallet only while the fund holds a
    taken-over position).

Event hash chain (``chain``): every event row gets ``time = step * step_seconds`` (scenario
seconds) and ``prev_hash``; ``hash_i = sha256(prev_hash_i || canonical(row_i))`` with
``prev_hash_0 = 32 zero bytes`` and ``prev_hash_{i+1} = hash_i``; the last hash is the chain's
head. ``canonical(row)`` is the compact JSON array of the row's values in ``CHAIN_COLUMNS``
order (ints as ints, floats by Python's shortest round-trip repr, NaN as null, strings as
JSON strings), UTF-8. ``prev_hash`` is part of the record but not of ``canonical``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
GENESIS = bytes(32)
FUND_TAG = b"insurance_fund"
DEFAULT_INTERVAL_SECONDS = 60.0


# ================================================================== Merkle tree
def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    """All levels of the tree, leaves first; an odd last node is promoted unchanged."""
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        cur = levels[-1]
        nxt = [node_hash(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        levels.append(nxt)
    return levels


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root over the leaf *data* (hashed here with the 0x00 prefix)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _levels([leaf_hash(d) for d in leaves])[-1][0]


def inclusion_proof(leaves: list[bytes], index: int) -> dict:
    """Proof that ``leaves[index]`` is in the tree: the leaf (hex), its index, the tree size,
    the sibling hashes from the leaf up with the side each sits on, and the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside 0..{len(leaves) - 1}")
    levels = _levels([leaf_hash(d) for d in leaves])
    path = []
    i = index
    for level in levels[:-1]:
        sib = i ^ 1
        if sib < len(level):  # no sibling: this node is promoted, nothing to hash
            path.append({"side": "left" if sib < i else "right", "hash": level[sib].hex()})
        i //= 2
    return {"leaf": leaves[index].hex(), "index": index, "tree_size": len(leaves), "path": path,
            "root": levels[-1][0].hex()}


def verify_proof(proof: dict) -> bool:
    """Recompute the root from the proof's leaf and path and compare with its root."""
    h = leaf_hash(bytes.fromhex(proof["leaf"]))
    for step in proof["path"]:
        sib = bytes.fromhex(step["hash"])
        if step["side"] == "left":
            h = node_hash(sib, h)
        elif step["side"] == "right":
            h = node_hash(h, sib)
        else:
            return False
    return h.hex() == proof["root"]


# ================================================================== leaves
def balance_leaf(account: int, wallet: int, qty, cost) -> bytes:
    vals = [int(account), int(wallet)]
    for q, c in zip(qty, cost):
        vals += [int(q), int(c)]
    return b"".join(v.to_bytes(8, "big", signed=True) for v in vals)


def balance_leaves(table: pd.DataFrame, n_markets: int) -> list[bytes]:
    """Leaves of one snapshot's balance table (columns ``account, wallet, qty_m, cost_m``),
    in account order."""
    t = table.sort_values("account", kind="stable")
    cols = ["account", "wallet"]
    for m in range(n_markets):
        cols += [f"qty_{m}", f"cost_{m}"]
    arr = t[cols].to_numpy(dtype=np.int64)
    raw = arr.astype(">i8").tobytes()
    width = 8 * len(cols)
    return [raw[i * width:(i + 1) * width] for i in range(len(arr))]


def fund_leaf(balance: bytes, equity: int) -> bytes:
    return FUND_TAG + balance + int(equity).to_bytes(8, "big", signed=True)


# ================================================================== snapshots
@dataclass
class SnapshotRecorder:
    """Copies the ledger's balances every ``interval_seconds`` of scenario time.

    ``maybe_record(t, venue)`` after step ``t``: records when the step's time
    ``t * step_seconds`` reaches the next multiple of the interval (so after step 0, 60, 120,
    ... at 1 s steps), and ``finish`` records the last step if it was not. Roots are computed
    from the copies when asked (``snapshots_frame`` / ``roots``), so a batch run that never
    writes a folder pays only the copies. A snapshot keeps only the accounts whose balances
    changed since the one before (and new accounts), ``(1 + 2 x markets) x 8`` bytes each,
    plus one full copy of the last balances: memory grows with what trades, not with
    ``accounts x snapshots`` (100,000 traders, 15 minutes at 1 s steps: ~6 MB, not 38 MB).
    """

    step_seconds: float
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    rows: list = field(default_factory=list, repr=False)
    _next: float = 0.0
    _last: tuple | None = field(default=None, repr=False)  # full (wallet, qty, cost) of the last snapshot

    def maybe_record(self, t: int, venue) -> None:
        if t * self.step_seconds + 1e-9 >= self._next:
            self.record(t, venue)
            while self._next <= t * self.step_seconds + 1e-9:
                self._next += self.interval_seconds

    def finish(self, t_last: int, venue) -> None:
        if t_last >= 0 and (not self.rows or self.rows[-1]["step"] != t_last):
            self.record(t_last, venue)

    def record(self, t: int, venue) -> None:
        led = venue.ledger
        fund = int(venue.insurance_fund)
        wallet, qty, cost = led.wallet, led.qty, led.cost
        n = len(wallet)
        if self._last is None:
            changed = np.arange(n)
        else:
            w0, q0, c0 = self._last
            k = len(w0)  # accounts only ever get added
            diff = (wallet[:k] != w0) | (qty[:k] != q0).any(axis=1) | (cost[:k] != c0).any(axis=1)
            changed = np.concatenate([np.flatnonzero(diff), np.arange(k, n)])
        self._last = (wallet.copy(), qty.copy(), cost.copy())
        self.rows.append({
            "step": int(t), "time": float(t * self.step_seconds), "accounts": n, "changed": changed,
            "wallet": wallet[changed], "qty": qty[changed], "cost": cost[changed],
            "fund_account": fund, "fund_equity": int(venue.equity(np.array([fund]))[0]),
        })

    def balances(self):
        """Each snapshot's full balances, rebuilt from the changes: (row, wallet, qty, cost)."""
        wallet = qty = cost = None
        for r in self.rows:
            n, m = r["accounts"], r["qty"].shape[1]
            if wallet is None or len(wallet) < n:
                grown = [np.zeros(n, dtype=np.int64), np.zeros((n, m), dtype=np.int64), np.zeros((n, m), dtype=np.int64)]
                if wallet is not None:
                    for new, old in zip(grown, (wallet, qty, cost)):
                        new[: len(old)] = old
                wallet, qty, cost = grown
            wallet[r["changed"]] = r["wallet"]
            qty[r["changed"]] = r["qty"]
            cost[r["changed"]] = r["cost"]
            yield r, wallet[:n], qty[:n], cost[:n]

    def balances_frame(self) -> pd.DataFrame:
        """One row per (snapshot, account): ``snapshot, step, time, account, wallet, qty_m, cost_m``."""
        parts = []
        for k, (r, wallet, qty, cost) in enumerate(self.balances()):
            n, m = qty.shape
            d = {"snapshot": np.full(n, k, dtype=np.int64), "step": np.full(n, r["step"], dtype=np.int64),
                 "time": np.full(n, r["time"]), "account": np.arange(n, dtype=np.int64),
                 "wallet": wallet.copy()}
            for j in range(m):
                d[f"qty_{j}"] = qty[:, j].copy()
                d[f"cost_{j}"] = cost[:, j].copy()
            parts.append(pd.DataFrame(d))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def snapshot_meta(self) -> list[dict]:
        return [{"snapshot": k, "step": r["step"], "time": r["time"], "fund_account": r["fund_account"],
                 "fund_equity": r["fund_equity"]} for k, r in enumerate(self.rows)]


def snapshot_roots(balances: pd.DataFrame, meta: list[dict], n_markets: int) -> list[dict]:
    """Per snapshot: step, time, number of accounts, balances root, fund root, fund balance
    (wallet) and equity, all recomputed from the balance table."""
    out = []
    groups = dict(tuple(balances.groupby("snapshot", sort=True))) if len(balances) else {}
    for s in meta:
        table = groups.get(s["snapshot"], balances.iloc[:0])
        leaves = balance_leaves(table, n_markets)
        fund_row = table[table["account"] == s["fund_account"]]
        fleaf = fund_leaf(balance_leaves(fund_row, n_markets)[0], s["fund_equity"])
        out.append({
            "snapshot": int(s["snapshot"]), "step": int(s["step"]), "time": float(s["time"]),
            "accounts": len(leaves), "balances_root": merkle_root(leaves).hex(),
            "fund_account": int(s["fund_account"]), "fund_root": merkle_root([fleaf]).hex(),
            "fund_balance": int(fund_row["wallet"].iloc[0]), "fund_equity": int(s["fund_equity"]),
        })
    return out


# ================================================================== event chain
def _canon_value(v):
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    return str(v)


def canonical(values) -> bytes:
    return json.dumps([_canon_value(v) for v in values], separators=(",", ":"), ensure_ascii=False).encode()


def chain_columns(events: pd.DataFrame) -> list[str]:
    """The columns hashed: every column of the event table except the chain's own."""
    return [c for c in events.columns if c not in ("prev_hash", "hash")]


def chain_hashes(events: pd.DataFrame, columns: list[str]) -> list[bytes]:
    """``hash_i`` for every row (see the module docstring)."""
    prev = GENESIS
    out = []
    cols = [events[c].tolist() for c in columns]
    for values in zip(*cols):
        prev = hashlib.sha256(prev + canonical(values)).digest()
        out.append(prev)
    return out


def chain(events: pd.DataFrame, step_seconds: float) -> pd.DataFrame:
    """The event table with ``time`` (scenario seconds), ``prev_hash`` and ``hash`` (hex)."""
    ev = events.copy()
    ev["time"] = ev["step"].to_numpy(dtype=np.int64) * float(step_seconds)
    hashes = chain_hashes(ev, chain_columns(ev))
    hexes = [h.hex() for h in hashes]
    ev["prev_hash"] = [GENESIS.hex()] + hexes[:-1] if hexes else []
    ev["hash"] = hexes
    return ev


def chain_head(chained: pd.DataFrame) -> str:
    return chained["hash"].iloc[-1] if len(chained) else GENESIS.hex()


def check_chain(chained: pd.DataFrame, head: str | None = None) -> tuple[int | None, str]:
    """First bad record of a chained event table, or ``(None, "")``.

    A record is bad when its ``prev_hash`` is not the previous record's hash, or its content
    does not hash to its ``hash``; the recomputed head must equal ``head`` (the published one)
    when given, which also catches a rewritten chain, a dropped or an appended record."""
    cols = chain_columns(chained)
    recomputed = chain_hashes(chained, cols)
    prev = GENESIS.hex()
    stored_prev = chained["prev_hash"].tolist()
    stored = chained["hash"].tolist()
    for i, h in enumerate(recomputed):
        if stored_prev[i] != prev:
            return i, f"its prev_hash {stored_prev[i][:16]}... is not the previous record's hash {prev[:16]}..."
        if h.hex() != stored[i]:
            return i, f"its content hashes to {h.hex()[:16]}..., the record says {str(stored[i])[:16]}..."
        prev = stored[i]
    if head is not None and prev != head:
        n = len(recomputed)
        return max(n - 1, 0), f"the chain ends at {prev[:16]}... after {n} records, the published head is {head[:16]}..."
    return None, ""
