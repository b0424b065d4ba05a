"""``perpstress calibrate``: search a parameter space for the scenario that best matches real
aggregates (``simulator.experiments.calibrate``), and ``perpstress fit``: the fit table of a
scenario as it is (a user's own path against their own aggregates)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from simulator.cli._common import parse_set


def _figure(fit, runs, targets_path, out: Path) -> Path:
    from simulator.figures.calibration import save_fit_figure
    from simulator.world.targets import load_targets

    return save_fit_figure(fit, runs, load_targets(targets_path).keys(), out / "fit.png")


def cmd_calibrate(args) -> int:
    from simulator.experiments.calibrate import calibrate, format_fit
    from simulator.world.targets import TargetsError  # pandas: imported only when a command runs

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = Path(args.out) if args.out else Path("results") / f"calibrate-{Path(args.file).stem}-{stamp}"
    print(f"calibrating {args.file} against {args.targets} over {args.params} -> {out}")
    try:
        res = calibrate(args.file, args.targets, args.params, out, executor=args.executor, workers=args.workers,
                        scheduler=args.scheduler, overrides=parse_set(args.set), progress=sys.stderr.isatty())
    except TargetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are kept; re-run the same command to resume ({out})", file=sys.stderr)
        return 130
    png = _figure(res.fit, res.best_results, args.targets, out)
    print("best parameters:")
    for k, v in res.best_params.items():
        print(f"  {k} = {v}")
    print()
    print(format_fit(res.fit))
    print(f"\nwritten: {out / 'best_params.yaml'}, {out / 'fit.csv'}, {out / 'fit.md'}, {png}, {out / 'trials.csv'}")
    return 0 if bool(res.fit["within"].all()) else 1


def cmd_fit(args) -> int:
    from simulator.experiments.calibrate import evaluate, format_fit
    from simulator.experiments.batch import load_results
    from simulator.world.targets import TargetsError

    out = Path(args.out) if args.out else Path("results") / f"fit-{Path(args.file).stem}"
    try:
        fit = evaluate(args.file, args.targets, out, runs=args.runs, seed=args.seed, overrides=parse_set(args.set),
                       executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                       progress=sys.stderr.isatty())
    except TargetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = load_results(out)
    png = _figure(fit, runs[runs["status"] == "ok"], args.targets, out)
    print(format_fit(fit))
    print(f"\nwritten: {out / 'fit.csv'}, {out / 'fit.md'}, {png}")
    return 0 if bool(fit["within"].all()) else 1


def _common(p) -> None:
    p.add_argument("file", help="scenario YAML")
    p.add_argument("--targets", required=True, metavar="FILE", help="targets YAML (see scenarios/targets/)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a scenario field")
    p.add_argument("--executor", choices=("process", "serial", "dask"), default="process")
    p.add_argument("--workers", type=int, default=None, help="default: number of cores")
    p.add_argument("--scheduler", default=None, help="dask scheduler address tcp://HOST:PORT")
    p.add_argument("--out", default=None)


def add_commands(sub) -> None:
    c = sub.add_parser("calibrate", help="fit scenario parameters to real aggregates (resumable)")
    _common(c)
    c.add_argument("--params", required=True, metavar="PARAMS.yaml", help="parameter space and search settings")
    c.set_defaults(func=_dask_address(cmd_calibrate))

    f = sub.add_parser("fit", help="fit table of a scenario as it is against a targets file")
    _common(f)
    f.add_argument("--runs", type=int, default=8)
    f.add_argument("--seed", type=int, default=None)
    f.set_defaults(func=_dask_address(cmd_fit))


def _dask_address(fn):
    def wrapped(args):
        if args.scheduler and args.executor != "dask":
            args.executor = "dask"
        return fn(args)

    return wrapped
