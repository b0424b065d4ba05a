"""The ``perpstress`` command line: one module per command group.

``run_cmd`` (validate, run, scenarios), ``batch_cmd`` (batch, compare), ``plot_cmd`` (plot,
report), ``verify_cmd`` (verify), ``calibrate_cmd`` (calibrate, fit) and ``_common`` (shared helpers). This package may import anything below it
(experiments, figures, world); the command modules import ``_common`` only, never this package
or each other, so there are no import cycles. ``main`` is the ``perpstress`` entry point.

Errors: a bad input (scenario, option, folder) prints one ``error: ...`` line per problem on
stderr and exits with 2 before any work; an interruption (Ctrl-C or SIGTERM) exits with 130. A
genuine bug is not hidden: it prints its traceback and exits with 1.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys

from simulator.cli import batch_cmd, calibrate_cmd, plot_cmd, run_cmd, verify_cmd
from simulator.world.scenario import ScenarioError

COMMAND_GROUPS = (run_cmd, batch_cmd, plot_cmd, verify_cmd, calibrate_cmd)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: perpstress run: argument --seed: ...`` (exit 2)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("perpstress")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="perpstress", description="Stress-test perpetual-futures venues.",
                epilog="perpstress scenarios lists the bundled scenarios and venue presets.")
    p.add_argument("--version", action="version", version=f"perpstress {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return p


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _error(message: str) -> int:
    lines = [" ".join(line.split()) for line in str(message).strip().splitlines() if line.strip()] or ["(no message)"]
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:  # SIGTERM behaves like Ctrl-C: finished work is kept, the pool is shut down
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    except (ValueError, OSError):  # not the main thread
        old_term = None
    try:
        return args.func(args)
    except ScenarioError as exc:  # includes CliError: bad scenario, bad option
        return _error(str(exc))
    except (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        return _error(str(exc))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _error(f"disk full: {exc.strerror} ({exc.filename or 'writing results'}); nothing was kept from "
                          "this command; free space and run it again")
        raise
    except RecursionError:
        return _error("input nested too deeply")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
