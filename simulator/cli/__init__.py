"""The ``perpstress`` command line: one module per command group.

``run_cmd`` (validate, run), ``batch_cmd`` (batch, compare), ``plot_cmd`` (plot, report),
``calibrate_cmd`` (calibrate, fit) and
``_common`` (shared helpers). This package may import anything below it (experiments, figures,
world); the command modules import ``_common`` only, never this package or each other, so
there are no import cycles. ``main`` is the ``perpstress`` entry point.
"""

from __future__ import annotations

import argparse
import sys

from simulator.cli import batch_cmd, calibrate_cmd, plot_cmd, run_cmd
from simulator.world.scenario import ScenarioError

COMMAND_GROUPS = (run_cmd, batch_cmd, plot_cmd, calibrate_cmd)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perpstress", description="Stress-test perpetual-futures venues.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
