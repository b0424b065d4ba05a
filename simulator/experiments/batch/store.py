"""A batch folder on disk: file names and columns, atomic writes, the lock, one row per run
(``runs/``), kept series (``series/``), ``manifest.json`` (written once, checked on resume),
and reading it all back (``load_manifest``, ``load_results``, ``load_series``).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import re
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.experiments.batch.plan import Task, _INT64_MAX, _jsonable, _plain_entropy


MANIFEST = "manifest.json"
STATUS = "status.json"
RUNS_DIR = "runs"
SERIES_DIR = "series"
LOCK_FILE = ".lock"
FORMAT_VERSION = 2  # 2: run files carry their task identity and a content hash (metadata)
META_TASK = b"perpstress.task"
META_HASH = b"perpstress.sha256"


#: Columns every run row carries besides the ``cell.<param>`` columns and the metrics.
ID_COLUMNS = ("run_index", "design", "cell_id")
META_COLUMNS = ("seed_entropy", "spawn_key", "status", "error", "traceback", "elapsed_s")
RESERVED_COLUMNS = frozenset(ID_COLUMNS + META_COLUMNS)
CELL_PREFIX = "cell."
SERIES_KEY = "_series"
_TRACEBACK_LINES = 25
_TRACEBACK_CHARS = 4000


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


class BatchLockedError(RuntimeError):
    """Another live session holds the batch folder's lock."""


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
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise BatchLockedError(f"another batch is writing to {self.path.parent} (lock {self.path} is held)") from None
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


def _row_hash(row: Mapping[str, Any]) -> str:
    """sha256 of a run row's canonical JSON (what ``verify_run_file`` recomputes on read)."""
    clean = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, separators=(",", ":"), allow_nan=True,
                                     default=str).encode()).hexdigest()


def _identity(task_or_row: Any) -> dict:
    if isinstance(task_or_row, Task):
        return {"cell_id": task_or_row.cell_id, "design": task_or_row.design, "run_index": int(task_or_row.run_index),
                "file": _task_file(task_or_row)}
    r = task_or_row
    return {"cell_id": r["cell_id"], "design": r["design"], "run_index": int(r["run_index"]),
            "file": task_filename(r["cell_id"], r["design"], int(r["run_index"]))}


def _encode(task: Task, status: str, error: str | None, tb: str | None, elapsed: float, metrics: Mapping) -> bytes:
    row = _make_row(task, status, error, tb, elapsed, metrics)
    table = pa.Table.from_pylist([row])
    # the hash is of the row as it reads back (Arrow may widen types), so verification is exact
    readback = table.to_pylist()[0]
    meta = {META_TASK: json.dumps(_identity(task)).encode(), META_HASH: _row_hash(readback).encode()}
    return _table_bytes(table.replace_schema_metadata(meta))


class RunFileError(ValueError):
    """A run file that is unreadable, changed after it was written, or not the task its name says."""


def verify_run_file(path: Path, require_hash: bool = True) -> dict:
    """Read one run file and check it: readable, content hash intact, identity matching its name
    (a file copied over another is caught). Returns the row; raises ``RunFileError``."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise RunFileError(f"{path}: unreadable run file ({_error_text(exc)[:120]})") from None
    if table.num_rows != 1:
        raise RunFileError(f"{path}: holds {table.num_rows} rows, a run file holds one")
    row = table.to_pylist()[0]
    meta = table.schema.metadata or {}
    if META_HASH in meta:
        if _row_hash(row) != meta[META_HASH].decode():
            raise RunFileError(f"{path}: content hash mismatch: the file was changed after it was written")
    elif require_hash:
        raise RunFileError(f"{path}: no content hash (not written by this batch)")
    try:
        ident = _identity(row)
    except (KeyError, TypeError, ValueError):
        raise RunFileError(f"{path}: not a run file (no run_index, design, cell_id)") from None
    if ident["file"] != path.name:
        raise RunFileError(
            f"{path}: holds run {ident['run_index']} of design {ident['design']!r} in cell {ident['cell_id']!r} "
            f"(file {ident['file']}): copied over another run's file"
        )
    if META_TASK in meta and json.loads(meta[META_TASK]) != ident:
        raise RunFileError(f"{path}: its recorded task identity does not match its row")
    return row


def verify_runs(out_dir: str | Path, require_hash: bool | None = None) -> tuple[dict[str, dict], list[str]]:
    """Every run file of a batch folder checked: ``(rows by file name, problems)``."""
    out_dir = Path(out_dir)
    if require_hash is None:
        try:
            require_hash = int(load_manifest(out_dir).get("format", 1)) >= 2
        except (OSError, ValueError, TypeError):
            require_hash = True
    runs = out_dir / RUNS_DIR
    files = sorted(runs.glob("*.parquet")) if runs.is_dir() else []
    rows: dict[str, dict] = {}
    problems: list[str] = []

    def check(p: Path):
        try:
            return p.name, verify_run_file(p, require_hash), None
        except RunFileError as exc:
            return p.name, None, str(exc)

    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        for name, row, problem in pool.map(check, files):
            if problem:
                problems.append(problem)
            else:
                rows[name] = row
    return rows, problems


class ManifestMismatchError(ValueError):
    """``resume`` on a folder whose manifest was written for a different batch."""


# ===================================================================== manifest
def load_manifest(out_dir: str | Path) -> dict:
    """The batch folder's ``manifest.json``."""
    path = Path(out_dir) / MANIFEST
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a batch manifest (a JSON object)")
    return data


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


def _scan_ok(runs: Path, expected: Mapping[str, Task] | None = None) -> tuple[set[str], list[str]]:
    """File names under ``runs/`` that hold a verified ``ok`` row of the task their name says,
    and the problems found (unreadable, changed, copied over another task's file). Files that
    fail are moved aside to ``runs/.rejected/`` so they never count again; their tasks re-run."""
    files = sorted(runs.glob("*.parquet")) if runs.is_dir() else []

    def status(p: Path) -> tuple[str | None, str | None]:
        try:
            row = verify_run_file(p, require_hash=True)
        except RunFileError as exc:
            return None, str(exc)
        if expected is not None:
            task = expected.get(p.name)
            if task is None:
                return None, f"{p}: not a task of this batch"
            if row.get("spawn_key") != json.dumps([int(k) for k in task.spawn_key]) or _entropy_value(task.seed) != row.get("seed_entropy"):
                return None, f"{p}: seeds differ from the batch's plan for this task"
        return row.get("status"), None

    ok, problems = set(), []
    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        for p, (st, problem) in zip(files, pool.map(status, files)):
            if problem:
                problems.append(problem)
                rejected = runs / ".rejected"
                rejected.mkdir(exist_ok=True)
                try:
                    os.replace(p, rejected / p.name)
                except OSError:
                    pass
            elif st == "ok":
                ok.add(p.name)
    return ok, problems


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
