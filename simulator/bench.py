"""Speed benchmark (not a test): ``python -m simulator.bench``.

Prints trader-steps per second for the full cascade scenario at 1,000 and 10,000 traders (end
to end: model set-up, every step, metrics), as the median of several runs, and runs per minute
of a small batch on the process pool and serially. Figures depend on the machine: quote them
with its core count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "cascade.yaml"


def trader_steps_per_second(traders: int, repeats: int, steps: int | None) -> tuple[float, float]:
    from simulator.experiments import run

    sc = run.load_scenario(SCENARIO, {"agents.traders.count": traders})
    n_steps = steps or sc.steps
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        run.run_scenario(sc, seed=r, steps=n_steps)
        rates.append(traders * n_steps / (time.perf_counter() - t0))
    return statistics.median(rates), min(rates)


def batch_runs_per_minute(executor: str, runs: int, traders: int, workers: int | None) -> float:
    from simulator.experiments.batch import batch_scenario, plan_tasks, run_batch, scenario_run_fn

    data, designs = batch_scenario(SCENARIO, None, [], [], {"agents.traders.count": traders})
    tasks = plan_tasks(runs, designs, None, data["seed"])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = run_batch(data, scenario_run_fn, tasks, Path(out), executor=executor, workers=workers, progress=False)
        elapsed = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"benchmark batch had failed runs: {report.failures[:1]}")
    return runs / elapsed * 60


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="default: the scenario's 900 steps")
    p.add_argument("--batch-runs", type=int, default=8)
    p.add_argument("--skip-batch", action="store_true")
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} cores; scenario {SCENARIO.name}")
    for traders in (1_000, 10_000):
        med, worst = trader_steps_per_second(traders, args.repeats, args.steps)
        print(f"{traders:>6} traders: {med / 1e6:6.2f} M trader-steps/s (median of {args.repeats}; slowest {worst / 1e6:.2f} M)")
    if not args.skip_batch:
        for executor in ("serial", "process"):
            rpm = batch_runs_per_minute(executor, args.batch_runs, 1_000, None)
            print(f"batch, 1,000 traders, {executor:>7}: {rpm:6.1f} runs/minute ({args.batch_runs} runs)")


if __name__ == "__main__":
    main()
