"""``perpstress verify RUN_FOLDER``: recompute the event hash chain and the published Merkle roots
of a run folder; ``--account A --snapshot K`` prints and checks one inclusion proof."""

from __future__ import annotations

import json
import sys


def cmd_verify(args) -> int:
    from simulator.experiments.audit_trail import AuditError, account_proof, verify_folder

    try:
        checked = verify_folder(args.folder)
    except AuditError as exc:
        print(f"verify: FAILED: {args.folder}: {exc}", file=sys.stderr)
        return 1
    proof_wanted = args.account is not None or args.snapshot is not None
    print(f"{args.folder}: ok: {checked['records']} event records chain to head {checked['head']}, "
          f"{checked['snapshots']} snapshot roots recomputed",
          file=sys.stderr if proof_wanted else sys.stdout)  # stdout: the proof's JSON only
    if not proof_wanted:
        return 0
    if args.account is None or args.snapshot is None:
        print("error: --account and --snapshot go together", file=sys.stderr)
        return 2
    try:
        proof = account_proof(args.folder, args.account, args.snapshot)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(proof, indent=2))
    if not proof["verified"]:
        print(f"verify: FAILED: the proof of account {args.account} does not reach the published root", file=sys.stderr)
        return 1
    return 0


def add_commands(sub) -> None:
    v = sub.add_parser("verify", help="check a run folder's event hash chain and balance Merkle roots")
    v.add_argument("folder", help="a run folder written by `perpstress run`")
    v.add_argument("--account", type=int, default=None, help="print the inclusion proof of this account")
    v.add_argument("--snapshot", type=int, default=None, help="... in this snapshot (0-based, see audit.json)")
    v.set_defaults(func=cmd_verify)
