"""What a batch runs: ``Task`` (one path of one design in one sweep cell), the sweep grid
(``expand_grid``, ``make_cell_ids``), the task list (``plan_tasks``) and the seeds (common
random numbers: ``task_seed_sequence``, ``seed_sequence_from_row``). Pure: no files, no processes.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np


#: cell_id of the single cell of a batch without a sweep.
BASE_CELL_ID = "base"


_INT64_MAX = 2**63 - 1

#: ``run_fn(scenario, task) -> dict of metrics``. It may carry a ``prepare`` attribute: a callable
#: with no arguments that ``run_batch`` calls once per process before the process's first run
#: (imports, compiled-code caches), on every executor; it must not draw random numbers. For a
#: ``functools.partial`` the hook of the wrapped function is used. A ``preload`` attribute, a
#: tuple of module names, is what the process pool's warm fork server imports once before it
#: forks the workers; a module there may run the prepare hook when imported (see
#: ``batch.preload``), and the workers forked from it then skip it.
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
