"""Calibration targets as data: real aggregates of an event, and the same aggregates of a run.

A targets file (YAML) lists what a real venue reported and how close a simulation must come::

    name: hyperliquid-2025-10-10
    window: {start: "2025-10-10T21:15:00", end: "2025-10-10T21:27:00"}   # or steps: {start: 900, end: 1620}
    targets:
      - {metric: adl_liq_ratio, market: BTC, value: 0.347, tolerance: 0.1, source: "total_impact_results.json ..."}
      - {metric: adl_median_leverage, value: 0.196, max: 1.0, source: "..."}
      - {metric: adl_profile, value: [0.0, 0.61, ...], tolerance: 0.35, source: "..."}

``metric`` is one of ``METRICS`` (or ``summary.<key>`` for any key of the run summary, over the
whole run); ``market`` is a market name of the scenario, or ``all`` (the default) for the venue
total. ``value`` is the real number (a list for the profile). A target is met when
``|simulated mean - value| <= tolerance``; ``min`` / ``max`` instead (or as well) give a bound
(the real figure stays for the table). ``weight`` scales its part of the calibration loss
(default 1). ``source`` says where the number comes from (file and field).

Every simulated metric is scale-free, so a venue a thousand times smaller than the real one can
match it, and is computed over the targets' window (the real data's time span) only:

``liq_notional``, ``adl_notional``  (market or all; quote currency: for ``summary``-like
    tables only, not scale-free, never a good target)
``adl_liq_ratio``  ADL'd notional / liquidated notional (every stage, the ADL'd case's side
    included: the real liquidation fills include the backstop fills paired with ADL fills)
``backstop_share``  share of the liquidated notional taken by the backstop vault
``adl_median_leverage``  as the source computes it (ConejoCapital/HyperMultiAssetedADL,
    ``full_analysis_realtime.py``): per ADL fill in the window, the ADL'd account's position in
    that coin at the window's end x the fill price / the account's cash (wallet, unrealised PnL
    excluded; 0 when the cash is <= 0) at the window's end; the median over the fills. (The
    source replays the account states to the window's end before measuring, so a position ADL'd
    to zero counts 0x: the figure is low by construction, and so is ours.)
``adl_median_account_leverage``  a stricter reading: median over the ADL'd accounts of their
    account leverage (gross notional at mark / equity) just before their first ADL fill
``adl_share_profitable``  share of ADL fills that closed a profitable position (pnl > 0; the
    source's ``pnl_percent > 0`` per fill)
``first_adl_delay_s``  seconds from the first liquidation in the window to the first ADL fill
    (NaN without ADL)
``adl_profile``  ADL fills per minute from the first liquidation in the window, as shares of
    the fills in the first ``len(value)`` minutes; compared by total-variation distance
    (0 = the same shape, 1 = disjoint), so its ``tolerance`` is on that distance
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

METRICS = (
    "liq_notional", "adl_notional", "adl_liq_ratio", "backstop_share", "adl_median_leverage",
    "adl_median_account_leverage", "adl_share_profitable", "first_adl_delay_s", "adl_profile",
)
#: metrics defined per market (the others are venue-wide; their ``market`` must be ``all``)
PER_MARKET = ("liq_notional", "adl_notional", "adl_liq_ratio", "backstop_share")
PREFIX = "target."
CASH_UNIT = 1e-6  # quote currency per ledger cash unit (simulator.world.model.CASH_UNIT)


class TargetsError(ValueError):
    """A targets file that cannot be used, naming the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Window(_Strict):
    """The real data's time span: ISO times (mapped to steps through the scenario's replay
    start) or step numbers. ``end`` is exclusive."""

    start: datetime | int
    end: datetime | int

    @model_validator(mode="after")
    def _ordered(self):
        if type(self.start) is not type(self.end):
            raise ValueError("give start and end both as times or both as steps")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Target(_Strict):
    metric: str
    market: str = "all"
    value: float | list[float]
    tolerance: float | None = Field(None, gt=0)
    min: float | None = None
    max: float | None = None
    weight: float = Field(1.0, ge=0)
    source: str = ""

    @model_validator(mode="after")
    def _known(self):
        if self.metric not in METRICS and not self.metric.startswith("summary."):
            raise ValueError(f"metric {self.metric!r}; allowed: {', '.join(METRICS)} or summary.<key>")
        if self.metric not in PER_MARKET and self.market != "all":
            raise ValueError(f"metric {self.metric} is venue-wide: market must be 'all'")
        if (self.metric == "adl_profile") != isinstance(self.value, list):
            raise ValueError("adl_profile takes a list of per-minute shares as value; every other metric a number")
        if self.tolerance is None and self.min is None and self.max is None:
            raise ValueError("give a tolerance, a min or a max: when is the target met?")
        return self

    @property
    def key(self) -> str:
        """Column name of the simulated metric in a batch's results."""
        return f"{PREFIX}{self.metric}" + ("" if self.market == "all" else f".{self.market}")

    @property
    def real(self) -> float:
        """The real figure as a number: the profile's own distance to itself, 0."""
        return 0.0 if self.metric == "adl_profile" else float(self.value)

    def met(self, simulated: float) -> bool:
        if simulated is None or not math.isfinite(simulated):
            return False
        ok = True
        if self.tolerance is not None:
            ok &= abs(simulated - self.real) <= self.tolerance + 1e-12
        if self.min is not None:
            ok &= simulated >= self.min
        if self.max is not None:
            ok &= simulated <= self.max
        return bool(ok)

    def error(self, simulated: float) -> float:
        """Scale-free miss: distance outside the bounds and from the real value, in units of
        the tolerance (else a quarter of the largest of |real|, |min|, |max|, at least 0.05);
        10 for an undefined simulation."""
        if simulated is None or not math.isfinite(simulated):
            return 10.0
        scale = self.tolerance or max(abs(self.real), abs(self.min or 0), abs(self.max or 0), 0.2) / 4
        e = 0.0
        if self.tolerance is not None:
            e = abs(simulated - self.real) / scale
        if self.min is not None and simulated < self.min:
            e = max(e, 1 + (self.min - simulated) / scale)
        if self.max is not None and simulated > self.max:
            e = max(e, 1 + (simulated - self.max) / scale)
        return e


class Targets(_Strict):
    name: str = "targets"
    description: str = ""
    window: Window | None = None
    targets: list[Target] = Field(min_length=1)

    def keys(self) -> list[str]:
        return [t.key for t in self.targets]


def load_targets(path: str | Path) -> Targets:
    path = Path(path)
    if not path.exists():
        raise TargetsError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
        return Targets.model_validate(data)
    except yaml.YAMLError as exc:
        raise TargetsError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        msgs = [f"{path}: {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise TargetsError("\n".join(msgs)) from None


def check_markets(targets: Targets, market_names: list[str], source: str = "") -> None:
    """Every target's market must exist in the scenario."""
    for i, t in enumerate(targets.targets):
        if t.market != "all" and t.market not in market_names:
            raise TargetsError(f"{source}targets.{i}.market: {t.market!r} is not a market of the scenario ({market_names})")


# ------------------------------------------------------------------ simulated metrics
def scenario_start(scenario) -> datetime | None:
    """UTC time of step 0: the first replayed market's start (None without a replay)."""
    for m in scenario.index.models:
        start = getattr(m, "start", None)
        if start is not None:
            return start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    return None


def window_steps(window: Window | None, scenario) -> tuple[int, int]:
    """The window as steps ``[lo, hi)`` of the scenario; the whole run without a window."""
    if window is None:
        return 0, scenario.steps
    if isinstance(window.start, int):
        return int(window.start), int(window.end)
    t0 = scenario_start(scenario)
    if t0 is None:
        raise TargetsError("the targets' window is given in time but the scenario replays no dated path; give steps")
    dt = scenario.step_seconds

    def to_step(t: datetime) -> int:
        t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        return int(math.floor((t - t0).total_seconds() / dt))

    return to_step(window.start), to_step(window.end)


def _notional(rows: pd.DataFrame, ticks: np.ndarray, lots: np.ndarray) -> np.ndarray:
    mk = rows["market"].to_numpy().clip(0)
    return (rows["qty"].abs().to_numpy() * rows["price"].fillna(0).to_numpy() * ticks[mk] * lots[mk]).astype(float)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def ledger_snapshot(model) -> dict[str, np.ndarray]:
    """Positions (lots), cash (wallet, cash units) and marks (ticks) of every account now."""
    led = model.venue.ledger
    return {"qty": led.qty.copy(), "wallet": led.wallet.copy(), "mark": np.asarray(model.venue.marks).copy()}


def run_metrics(events: pd.DataFrame, scenario, targets: Targets, snapshot: dict | None = None) -> dict[str, float]:
    """The simulated value of every target of ``targets`` for one run (keys ``Target.key``).
    ``snapshot`` (``ledger_snapshot`` at the window's end) is needed by ``adl_median_leverage``
    (NaN without it)."""
    lo, hi = window_steps(targets.window, scenario)
    names = [m.name for m in scenario.markets]
    ticks = np.array([m.tick_size for m in scenario.markets])
    lots = np.array([m.lot_size for m in scenario.markets])
    dt = scenario.step_seconds
    ev = events[(events["step"] >= lo) & (events["step"] < hi)] if len(events) else events
    kind = ev["kind"].astype(str).to_numpy() if len(ev) else np.zeros(0, dtype=str)
    liq = ev[kind == "liquidation"]
    adl = ev[kind == "adl"]
    liq_n = _notional(liq, ticks, lots) if len(liq) else np.zeros(0)
    adl_n = _notional(adl, ticks, lots) if len(adl) else np.zeros(0)
    liq_m = liq["market"].to_numpy() if len(liq) else np.zeros(0, dtype=int)
    adl_m = adl["market"].to_numpy() if len(adl) else np.zeros(0, dtype=int)
    backstop = (liq["stage"].astype(str).to_numpy() == "backstop") if len(liq) else np.zeros(0, dtype=bool)

    def per_market(metric: str, market: str) -> float:
        lm = np.ones(len(liq_n), dtype=bool) if market == "all" else liq_m == names.index(market)
        am = np.ones(len(adl_n), dtype=bool) if market == "all" else adl_m == names.index(market)
        ln, an = float(liq_n[lm].sum()), float(adl_n[am].sum())
        if metric == "liq_notional":
            return ln
        if metric == "adl_notional":
            return an
        if metric == "adl_liq_ratio":
            return _ratio(an, ln)
        return _ratio(float(liq_n[lm & backstop].sum()), ln)  # backstop_share

    first_liq = int(liq["step"].min()) if len(liq) else None
    out: dict[str, float] = {}
    for t in targets.targets:
        if t.metric.startswith("summary."):
            continue  # filled from the run's summary by the caller
        if t.metric in PER_MARKET:
            v = per_market(t.metric, t.market)
        elif t.metric == "adl_median_leverage":
            if len(adl) and snapshot is not None:
                acc = adl["account"].to_numpy()
                mk = adl["market"].to_numpy()
                cash = snapshot["wallet"][acc].astype(float) * CASH_UNIT
                pos = np.abs(snapshot["qty"][acc, mk]) * adl["price"].to_numpy(dtype=float) * ticks[mk] * lots[mk]
                lev = np.where(cash > 0, pos / np.where(cash > 0, cash, 1), 0.0)
                v = float(np.median(lev))
            else:
                v = math.nan
        elif t.metric == "adl_median_account_leverage":
            if len(adl):
                first = adl.sort_values(["step", "round"], kind="stable").drop_duplicates("account")
                v = float(np.median(first["weight"].to_numpy(dtype=float)))
            else:
                v = math.nan
        elif t.metric == "adl_share_profitable":
            v = float((adl["pnl"].to_numpy() > 0).mean()) if len(adl) else math.nan
        elif t.metric == "first_adl_delay_s":
            v = (int(adl["step"].min()) - first_liq) * dt if len(adl) and first_liq is not None else math.nan
        else:  # adl_profile
            v = profile_distance(adl["step"].to_numpy() if len(adl) else np.zeros(0), first_liq, dt, t.value)
        out[t.key] = float(v)
    return out


def profile(steps: np.ndarray, first_step: int | None, dt: float, minutes: int) -> np.ndarray | None:
    """Shares of the events per minute from ``first_step`` over ``minutes`` minutes (None
    without events there)."""
    if first_step is None or len(steps) == 0:
        return None
    minute = np.floor((np.asarray(steps) - first_step) * dt / 60).astype(int)
    minute = minute[(minute >= 0) & (minute < minutes)]
    if len(minute) == 0:
        return None
    counts = np.bincount(minute, minlength=minutes).astype(float)
    return counts / counts.sum()


def profile_distance(steps, first_step, dt, real: list[float]) -> float:
    """Total-variation distance between the simulated per-minute profile and the real one (1
    when the run has no ADL in the window: nothing matches)."""
    real = np.asarray(real, dtype=float)
    real = real / real.sum()
    sim = profile(steps, first_step, dt, len(real))
    if sim is None:
        return 1.0
    return float(0.5 * np.abs(sim - real).sum())


# ------------------------------------------------------------------ fit table
def fit_table(targets: Targets, results: pd.DataFrame) -> pd.DataFrame:
    """Per target: real value, simulated mean and 90 % band (5th-95th percentile over the
    runs), runs where it was defined, within tolerance (of the mean) yes/no, and the miss."""
    rows = []
    for t in targets.targets:
        col = results[t.key] if t.key in results else pd.Series(dtype=float)
        x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        ok = x[np.isfinite(x)]
        mean = float(ok.mean()) if len(ok) else math.nan
        rows.append({
            "metric": t.metric,
            "market": t.market,
            "real": t.real,
            "tolerance": t.tolerance,
            "min": t.min,
            "max": t.max,
            "sim_mean": mean,
            "sim_p05": float(np.percentile(ok, 5)) if len(ok) else math.nan,
            "sim_p95": float(np.percentile(ok, 95)) if len(ok) else math.nan,
            "runs_defined": f"{len(ok)}/{len(x)}",
            "within": t.met(mean) and len(ok) == len(x),
            "error": t.error(mean),
            "source": t.source,
        })
    return pd.DataFrame(rows)


def loss(targets: Targets, results: pd.DataFrame) -> float:
    """The calibration loss: weighted mean of squared scale-free misses of the simulated means;
    a run where a metric is undefined (e.g. no ADL) counts as a miss of 10 for its share."""
    total, wsum = 0.0, 0.0
    for t in targets.targets:
        x = pd.to_numeric(results[t.key], errors="coerce").to_numpy(dtype=float) if t.key in results else np.array([math.nan])
        ok = x[np.isfinite(x)]
        e = t.error(float(ok.mean())) if len(ok) else 10.0
        undefined = 1 - len(ok) / max(len(x), 1)
        total += t.weight * ((1 - undefined) * e * e + undefined * 100.0)
        wsum += t.weight
    return total / max(wsum, 1e-12)


def to_jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
