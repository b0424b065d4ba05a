"""Imported by the process pool's warm fork server (``scenario_run_fn.preload`` names it): runs
``scenario_run_fn``'s prepare hook there (the model's imports, the compiled kernels loaded), so
every worker forked from the server starts prepared and skips the hook. Importing this module
anywhere else does the same work in that process (~1.5 s).

A failing hook is left for the workers: each runs it again and records its error as the run's
(an exception here would kill the fork server, and with it every worker's start)."""

from __future__ import annotations

import os

from simulator.experiments.batch.executors import _prepare
from simulator.experiments.batch.scenario import scenario_run_fn

#: pid of the process whose import prepared the model (the warm server; ``None`` if the hook failed)
PREPARED_IN: int | None = None

try:
    _prepare(scenario_run_fn)
    PREPARED_IN = os.getpid()
except Exception:  # noqa: BLE001 - see the module docstring
    pass
