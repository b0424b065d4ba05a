"""One run of a scenario: the Python API behind ``perpstress run`` and the batch runner.

>>> from simulator import run
>>> sc = run.load_scenario("scenarios/flash_crash.yaml", {"agents.traders.count": 200})
>>> result = run.run_scenario(sc, seed=7)
>>> result.summary["liquidation_count"], result.timeseries.head(), result.events.head()
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from simulator.experiments import audit_trail
from simulator.world import metrics, who_paid
from simulator.world.model import PerpModel, settlement_asset
from simulator.world.scenario import Scenario, apply_overrides, first_shock_step, load, validate


def package_version() -> str:
    try:
        return version("perpstress")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class RunResult:
    """What a run produced: the resolved scenario and seed, series, events and summary."""

    scenario: Scenario
    seed: int | list
    summary: dict
    timeseries: pd.DataFrame
    events: pd.DataFrame
    extras: dict = field(default_factory=dict)  # "audit" (SnapshotRecorder), "who_paid" (table)


def load_scenario(path, overrides: dict | None = None) -> Scenario:
    """Load and validate a scenario file, with optional dotted-path overrides."""
    return load(path, overrides)


def with_overrides(scenario: Scenario, overrides: dict) -> Scenario:
    """A validated copy of ``scenario`` with dotted-path overrides applied (notebook use)."""
    base_dir = getattr(scenario, "_base_dir", None)
    return validate(apply_overrides(scenario.model_dump(mode="json"), overrides), scenario.name, base_dir)


def run_scenario(scenario: Scenario, seed=None, steps: int | None = None, progress: bool = False,
                 base_dir: Path | None = None) -> RunResult:
    """Run one scenario path.

    Args:
        scenario: a validated scenario (``load_scenario``).
        seed: int, or a ``numpy.random.SeedSequence`` (batches); default the scenario's seed.
        steps: override the number of steps.
        progress: show a progress bar (tqdm) on a terminal.
        base_dir: folder for relative data paths (defaults to the scenario file's folder).
    """
    base_dir = base_dir or getattr(scenario, "_base_dir", None)
    if steps is not None:  # re-validated: steps >= 1 and no shock after the last step
        scenario = with_overrides(scenario, {"steps": int(steps)})
    model = PerpModel(scenario, seed, base_dir=base_dir)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=scenario.steps, desc=scenario.name, unit="step", leave=False)
    try:
        model.run(bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    ts = model.timeseries()
    ev = model.venue.events.to_frame()
    meta = run_meta(model)
    summary = metrics.summarize(ts, ev, meta)
    if isinstance(seed, np.random.SeedSequence):
        seed_out = {"entropy": seed.entropy, "spawn_key": list(seed.spawn_key)}
    else:
        seed_out = scenario.seed if seed is None else int(seed)
    extras = {"audit": model.audit, "who_paid": who_paid.who_paid(ev, meta["account_class"], meta["cash_unit"])}
    return RunResult(scenario, seed_out, summary, ts, ev, extras)


def warm_up(traders: int = 50, steps: int = 5) -> None:
    """Load every compiled kernel (from numba's on-disk cache; compiling only when it is cold)
    before timed or pooled work: the kernels with fixed signatures on tiny inputs, then the step
    path's (book, scans, agents) through a few steps of a tiny bundled cascade."""
    from simulator.venue import kernels
    from simulator.world.bundled import scenario_path

    kernels.warm_up()
    model = PerpModel(load_scenario(scenario_path("cascade"), {"agents.traders.count": traders}), 0)
    for _ in range(steps):
        model.step()
    # the end of a run too: its summary, and pyarrow's string conversion and memory pool, loaded
    # on first use (the event frame's string columns are Arrow-backed)
    metrics.summarize(model.timeseries(), model.venue.events.to_frame(), run_meta(model))
    pd.array(np.array(["warm"], dtype=object), dtype="string")


def run_meta(model: PerpModel) -> dict:
    """What the metrics need to know about the run besides its series and events."""
    venue = model.venue
    led = venue.ledger
    return {
        "cash_unit": model.cash_unit,
        "settlement_asset": settlement_asset(model.scenario),
        "inverse": [bool(m.inverse) for m in venue.markets],
        "quote_per_coin": model.quote_per_coin,
        "tick_size": venue.markets[0].tick_size,
        "lot_size": venue.markets[0].lot_size,
        "tick_sizes": [m.tick_size for m in venue.markets],
        "lot_sizes": [m.lot_size for m in venue.markets],
        # in the settlement asset (an inverse fund: its coin at the opening price)
        "insurance_fund_start": (venue.config.insurance_fund * model.cash_unit if venue.ledger.any_inverse
                                 else model.scenario.venue.insurance_fund),
        "n_accounts_by_kind": led.kind.counts(),
        **_socialization_meta(venue.events.to_frame()),
        "profitable_accounts": int(venue.adl_profitable.sum()),
        "max_leverage_after_adl": venue.adl_leverage_after,
        "engine_equity_end": float(venue.equity([venue.engine])[0]) * model.cash_unit,
        "socialized_outstanding": -int(led.wallet[venue.loss_pool]) * model.cash_unit,
        **_health_meta(model),
        "steps": model.t,
        "account_class": who_paid.account_classes(model),
    }


def _health_meta(model: PerpModel) -> dict:
    """What the market-health metrics need: maker accounts, the first shock, the opening."""
    return {
        "maker_accounts": [int(a) for a in model.maker_accounts],
        "first_shock_step": first_shock_step(model.scenario),
        "opening_net_notional": model.opening_net_notional,
        "opening_unfilled_notional": model.opening_unfilled_notional,
    }


def _socialization_meta(events: pd.DataFrame) -> dict:
    """Who paid socialized loss with no open position, and each payer's equity before its first
    charge (both recorded on the ``socialize`` events)."""
    rows = np.flatnonzero((events["kind"] == "socialize").to_numpy(dtype=bool))
    step, account, qty, score = (events[c].to_numpy()[rows] for c in ("step", "account", "qty", "score"))
    zero = np.flatnonzero(qty == 0)
    first = np.sort(np.unique(account, return_index=True)[1])  # each payer's first charge, in order
    return {
        "zero_position_accounts": [(int(s), int(a)) for s, a in zip(step[zero].tolist(), account[zero].tolist())],
        "equity_before_socialization": {int(a): float(e) for a, e in zip(account[first].tolist(), score[first].tolist())},
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    return 0o666 & ~_umask()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; every file follows the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


RUN_FILES = ("run.json", "summary.json", "scenario.yaml")


def is_run_folder(path: Path) -> bool:
    return Path(path).is_dir() and any((Path(path) / f).exists() for f in RUN_FILES)


def check_out_dir(out_dir: Path, force: bool = False) -> None:
    """Refuse, before any work, a results folder that cannot be written: an existing file, an
    existing non-empty folder (unless ``force``), or a parent we cannot create or write."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir}: exists and is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        what = "a run folder" if is_run_folder(out_dir) else "a folder that is not empty"
        raise FileExistsError(f"--out {out_dir}: already {what}; choose another folder or pass --force to replace it")
    parent = out_dir.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"--out {out_dir}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out_dir}: cannot write in {probe} (permission denied)")


def write_run(result: RunResult, out_dir: Path, force: bool = False) -> Path:
    """Write the run folder: scenario.yaml (resolved), run.json (seed, version), summary.json,
    timeseries.parquet, events.parquet (hash-chained), audit.json, snapshots.parquet and
    who_paid.csv (``audit_trail``).

    The folder is written whole into a hidden temp folder beside ``out_dir`` and renamed into
    place, so an interrupted or failed write (disk full) never leaves half a run folder. An
    existing empty ``out_dir`` is replaced; a non-empty one only with ``force``.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force=force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder follows the umask
        resolved = result.scenario.model_dump(mode="json")
        _atomic_write(tmp / "scenario.yaml", lambda p: Path(p).write_text(yaml.safe_dump(resolved, sort_keys=False)))
        info = {"scenario": result.scenario.name, "seed": result.seed, "version": package_version()}
        _atomic_write(tmp / "run.json", lambda p: Path(p).write_text(json.dumps(info, indent=2)))
        _atomic_write(tmp / "summary.json", lambda p: Path(p).write_text(summary_json(result.summary)))
        _atomic_write(tmp / "timeseries.parquet", lambda p: result.timeseries.to_parquet(p, index=False))
        events = audit_trail.chained_events(result)  # + time, prev_hash, hash (the audit chain)
        _atomic_write(tmp / "events.parquet", lambda p: events.to_parquet(p, index=False))
        audit_trail.write_extras(result, tmp, events, _atomic_write)  # audit.json, snapshots, who_paid
        old = None
        if out_dir.is_dir():
            if any(out_dir.iterdir()):
                old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
                os.replace(out_dir, old)
            else:
                out_dir.rmdir()
        os.replace(tmp, out_dir)
        if old is not None:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def summary_json(summary: dict) -> str:
    """Stable, byte-reproducible JSON of a summary (sorted keys, NaN as null)."""
    clean = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in summary.items()}
    return json.dumps(clean, indent=2, sort_keys=True) + "\n"
