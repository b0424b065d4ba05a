"""Monte Carlo batches: plan the runs, execute them on a pool, keep every result on disk.

A batch is ``n_runs`` paths x every waterfall design x every sweep cell. Run ``i`` of every
design and every cell uses the same child of ``np.random.SeedSequence(scenario_seed)``
(common random numbers), so paired differences between designs are differences of the
design, not of the luck (DESIGN.md §1, §6).

The single-run machinery is a plug-in: ``run_fn(scenario, task) -> dict`` returns a flat dict
of JSON scalars (the run's summary metrics) and may add ``"_series"``, a pandas DataFrame of
per-step series, which is kept for the first ``keep_series`` run indices only. ``run_fn``
must build its randomness from ``task_seed_sequence(task)`` and nothing else, and must not
depend on which process runs it: results are then identical whatever the executor. A
``run_fn.prepare()`` attribute, if present, runs once per process before its first run (the
process pool runs it in each worker's initializer): imports and compiled caches, not timed as
a run. Process-pool workers receive the scenario and ``run_fn`` once, at start; a task carries
only its ``Task``, and a worker returns only the run's row (and kept series) as Parquet bytes.

Modules: ``plan`` (tasks, sweep cells, seeds), ``executors`` (``run_batch`` on serial / process
pool / Dask), ``store`` (the batch folder: run files, manifest, resume, lock, loading), and
``scenario`` (how a batch runs a perpstress scenario: ``batch_scenario``, ``scenario_run_fn``),
``warm_server`` (the process pool's fork server, which workers fork from already prepared) and
``preload`` (imported by that server only: prepares ``scenario_run_fn`` there).
They import one way: plan <- store <- executors <- preload; ``scenario`` uses ``plan`` and
``simulator.experiments.run``. This package re-exports what callers use.

On-disk layout of a batch folder::

    out_dir/
      manifest.json     scenario, designs, cells, n_runs, seed, plan digest, versions, sessions
      status.json       state of the last session: complete | interrupted | worker_lost | error
      runs/<cell>__<design>__<hash>__r<run_index>.parquet     one row per task (ok or failed)
      series/<same name>.parquet                               per-step series of kept runs
      .lock             advisory lock held while a session writes the folder

Every file is written to a hidden ``.*.tmp`` file in the same folder and then ``os.replace``-d
into place, so a reader (or a resumed batch) never sees a partial file.
"""

from __future__ import annotations

from simulator.experiments.batch.executors import EXECUTORS, BatchReport, WorkerLostError, run_batch
from simulator.experiments.batch.plan import (
    BASE_CELL_ID,
    RunFn,
    Task,
    expand_grid,
    make_cell_ids,
    plan_tasks,
    seed_sequence_from_row,
    task_seed_sequence,
)
from simulator.experiments.batch.scenario import DEFAULT_DESIGN, batch_scenario, scenario_run_fn
from simulator.experiments.batch.store import (
    CELL_PREFIX,
    ID_COLUMNS,
    MANIFEST,
    META_COLUMNS,
    RESERVED_COLUMNS,
    RUNS_DIR,
    SERIES_DIR,
    SERIES_KEY,
    STATUS,
    ManifestMismatchError,
    load_manifest,
    load_results,
    load_series,
    task_filename,
)

__all__ = [
    "Task",
    "BatchReport",
    "ManifestMismatchError",
    "WorkerLostError",
    "expand_grid",
    "make_cell_ids",
    "plan_tasks",
    "task_seed_sequence",
    "seed_sequence_from_row",
    "task_filename",
    "run_batch",
    "load_results",
    "load_series",
    "load_manifest",
    "batch_scenario",
    "scenario_run_fn",
    "DEFAULT_DESIGN",
    "BASE_CELL_ID",
    "EXECUTORS",
    "RunFn",
    "CELL_PREFIX",
    "ID_COLUMNS",
    "META_COLUMNS",
    "RESERVED_COLUMNS",
    "MANIFEST",
    "RUNS_DIR",
    "SERIES_DIR",
    "SERIES_KEY",
    "STATUS",
]
