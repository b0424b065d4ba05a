"""How a batch runs a perpstress scenario: the resolved scenario and design list
(``batch_scenario``) and the run function every executor calls (``scenario_run_fn``).

Moved here from the command line so the executors, ``bench`` and the tests share it. Imports
``simulator.experiments.run`` and ``simulator.world.scenario`` only.
"""

from __future__ import annotations

from pathlib import Path

from simulator.world.scenario import ScenarioError, apply_overrides, load, load_design, validate

DEFAULT_DESIGN = "default"


def scenario_run_fn(scenario: dict, task) -> dict:
    """One run of a batch: apply the sweep cell, pick the design, run with the task's seeds.

    The row holds the run's summary and its thin fund / backstop paths
    (``simulator.experiments.paths.thin_paths``: up to 200 steps, for every run)."""
    from simulator.experiments import run
    from simulator.experiments.batch.plan import task_seed_sequence
    from simulator.experiments.paths import thin_paths

    data = apply_overrides(scenario, task.cell) if task.cell else scenario
    sc = validate(data, scenario.get("name", "<batch scenario>"))
    if task.design != DEFAULT_DESIGN:
        sc = sc.design(task.design)
    result = run.run_scenario(sc, seed=task_seed_sequence(task))
    return {**result.summary, **thin_paths(result.timeseries), "_series": result.timeseries}


def _prepare_worker() -> None:
    """Once per worker process, before its first run: import what a run uses (pandas, mesa, the
    model) and load the compiled kernels from numba's on-disk cache (compiling them only if the
    cache is cold), so a run's time is the run's."""
    from simulator.experiments import run
    from simulator.experiments.paths import thin_paths  # noqa: F401

    run.warm_up()


scenario_run_fn.prepare = _prepare_worker  # run_batch calls it once per process (see plan.RunFn)
# the process pool's warm fork server imports this module, which runs the hook there once
scenario_run_fn.preload = ("simulator.experiments.batch.preload",)


def batch_scenario(path, designs: list[str] | None, design_files: list[str], presets: list[str],
                   overrides: dict) -> tuple[dict, list[str]]:
    """The resolved scenario dict a batch runs (data paths made absolute, extra designs merged)
    and the design names to run."""
    sc = load(path, overrides)
    extra = [load_design(f) for f in design_files] + [load_design(p) for p in presets]
    data = sc.model_dump(mode="json")
    data["designs"] = data["designs"] + [d.model_dump(mode="json") for d in extra]
    base = Path(path).resolve().parent
    for model in data["index"]["models"]:
        if model.get("path") and not Path(model["path"]).is_absolute():
            model["path"] = str((base / model["path"]).resolve())
    validate(data, str(path))  # names unique, everything still valid
    # the scenario's own waterfall is a design ("default") unless the scenario lists designs
    own = [d["name"] for d in data["designs"][: len(sc.designs)]] or [DEFAULT_DESIGN]
    names = own + [d.name for d in extra]
    if designs:
        unknown = [d for d in designs if d not in names]
        if unknown:
            raise ScenarioError(f"{path}: --designs {unknown} not found; designs: {names}")
        names = designs
    return data, names
