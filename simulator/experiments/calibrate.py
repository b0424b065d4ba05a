"""Calibrate a scenario's parameters against real aggregates (``perpstress calibrate``).

A parameter space (``PARAMS.yaml``) names scenario fields by their dotted path and a range::

    sampler: tpe          # optuna's TPE (default) or random
    trials: 40            # candidates evaluated in all
    batch: 4              # candidates per generation (one batch; the executor runs them together)
    runs: 3               # seeds per candidate (common random numbers: the same for every candidate)
    final_runs: 8         # seeds of the fit table (a fresh seed root: out of sample for the noise)
    seed: 0               # the sampler's seed and the runs' seed root (default: the scenario's)
    params:
      venue.backstop_capital: {low: 1.0e4, high: 1.0e6, log: true}
      agents.traders.leverage.median: {low: 5, high: 30}
      agents.traders.multi_market_share: {values: [0.0, 0.3, 0.6]}

The search is optuna's ask/tell: each generation of ``batch`` candidates is one batch
(``plan_tasks`` with a sweep cell per candidate, ``run_batch`` on the chosen executor; Dask
scales it) written to ``OUT/candidates/gen-NNN``. Each run returns its summary plus the
targets' simulated metrics (``simulator.world.targets``; a run stops at the end of the targets'
window: nothing later is scored, so its summary covers the run up to there); a candidate's loss is the weighted
mean squared scale-free miss of its mean over the runs. The sampler is seeded and every loss is
read back from disk, so re-running the same command proposes the same candidates and
``run_batch(resume=True)`` runs only what is missing: an interrupted calibration resumes, and a
finished one re-writes its outputs without running anything.

Outputs in ``OUT``: ``trials.csv`` (every candidate: generation, parameters, loss, the mean of
each target metric), ``best_params.yaml`` (the best candidate as ``--set`` overrides),
``best/`` (a batch of the best candidate with ``final_runs`` fresh seeds), ``fit.csv`` and
``fit.md`` (per target: real, simulated mean and 90 % band, within tolerance yes/no) and,
written by the command line, ``fit.png``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.experiments.batch import batch_scenario, load_results, make_cell_ids, plan_tasks, run_batch
from simulator.experiments.batch.plan import task_seed_sequence
from simulator.experiments.batch.scenario import scenario_run_fn
from simulator.world.scenario import ScenarioError, apply_overrides, validate
from simulator.world.targets import (
    Targets, check_markets, fit_table, ledger_snapshot, load_targets, loss, run_metrics, window_steps,
)

DESIGN = "default"
CANDIDATES = "candidates"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """One dimension: a range (``low``..``high``, optionally ``log`` or ``step``), or ``values``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    integer: bool = False
    values: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _range(self):
        if self.values is None:
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError("give low < high, or a list of values")
            if self.log and self.low <= 0:
                raise ValueError("log: low must be > 0")
        return self


class ParamSpace(_Strict):
    sampler: Literal["tpe", "random"] = "tpe"
    trials: int = Field(40, ge=1, le=100_000)
    batch: int = Field(4, ge=1, le=10_000)
    runs: int = Field(3, ge=1, le=100_000)
    final_runs: int = Field(8, ge=1, le=100_000)
    seed: int | None = Field(None, ge=0)
    startup_trials: int | None = Field(None, ge=1, description="random candidates before TPE (default: max(batch, 8))")
    params: dict[str, Param] = Field(min_length=1)


def load_params(path: str | Path) -> ParamSpace:
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"{path}: file not found")
    try:
        return ParamSpace.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ScenarioError("\n".join(
            f"{path}: {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())) from None


# ----------------------------------------------------------------------- one run
def calibration_run_fn(scenario: dict, task, targets: dict) -> dict:
    """One run of a candidate: the summary plus every target's simulated metric
    (``target.<metric>[.<market>]``). Module level, so process pools and Dask can ship it
    (bound with ``functools.partial``)."""
    from simulator.experiments import run

    from simulator.world import metrics
    from simulator.world.model import PerpModel

    tg = Targets.model_validate(targets)
    data = apply_overrides(scenario, task.cell) if task.cell else scenario
    sc = validate(data, scenario.get("name", "<calibration scenario>"))
    # the same run as run.run_scenario, stopped at the targets' window end (nothing later is
    # scored), with the ledger snapshot some targets need (the ADL'd accounts' positions and cash)
    model = PerpModel(sc, task_seed_sequence(task), base_dir=getattr(sc, "_base_dir", None))
    _, hi = window_steps(tg.window, sc)
    while model.t < min(hi, model.n_steps):
        model.step()
    snapshot = ledger_snapshot(model)
    ts = model.timeseries()
    ev = model.venue.events.to_frame()
    out = dict(metrics.summarize(ts, ev, run.run_meta(model)))
    out.update(run_metrics(ev, sc, tg, snapshot))
    for t in tg.targets:
        if t.metric.startswith("summary."):
            out[t.key] = float(out.get(t.metric[len("summary."):], math.nan))
    return out


# ----------------------------------------------------------------------- search
# a candidate's run is a scenario run: its workers prepare (and fork from a warm server) the same way
calibration_run_fn.prepare = scenario_run_fn.prepare
calibration_run_fn.preload = scenario_run_fn.preload


def _round(v: Any) -> Any:
    """Candidate values as recorded: floats to 6 significant digits, so a re-run proposes the
    same cells (and resumes the same batches) and file names stay short."""
    if isinstance(v, float):
        return float(f"{v:.6g}")
    return v


def _value(p: Param, sampled: Any) -> Any:
    return p.values[int(sampled)] if p.values is not None else _round(sampled)


def _distributions(space: ParamSpace):
    import optuna

    out = {}
    for name, p in space.params.items():
        if p.values is not None:  # the sampler picks an index: values may be lists or mappings
            out[name] = optuna.distributions.CategoricalDistribution(list(range(len(p.values))))
        elif p.integer:
            out[name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            out[name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def _sampler(space: ParamSpace, seed: int):
    import optuna

    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=space.startup_trials or max(space.batch, 8), constant_liar=True, multivariate=True,
    )


def _key(params: dict) -> str:
    return yaml.safe_dump({k: params[k] for k in sorted(params)}, default_flow_style=True).strip()


@dataclass
class CalibrationResult:
    trials: pd.DataFrame
    best_params: dict
    fit: pd.DataFrame
    best_results: pd.DataFrame
    out_dir: Path


def calibrate(
    scenario_path: str | Path,
    targets_path: str | Path,
    params_path: str | Path,
    out_dir: str | Path,
    executor: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    overrides: dict | None = None,
    progress: bool = False,
    log=print,
) -> CalibrationResult:
    """Search the parameter space for the candidate whose runs best match the targets; see the
    module docstring. Resumable: re-run with the same arguments."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_params(params_path)
    targets = load_targets(targets_path)
    data, _ = batch_scenario(scenario_path, None, [], [], overrides or {})
    _linear_only(data, scenario_path)
    data["designs"] = []  # the scenario's own waterfall: one design
    names = [m["name"] for m in data["markets"]]
    check_markets(targets, names, f"{targets_path}: ")
    for name in space.params:  # every dimension must be a field the scenario accepts
        validate(apply_overrides(data, {name: _probe_value(space.params[name])}), f"{params_path}: params.{name}")
    seed = data["seed"] if space.seed is None else space.seed
    out = Path(out_dir)
    (out / CANDIDATES).mkdir(parents=True, exist_ok=True)
    run_fn = functools.partial(calibration_run_fn, targets=targets.model_dump(mode="json"))
    batch_kw = dict(executor=executor, workers=workers, scheduler=scheduler, keep_series=0, progress=progress)

    study = optuna.create_study(direction="minimize", sampler=_sampler(space, seed))
    dists = _distributions(space)
    seen: dict[str, dict] = {}
    rows = []
    best_by_trial: dict[int, dict] = {}
    n_gen = math.ceil(space.trials / space.batch)
    for g in range(n_gen):
        k = min(space.batch, space.trials - g * space.batch)
        trials = [study.ask(dists) for _ in range(k)]
        params = [{n: _value(space.params[n], t.params[n]) for n in dists} for t in trials]
        fresh = []
        for p in params:
            if _key(p) not in seen and _key(p) not in [_key(f) for f in fresh]:
                fresh.append(p)
        folder = out / CANDIDATES / f"gen-{g:03d}"
        if fresh:
            tasks = plan_tasks(space.runs, [DESIGN], fresh, seed)
            resume = (folder / "manifest.json").exists()
            report = run_batch(data, run_fn, tasks, folder, resume=resume, **batch_kw)
            res = load_results(folder)
            res = res[res["status"] == "ok"]
            for p, cid in zip(fresh, make_cell_ids(fresh)):
                r = res[res["cell_id"] == cid]
                means = {key: float(pd.to_numeric(r[key], errors="coerce").mean()) if key in r else math.nan
                         for key in targets.keys()}
                value = loss(targets, r) if len(r) else math.inf
                seen[_key(p)] = {"loss": value, "means": means, "generation": g, "cell_id": cid,
                                 "failed": space.runs - len(r)}
            if report.exit_code:
                log(f"warning: {folder}: {report.summary()}")
        for t, p in zip(trials, params):
            s = seen[_key(p)]
            study.tell(t, s["loss"] if math.isfinite(s["loss"]) else 1e9)
            rows.append({"trial": t.number, "generation": g, **{n: _cell_text(v) for n, v in p.items()}, "loss": s["loss"],
                         "from_generation": s["generation"], "failed_runs": s["failed"], **s["means"]})
            best_by_trial[t.number] = p
        best = min(rows, key=lambda r: r["loss"])
        log(f"generation {g + 1}/{n_gen}: best loss so far {best['loss']:.4g}")
    trials_df = pd.DataFrame(rows)
    trials_df.to_csv(out / "trials.csv", index=False)

    best = trials_df.loc[trials_df["loss"].idxmin()]
    best_params = {n: _plain(v) for n, v in best_by_trial[int(best["trial"])].items()}
    (out / "best_params.yaml").write_text(
        f"# best of {len(trials_df)} candidates (loss {best['loss']:.6g}); use as --set FIELD=VALUE overrides\n"
        + yaml.safe_dump(best_params, sort_keys=False)
    )
    best_data = apply_overrides(data, best_params)
    final_tasks = plan_tasks(space.final_runs, [DESIGN], None, seed + 1)
    folder = out / "best"
    run_batch(best_data, run_fn, final_tasks, folder, resume=(folder / "manifest.json").exists(),
              **{**batch_kw, "keep_series": 1})
    best_results = load_results(folder)
    best_results = best_results[best_results["status"] == "ok"]
    fit = fit_table(targets, best_results)
    fit.to_csv(out / "fit.csv", index=False)
    (out / "fit.md").write_text(format_fit(fit) + "\n")
    return CalibrationResult(trials_df, best_params, fit, best_results, out)


def evaluate(scenario_path, targets_path, out_dir, runs: int = 8, seed: int | None = None, overrides: dict | None = None,
             **batch_kw) -> pd.DataFrame:
    """The fit table of a scenario as it is (no search): ``runs`` seeds, every target. For a
    user's own venue: replay its path, run this against its own aggregates."""
    targets = load_targets(targets_path)
    data, _ = batch_scenario(scenario_path, None, [], [], overrides or {})
    _linear_only(data, scenario_path)
    data["designs"] = []
    check_markets(targets, [m["name"] for m in data["markets"]], f"{targets_path}: ")
    run_fn = functools.partial(calibration_run_fn, targets=targets.model_dump(mode="json"))
    folder = Path(out_dir)
    tasks = plan_tasks(runs, [DESIGN], None, data["seed"] if seed is None else seed)
    run_batch(data, run_fn, tasks, folder, resume=(folder / "manifest.json").exists(), keep_series=1, **batch_kw)
    res = load_results(folder)
    fit = fit_table(targets, res[res["status"] == "ok"])
    fit.to_csv(folder / "fit.csv", index=False)
    (folder / "fit.md").write_text(format_fit(fit) + "\n")
    return fit


def _linear_only(data: dict, scenario_path) -> None:
    """Calibration targets are defined on USD-margined (linear) runs: the real aggregates are in
    USD and ``adl_median_leverage`` reads wallets as micro-USD. An inverse scenario is refused
    before anything runs rather than scored in the wrong unit."""
    if any(m.get("settlement", "linear") == "inverse" for m in data.get("markets", [])):
        raise ScenarioError(f"{scenario_path}: markets.settlement: calibration supports linear (USD-margined) "
                            "markets only; the targets are in USD")


def _probe_value(p: Param):
    if p.values is not None:
        return p.values[0]
    return int(p.low) if p.integer else p.low


def _cell_text(v: Any) -> Any:
    return v if v is None or isinstance(v, (bool, int, float, str)) else yaml.safe_dump(v, default_flow_style=True).strip()


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def format_fit(fit: pd.DataFrame) -> str:
    """The fit table as Markdown."""

    def num(x):
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return "-"
        return f"{x:.3g}"

    def given(x) -> bool:
        return x is not None and not (isinstance(x, float) and not math.isfinite(x))

    def bound(r):
        parts = []
        if given(r["tolerance"]):
            parts.append(f"+-{num(r['tolerance'])}")
        if given(r["min"]):
            parts.append(f">= {num(r['min'])}")
        if given(r["max"]):
            parts.append(f"<= {num(r['max'])}")
        return ", ".join(parts)

    lines = ["| metric | market | real | target | simulated mean | 90 % band | runs | within |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in fit.iterrows():
        real = "profile" if r["metric"] == "adl_profile" else num(r["real"])
        lines.append(
            f"| {r['metric']} | {r['market']} | {real} | {bound(r)} | {num(r['sim_mean'])} | "
            f"{num(r['sim_p05'])} - {num(r['sim_p95'])} | {r['runs_defined']} | {'yes' if r['within'] else 'NO'} |"
        )
    return "\n".join(lines)


__all__ = ["calibrate", "evaluate", "calibration_run_fn", "load_params", "ParamSpace", "format_fit"]
