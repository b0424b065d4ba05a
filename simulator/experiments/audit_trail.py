"""The run folder's audit files, and their verification (``perpstress verify``).

``write_run`` (``experiments/run.py``) writes ``events.parquet`` through ``chained_events``
(every record gets ``time``, ``prev_hash`` and ``hash``; see ``simulator.venue.audit``) and
then calls ``write_extras``, which adds

* ``snapshots.parquet``: the balance table of every snapshot (``snapshot, step, time,
  account, wallet, qty_<m>, cost_<m>``; ledger integers), from which every leaf is recomputed;
* ``audit.json``: the chain's head and record count, and per snapshot its step, time, number
  of accounts, balances root, fund root, fund account, balance and equity (the "published"
  values a verifier checks against), plus the layout it was built with;
* ``who_paid.csv``: ``simulator.world.who_paid.who_paid`` of the run.

``verify_folder`` recomputes the chain and every root; ``account_proof`` builds and checks an
inclusion proof of one account's balance leaf in one snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from simulator.venue import audit

AUDIT_VERSION = 1
LAYOUT = {
    "hash": "sha256",
    "tree": "RFC 6962 Merkle Tree Hash: leaf sha256(0x00||leaf), node sha256(0x01||left||right), "
            "odd last node promoted unchanged; empty tree sha256('')",
    "balance_leaf": "int64 big-endian: account, wallet, then qty_m, cost_m for each market m "
                    "(cash in 1e-6 USD units, qty in lots); leaves in account order",
    "fund_leaf": "b'insurance_fund' || balance_leaf(fund account) || equity_at_mark (int64 big-endian); "
                 "fund_root = sha256(0x00||fund_leaf)",
    "event_chain": "hash_i = sha256(prev_hash_i || canonical_json(row_i)); prev_hash_0 = 32 zero bytes; "
                   "canonical_json = compact JSON array of the row's values in 'columns' order "
                   "(NaN as null); time = step * step_seconds",
}


def chained_events(result) -> pd.DataFrame:
    return audit.chain(result.events, result.scenario.step_seconds)


def write_extras(result, out_dir: Path, events: pd.DataFrame, atomic_write) -> None:
    """``snapshots.parquet``, ``audit.json`` and ``who_paid.csv`` (see the module docstring)."""
    out_dir = Path(out_dir)
    rec = result.extras.get("audit")
    n_markets = len(result.scenario.markets)
    doc = {
        "version": AUDIT_VERSION, "layout": LAYOUT, "step_seconds": result.scenario.step_seconds,
        "n_markets": n_markets,
        "events": {"records": len(events), "columns": audit.chain_columns(events), "genesis": audit.GENESIS.hex(),
                   "head": audit.chain_head(events)},
        "interval_seconds": None, "snapshots": [],
    }
    if rec is not None and rec.rows:
        balances = rec.balances_frame()
        doc["interval_seconds"] = rec.interval_seconds
        doc["snapshots"] = audit.snapshot_roots(balances, rec.snapshot_meta(), n_markets)
        atomic_write(out_dir / "snapshots.parquet", lambda p: balances.to_parquet(p, index=False))
    atomic_write(out_dir / "audit.json", lambda p: Path(p).write_text(json.dumps(doc, indent=2) + "\n"))
    table = result.extras.get("who_paid")
    if table is not None:
        atomic_write(out_dir / "who_paid.csv", lambda p: table.to_csv(p, index=False))


class AuditError(Exception):
    """The folder does not verify; the message says where."""


def _load(folder: Path) -> tuple[dict, pd.DataFrame]:
    folder = Path(folder)
    for name in ("audit.json", "events.parquet"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name} not found (written by `perpstress run` since the audit trail)")
    return json.loads((folder / "audit.json").read_text()), pd.read_parquet(folder / "events.parquet")


def _balances(folder: Path) -> pd.DataFrame:
    f = Path(folder) / "snapshots.parquet"
    return pd.read_parquet(f) if f.exists() else pd.DataFrame(columns=["snapshot", "account"])


def verify_folder(folder: Path) -> dict:
    """Recompute the event chain and every snapshot's roots; raise ``AuditError`` naming the
    first bad record or snapshot, else return what was checked."""
    doc, events = _load(folder)
    ev = doc["events"]
    if list(events.columns[: len(ev["columns"])]) != ev["columns"] or "hash" not in events:
        raise AuditError(f"events.parquet columns {list(events.columns)} are not the published {ev['columns']}")
    bad, why = audit.check_chain(events, ev["head"])
    if bad is None and len(events) != ev["records"]:
        bad, why = len(events) - 1, f"the file holds {len(events)} records, {ev['records']} were published"
    if bad is not None:
        row = events.iloc[bad] if len(events) else None
        where = "" if row is None else f" (step {row['step']}, round {row['round']}, kind {row['kind']}, account {row['account']})"
        raise AuditError(f"events.parquet: record {bad}{where} fails the hash chain: {why}")
    balances = _balances(folder)
    published = doc["snapshots"]
    meta = [{k: s[k] for k in ("snapshot", "step", "time", "fund_account", "fund_equity")} for s in published]
    recomputed = audit.snapshot_roots(balances, meta, doc["n_markets"])
    for pub, got in zip(published, recomputed):
        for key in ("accounts", "balances_root", "fund_root", "fund_balance"):
            if pub[key] != got[key]:
                raise AuditError(f"snapshot {pub['snapshot']} (step {pub['step']}, t={pub['time']:g}s): "
                                 f"{key} recomputed from snapshots.parquet is {got[key]}, published {pub[key]}")
    return {"records": len(events), "head": ev["head"], "snapshots": len(published)}


def account_proof(folder: Path, account: int, snapshot: int) -> dict:
    """Inclusion proof of ``account``'s balance leaf in snapshot ``snapshot``, with the
    decoded balance; ``verified`` says whether it recomputes the *published* root."""
    doc = json.loads((Path(folder) / "audit.json").read_text())
    snaps = doc["snapshots"]
    if not 0 <= snapshot < len(snaps):
        raise AuditError(f"snapshot {snapshot} not in 0..{len(snaps) - 1}")
    table = _balances(folder)
    table = table[table["snapshot"] == snapshot].sort_values("account", kind="stable")
    accounts = table["account"].tolist()
    if account not in accounts:
        raise AuditError(f"account {account} not in snapshot {snapshot} ({len(accounts)} accounts)")
    n = doc["n_markets"]
    proof = audit.inclusion_proof(audit.balance_leaves(table, n), accounts.index(account))
    row = table[table["account"] == account].iloc[0]
    proof.update({
        "snapshot": snapshot, "step": snaps[snapshot]["step"], "time": snaps[snapshot]["time"],
        "account": account,
        "balance": {"wallet": int(row["wallet"]), **{f"qty_{m}": int(row[f"qty_{m}"]) for m in range(n)},
                    **{f"cost_{m}": int(row[f"cost_{m}"]) for m in range(n)}},
        "published_root": snaps[snapshot]["balances_root"],
    })
    proof["verified"] = audit.verify_proof(proof) and proof["root"] == proof["published_root"]
    return proof
