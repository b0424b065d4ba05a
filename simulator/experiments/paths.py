"""A thin per-step record of one run that a batch keeps for *every* run (not only the
``keep_series`` ones): the insurance fund's and the backstop vault's equity at up to
``MAX_POINTS`` steps, so fan charts use all paths.

``thin_paths(timeseries)`` returns a few run-row columns (JSON scalars, as the batch store
wants them): ``path_step`` (the steps sampled, a JSON list of ints; always the first and the
last step, evenly spaced between), ``path_insurance_fund`` and ``path_backstop_equity`` (JSON
lists of USD, cents), and the scalars ``backstop_equity_start`` / ``backstop_equity_end``
(USD: the vault's equity at the first and last step). Text columns are not metrics
(``simulator.experiments.compare.metric_columns`` skips them). ``read_path`` decodes one cell.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

__all__ = ["MAX_POINTS", "PATH_SERIES", "thin_paths", "read_path", "sample_index"]

#: At most this many steps per run.
MAX_POINTS = 200
#: Series kept per run (timeseries column names); the row column is ``path_<name>``.
PATH_SERIES = ("insurance_fund", "backstop_equity")


def sample_index(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Row positions of a series of ``n`` steps to keep: all when ``n <= max_points``, else
    ``max_points`` evenly spaced positions with the first and the last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def thin_paths(timeseries: pd.DataFrame, max_points: int = MAX_POINTS) -> dict:
    """The run-row columns of a run's thin paths (see the module docstring)."""
    ts = timeseries
    idx = sample_index(len(ts), max_points)
    out: dict = {"path_step": json.dumps([int(s) for s in ts["step"].to_numpy()[idx]], separators=(",", ":"))}
    for name in PATH_SERIES:
        v = pd.to_numeric(ts[name], errors="coerce").to_numpy(dtype=float) if name in ts.columns else np.zeros(len(ts))
        out[f"path_{name}"] = json.dumps([None if not np.isfinite(x) else round(float(x), 2) for x in v[idx]],
                                         separators=(",", ":"))
    b = pd.to_numeric(ts["backstop_equity"], errors="coerce").to_numpy(dtype=float) if "backstop_equity" in ts.columns else np.zeros(0)
    out["backstop_equity_start"] = float(b[0]) if len(b) else 0.0
    out["backstop_equity_end"] = float(b[-1]) if len(b) else 0.0
    return out


def read_path(text) -> np.ndarray:
    """One ``path_*`` cell as a float array (NaN for a missing value or a missing cell)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return np.zeros(0)
    return np.array([np.nan if x is None else x for x in json.loads(text)], dtype=float)
