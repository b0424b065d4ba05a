"""``perpstress batch`` and ``perpstress compare``: Monte Carlo runs of every design, compared.

A batch runs ``--runs N`` paths of every design (the scenario's ``designs:``, design files and
bundled presets picked on the command line) in every sweep cell. Run ``i`` of every design
shares its random numbers (common random numbers), so ``compare`` can pair them.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from simulator.cli._common import parse_set
from simulator.world.scenario import ScenarioError, apply_overrides, validate


def cmd_batch(args) -> int:
    from simulator.experiments.batch import (
        ManifestMismatchError,
        WorkerLostError,
        batch_scenario,
        expand_grid,
        load_manifest,
        plan_tasks,
        run_batch,
        scenario_run_fn,
    )
    from simulator.experiments.compare import format_table, write_compare

    if args.resume:
        out = Path(args.resume)
        manifest = load_manifest(out)
        data = manifest["scenario"]
        names = manifest["designs"]
        cells = [c["params"] for c in manifest["cells"]]
        tasks = plan_tasks(manifest["n_runs"], names, cells, manifest["seed"])
    else:
        if args.file is None:
            raise ScenarioError("batch: give a scenario FILE, or --resume FOLDER")
        if args.runs is None or args.runs < 1:
            raise ScenarioError("batch: --runs N must be a positive number of paths per design")
        data, names = batch_scenario(
            args.file, args.designs.split(",") if args.designs else None, args.design_file or [],
            args.preset or [], parse_set(args.set),
        )
        seed = data["seed"] if args.seed is None else args.seed
        cells = expand_grid(data.get("sweep") or {})
        for cell in cells:  # every sweep cell must be a valid scenario before anything runs
            validate(apply_overrides(data, cell), f"{args.file} (sweep cell {cell})")
        tasks = plan_tasks(args.runs, names, cells, seed)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        out = Path(args.out) if args.out else Path("results") / f"{data['name']}-batch-{stamp}"
    print(f"{data['name']}: {len(tasks)} runs ({len(names)} designs: {', '.join(names)}) -> {out}")
    try:
        report = run_batch(
            data, scenario_run_fn, tasks, out, executor=args.executor, workers=args.workers,
            scheduler=args.scheduler, keep_series=args.keep_series, progress=sys.stderr.isatty(),
            resume=bool(args.resume),
        )
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are kept; continue with  perpstress batch --resume {out}", file=sys.stderr)
        return 130
    except WorkerLostError as exc:
        print(f"error: {exc}\ncontinue with  perpstress batch --resume {out}", file=sys.stderr)
        return 3
    except (ManifestMismatchError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if report.ok:
        table, probs = write_compare(out)
        print(format_table(probs))
    return report.exit_code


def cmd_compare(args) -> int:
    from simulator.experiments.compare import format_table, write_compare

    metrics = args.metrics.split(",") if args.metrics else None
    table, probs = write_compare(Path(args.folder), baseline=args.baseline, metrics=metrics, n_boot=args.n_boot)
    if table.empty:
        print("no finished runs to compare", file=sys.stderr)
        return 1
    print(format_table(probs))
    print()
    print(format_table(table))
    print(f"\nwritten: {Path(args.folder) / 'compare.csv'}, {Path(args.folder) / 'probabilities.csv'}")
    return 0


def add_commands(sub) -> None:
    b = sub.add_parser("batch", help="Monte Carlo runs of every design (common random numbers)")
    b.add_argument("file", nargs="?")
    b.add_argument("--runs", type=int, help="paths per design and sweep cell")
    b.add_argument("--designs", help="comma-separated subset of the designs to run")
    b.add_argument("--design-file", action="append", metavar="FILE", help="add a design from a YAML file")
    b.add_argument("--preset", action="append", metavar="NAME", help="add a bundled venue preset as a design")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a scenario field")
    b.add_argument("--executor", choices=("process", "serial", "dask"), default="process")
    b.add_argument("--workers", type=int, default=None, help="default: number of cores")
    b.add_argument("--scheduler", default=None, help="dask scheduler address tcp://HOST:PORT")
    b.add_argument("--keep-series", type=int, default=5, help="keep per-step series of the first K runs")
    b.add_argument("--out", default=None)
    b.add_argument("--resume", metavar="FOLDER", help="run only what is missing in a batch folder")
    b.set_defaults(func=_with_dask_address(cmd_batch))

    c = sub.add_parser("compare", help="compare designs across a batch folder")
    c.add_argument("folder")
    c.add_argument("--baseline", default=None, help="design to pair against (default: the first)")
    c.add_argument("--metrics", default=None, help="comma-separated metrics (default: all)")
    c.add_argument("--n-boot", type=int, default=2000)
    c.set_defaults(func=cmd_compare)


def _with_dask_address(fn):
    def wrapped(args):
        if args.scheduler and args.executor != "dask":
            args.executor = "dask"  # an address implies the dask executor
        return fn(args)

    return wrapped
