"""``perpstress batch`` and ``perpstress compare``: Monte Carlo runs of every design, compared.

A batch runs ``--runs N`` paths of every design (the scenario's ``designs:``, design files and
bundled presets picked on the command line) in every sweep cell. Run ``i`` of every design
shares its random numbers (common random numbers), so ``compare`` can pair them.
"""

from __future__ import annotations

import errno
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from simulator.cli._common import CliError, non_negative_int, parse_set, positive_int, resolve_scenario, seed_int

SCHEDULER_TIMEOUT_S = 5.0


def _check_scheduler(address: str) -> None:
    """Fail fast (a few seconds, before anything is written) on a scheduler we cannot reach."""
    url = urlparse(address if "://" in address else f"tcp://{address}")
    if url.scheme not in ("tcp", "tls") or not url.hostname or not url.port:
        raise CliError(f"--scheduler {address!r}: give tcp://HOST:PORT")
    try:
        with socket.create_connection((url.hostname, url.port), timeout=SCHEDULER_TIMEOUT_S):
            pass
    except OSError as exc:
        raise CliError(f"--scheduler {address}: cannot connect ({exc.strerror or exc}); is the Dask scheduler running?") from None


def _open_batch_folder(folder: str, what: str) -> Path:
    from simulator.experiments.batch import MANIFEST, load_manifest

    out = Path(folder)
    if not out.exists():
        raise CliError(f"{what} {folder}: no such folder")
    if not out.is_dir():
        raise CliError(f"{what} {folder}: not a folder")
    if not (out / MANIFEST).exists():
        raise CliError(f"{what} {folder}: not a batch folder (no {MANIFEST}; perpstress batch --out writes one)")
    try:
        manifest = load_manifest(out)
        for key in ("scenario", "designs", "cells", "n_runs", "seed"):
            manifest[key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"{what} {folder}: {MANIFEST} is unreadable or truncated ({type(exc).__name__}); "
                       "the batch cannot be continued from it") from None
    return out


def cmd_batch(args) -> int:
    from simulator.experiments.batch import (
        ManifestMismatchError,
        WorkerLostError,
        batch_scenario,
        load_manifest,
        plan_tasks,
        run_batch,
        scenario_run_fn,
    )
    from simulator.experiments.batch.store import BatchLockedError
    from simulator.experiments.compare import format_table, write_compare
    from simulator.world.scenario import validate_sweep

    if args.resume:
        given = [name for name, value in (("FILE", args.file), ("--runs", args.runs), ("--designs", args.designs),
                                          ("--design-file", args.design_file), ("--preset", args.preset),
                                          ("--seed", args.seed), ("--set", args.set), ("--out", args.out)) if value]
        if given:
            raise CliError(f"--resume continues the batch exactly as its manifest records it; drop {', '.join(given)} "
                           "(or start a new batch with --out)")
        out = _open_batch_folder(args.resume, "--resume")
        manifest = load_manifest(out)
        data = manifest["scenario"]
        names = manifest["designs"]
        cells = [c["params"] for c in manifest["cells"]]
        tasks = plan_tasks(manifest["n_runs"], names, cells, manifest["seed"])
    else:
        if args.file is None:
            raise CliError("batch: give a scenario FILE (or a bundled scenario name), or --resume FOLDER")
        if args.runs is None:
            raise CliError("batch: --runs N is required (paths per design and sweep cell)")
        path = resolve_scenario(args.file)
        data, names = batch_scenario(
            path, args.designs.split(",") if args.designs else None, args.design_file or [],
            args.preset or [], parse_set(args.set),
        )
        seed = data["seed"] if args.seed is None else args.seed
        cells = validate_sweep(data, str(args.file))  # every sweep cell valid before anything runs
        tasks = plan_tasks(args.runs, names, cells, seed)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        out = Path(args.out) if args.out else Path("results") / f"{data['name']}-batch-{stamp}"
        if out.exists() and not out.is_dir():
            raise CliError(f"--out {out}: exists and is a file, not a folder")
        if (out / "manifest.json").exists():
            raise CliError(f"--out {out}: already holds a batch; continue it with  perpstress batch --resume {out}")
    if args.scheduler:
        _check_scheduler(args.scheduler)
    print(f"{data['name']}: {len(tasks)} runs ({len(names)} designs: {', '.join(names)}) -> {out}")
    try:
        report = run_batch(
            data, scenario_run_fn, tasks, out, executor=args.executor, workers=args.workers,
            scheduler=args.scheduler, keep_series=args.keep_series, progress=not args.quiet,
            resume=bool(args.resume),
        )
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are kept; continue with  perpstress batch --resume {out}", file=sys.stderr)
        return 130
    except WorkerLostError as exc:
        print(f"error: {exc} Continue with  perpstress batch --resume {out}", file=sys.stderr)
        return 3
    except (ManifestMismatchError, FileExistsError, BatchLockedError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"error: disk full writing {out} ({exc.strerror}); finished runs are kept: free space, then "
                  f"continue with  perpstress batch --resume {out}", file=sys.stderr)
            return 3
        raise
    print(report.summary())
    if report.ok + report.skipped:
        table, probs = write_compare(out)
        print(format_table(probs))
    return report.exit_code


def cmd_compare(args) -> int:
    from simulator.experiments.batch.store import verify_runs
    from simulator.experiments.compare import format_table, write_compare

    folder = _open_batch_folder(args.folder, "compare")
    _, problems = verify_runs(folder)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CliError(f"{problems[0]}{more}; re-run the affected runs with  perpstress batch --resume {folder}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        table, probs = write_compare(folder, baseline=args.baseline, metrics=metrics, n_boot=args.n_boot)
    except ValueError as exc:  # unknown baseline or metric: raised before anything is written
        raise CliError(f"compare {folder}: {exc}") from None
    if table.empty:
        print("no finished runs to compare", file=sys.stderr)
        return 1
    print(format_table(probs))
    print()
    print(format_table(table))
    print(f"\nwritten: {folder / 'compare.csv'}, {folder / 'probabilities.csv'}")
    return 0


def add_commands(sub) -> None:
    from simulator.world.bundled import preset_names

    try:
        presets = ", ".join(preset_names())
    except Exception:  # pragma: no cover - a broken installation still gets help
        presets = "(none found)"
    b = sub.add_parser("batch", help="Monte Carlo runs of every design (common random numbers)")
    b.add_argument("file", nargs="?", metavar="SCENARIO", help="a scenario YAML file or a bundled scenario name")
    b.add_argument("--runs", type=positive_int, help="paths per design and sweep cell, >= 1 (required without --resume)")
    b.add_argument("--designs", help="comma-separated subset of the designs to run (default: all)")
    b.add_argument("--design-file", action="append", metavar="FILE", help="add a design from a YAML file (repeatable)")
    b.add_argument("--preset", action="append", metavar="NAME",
                   help=f"add a bundled venue preset as a design (repeatable): {presets}")
    b.add_argument("--seed", type=seed_int, default=None, help="batch seed, >= 0 (default: the scenario's seed)")
    b.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a scenario field (repeatable)")
    b.add_argument("--executor", choices=("process", "serial", "dask"), default="process",
                   help="where runs execute (default: process)")
    b.add_argument("--workers", type=positive_int, default=None, help="pool size, >= 1 (default: number of cores)")
    b.add_argument("--scheduler", default=None, help="dask scheduler address tcp://HOST:PORT (default: none; "
                   "implies --executor dask)")
    b.add_argument("--keep-series", type=non_negative_int, default=5,
                   help="keep per-step series of the first K runs, >= 0 (default: 5)")
    b.add_argument("--out", default=None, help="batch folder (default: results/NAME-batch-TIMESTAMP)")
    b.add_argument("--resume", metavar="FOLDER", help="run only what is missing or damaged in a batch folder")
    b.add_argument("--quiet", action="store_true", help="no progress bar or progress lines (default: shown on stderr)")
    b.set_defaults(func=_with_dask_address(cmd_batch))

    c = sub.add_parser("compare", help="compare designs across a batch folder",
                       epilog=f"metrics (every summary metric of a run; the main ones): {', '.join(METRICS)}")
    c.add_argument("folder", help="a batch folder (perpstress batch --out)")
    c.add_argument("--baseline", default=None, help="design to pair against (default: the first design)")
    c.add_argument("--metrics", default=None, help="comma-separated metrics (default: all; listed below)")
    c.add_argument("--n-boot", type=positive_int, default=2000, help="bootstrap replicates, >= 1 (default: 2000)")
    c.set_defaults(func=cmd_compare)


METRICS = (
    "adl_accounts", "adl_notional", "adl_pnl_taken", "conservation_residual_max_abs", "covered_adl",
    "covered_backstop", "covered_insurance_fund", "covered_socialize", "deficit_total", "fund_depleted", "fund_end",
    "fund_min", "fund_start", "index_min", "last_min", "liq_notional_adl", "liq_notional_backstop",
    "liq_notional_book", "liq_notional_insurance_fund", "liquidation_count", "liquidation_notional", "mark_min",
    "max_cascade_depth", "max_drawdown", "overshoot", "socialize_pending", "socialized_accounts", "socialized_total",
    "steps", "venue_loss",
)


def _with_dask_address(fn):
    def wrapped(args):
        if args.scheduler and args.executor != "dask":
            args.executor = "dask"  # an address implies the dask executor
        return fn(args)

    return wrapped
