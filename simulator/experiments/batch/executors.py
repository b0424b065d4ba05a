"""Running the plan: ``run_batch`` (resume, status, progress) on the serial, process-pool or
Dask executor; each finished task is written at once through the store. ``BatchReport`` and
``WorkerLostError`` say what a session did.

What crosses between processes on the process pool: each worker gets the scenario and
``run_fn`` once, in the pool initializer, and runs ``run_fn.prepare`` there (imports, compiled
kernels); a task carries only its ``Task`` (cell, design, seed, run index) and whether to keep
its series; a worker sends back only the run's row (and the kept series) as Parquet bytes,
which the parent writes. The pool is started before the parent reads the manifest and checks
the finished runs of a resumed batch, so the workers start up while it does. By default the
workers fork from a warm server (``warm_server``) that imported the model and ran
``run_fn.preload`` once, instead of each importing and preparing on its own.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import datetime as _dt
import functools
import logging
import multiprocessing as mp
import os
import pickle
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from simulator.experiments.batch.plan import RunFn, Task, _jsonable
from simulator.experiments.batch.store import (
    FORMAT_VERSION,
    MANIFEST,
    RUNS_DIR,
    SERIES_DIR,
    SERIES_KEY,
    STATUS,
    _atomic_write_bytes,
    _atomic_write_json,
    _check_manifest,
    _clean_metrics,
    _clean_tmp,
    _DirLock,
    _encode,
    _error_text,
    _package_version,
    _plan,
    _scan_ok,
    _series_bytes,
    _tail,
    _task_file,
    load_manifest,
    ManifestMismatchError,
)


EXECUTORS = ("serial", "process", "dask")


@contextlib.contextmanager
def _children_ignore_sigint():
    """Start child processes with SIGINT ignored (they inherit it), so that Ctrl-C reaches only
    this process, which then cancels and shuts the pool down. No-op outside the main thread."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class _Outcome(NamedTuple):
    status: str
    row: bytes
    series: bytes | None
    error: str | None
    elapsed: float = 0.0  # seconds inside run_fn (what the row's elapsed_s holds)
    # process pool: (worker pid, wall clock when it was ready, its CPU seconds so far)
    worker: tuple[int, float, float] | None = None


# run_fn.prepare hooks already run in this process (once per process, whatever the executor)
_PREPARED: set = set()


def _hook(run_fn: RunFn, name: str) -> Any:
    """``run_fn``'s attribute ``name`` (``prepare``, ``preload``); a ``functools.partial``'s
    function's if the partial has none."""
    value = getattr(run_fn, name, None)
    if value is None and isinstance(run_fn, functools.partial):  # a bound run_fn: its function's hook
        value = getattr(run_fn.func, name, None)
    return value


def _preload(run_fn: RunFn) -> tuple[str, ...]:
    """What the warm fork server imports: this module (numpy, pandas) and ``run_fn.preload``."""
    return (__name__, *(_hook(run_fn, "preload") or ()))


def _prepare(run_fn: RunFn) -> None:
    """Run ``run_fn.prepare()`` once in this process: the imports and compiled-code caches a run
    needs, paid at a worker's start and not inside the first run's time."""
    prepare = _hook(run_fn, "prepare")
    if prepare is None or prepare in _PREPARED:
        return
    prepare()
    _PREPARED.add(prepare)


def _execute(scenario: Any, run_fn: RunFn, task: Task, keep: bool) -> _Outcome:
    """Run one task and encode its row (and kept series) as Parquet bytes.

    An ``Exception`` from ``run_fn`` (or a result that cannot be stored) gives a failed row;
    ``KeyboardInterrupt``/``SystemExit`` propagate.
    """
    status, error, tb, metrics, series = "ok", None, None, {}, None
    t0 = time.perf_counter()
    try:
        _prepare(run_fn)  # a failure here fails the run with its error (the worker stays up)
        t0 = time.perf_counter()
        out = run_fn(copy.deepcopy(scenario), task)
        if not isinstance(out, Mapping):
            raise TypeError(f"run_fn must return a dict of metrics, got {type(out).__name__}")
        out = dict(out)
        series = out.pop(SERIES_KEY, None)
        if series is not None and not isinstance(series, pd.DataFrame):
            raise TypeError(f"{SERIES_KEY!r} must be a pandas DataFrame, got {type(series).__name__}")
        metrics = _clean_metrics(out)
    except Exception as exc:
        status, error, tb, metrics, series = "failed", _error_text(exc), _tail(traceback.format_exc()), {}, None
    elapsed = time.perf_counter() - t0
    try:
        row = _encode(task, status, error, tb, elapsed, metrics)
        kept = _series_bytes(series, task) if (keep and series is not None) else None
    except Exception as exc:
        status, error = "failed", f"could not store the run's results: {_error_text(exc)}"
        row = _encode(task, status, error, _tail(traceback.format_exc()), elapsed, {})
        kept = None
    return _Outcome(status, row, kept, error, elapsed)


# process-pool workers get the scenario and run_fn once, at start (tasks do not carry them)
_WORKER: dict[str, Any] = {}


def _parent_watchdog(batch_pid: int, start_method: str, interval: float = 0.5) -> None:
    """Exit this worker as soon as the batch process is gone (kill -9 of the batch): a worker must
    never sit blocked on a queue no one reads, nor finish a run no one records.

    Under ``spawn`` the batch process is this worker's parent, and its death re-parents the
    worker. Under ``forkserver`` the parent is the fork server, which the workers themselves keep
    alive (they hold its pipe), so the batch process's pid is watched directly."""
    import threading

    parent = os.getppid()
    watch_pid = start_method == "forkserver"

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent or (watch_pid and not _alive(batch_pid)):
                os._exit(1)

    threading.Thread(target=watch, name="perpstress-parent-watchdog", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed batch not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours to signal
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # not Linux: the signal check is all there is
        return True
    return state not in ("Z", "X")


def _worker_init(scenario: Any, run_fn: RunFn, parent: int | None = None, start_method: str = "spawn") -> None:
    try:  # Ctrl-C is the parent's business: it cancels and terminates the pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):  # pragma: no cover
        pass
    if parent is not None:
        # the batch process died while this worker started: under spawn this worker has been
        # re-parented already; under forkserver its parent is the fork server, so ask for the pid
        gone = not _alive(parent) if start_method == "forkserver" else os.getppid() != parent
        if gone:
            os._exit(1)
        _parent_watchdog(parent, start_method)
    _WORKER["scenario"] = scenario
    _WORKER["run_fn"] = run_fn
    try:
        _prepare(run_fn)
    except Exception:  # the first task runs it again and records the error as a failed run
        pass
    _WORKER["ready"] = time.time()


def _worker_started() -> None:
    """A no-op task: submitting one per worker makes the pool spawn its workers now."""


def _worker_execute(task: Task, keep: bool) -> _Outcome:
    out = _execute(_WORKER["scenario"], _WORKER["run_fn"], task, keep)
    t = os.times()
    return out._replace(worker=(os.getpid(), _WORKER["ready"], t.user + t.system))


# ======================================================================= report
@dataclass
class BatchReport:
    """What a ``run_batch`` session did.

    ``ok`` and ``failed`` count the tasks run in this session, ``skipped`` the tasks already
    done ok before it (``resume``). ``exit_code`` is 0 when nothing failed, else 1.
    ``run_s`` adds up the time spent inside ``run_fn`` by this session's runs (``elapsed_s`` of
    their rows); ``worker_start_s`` (process pool only) is the time from starting the pool to
    the last worker that ran a task being ready (imports and ``run_fn.prepare`` done);
    ``worker_cpu_s`` (process pool only) the CPU seconds of the workers (as of their last task)
    plus, under ``forkserver``, what the warm server spent in this session (its start-up in the
    first batch of a process), on Linux; ``None`` where it cannot be read. ``parent_runs``
    (process pool only): runs the batch process ran itself while the workers started
    (``_run_process``).
    """

    out_dir: Path
    n_tasks: int
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    executor: str = "serial"
    failures: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # run files that failed verification on resume
    run_s: float = 0.0
    worker_start_s: float | None = None
    worker_cpu_s: float | None = None
    parent_runs: int = 0  # process pool: runs the batch process ran itself while its workers started

    @property
    def not_done(self) -> int:
        return self.n_tasks - self.ok - self.failed - self.skipped

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 else 1

    def summary(self) -> str:
        s = (
            f"{self.ok + self.skipped}/{self.n_tasks} runs ok ({self.skipped} from before), "
            f"{self.failed} failed, {self.not_done} not run, {self.elapsed_s:.1f} s -> {self.out_dir}"
        )
        for f in self.failures[:5]:
            s += f"\n  failed: cell={f['cell_id']} design={f['design']} run={f['run_index']}: {f['error']}"
        if len(self.failures) > 5:
            s += f"\n  ... and {len(self.failures) - 5} more (see load_results(out_dir))"
        return s


class WorkerLostError(RuntimeError):
    """A worker process died (killed, out of memory); finished results are on disk.

    Attributes:
        report: the session's ``BatchReport``.
        not_done: tasks that did not finish; ``run_batch(..., resume=True)`` runs them.
    """

    def __init__(self, message: str, report: BatchReport, not_done: list[Task]):
        super().__init__(message)
        self.report = report
        self.not_done = not_done


class _Recorder:
    """Writes each finished task at once, counts, and drives the progress bar."""

    def __init__(self, out_dir: Path, report: BatchReport, bar):
        self.runs = out_dir / RUNS_DIR
        self.series = out_dir / SERIES_DIR
        self.report = report
        self.bar = bar
        self.done: set[tuple[str, str, int]] = set()
        self.workers_ready: dict[int, float] = {}  # worker pid -> wall clock when it was ready
        self.workers_cpu: dict[int, float] = {}  # worker pid -> its CPU seconds at its last task

    def record(self, task: Task, outcome: _Outcome) -> None:
        name = _task_file(task)
        self.report.run_s += outcome.elapsed
        if outcome.worker is not None:
            self.workers_ready[outcome.worker[0]] = outcome.worker[1]
            self.workers_cpu[outcome.worker[0]] = max(outcome.worker[2], self.workers_cpu.get(outcome.worker[0], 0.0))
        if outcome.series is not None:
            _atomic_write_bytes(self.series / name, outcome.series)
        _atomic_write_bytes(self.runs / name, outcome.row)
        self.done.add(task.key)
        if outcome.status == "ok":
            self.report.ok += 1
        else:
            self.report.failed += 1
            self.report.failures.append(
                {"cell_id": task.cell_id, "design": task.design, "run_index": task.run_index, "error": outcome.error}
            )
        self.bar.update(1)
        if outcome.status != "ok":
            self.bar.set_postfix(failed=self.report.failed, refresh=False)

    def record_error(self, task: Task, exc: BaseException, tb: str | None = None) -> None:
        """A task the executor could not run (unpicklable argument, dask KilledWorker...)."""
        error = f"executor error: {_error_text(exc)}"
        if tb is None:
            tb = "".join(traceback.format_exception(exc))
        row = _encode(task, "failed", error, _tail(tb), 0.0, {})
        self.record(task, _Outcome("failed", row, None, error))


def _session(executor: str, workers: int | None, scheduler: str | None, keep_series: int, mp_context: str | None) -> dict:
    return {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "executor": executor,
        "workers": workers,
        "scheduler": scheduler,
        "mp_context": mp_context if executor == "process" else None,
        "keep_series": keep_series,
        "perpstress": _package_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "host": platform.node(),
        "pid": os.getpid(),
    }


# ======================================================================= runner
def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _LineProgress:
    """Progress for a log file or a pipe: one line on stderr every ``every`` runs (and at the end)."""

    def __init__(self, total: int, initial: int, every: int | None = None):
        self.total, self.n, self.failed = total, initial, 0
        self.every = every or max(1, min(100, total // 10))
        self.t0 = time.perf_counter()

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.n % self.every == 0 or self.n == self.total:
            el = time.perf_counter() - self.t0
            print(f"runs: {self.n}/{self.total} done, {self.failed} failed, {el:.0f} s", file=sys.stderr, flush=True)

    def set_postfix(self, failed: int = 0, refresh: bool = False) -> None:
        self.failed = failed

    def close(self) -> None:
        pass


def _make_bar(total: int, initial: int, progress: bool):
    """A tqdm bar on stderr when stderr is a terminal; progress lines otherwise; nothing if off."""
    from tqdm import tqdm

    try:
        tty = bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):
        tty = False
    if progress and not tty:
        return _LineProgress(total, initial)
    bar = tqdm(total=total, initial=initial, unit="run", desc="runs", disable=not (progress and tty),
               dynamic_ncols=True, file=sys.stderr)
    bar.set_postfix(failed=0, refresh=False)
    return bar


def run_batch(
    scenario: Any,
    run_fn: RunFn,
    tasks: Sequence[Task],
    out_dir: str | Path,
    executor: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    keep_series: int = 5,
    progress: bool = True,
    resume: bool = False,
    mp_context: str | None = None,
) -> BatchReport:
    """Run every task with ``run_fn``, writing each result to ``out_dir`` as it finishes.

    Args:
        scenario: the resolved scenario (a JSON-able dict); passed (as a deep copy) to every run
            and recorded in the manifest.
        run_fn: ``run_fn(scenario, task) -> dict``; for ``process`` it must be picklable (a
            module-level function), for ``dask`` importable on the workers.
        tasks: from ``plan_tasks``; keys ``(cell_id, design, run_index)`` must be unique.
        out_dir: the batch folder (created).
        executor: ``serial`` (in this process), ``process`` (a local process pool) or
            ``dask`` (a ``dask.distributed`` cluster).
        workers: pool size (default: CPUs available). Ignored by ``serial`` and when joining a
            ``scheduler``.
        scheduler: address of a running dask scheduler (``tcp://host:port``); without it
            ``dask`` starts a local cluster on 127.0.0.1 and closes it at the end.
        keep_series: store the ``_series`` frame of run indices ``< keep_series``.
        progress: a progress bar on stderr when it is a terminal, else a line every N runs.
        resume: continue a batch in ``out_dir``: tasks with an ok result are skipped, failed and
            missing ones run. The manifest must match (same scenario, seed, designs, cells,
            runs), else ``ManifestMismatchError``. Without ``resume`` an ``out_dir`` that already
            holds a batch is refused (``FileExistsError``).
        mp_context: how ``process`` starts its workers: ``forkserver`` (the default where the
            platform has it) forks them from a warm server of this process's own that imported
            the model and ran ``run_fn.preload`` once (``warm_server``), so a worker is ready at
            once; ``spawn`` starts each in a fresh interpreter that imports and prepares itself
            (the default elsewhere). Either is safe with threads; results are identical.

    Returns:
        a ``BatchReport``; ``exit_code`` 0 when every task ran ok, 1 when some failed.

    Raises:
        KeyboardInterrupt: after cancelling pending runs and shutting the pool down; finished
            results stay on disk (resume later).
        WorkerLostError: a worker process died; finished results are on disk, the rest run on
            resume.
    """
    t_start = time.perf_counter()
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise ValueError(f"a dask scheduler address needs executor='dask', got executor={executor!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(keep_series, bool) or not isinstance(keep_series, int) or keep_series < 0:
        raise ValueError(f"keep_series must be a non-negative integer, got {keep_series!r}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("no tasks to run")
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"tasks must be unique by (cell_id, design, run_index); {dup} appears twice")
    names = [_task_file(t) for t in tasks]
    if len(set(names)) != len(names):  # pragma: no cover - hash collision
        raise ValueError("two tasks map to the same result file name")
    scenario_json = _jsonable(scenario)
    if executor == "process":
        try:
            pickle.dumps((scenario, run_fn))
        except Exception as exc:
            raise TypeError(
                f"executor='process' needs a picklable scenario and run_fn (a module-level function): {exc}"
            ) from exc
    if workers is None and executor != "serial":
        workers = _default_workers()
    if mp_context is None:
        mp_context = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"

    # the pool starts first: its workers import and prepare while this process writes the
    # manifest and checks the finished runs of a resumed batch
    pool = _ProcessPool(scenario, run_fn, min(workers, len(tasks)), mp_context) if executor == "process" else None
    finished = False
    try:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs_dir, series_dir = out_dir / RUNS_DIR, out_dir / SERIES_DIR
        report = BatchReport(out_dir=out_dir, n_tasks=len(tasks), executor=executor)
        plan = _plan(tasks)
        session = _session(executor, workers, scheduler, keep_series, mp_context)

        with _DirLock(out_dir):
            manifest_path = out_dir / MANIFEST
            if manifest_path.exists():
                if not resume:
                    raise FileExistsError(
                        f"{out_dir} already holds a batch ({MANIFEST}); pass resume=True to continue it, "
                        "or choose another folder"
                    )
                try:
                    old = load_manifest(out_dir)
                except (OSError, ValueError) as exc:
                    raise ManifestMismatchError(f"cannot read {manifest_path}: {exc}") from exc
                _check_manifest(old, scenario_json, plan, manifest_path)
                if old.get("perpstress") != session["perpstress"]:
                    import warnings

                    warnings.warn(
                        f"resuming a batch started with perpstress {old.get('perpstress')} under "
                        f"{session['perpstress']}: results may mix code versions",
                        stacklevel=2,
                    )
                old.setdefault("sessions", []).append(session)
                _atomic_write_json(manifest_path, old)
            else:
                if runs_dir.is_dir() and any(runs_dir.glob("*.parquet")):
                    raise FileExistsError(f"{runs_dir} holds results but {out_dir} has no {MANIFEST}; choose another folder")
                manifest = {
                    "format": FORMAT_VERSION,
                    "created": session["started"],
                    "perpstress": session["perpstress"],
                    "scenario": scenario_json,
                    **plan,
                    "keep_series": keep_series,
                    "sessions": [session],
                }
                _atomic_write_json(manifest_path, manifest)
            runs_dir.mkdir(exist_ok=True)
            series_dir.mkdir(exist_ok=True)
            _clean_tmp(runs_dir)
            _clean_tmp(series_dir)

            done, problems = _scan_ok(runs_dir, dict(zip(names, tasks))) if resume else (set(), [])
            report.rejected = problems
            for problem in problems[:5]:
                print(f"warning: {problem}; moved to runs/.rejected/, the run goes again", file=sys.stderr)
            if len(problems) > 5:
                print(f"warning: ... and {len(problems) - 5} more run files rejected", file=sys.stderr)
            pending = [t for t, n in zip(tasks, names) if n not in done]
            report.skipped = len(tasks) - len(pending)
            if pool is not None and not pending:  # a finished batch resumed: no worker has work
                pool.close(graceful=False)
            bar = _make_bar(len(tasks), report.skipped, progress)
            rec = _Recorder(out_dir, report, bar)
            state = "error"
            try:
                if pending:
                    if executor == "serial":
                        _run_serial(pending, scenario, run_fn, keep_series, rec)
                    elif executor == "process":
                        _run_process(pending, pool, keep_series, rec, scenario, run_fn)
                    else:
                        _run_dask(pending, scenario, run_fn, keep_series, rec, workers, scheduler)
                state = "complete"
            except KeyboardInterrupt:
                state = "interrupted"
                raise
            except WorkerLostError:
                state = "worker_lost"
                raise
            finally:
                bar.close()
                report.elapsed_s = time.perf_counter() - t_start
                if pool is not None and rec.workers_ready:
                    report.worker_start_s = max(rec.workers_ready.values()) - pool.started
                    server_cpu = pool.server_cpu_s()
                    if server_cpu is not None:
                        report.worker_cpu_s = sum(rec.workers_cpu.values()) + server_cpu
                try:
                    _atomic_write_json(
                        out_dir / STATUS,
                        {
                            "state": state,
                            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                            "n_tasks": report.n_tasks,
                            "ok": report.ok + report.skipped,
                            "failed": report.failed,
                            "not_done": report.not_done,
                            "elapsed_s": round(report.elapsed_s, 3),
                        },
                    )
                except OSError:  # pragma: no cover - do not mask the original error
                    pass
        finished = True
    finally:
        if pool is not None:
            pool.close(graceful=finished)
    return report


def _run_serial(pending: list[Task], scenario: Any, run_fn: RunFn, keep_series: int, rec: _Recorder) -> None:
    for t in pending:
        rec.record(t, _execute(scenario, run_fn, t, t.run_index < keep_series))


def _terminate_pool(ex: cf.ProcessPoolExecutor, futures: Iterable[cf.Future]) -> None:
    """Cancel pending futures, kill the workers (running tasks are lost) and shut down."""
    for f in futures:
        f.cancel()
    if hasattr(ex, "terminate_workers"):  # Python >= 3.14
        try:
            ex.terminate_workers()
        except Exception:
            pass
    else:
        for p in list((getattr(ex, "_processes", None) or {}).values()):
            try:
                if p.is_alive():
                    p.terminate()
            except Exception:
                pass
    ex.shutdown(wait=True, cancel_futures=True)


class _ProcessPool:
    """A session's process pool, started at once so that it gets ready while the parent goes on
    preparing. Under ``spawn`` one worker is spawned per slot now (a no-op task each) and each
    imports and runs the initializer (scenario, ``run_fn``, ``run_fn.prepare``). Under
    ``forkserver`` the warm server is started now (without waiting for it); the workers fork from
    it at the first tasks, already prepared. Ctrl-C reaches only the parent (workers ignore SIGINT)."""

    def __init__(self, scenario: Any, run_fn: RunFn, workers: int, mp_context: str):
        self.started = time.time()
        self.workers = workers
        if mp_context == "forkserver":
            from simulator.experiments.batch.warm_server import warm_context

            ctx = warm_context(_preload(run_fn))
            with _children_ignore_sigint():  # the server, and so every worker it forks, ignores Ctrl-C
                ctx.start()
        else:
            ctx = mp.get_context(mp_context)
        self.ctx = ctx
        self.server_cpu0 = ctx.server_cpu_s() if mp_context == "forkserver" else 0.0
        self.ex = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_worker_init,
            initargs=(scenario, run_fn, os.getpid(), mp_context),
        )
        self.closed = False
        try:
            with _children_ignore_sigint():
                for _ in range(workers if mp_context != "forkserver" else 0):
                    self.ex.submit(_worker_started)
        except BaseException:
            self.close(graceful=False)
            raise

    def server_cpu_s(self) -> float | None:
        """CPU seconds the warm server spent since this pool started (0 under ``spawn``)."""
        if not hasattr(self.ctx, "server_cpu_s"):
            return 0.0
        now = self.ctx.server_cpu_s()
        return None if now is None or self.server_cpu0 is None else now - self.server_cpu0

    def submit(self, task: Task, keep: bool) -> cf.Future:
        """Submit one task: what is pickled is the ``Task`` and ``keep``, never the scenario."""
        with _children_ignore_sigint():
            return self.ex.submit(_worker_execute, task, keep)

    def close(self, graceful: bool, futures: Iterable[cf.Future] = ()) -> None:
        """Shut down: wait for the workers (``graceful``), else cancel ``futures`` and kill them."""
        if self.closed:
            return
        self.closed = True
        if graceful:
            self.ex.shutdown(wait=True)
        else:
            _terminate_pool(self.ex, futures)


def _parent_prepared(run_fn: RunFn) -> bool:
    """Whether this process has run ``run_fn``'s prepare hook (a batch process that ran a serial
    batch or another pool batch before): it can run a task at once, without start-up."""
    prepare = _hook(run_fn, "prepare")
    return prepare is not None and prepare in _PREPARED


def _hand_out_first(pool: _ProcessPool, tasks: list[Task], keep_series: int, out: dict) -> None:
    """Submit ``tasks`` to the pool (in a thread: the first submits wait for the workers to
    start); ``out["futures"]`` maps the futures to their tasks, ``out["error"]`` is what failed."""
    try:
        out["futures"] = {pool.submit(t, t.run_index < keep_series): t for t in tasks}
    except BaseException as exc:  # noqa: BLE001 - handed to the batch process's thread
        out["error"] = exc


def _still_starting(starter: threading.Thread, started: dict) -> bool:
    """The first tasks are still being handed to the pool, or no worker has finished one yet."""
    return starter.is_alive() or ("futures" in started and not any(f.done() for f in started["futures"]))


def _run_process(pending: list[Task], pool: _ProcessPool, keep_series: int, rec: _Recorder, scenario: Any = None,
                 run_fn: RunFn | None = None) -> None:
    """The pending tasks on the pool, handed out a few at a time (twice the workers in flight).

    A batch process already prepared for ``run_fn`` (``_parent_prepared``) runs tasks itself
    from the back of the queue while its workers start: the first tasks are handed to the pool
    by a thread (starting a worker waits for the warm fork server's imports), and the batch
    process goes on until that is done and a worker has finished a run. Results do not depend
    on where a task runs (its seed is its own).
    """
    futures: dict[cf.Future, Task] = {}
    queue = list(reversed(pending))  # the next task at the end
    window = 2 * pool.workers

    def hand_out() -> None:
        while queue and len(futures) < window:
            t = queue.pop()
            futures[pool.submit(t, t.run_index < keep_series)] = t

    try:
        if run_fn is not None and _parent_prepared(run_fn) and len(queue) > window:
            first = [queue.pop() for _ in range(window)]
            started: dict[str, Any] = {}
            starter = threading.Thread(target=_hand_out_first, args=(pool, first, keep_series, started), daemon=True)
            starter.start()
            while queue and _still_starting(starter, started):
                t = queue.pop(0)  # the last task: the pool keeps the front
                rec.record(t, _execute(scenario, run_fn, t, t.run_index < keep_series))
                rec.report.parent_runs += 1
            starter.join()
            if "error" in started:
                raise started["error"]
            futures.update(started["futures"])
        hand_out()
        while futures:
            done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                t = futures.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    raise
                except Exception as exc:  # e.g. an argument that could not be pickled
                    rec.record_error(t, exc)
                    continue
                rec.record(t, outcome)
            hand_out()
    except BrokenProcessPool as exc:
        # keep whatever finished before the pool broke, then stop
        for f, t in futures.items():
            if t.key not in rec.done and f.done() and not f.cancelled() and f.exception() is None:
                rec.record(t, f.result())
        pool.close(graceful=False, futures=futures)
        not_done = [t for t in pending if t.key not in rec.done]
        raise WorkerLostError(
            f"a worker process died (killed or out of memory?) while running the batch: "
            f"{rec.report.ok + rec.report.failed} runs finished and are saved, {len(not_done)} did not run. "
            f"Run again with resume=True to finish them (fewer workers if memory is short). Cause: {exc}",
            rec.report,
            not_done,
        ) from exc
    except BaseException:
        pool.close(graceful=False, futures=futures)
        raise


def _run_dask(
    pending: list[Task],
    scenario: Any,
    run_fn: RunFn,
    keep_series: int,
    rec: _Recorder,
    workers: int | None,
    scheduler: str | None,
) -> None:
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler, set_as_default=False)
    else:
        with _children_ignore_sigint():
            cluster = LocalCluster(
                n_workers=workers or _default_workers(),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,  # no dashboard; the scheduler's plain HTTP routes:
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # localhost, any free port
                silence_logs=logging.ERROR,
            )
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
    futures: dict[Any, Task] = {}
    try:
        for t in pending:  # the scenario travels with each task: robust to workers leaving
            f = client.submit(_execute, scenario, run_fn, t, t.run_index < keep_series, pure=False)
            futures[f] = t
        for f in dask_as_completed(list(futures), loop=client.loop):
            t = futures[f]
            if f.status == "finished":
                rec.record(t, f.result())
            elif f.status == "error":  # infrastructure (KilledWorker, deserialization), not run_fn
                exc = f.exception()
                tb = f.traceback()
                rec.record_error(t, exc, "".join(traceback.format_tb(tb)) + _error_text(exc) if tb else None)
            # cancelled: not done, runs on resume
            f.release()
    except BaseException:
        try:
            client.cancel([f for f, t in futures.items() if t.key not in rec.done])
        except Exception:
            pass
        raise
    finally:
        try:
            client.close()
        finally:
            if cluster is not None:
                cluster.close()
