"""Index (external spot) price paths: stochastic models, replayed trades and scripted shocks.

The index is what the venue's mark and the arbitrageurs lean on (DESIGN.md §4). A scenario
gives one model per market and a list of shocks; ``index_paths`` turns them into a float64
array ``[n_steps, n_markets]`` of prices in quote currency.

Conventions:

- Time: step ``k`` is at ``k * dt_seconds``; row 0 is the start price. Annualised parameters
  use a 365-day year (crypto trades every day), ``YEAR_SECONDS``.
- Randomness: everything comes from the ``rng`` passed in, in a fixed order: first one block of
  standard normals ``[n_steps - 1, n_markets]`` (one column per market, whatever its model),
  made equicorrelated with a Cholesky factor; then, market by market in order, the extra draws
  of jump-diffusion markets (Poisson jump counts, then jump sizes). Shocks are applied last and
  draw nothing, so editing a shock never changes the random path under it. Same seed, same
  models: the same array.
- Models: ``GBM`` (log-normal, arithmetic drift ``drift``); ``JumpDiffusion`` (Merton: GBM plus
  compound-Poisson normal log jumps, compensated so ``drift`` stays the expected return);
  ``Garch`` (GARCH(1,1) per-step log returns with zero mean); ``Replay`` (a CSV of trades,
  resampled to the step: the price at step ``k`` is the last trade at or before
  ``start + k * dt``, so a step without trades carries the last price forward).
- Shocks (``IndexShock``) multiply the model path: a ramp linear in log price over
  ``duration`` steps to ``1 + move``, an optional hold, then a linear (in log price) recovery
  over ``recovery_steps`` to ``1 + move * (1 - recovery)``, which then holds. Several shocks
  multiply.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from itertools import accumulate
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

YEAR_SECONDS = 365 * 24 * 3600
DAY_SECONDS = 24 * 3600
TIMESTAMP_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_PLAUSIBLE_NS = (-(2.0**62), 2.0**62)  # int64 nanoseconds with room to spare (~1824..2116)
HEAD_FILL_SECONDS = 60.0  # a replay may start up to max(this, one step) before its first trade
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------------------- models
class GBM(_Config):
    """Geometric Brownian motion.

    Args:
        start_price: price at step 0, quote currency, > 0.
        drift: annualised expected return ``mu`` (``E[S_t] = S_0 exp(mu t)``).
        volatility: annualised volatility of log returns, >= 0.
    """

    kind: Literal["gbm"] = "gbm"
    start_price: float = Field(gt=0)
    drift: float = 0.0
    volatility: float = Field(ge=0)


class JumpDiffusion(_Config):
    """Merton jump-diffusion: GBM plus a compound Poisson process of normal log jumps.

    The drift is compensated (``mu - lambda * (exp(m + s^2 / 2) - 1)``) so ``drift`` stays the
    expected return. Jumps are drawn per market, independently of the other markets.

    Args:
        start_price, drift, volatility: as in ``GBM``.
        jump_intensity: expected number of jumps per day, >= 0.
        jump_mean: mean log jump ``m`` (e.g. -0.05 for jumps of about -5 %).
        jump_std: standard deviation ``s`` of the log jump, >= 0.
    """

    kind: Literal["jump_diffusion"] = "jump_diffusion"
    start_price: float = Field(gt=0)
    drift: float = 0.0
    volatility: float = Field(ge=0)
    jump_intensity: float = Field(ge=0)
    jump_mean: float = Field(ge=-5, le=5)
    jump_std: float = Field(default=0.0, ge=0, le=5)


class Garch(_Config):
    """GARCH(1,1) on per-step log returns: ``r_t = sqrt(h_t) z_t``,
    ``h_{t+1} = omega + alpha r_t^2 + beta h_t``, zero mean.

    Args:
        start_price: price at step 0, > 0.
        omega: constant of the variance recursion (per-step variance units), > 0.
        alpha: weight of the last squared return, >= 0.
        beta: weight of the last variance, >= 0; ``alpha + beta < 1`` (stationary).
        initial_variance: ``h_0``; default the stationary variance ``omega / (1 - alpha - beta)``.
    """

    kind: Literal["garch"] = "garch"
    start_price: float = Field(gt=0)
    omega: float = Field(gt=0)
    alpha: float = Field(ge=0)
    beta: float = Field(ge=0)
    initial_variance: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _stationary(self) -> "Garch":
        if self.alpha + self.beta >= 1:
            raise ValueError(
                f"alpha + beta must be < 1 for a stationary GARCH(1,1); got "
                f"alpha={self.alpha} + beta={self.beta} = {self.alpha + self.beta}"
            )
        return self

    @property
    def stationary_variance(self) -> float:
        """Unconditional per-step variance of the log return."""
        return self.omega / (1 - self.alpha - self.beta)


class Replay(_Config):
    """A replayed price path from a CSV of trades (or of prices already on a grid).

    Args:
        path: the CSV file (``.csv`` or ``.csv.gz``); a relative path is resolved against the
            ``base_dir`` given to ``index_paths`` (the scenario file's folder), else the
            working directory.
        timestamp_column, price_column: column names.
        timestamp_unit: unit of numeric timestamps since the epoch: ``s``, ``ms``, ``us``,
            ``ns`` (ISO-8601 strings are also accepted, and then the unit is ignored).
        start: time of step 0 (ISO datetime; naive means UTC), at most one step or a minute
            (whichever is longer) before the first trade. Default: the first trade's time
            floored to a whole multiple of the step length.
        rescale_to: if given, the path is multiplied so that step 0's price equals it.
    """

    kind: Literal["replay"] = "replay"
    path: str = Field(min_length=1)
    timestamp_column: str = "timestamp"
    price_column: str = "price"
    timestamp_unit: Literal["s", "ms", "us", "ns"] = "us"
    start: datetime | None = None
    rescale_to: float | None = Field(default=None, gt=0)

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return v


IndexModel = Annotated[Union[GBM, JumpDiffusion, Garch, Replay], Field(discriminator="kind")]
INDEX_MODEL_ADAPTER: TypeAdapter = TypeAdapter(IndexModel, config=ConfigDict(title="IndexModel"))


def parse_index_model(data) -> GBM | JumpDiffusion | Garch | Replay:
    """Validate a mapping (e.g. from YAML) into an index model; models pass through."""
    if isinstance(data, (GBM, JumpDiffusion, Garch, Replay)):
        return data
    return INDEX_MODEL_ADAPTER.validate_python(data)


# ---------------------------------------------------------------------------- shocks
class IndexShock(_Config):
    """A scripted index move.

    From ``step`` the factor on the index ramps, linearly in log price, to ``1 + move`` at
    ``step + duration``; holds for ``hold_steps``; then recovers, linearly in log price, over
    ``recovery_steps`` to ``1 + move * (1 - recovery)``, and stays there.

    Args:
        step: first step of the ramp (the factor is still 1 at this step), >= 0.
        duration: steps of the ramp, >= 1.
        move: fractional move at the end of the ramp, in (-1, 10) (-0.3 = a 30 % drop).
        hold_steps: steps held at ``1 + move`` before the recovery starts, >= 0.
        recovery: fraction of the move given back, in [0, 1].
        recovery_steps: steps of the recovery, >= 1 when ``recovery > 0``.
        markets: indices of the markets hit; None = all.
    """

    step: int = Field(ge=0)
    duration: int = Field(default=1, ge=1)
    move: float = Field(gt=-1, lt=10)
    hold_steps: int = Field(default=0, ge=0)
    recovery: float = Field(default=0.0, ge=0, le=1)
    recovery_steps: int = Field(default=0, ge=0)
    markets: list[Annotated[int, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "IndexShock":
        if self.recovery > 0 and self.recovery_steps < 1:
            raise ValueError(f"recovery_steps must be >= 1 when recovery > 0 (recovery={self.recovery})")
        if self.markets is not None:
            if not self.markets:
                raise ValueError("markets must list at least one market index, or be null for all markets")
            if len(set(self.markets)) != len(self.markets):
                raise ValueError(f"markets must not repeat an index; got {self.markets}")
        return self

    def factors(self, n_steps: int) -> np.ndarray:
        """Multiplicative factor of this shock at each of ``n_steps`` steps."""
        s = np.arange(n_steps, dtype=float)
        peak = 1.0 + self.move
        final = 1.0 + self.move * (1.0 - self.recovery)
        ramp = np.clip((s - self.step) / self.duration, 0.0, 1.0)
        rec_start = self.step + self.duration + self.hold_steps
        if self.recovery > 0:
            rec = np.clip((s - rec_start) / self.recovery_steps, 0.0, 1.0)
        else:
            rec = np.zeros(n_steps)
        log_f = math.log(peak) * ramp + (math.log(final) - math.log(peak)) * rec
        f = np.exp(log_f)
        # plateaus exactly at 1 + move and 1 + move * (1 - recovery), not exp(log(.))
        f = np.where((ramp >= 1.0) & (rec <= 0.0), peak, f)
        return np.where(rec >= 1.0, final, f)


def _as_shock(shock) -> IndexShock:
    return shock if isinstance(shock, IndexShock) else IndexShock.model_validate(shock)


def shock_factors(n_steps: int, n_markets: int, shocks: Sequence[IndexShock | Mapping] = ()) -> np.ndarray:
    """Product of all shocks' factors, float64 ``[n_steps, n_markets]`` (ones without shocks).

    Raises:
        ValueError: a shock names a market index that does not exist.
    """
    out = np.ones((n_steps, n_markets))
    for i, shock in enumerate(shocks):
        shock = _as_shock(shock)
        markets = range(n_markets) if shock.markets is None else shock.markets
        bad = [m for m in markets if m >= n_markets]
        if bad:
            raise ValueError(
                f"shock {i} names market(s) {bad}, but there are only {n_markets} markets (0..{n_markets - 1})"
            )
        out[:, list(markets)] *= shock.factors(n_steps)[:, None]
    return out


def apply_shocks(paths: np.ndarray, shocks: Sequence[IndexShock | Mapping] = ()) -> np.ndarray:
    """Multiply index paths ``[n_steps, n_markets]`` by the shocks' factors; returns a new array."""
    paths = np.asarray(paths, dtype=float)
    if paths.ndim != 2:
        raise ValueError(f"paths must be 2-D [n_steps, n_markets]; got shape {paths.shape}")
    return paths * shock_factors(paths.shape[0], paths.shape[1], shocks)


# ---------------------------------------------------------------------------- correlation
def equicorrelation_factor(n_markets: int, correlation: float) -> np.ndarray:
    """Lower-triangular ``L`` with ``L @ L.T`` = the equicorrelation matrix.

    Valid for ``correlation`` in ``[-1/(n_markets-1), 1]`` (any value in [-1, 1] for one
    market). The boundary matrices are singular; the factor then has zero columns.
    """
    lo = -1.0 / (n_markets - 1) if n_markets > 1 else -1.0
    if not (lo - 1e-12 <= correlation <= 1.0) or math.isnan(correlation):
        raise ValueError(
            f"correlation must be in [{lo:g}, 1] for {n_markets} markets (equicorrelation is "
            f"positive semi-definite only there); got {correlation}"
        )
    c = np.full((n_markets, n_markets), float(correlation))
    np.fill_diagonal(c, 1.0)
    return _cholesky_psd(c)


def _cholesky_psd(c: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Cholesky factor that tolerates a positive semi-definite (singular) matrix."""
    n = c.shape[0]
    low = np.zeros_like(c)
    for j in range(n):
        d = c[j, j] - low[j, :j] @ low[j, :j]
        if d <= tol:
            continue  # dependent direction: column j stays zero
        low[j, j] = math.sqrt(d)
        low[j + 1 :, j] = (c[j + 1 :, j] - low[j + 1 :, :j] @ low[j, :j]) / low[j, j]
    return low


# ---------------------------------------------------------------------------- paths
def _from_log_increments(start: float, log_drift: float, increments: np.ndarray) -> np.ndarray:
    """``start * exp(log_drift * k + cumsum(increments))`` with row 0 = ``start`` exactly."""
    n = len(increments) + 1
    log_path = np.empty(n)
    log_path[0] = 0.0
    log_path[1:] = log_drift * np.arange(1, n) + np.cumsum(increments)
    return start * np.exp(log_path)


def _gbm(model: GBM | JumpDiffusion, z: np.ndarray, dt_seconds: float, extra=None) -> np.ndarray:
    dt = dt_seconds / YEAR_SECONDS
    log_drift = (model.drift - 0.5 * model.volatility**2) * dt
    inc = model.volatility * math.sqrt(dt) * z
    if extra is not None:
        log_drift -= extra[0]
        inc = inc + extra[1]
    return _from_log_increments(model.start_price, log_drift, inc)


def _jump_diffusion(model: JumpDiffusion, z: np.ndarray, dt_seconds: float, rng: np.random.Generator) -> np.ndarray:
    lam = model.jump_intensity * dt_seconds / DAY_SECONDS  # expected jumps per step
    counts = rng.poisson(lam, size=len(z))
    sizes = rng.standard_normal(len(z))
    jumps = counts * model.jump_mean + np.sqrt(counts) * model.jump_std * sizes
    compensator = lam * math.expm1(model.jump_mean + 0.5 * model.jump_std**2)
    return _gbm(model, z, dt_seconds, extra=(compensator, jumps))


def _garch(model: Garch, z: np.ndarray) -> np.ndarray:
    h0 = model.stationary_variance if model.initial_variance is None else model.initial_variance
    omega = model.omega
    # h_{t+1} = omega + alpha h_t z_t^2 + beta h_t = omega + h_t * (alpha z_t^2 + beta): sequential
    growth = (model.alpha * z**2 + model.beta).tolist()
    h = np.fromiter(accumulate(growth[:-1], lambda h, g: omega + h * g, initial=h0), float, len(z))
    return _from_log_increments(model.start_price, 0.0, np.sqrt(h) * z)


def index_paths(
    models: Sequence[IndexModel | Mapping],
    n_steps: int,
    dt_seconds: float,
    rng: np.random.Generator,
    correlation: float = 0.0,
    shocks: Sequence[IndexShock | Mapping] = (),
    base_dir: Path | str | None = None,
) -> np.ndarray:
    """Index prices for every market: the model paths times the shocks.

    Args:
        models: one model (or its mapping) per market.
        n_steps: rows of the result (step 0 included), >= 1.
        dt_seconds: step length in seconds, > 0.
        rng: the only source of randomness (see the module docstring for the draw order).
        correlation: equicorrelation of the per-step normals across markets, in
            ``[-1/(n_markets-1), 1]``. It drives the diffusion (and GARCH innovations); jumps
            are independent per market; replayed markets ignore their column.
        shocks: scripted moves applied on top of the model paths.
        base_dir: folder against which relative ``Replay.path`` values are resolved.

    Returns:
        float64 ``[n_steps, n_markets]``, prices in quote currency; row 0 is the start price
        (a shock starting at step 0 only moves the price from step 1).

    Raises:
        ValueError: bad arguments, a replay file too short or unreadable.
        FileNotFoundError: a replay file that does not exist.
    """
    models = [parse_index_model(m) for m in models]
    if not models:
        raise ValueError("index_paths needs at least one market model")
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1; got {n_steps}")
    n_steps = int(n_steps)
    if not (math.isfinite(dt_seconds) and dt_seconds > 0):
        raise ValueError(f"dt_seconds must be a positive number of seconds; got {dt_seconds}")
    n_markets = len(models)
    low = equicorrelation_factor(n_markets, correlation)
    z = rng.standard_normal((n_steps - 1, n_markets))
    if correlation != 0:
        z = z @ low.T
    paths = np.empty((n_steps, n_markets))
    for j, model in enumerate(models):
        if isinstance(model, JumpDiffusion):
            paths[:, j] = _jump_diffusion(model, z[:, j], dt_seconds, rng)
        elif isinstance(model, GBM):
            paths[:, j] = _gbm(model, z[:, j], dt_seconds)
        elif isinstance(model, Garch):
            paths[:, j] = _garch(model, z[:, j])
        else:
            paths[:, j] = replay_path(model, n_steps, dt_seconds, base_dir)
    return apply_shocks(paths, shocks)


# ---------------------------------------------------------------------------- replay
def _resolve(model: Replay, base_dir: Path | str | None) -> Path:
    p = Path(model.path).expanduser()
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not p.is_absolute():
        p = base / p
    if not p.is_file():
        raise FileNotFoundError(
            f"replay index file not found: {p} (Replay.path={model.path!r}, resolved against {base})"
        )
    return p


@functools.lru_cache(maxsize=32)
def _read_trades(path: str, _mtime_ns: int, ts_col: str, price_col: str, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (int64 ns, sorted) and prices (float64) of a trades CSV; cached per file version."""
    import pandas as pd  # lazy: only replays read CSVs (keeps ``perpstress --help`` fast)

    with open(path, "rb") as fh:
        head = fh.read(4096)
    if b"\x00" in head:
        raise ValueError(f"replay file {path}: a binary file, not CSV text")
    if not head.strip():
        raise ValueError(f"replay file {path}: the file is empty")
    try:
        df = pd.read_csv(path, usecols=lambda c: c in (ts_col, price_col), encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"replay file {path}: cannot read it as CSV ({' '.join(str(e).split())})") from e
    missing = [c for c in (ts_col, price_col) if c not in df.columns]
    if missing:
        header = list(pd.read_csv(path, nrows=0).columns)
        raise ValueError(f"replay file {path}: no column(s) {missing}; its columns are {header}")
    if df.empty:
        raise ValueError(f"replay file {path}: a header but no rows")
    df = df.dropna()
    if df.empty:
        raise ValueError(f"replay file {path}: no rows with both {ts_col!r} and {price_col!r}")
    col = df[ts_col]
    if pd.api.types.is_numeric_dtype(col):
        raw = col.to_numpy(float) * TIMESTAMP_UNITS[unit]
        lo, hi = _PLAUSIBLE_NS
        if not (np.isfinite(raw).all() and raw.min() >= lo and raw.max() <= hi):
            raise ValueError(
                f"replay file {path}: column {ts_col!r} read in timestamp_unit {unit!r} gives times outside "
                f"what int64 nanoseconds hold (first value {col.iloc[0]}); check timestamp_unit (s, ms, us, ns)"
            )
        if pd.api.types.is_integer_dtype(col):
            ts = col.to_numpy(np.int64) * TIMESTAMP_UNITS[unit]
        else:
            ts = np.round(raw).astype(np.int64)
    else:
        try:
            ts = pd.DatetimeIndex(pd.to_datetime(col, utc=True, format="ISO8601")).as_unit("ns").asi8
        except (ValueError, TypeError, OverflowError) as e:
            raise ValueError(
                f"replay file {path}: column {ts_col!r} is neither numeric nor ISO-8601 ({' '.join(str(e).split())})"
            ) from e
    try:
        price = pd.to_numeric(df[price_col]).to_numpy(float)
    except (ValueError, TypeError) as e:
        raise ValueError(f"replay file {path}: column {price_col!r} is not numeric ({e})") from e
    if not (np.isfinite(price).all() and (price > 0).all()):
        bad = int(np.flatnonzero(~(np.isfinite(price) & (price > 0)))[0])
        raise ValueError(f"replay file {path}: prices must be finite and > 0 (row {bad + 1}: {price[bad]})")
    order = np.argsort(ts, kind="stable")
    ts, price = ts[order], price[order]
    ts.flags.writeable = False
    price.flags.writeable = False
    return ts, price


def _load(model: Replay, base_dir) -> tuple[Path, np.ndarray, np.ndarray]:
    p = _resolve(model, base_dir)
    key = (model.timestamp_column, model.price_column, model.timestamp_unit)
    ts, price = _read_trades(str(p), p.stat().st_mtime_ns, *key)
    return p, ts, price


def _fmt_ns(ns: int) -> str:
    import pandas as pd

    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


def _grid(model: Replay, ts: np.ndarray, dt_seconds: float, p: Path) -> tuple[int, int, int]:
    """Start (ns), step (ns) and the number of steps the file covers."""
    dt_ns = int(round(dt_seconds * 1e9))
    if dt_ns < 1:
        raise ValueError(f"dt_seconds must be at least 1 ns; got {dt_seconds}")
    if model.start is None:
        start_ns = int(ts[0]) // dt_ns * dt_ns
    else:
        d = model.start - _EPOCH
        start_ns = (d.days * DAY_SECONDS + d.seconds) * 1_000_000_000 + d.microseconds * 1_000
        head_ns = max(dt_ns, int(HEAD_FILL_SECONDS * 1e9))
        if start_ns < ts[0] - head_ns:
            raise ValueError(
                f"replay file {p}: start {model.start.isoformat()} is more than "
                f"{head_ns / 1e9:g} s before its first trade at {_fmt_ns(ts[0])}"
            )
    covered = max(0, (int(ts[-1]) - start_ns) // dt_ns + 1)
    return start_ns, dt_ns, covered


def replay_coverage(model: Replay, dt_seconds: float, base_dir: Path | str | None = None) -> int:
    """How many steps of ``dt_seconds`` the replay file covers from the model's start."""
    p, ts, _ = _load(model, base_dir)
    return _grid(model, ts, dt_seconds, p)[2]


def replay_path(model: Replay, n_steps: int, dt_seconds: float, base_dir: Path | str | None = None) -> np.ndarray:
    """The replayed path on the step grid: step ``k`` = last trade at or before ``start + k dt``.

    Steps before the first trade (when ``start`` precedes it, by at most a minute or one step)
    take the first trade's price. Raises ``ValueError`` when the file ends before step ``n_steps - 1``.
    """
    p, ts, price = _load(model, base_dir)
    start_ns, dt_ns, covered = _grid(model, ts, dt_seconds, p)
    if n_steps > covered:
        raise ValueError(
            f"replay file {p} covers only {covered} steps of {dt_seconds:g} s from "
            f"{_fmt_ns(start_ns)} (last trade {_fmt_ns(ts[-1])}); {n_steps} steps requested"
        )
    grid = start_ns + dt_ns * np.arange(n_steps, dtype=np.int64)
    idx = np.searchsorted(ts, grid, side="right") - 1
    out = price[np.maximum(idx, 0)].astype(float)
    if model.rescale_to is not None:
        out = out * (model.rescale_to / out[0])
    return out
