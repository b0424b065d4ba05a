"""``perpstress plot`` and ``perpstress report``: figures and an HTML report of a results folder.

A results folder is a run folder (``perpstress run --out DIR``) or a batch folder
(``perpstress batch --out DIR``); anything else is a ``FileNotFoundError`` that names what was
expected (``perpstress`` prints it and exits with 2).
"""

from __future__ import annotations

from pathlib import Path

KIND_CHOICES = ("timeline", "compare", "who-pays", "sweep", "all")


def cmd_plot(args) -> int:
    from simulator import figures as plots

    folder = plots.open_folder(args.folder)  # FileNotFoundError if neither a run nor a batch folder
    out = Path(args.out) if args.out else folder.path / "plots"
    written = plots.plot_all(folder, out, kinds=[args.kind], format=args.format, metric=args.metric, cell=args.cell,
                             steps=_steps(args.steps))
    if not written:
        print(f"{folder.path}: nothing to draw for --kind {args.kind}")
        return 1
    for p in written:
        print(p)
    return 0


def _steps(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        first, last = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--steps {text!r}: give FIRST:LAST, e.g. 250:600") from None
    if last < first:
        raise ValueError(f"--steps {text!r}: LAST is before FIRST")
    return first, last


def cmd_report(args) -> int:
    from simulator.figures.report import write_report

    path = write_report(args.folder, args.out, timelines=not args.no_timelines)
    print(f"report written to {path}")
    return 0


def _value_errors(fn):
    """A ``ValueError`` from plotting (a kind the folder cannot draw, an unknown metric) is a
    usage error: print it and exit 2, like a scenario error."""

    def wrapped(args) -> int:
        import sys

        try:
            return fn(args)
        except FileNotFoundError:
            raise
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    wrapped.__doc__ = fn.__doc__
    return wrapped


def add_commands(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="draw figures of a run or batch folder",
        description="Draw the figures of a run folder (timeline, who pays) or a batch folder (design comparison, "
        "who pays, sweep heatmap, timelines of the worst kept path).",
    )
    p.add_argument("folder", metavar="FOLDER", help="a run folder or a batch folder")
    p.add_argument("--kind", choices=KIND_CHOICES, default="all", help="which figure (default: all the folder supports)")
    p.add_argument("--format", choices=("png", "svg"), default="png")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write (default FOLDER/plots)")
    p.add_argument("--metric", default=None,
                   help="sweep heatmap metric: p_socialization (default), p_adl, p_fund_depletion, p_venue_loss, "
                        "or a metric column (its mean per cell)")
    p.add_argument("--cell", default=None, help="batch: one sweep cell id (default: all cells pooled)")
    p.add_argument("--steps", default=None, metavar="FIRST:LAST", help="timeline: show only these steps")
    p.set_defaults(func=_value_errors(cmd_plot))

    r = sub.add_parser("report", help="write one self-contained HTML report of a run or batch folder")
    r.add_argument("folder", metavar="FOLDER", help="a run folder or a batch folder")
    r.add_argument("--out", default=None, metavar="FILE", help="the HTML file (default FOLDER/report.html)")
    r.add_argument("--no-timelines", action="store_true", help="batch: leave out the per-design timelines")
    r.set_defaults(func=_value_errors(cmd_report))
