"""Monte Carlo batches: plan the runs, execute them on a pool, keep every result on disk.

A batch is ``n_runs`` paths x every waterfall design x every sweep cell. Run ``i`` of every
design and every cell uses the same child of ``np.random.SeedSequence(scenario_seed)``
(common random numbers), so paired differences between designs are differences of the
design, not of the luck (DESIGN.md §1, §6).

The single-run machinery is a plug-in: ``run_fn(scenario, task) -> dict`` returns a flat dict
of JSON scalars (the run's summary metrics) and may add ``"_series"``, a pandas DataFrame of
per-step series, which is kept for the first ``keep_series`` run indices only. ``run_fn``
must build its randomness from ``task_seed_sequence(task)`` and nothing else, and must not
depend on which process runs it: results are then identical whatever the executor.

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

import concurrent.futures as cf
import contextlib
import copy
import dataclasses
import datetime as _dt
import enum
import hashlib
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import platform
import re
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
]

MANIFEST = "manifest.json"
STATUS = "status.json"
RUNS_DIR = "runs"
SERIES_DIR = "series"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
#: cell_id of the single cell of a batch without a sweep.
BASE_CELL_ID = "base"
EXECUTORS = ("serial", "process", "dask")

#: Columns every run row carries besides the ``cell.<param>`` columns and the metrics.
ID_COLUMNS = ("run_index", "design", "cell_id")
META_COLUMNS = ("seed_entropy", "spawn_key", "status", "error", "traceback", "elapsed_s")
RESERVED_COLUMNS = frozenset(ID_COLUMNS + META_COLUMNS)
CELL_PREFIX = "cell."
SERIES_KEY = "_series"
_TRACEBACK_LINES = 25
_TRACEBACK_CHARS = 4000
_INT64_MAX = 2**63 - 1

RunFn = Callable[[Any, "Task"], Mapping[str, Any]]


# =========================================================================== tasks
@dataclass(frozen=True)
class Task:
    """One run: one path (``run_index``) of one design in one sweep cell.

    Attributes:
        run_index: the Monte Carlo path, 0-based.
        design: the waterfall design's name.
        cell: the sweep cell's parameter values (dotted field path -> value); ``{}`` without a sweep.
        seed: entropy of the run's ``SeedSequence`` (the batch seed; ``int`` or list of ints).
        cell_id: short stable name of the cell, e.g. ``shock=-0.3,fund=1e6`` (``base`` without a sweep).
        spawn_key: spawn key of the run's ``SeedSequence`` (``(run_index,)`` for plan_tasks' tasks).

    The run's randomness is ``task_seed_sequence(task)``, identical for every design and cell
    of the same ``run_index``.
    """

    run_index: int
    design: str
    cell: dict[str, Any]
    seed: int | list[int]
    cell_id: str
    spawn_key: tuple[int, ...] = ()

    @property
    def seed_entropy(self) -> int | list[int]:
        return self.seed

    @property
    def key(self) -> tuple[str, str, int]:
        """``(cell_id, design, run_index)``, unique within a batch."""
        return (self.cell_id, self.design, self.run_index)


def task_seed_sequence(task: Task) -> np.random.SeedSequence:
    """The run's seed sequence: ``SeedSequence(task.seed, spawn_key=task.spawn_key)``.

    For a task from ``plan_tasks(n, ..., seed=s)`` this is exactly
    ``np.random.SeedSequence(s).spawn(n)[task.run_index]``. Use it as
    ``np.random.default_rng(task_seed_sequence(task))`` or ``.spawn()`` it further for
    independent streams (index, agents, venue).
    """
    return np.random.SeedSequence(task.seed, spawn_key=tuple(task.spawn_key))


def seed_sequence_from_row(row: Mapping[str, Any]) -> np.random.SeedSequence:
    """Rebuild a run's ``SeedSequence`` from a row of ``load_results`` (to replay one run)."""
    entropy = row["seed_entropy"]
    if isinstance(entropy, str):
        entropy = json.loads(entropy)
    elif isinstance(entropy, (float, np.floating)):
        entropy = int(entropy)
    elif isinstance(entropy, np.integer):
        entropy = int(entropy)
    return np.random.SeedSequence(entropy, spawn_key=tuple(json.loads(row["spawn_key"])))


def expand_grid(grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Cartesian product of a sweep grid, in a stable order.

    Keys keep the grid's order, values their list order, and the last key varies fastest
    (``itertools.product``). An empty grid gives one empty cell ``[{}]``.

    >>> expand_grid({"shock": [-0.3, -0.1], "fund": [1e6]})
    [{'shock': -0.3, 'fund': 1000000.0}, {'shock': -0.1, 'fund': 1000000.0}]
    """
    if not grid:
        return [{}]
    keys, values = [], []
    for key, vals in grid.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"sweep keys must be non-empty strings, got {key!r}")
        if isinstance(vals, (str, bytes, Mapping)) or not isinstance(vals, Iterable):
            raise ValueError(f"sweep.{key}: give a list of values, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise ValueError(f"sweep.{key}: give at least one value")
        keys.append(key)
        values.append(vals)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that no other key shares (``a.b.size`` -> ``size``)."""
    out = {}
    split = {k: k.split(".") for k in keys}
    for k, parts in split.items():
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if all(".".join(p[-n:]) != cand for o, p in split.items() if o != k):
                break
        out[k] = cand
    return out


def _format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e4:
        return str(int(x))
    for p in range(1, 18):
        s = f"{x:.{p}g}"
        if float(s) == x:
            break
    else:  # pragma: no cover - repr always round-trips at 17 digits
        s = repr(x)
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


def _format_value(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _format_float(v)
    if isinstance(v, str):
        return v
    return json.dumps(_jsonable(v), separators=(",", ":"), sort_keys=True)


def make_cell_ids(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short stable ids of sweep cells: ``key=value`` joined by commas, in the cell's key order.

    Keys are shortened to the shortest dotted suffix that stays unique among all the cells'
    keys (``index.shocks.0.size`` -> ``size``); floats use their shortest exact form
    (``1e6``, ``-0.3``). An empty cell is ``base``. Raises ``ValueError`` when two cells get
    the same id.
    """
    all_keys = list(dict.fromkeys(k for c in cells for k in c))
    short = _short_keys(all_keys)
    ids = [",".join(f"{short[k]}={_format_value(v)}" for k, v in c.items()) or BASE_CELL_ID for c in cells]
    seen: dict[str, int] = {}
    for i, cid in enumerate(ids):
        if cid in seen:
            raise ValueError(f"sweep cells {seen[cid]} and {i} have the same id {cid!r}: {cells[seen[cid]]} vs {cells[i]}")
        seen[cid] = i
    return ids


def _plain_entropy(entropy: Any) -> int | list[int]:
    if isinstance(entropy, (int, np.integer)):
        return int(entropy)
    return [int(e) for e in np.asarray(entropy).ravel().tolist()]


def plan_tasks(
    n_runs: int,
    designs: Sequence[str],
    cells: Sequence[Mapping[str, Any]] | None = None,
    seed: int | Sequence[int] | np.random.SeedSequence | None = 0,
) -> list[Task]:
    """Every task of a batch: ``n_runs`` x ``cells`` x ``designs``.

    Run ``i`` of every design and cell gets child ``i`` of ``np.random.SeedSequence(seed)``
    (stored as its entropy and spawn key). Tasks are ordered run-major (all cells and designs of
    run 0, then of run 1, ...), so an interrupted batch has balanced results.

    Args:
        n_runs: Monte Carlo paths per design and cell (>= 0).
        designs: design names, unique, at least one.
        cells: sweep cells (``expand_grid(...)``); ``None`` or ``[]`` means one cell ``{}``.
        seed: the scenario seed (``None`` draws fresh OS entropy, recorded in every task).
    """
    if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 0:
        raise ValueError(f"n_runs must be a non-negative integer, got {n_runs!r}")
    if isinstance(designs, str):
        raise ValueError(f"designs must be a list of names, got the string {designs!r}")
    designs = list(designs)
    if not designs:
        raise ValueError("designs: give at least one design name")
    for d in designs:
        if not isinstance(d, str) or not d:
            raise ValueError(f"design names must be non-empty strings, got {d!r}")
    if len(set(designs)) != len(designs):
        raise ValueError(f"design names must be unique, got {designs}")
    cells = [dict(c) for c in cells] if cells else [{}]
    ids = make_cell_ids(cells)
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    tasks = []
    for i, child in enumerate(root.spawn(int(n_runs))):
        entropy = _plain_entropy(child.entropy)
        key = tuple(int(k) for k in child.spawn_key)
        for cell, cid in zip(cells, ids):
            for d in designs:
                tasks.append(Task(i, d, dict(cell), entropy, cid, key))
    return tasks


# ========================================================================= files
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]+")


def _slug(s: str, maxlen: int = 60) -> str:
    t = _UNSAFE.sub("_", s).strip("._")
    return (t or "x")[:maxlen]


def task_filename(cell_id: str, design: str, run_index: int) -> str:
    """File name of a task's result: readable slug plus a hash that keeps names unique."""
    h = hashlib.sha1(f"{cell_id}\x00{design}".encode()).hexdigest()[:8]
    return f"{_slug(cell_id)}__{_slug(design)}__{h}__r{int(run_index):06d}.parquet"


def _task_file(task: Task) -> str:
    return task_filename(task.cell_id, task.design, task.run_index)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a hidden temp file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def _clean_tmp(folder: Path) -> None:
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            try:
                p.unlink()
            except OSError:
                pass


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


class _DirLock:
    """Advisory exclusive lock on ``out_dir/.lock`` (released when the process dies)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise RuntimeError(f"another batch is writing to {self.path.parent} (lock {self.path} is held)") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False


# ================================================================== JSON helpers
def _jsonable(obj: Any) -> Any:
    """A JSON-ready copy of ``obj`` (dict keys as str, numpy scalars and arrays, paths, enums)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [_jsonable(v) for v in items]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if hasattr(obj, "model_dump"):
        return _jsonable(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    raise TypeError(f"cannot record a {type(obj).__name__} in the manifest: {obj!r:.80}")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Path and values of the first place two JSON-like values differ (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                return f"{sub}: absent in the manifest, {_short(b[k])} now"
            if k not in b:
                return f"{sub}: {_short(a[k])} in the manifest, absent now"
            d = _first_difference(a[k], b[k], sub)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        if len(a) != len(b):
            return f"{path or '<root>'}: {len(a)} items in the manifest, {len(b)} now"
        return None
    if _canonical(a) != _canonical(b):
        return f"{path or '<root>'}: {_short(a)} in the manifest, {_short(b)} now"
    return None


def _short(v: Any, n: int = 60) -> str:
    s = json.dumps(v, allow_nan=True)
    return s if len(s) <= n else s[: n - 3] + "..."


# ============================================================== rows and outcomes
def _scalar(v: Any) -> Any:
    """A JSON scalar, or raise TypeError."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"{type(v).__name__} is not a JSON scalar (int, float, bool, str or None)")


def _cell_value(v: Any) -> Any:
    try:
        return _scalar(v)
    except TypeError:
        return json.dumps(_jsonable(v), separators=(",", ":"), sort_keys=True)


def _entropy_value(entropy: Any) -> int | str:
    """``seed_entropy`` column: the int itself when it fits int64, else its JSON text."""
    entropy = _plain_entropy(entropy)
    if isinstance(entropy, int) and 0 <= entropy <= _INT64_MAX:
        return entropy
    return json.dumps(entropy)


def _clean_metrics(out: Mapping[str, Any]) -> dict[str, Any]:
    metrics = {}
    for k, v in out.items():
        if not isinstance(k, str) or not k:
            raise TypeError(f"metric names must be non-empty strings, got {k!r}")
        if k in RESERVED_COLUMNS or k.startswith(CELL_PREFIX):
            raise ValueError(f"metric name {k!r} is reserved for the batch's own columns")
        try:
            metrics[k] = _scalar(v)
        except TypeError as exc:
            raise TypeError(f"metric {k!r}: {exc}") from None
    return metrics


def _make_row(task: Task, status: str, error: str | None, tb: str | None, elapsed: float, metrics: Mapping) -> dict:
    row: dict[str, Any] = {"run_index": int(task.run_index), "design": task.design, "cell_id": task.cell_id}
    for k, v in task.cell.items():
        row[CELL_PREFIX + str(k)] = _cell_value(v)
    row["seed_entropy"] = _entropy_value(task.seed)
    row["spawn_key"] = json.dumps([int(k) for k in task.spawn_key])
    row["status"] = status
    row["error"] = error
    row["traceback"] = tb
    row["elapsed_s"] = float(elapsed)
    row.update(metrics)
    return row


def _error_text(exc: BaseException) -> str:
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _tail(text: str) -> str:
    lines = text.rstrip("\n").splitlines()[-_TRACEBACK_LINES:]
    out = "\n".join(lines)
    return out[-_TRACEBACK_CHARS:]


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _series_bytes(series: pd.DataFrame, task: Task) -> bytes:
    frame = series
    if not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1 and frame.index.name is None):
        frame = frame.reset_index()
    clash = [c for c in ID_COLUMNS if c in frame.columns]
    if clash:
        raise ValueError(f"the _series frame has columns {clash} that the batch adds itself")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame.insert(0, "cell_id", task.cell_id)
    frame.insert(0, "design", task.design)
    frame.insert(0, "run_index", int(task.run_index))
    return _table_bytes(pa.Table.from_pandas(frame, preserve_index=False))


class _Outcome(NamedTuple):
    status: str
    row: bytes
    series: bytes | None
    error: str | None


def _encode(task: Task, status: str, error: str | None, tb: str | None, elapsed: float, metrics: Mapping) -> bytes:
    return _table_bytes(pa.Table.from_pylist([_make_row(task, status, error, tb, elapsed, metrics)]))


def _execute(scenario: Any, run_fn: RunFn, task: Task, keep: bool) -> _Outcome:
    """Run one task and encode its row (and kept series) as Parquet bytes.

    An ``Exception`` from ``run_fn`` (or a result that cannot be stored) gives a failed row;
    ``KeyboardInterrupt``/``SystemExit`` propagate.
    """
    t0 = time.perf_counter()
    status, error, tb, metrics, series = "ok", None, None, {}, None
    try:
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
    return _Outcome(status, row, kept, error)


# process-pool workers get the scenario and run_fn once, at start
_WORKER: dict[str, Any] = {}


def _worker_init(scenario: Any, run_fn: RunFn) -> None:
    try:  # Ctrl-C is the parent's business: it cancels and terminates the pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # pragma: no cover
        pass
    _WORKER["scenario"] = scenario
    _WORKER["run_fn"] = run_fn


def _worker_execute(task: Task, keep: bool) -> _Outcome:
    return _execute(_WORKER["scenario"], _WORKER["run_fn"], task, keep)


# ======================================================================= report
@dataclass
class BatchReport:
    """What a ``run_batch`` session did.

    ``ok`` and ``failed`` count the tasks run in this session, ``skipped`` the tasks already
    done ok before it (``resume``). ``exit_code`` is 0 when nothing failed, else 1.
    """

    out_dir: Path
    n_tasks: int
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    executor: str = "serial"
    failures: list[dict[str, Any]] = field(default_factory=list)

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


class ManifestMismatchError(ValueError):
    """``resume`` on a folder whose manifest was written for a different batch."""


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

    def record(self, task: Task, outcome: _Outcome) -> None:
        name = _task_file(task)
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


# ===================================================================== manifest
def load_manifest(out_dir: str | Path) -> dict:
    """The batch folder's ``manifest.json``."""
    path = Path(out_dir) / MANIFEST
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("perpstress")
    except Exception:
        return "unknown"


def _plan(tasks: Sequence[Task]) -> dict[str, Any]:
    designs = list(dict.fromkeys(t.design for t in tasks))
    cells: dict[str, Any] = {}
    for t in tasks:
        cells.setdefault(t.cell_id, _jsonable(t.cell))
    entropies = {_canonical(_plain_entropy(t.seed)) for t in tasks}
    seed = _plain_entropy(tasks[0].seed) if len(entropies) == 1 else None
    rows = sorted(
        [t.cell_id, t.design, int(t.run_index), _plain_entropy(t.seed), [int(k) for k in t.spawn_key]] for t in tasks
    )
    return {
        "designs": designs,
        "cells": [{"cell_id": k, "params": v} for k, v in cells.items()],
        "n_runs": len({t.run_index for t in tasks}),
        "n_tasks": len(tasks),
        "seed": seed,
        "plan_digest": hashlib.sha256(_canonical(rows).encode()).hexdigest(),
    }


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


def _check_manifest(old: Mapping, scenario_json: Any, plan: Mapping, path: Path) -> None:
    problems = []
    if _canonical(old.get("scenario")) != _canonical(scenario_json):
        diff = _first_difference(old.get("scenario"), scenario_json) or "differs"
        problems.append(f"scenario differs ({diff})")
    if _canonical(old.get("seed")) != _canonical(plan["seed"]):
        problems.append(f"seed differs ({_short(old.get('seed'))} in the manifest, {_short(plan['seed'])} now)")
    for key in ("designs", "n_runs"):
        if _canonical(old.get(key)) != _canonical(plan[key]):
            problems.append(f"{key} differ ({_short(old.get(key))} in the manifest, {_short(plan[key])} now)")
    old_cells = [c.get("cell_id") for c in old.get("cells", [])]
    new_cells = [c["cell_id"] for c in plan["cells"]]
    if old_cells != new_cells:
        problems.append(f"sweep cells differ ({_short(old_cells)} in the manifest, {_short(new_cells)} now)")
    if not problems and old.get("plan_digest") != plan["plan_digest"]:
        problems.append("the planned tasks differ (same designs, cells and runs, different seeds per task)")
    if problems:
        raise ManifestMismatchError(
            f"cannot resume the batch in {path.parent}: {path.name} was written for a different batch: "
            + "; ".join(problems)
            + ". Resume with the original scenario and seed, or write to a new folder."
        )


# ======================================================================= runner
def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _make_bar(total: int, initial: int, progress: bool):
    from tqdm import tqdm

    try:
        tty = bool(sys.stdout is not None and sys.stdout.isatty())
    except (AttributeError, ValueError):
        tty = False
    bar = tqdm(total=total, initial=initial, unit="run", desc="runs", disable=not (progress and tty), dynamic_ncols=True)
    bar.set_postfix(failed=0, refresh=False)
    return bar


def _scan_ok(runs: Path) -> set[str]:
    """File names under ``runs/`` whose row has ``status == "ok"`` (unreadable files: not ok)."""
    files = sorted(runs.glob("*.parquet")) if runs.is_dir() else []

    def status(p: Path) -> str | None:
        try:
            col = pq.read_table(p, columns=["status"]).column(0)
            return col[0].as_py() if len(col) else None
        except Exception:
            return None

    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        return {p.name for p, s in zip(files, pool.map(status, files)) if s == "ok"}


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
    mp_context: str = "spawn",
) -> BatchReport:
    """Run every task with ``run_fn``, writing each result to ``out_dir`` as it finishes.

    Args:
        scenario: the resolved scenario (a JSON-able dict); passed (as a deep copy) to every run
            and recorded in the manifest.
        run_fn: ``run_fn(scenario, task) -> dict``; for ``process`` it must be picklable (a
            module-level function), for ``dask`` importable on the workers.
        tasks: from ``plan_tasks``; keys ``(cell_id, design, run_index)`` must be unique.
        out_dir: the batch folder (created).
        executor: ``serial`` (in this process), ``process`` (a spawn-context process pool) or
            ``dask`` (a ``dask.distributed`` cluster).
        workers: pool size (default: CPUs available). Ignored by ``serial`` and when joining a
            ``scheduler``.
        scheduler: address of a running dask scheduler (``tcp://host:port``); without it
            ``dask`` starts a local cluster on 127.0.0.1 and closes it at the end.
        keep_series: store the ``_series`` frame of run indices ``< keep_series``.
        progress: show a progress bar (only when stdout is a terminal).
        resume: continue a batch in ``out_dir``: tasks with an ok result are skipped, failed and
            missing ones run. The manifest must match (same scenario, seed, designs, cells,
            runs), else ``ManifestMismatchError``. Without ``resume`` an ``out_dir`` that already
            holds a batch is refused (``FileExistsError``).
        mp_context: multiprocessing start method for ``process`` (``spawn`` by default: safe with
            threads; ``forkserver`` also works).

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

        done = _scan_ok(runs_dir) if resume else set()
        pending = [t for t, n in zip(tasks, names) if n not in done]
        report.skipped = len(tasks) - len(pending)
        bar = _make_bar(len(tasks), report.skipped, progress)
        rec = _Recorder(out_dir, report, bar)
        state = "error"
        try:
            if pending:
                if executor == "serial":
                    _run_serial(pending, scenario, run_fn, keep_series, rec)
                elif executor == "process":
                    _run_process(pending, scenario, run_fn, keep_series, rec, min(workers, len(pending)), mp_context)
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


def _run_process(
    pending: list[Task], scenario: Any, run_fn: RunFn, keep_series: int, rec: _Recorder, workers: int, mp_context: str
) -> None:
    ctx = mp.get_context(mp_context)
    ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(scenario, run_fn))
    futures: dict[cf.Future, Task] = {}
    try:
        with _children_ignore_sigint():  # workers are spawned by submit
            for t in pending:
                futures[ex.submit(_worker_execute, t, t.run_index < keep_series)] = t
        for fut in cf.as_completed(futures):
            t = futures[fut]
            try:
                outcome = fut.result()
            except BrokenProcessPool:
                raise
            except Exception as exc:  # e.g. an argument that could not be pickled
                rec.record_error(t, exc)
                continue
            rec.record(t, outcome)
    except BrokenProcessPool as exc:
        # keep whatever finished before the pool broke, then stop
        for f, t in futures.items():
            if t.key not in rec.done and f.done() and not f.cancelled() and f.exception() is None:
                rec.record(t, f.result())
        _terminate_pool(ex, futures)
        not_done = [t for t in futures.values() if t.key not in rec.done]
        raise WorkerLostError(
            f"a worker process died (killed or out of memory?) while running the batch: "
            f"{rec.report.ok + rec.report.failed} runs finished and are saved, {len(not_done)} did not run. "
            f"Run again with resume=True to finish them (fewer workers if memory is short). Cause: {exc}",
            rec.report,
            not_done,
        ) from exc
    except BaseException:
        _terminate_pool(ex, futures)
        raise
    ex.shutdown(wait=True)


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


# ======================================================================= loading
def _order_columns(df: pd.DataFrame, id_cols: Sequence[str], after: Sequence[str]) -> pd.DataFrame:
    cols = list(df.columns)
    front = [c for c in id_cols if c in cols]
    cell = [c for c in cols if c.startswith(CELL_PREFIX)]
    meta = [c for c in after if c in cols]
    rest = [c for c in cols if c not in front and c not in cell and c not in meta]
    return df[front + cell + meta + rest]


def _read_folder(folder: Path) -> pd.DataFrame | None:
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(pool.map(lambda p: pq.read_table(p), files))
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, NotImplementedError):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """Every run row of a batch folder (ok and failed), sorted by cell_id, design, run_index.

    Columns: ``run_index, design, cell_id``, the ``cell.<param>`` columns, ``seed_entropy,
    spawn_key, status, error, traceback, elapsed_s``, then the metrics (NaN on failed rows).
    Tasks that never finished have no row.
    """
    df = _read_folder(Path(out_dir) / RUNS_DIR)
    if df is None:
        return pd.DataFrame(columns=list(ID_COLUMNS + META_COLUMNS))
    df = _order_columns(df, ID_COLUMNS, META_COLUMNS)
    return df.sort_values(list(("cell_id", "design", "run_index")), kind="stable").reset_index(drop=True)


def load_series(out_dir: str | Path) -> pd.DataFrame:
    """The kept per-step series of a batch: the ``_series`` frames with ``run_index, design,
    cell_id`` in front, sorted by cell_id, design, run_index (step order kept)."""
    df = _read_folder(Path(out_dir) / SERIES_DIR)
    if df is None:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    df = _order_columns(df, ID_COLUMNS, ())
    return df.sort_values(["cell_id", "design", "run_index"], kind="stable").reset_index(drop=True)


from simulator.experiments.batch.scenario import DEFAULT_DESIGN, batch_scenario, scenario_run_fn  # noqa: E402
