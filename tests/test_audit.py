"""The audit trail (issue 11, item 5): Merkle tree layout, inclusion proofs, the event hash
chain, balance snapshots, and ``perpstress verify`` on a real run folder."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from golden_runs import ROOT
from simulator.cli import main
from simulator.experiments import run
from simulator.experiments.audit_trail import AuditError, account_proof, verify_folder
from simulator.venue import audit


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def L(d: bytes) -> bytes:  # leaf hash, written out
    return H(b"\x00" + d)


def N(a: bytes, b: bytes) -> bytes:  # node hash, written out
    return H(b"\x01" + a + b)


def rfc6962(leaves):
    """RFC 6962 section 2.1 MTH, recursively: split at the largest power of two below n."""
    n = len(leaves)
    if n == 0:
        return H(b"")
    if n == 1:
        return L(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return N(rfc6962(leaves[:k]), rfc6962(leaves[k:]))


D = [b"a", b"b", b"c", b"d", b"e"]


def test_merkle_root_by_hand():
    a, b, c, d, e = (L(x) for x in D)
    assert audit.merkle_root(D[:1]) == a == bytes.fromhex(
        "022a6979e6dab7aa5ae4c3e5e45f7e977112a7e63593820dbec1ec738a24f93c")
    assert audit.merkle_root(D[:2]) == N(a, b)
    assert audit.merkle_root(D[:3]) == N(N(a, b), c)  # c promoted, not duplicated
    assert audit.merkle_root(D[:3]) != N(N(a, b), N(c, c))
    assert audit.merkle_root(D) == N(N(N(a, b), N(c, d)), e)
    assert audit.merkle_root([]) == H(b"")


def test_layout_is_rfc6962_for_every_size():
    leaves = [bytes([i]) * (i % 4 + 1) for i in range(40)]
    for n in range(41):
        assert audit.merkle_root(leaves[:n]) == rfc6962(leaves[:n]), n


def test_published_rfc6962_vectors():
    # Mozilla's RFC 6962 test vectors (mozharness test_mozilla_merkle.py): two leaves and their node
    d0 = bytes.fromhex("fbc459361fc111024c6d1fd83d23a9ff")
    d1 = bytes.fromhex("ae3a44925afec860451cd8658b3cadde")
    assert audit.leaf_hash(d0).hex() == "5cb551f87797381a24a5359a986e2cef25b1f2113b387197fe48e8babc9ad5c7"
    assert audit.leaf_hash(d1).hex() == "9899dc0be00306bda2a8e69cec32525ca6244f132479bcf840d8c1bc8bdfbff2"
    assert audit.merkle_root([d0, d1]).hex() == "06447a7baa079cb0b4b6119d0f575bec508915403fdc30923eba982b63759805"


def test_inclusion_proofs_verify_and_fail_on_a_changed_leaf():
    leaves = [f"leaf{i}".encode() for i in range(9)]
    for n in (1, 2, 3, 5, 8, 9):
        root = audit.merkle_root(leaves[:n]).hex()
        for i in range(n):
            p = audit.inclusion_proof(leaves[:n], i)
            assert p["root"] == root and p["tree_size"] == n
            assert audit.verify_proof(p), (n, i)
            bad = dict(p, leaf=b"leafX".hex())
            assert not audit.verify_proof(bad)
            if p["path"]:
                flipped = [dict(s) for s in p["path"]]
                flipped[0]["side"] = "left" if flipped[0]["side"] == "right" else "right"
                assert not audit.verify_proof(dict(p, path=flipped))
    # five leaves, leaf e (index 4): e is promoted twice, its only sibling is the root's left half
    p = audit.inclusion_proof(D, 4)
    a, b, c, d, _ = (L(x) for x in D)
    assert p["path"] == [{"side": "left", "hash": N(N(a, b), N(c, d)).hex()}]
    p = audit.inclusion_proof(D, 2)
    assert p["path"] == [{"side": "right", "hash": d.hex()}, {"side": "left", "hash": N(a, b).hex()},
                         {"side": "right", "hash": L(b"e").hex()}]


def test_balance_leaf_encoding():
    leaf = audit.balance_leaf(3, -2, [5, -7], [100, -1])
    assert len(leaf) == 8 * 6
    assert leaf[:8] == (3).to_bytes(8, "big")
    assert leaf[8:16] == bytes.fromhex("fffffffffffffffe")  # -2, two's complement big-endian
    assert leaf[16:24] == (5).to_bytes(8, "big") and leaf[40:] == bytes.fromhex("ff" * 8)
    table = pd.DataFrame({"account": [1, 0], "wallet": [9, -2], "qty_0": [1, 5], "cost_0": [2, 100]})
    assert audit.balance_leaves(table, 1) == [audit.balance_leaf(0, -2, [5], [100]), audit.balance_leaf(1, 9, [1], [2])]


def test_event_chain_links_records_and_stamps_scenario_time():
    ev = pd.DataFrame({"step": [0, 4, 4], "kind": ["deficit", "adl", "adl"], "amount": [5, -1, 2],
                       "price": [np.nan, 1.5, 0.1]})
    ch = audit.chain(ev, step_seconds=2.5)
    assert ch["time"].tolist() == [0.0, 10.0, 10.0]
    assert ch["prev_hash"].iloc[0] == "00" * 32
    assert ch["prev_hash"].tolist()[1:] == ch["hash"].tolist()[:-1]
    first = hashlib.sha256(bytes(32) + b'[0,"deficit",5,null,0.0]').hexdigest()
    assert ch["hash"].iloc[0] == first
    assert audit.check_chain(ch, audit.chain_head(ch)) == (None, "")
    bad = ch.copy()
    bad.loc[1, "amount"] = 0
    assert audit.check_chain(bad, audit.chain_head(ch))[0] == 1
    assert audit.check_chain(ch.iloc[:2], audit.chain_head(ch))[0] == 1  # a dropped last record


def test_snapshot_cadence_in_scenario_seconds():
    led = SimpleNamespace(wallet=np.array([5, 7]), qty=np.zeros((2, 1), np.int64), cost=np.zeros((2, 1), np.int64))
    venue = SimpleNamespace(ledger=led, insurance_fund=1, equity=lambda a: led.wallet[a])
    rec = audit.SnapshotRecorder(step_seconds=7.0, interval_seconds=60.0)
    for t in range(30):
        rec.maybe_record(t, venue)
    rec.finish(29, venue)
    # the first step at or after 0, 60, 120, 180 s: times 0, 63, 126, 182 (steps 0, 9, 18, 26), then the last
    assert [r["step"] for r in rec.rows] == [0, 9, 18, 26, 29]
    led.wallet[0] = 6  # the recorder copied the arrays: a later change is not in a snapshot
    assert rec.balances_frame()["wallet"].tolist()[:2] == [5, 7]


# ------------------------------------------------------------------ a real run folder
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    sc = run.load_scenario(ROOT / "scenarios/cascade.yaml", {"agents.traders.count": 50, "steps": 400})
    result = run.run_scenario(sc, seed=1)
    return run.write_run(result, tmp_path_factory.mktemp("run") / "cascade"), result


def test_real_run_verifies(folder, capsys):
    path, result = folder
    checked = verify_folder(path)
    assert checked["records"] == len(result.events) > 0
    doc = json.loads((path / "audit.json").read_text())
    # 400 steps of 1 s, every 60 s: steps 0, 60, ..., 360, and the last step
    assert [s["step"] for s in doc["snapshots"]] == [0, 60, 120, 180, 240, 300, 360, 399]
    # 50 traders, 3 makers, 2 arbitrageurs and the venue's 5 rows (fee pool, fund, vault, loss pool, engine)
    assert all(s["accounts"] == 60 for s in doc["snapshots"])
    ev = pd.read_parquet(path / "events.parquet")
    assert (ev["time"] == ev["step"] * 1.0).all()
    assert main(["verify", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_inclusion_proof_of_an_account(folder, capsys):
    path, _ = folder
    snaps = pd.read_parquet(path / "snapshots.parquet")
    fund = json.loads((path / "audit.json").read_text())["snapshots"][3]["fund_account"]
    p = account_proof(path, fund, 3)
    row = snaps[(snaps.snapshot == 3) & (snaps.account == fund)].iloc[0]
    assert p["verified"] and p["balance"]["wallet"] == row["wallet"]
    assert bytes.fromhex(p["leaf"]) == audit.balance_leaf(fund, row["wallet"], [row["qty_0"]], [row["cost_0"]])
    assert main(["verify", str(path), "--account", "12", "--snapshot", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["account"] == 12 and out["verified"] and audit.verify_proof(out)
    out["balance"]["wallet"] += 1  # the owner claims another balance: its leaf no longer proves
    out["leaf"] = audit.balance_leaf(12, out["balance"]["wallet"], [out["balance"]["qty_0"]], [out["balance"]["cost_0"]]).hex()
    assert not audit.verify_proof(out)


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_one_changed_event_value_fails_naming_the_record(folder, tmp_path, capsys):
    path, _ = folder
    bad = _copy(path, tmp_path / "bad")
    ev = pd.read_parquet(bad / "events.parquet")
    k = len(ev) // 2
    ev.loc[k, "amount"] += 1
    ev.to_parquet(bad / "events.parquet", index=False)
    with pytest.raises(AuditError, match=f"record {k} "):
        verify_folder(bad)
    assert main(["verify", str(bad)]) == 1
    assert f"record {k} " in capsys.readouterr().err


def test_a_rewritten_chain_or_changed_balance_fails(folder, tmp_path):
    path, _ = folder
    # rewrite a value and re-chain every hash after it: only the published head catches it
    bad = _copy(path, tmp_path / "rechained")
    ev = pd.read_parquet(bad / "events.parquet")
    ev.loc[0, "amount"] += 1
    audit.chain(ev.drop(columns=["time", "prev_hash", "hash"]), 1.0).to_parquet(bad / "events.parquet", index=False)
    with pytest.raises(AuditError, match="published head"):
        verify_folder(bad)
    # one wallet in one snapshot
    bad = _copy(path, tmp_path / "balance")
    snaps = pd.read_parquet(bad / "snapshots.parquet")
    snaps.loc[snaps.index[-3], "wallet"] -= 1
    snaps.to_parquet(bad / "snapshots.parquet", index=False)
    last = int(snaps["snapshot"].iloc[-3])
    with pytest.raises(AuditError, match=f"snapshot {last} .*balances_root"):
        verify_folder(bad)
