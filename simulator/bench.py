"""Speed benchmark (not a test): ``python -m simulator.bench``.

Runs the bundled cascade scenario, a live market (liquidity scales with the population:
``agents.scale_with_traders``), at 1,000, 10,000 and 100,000 traders and prints:

- trader-steps per second of the step loop (median, min and max of ``--repeats`` >= 3 runs;
  the runs of the sizes are interleaved) and of the whole run (set-up, steps, summary);
- the fixed cost per step and the cost per trader per step, from a least-squares fit of
  seconds per step over the sizes (``time/step = fixed + per_trader x traders``);
- the peak resident memory of each size (each size runs in its own fresh process; the kernel's
  high-water mark is reset before each run, so the peak is that run's) and the floor under it:
  the memory of the worker after its imports and compiled kernels are loaded, before any run;
- memory in the step count: the largest live size run for the same steps and for 3x the
  steps, each in a fresh process: the growth of the peak RSS beside the growth of what the run
  recorded (events, audit snapshots, series; ``recorded_mb``), which a step loop that keeps
  nothing else matches (``--skip-steps-check`` leaves it out);
- a batch (``--batch-runs``, 16 by default), serial and on the process pool: runs per minute,
  the speed-up, the workers' start-up, the time per run and the CPU seconds (with a CPU-time
  speed-up, what a loaded machine distorts least; ``--batch-only`` runs just this section);
- the machine: cores usable, load average.

A figure is printed only for a live market: a size whose book was two-sided on less than 95 %
of the steps before the shock (``two_sided_share_pre_shock``) prints ``REFUSED`` instead, and
the exit code is 1. ``--quick`` is a smoke run (small sizes, short runs) whose figures mean
little; the test suite runs it to check the output, never a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "cascade.yaml"
LIVE_SHARE = 0.95
SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (300, 1_000)
QUICK_STEPS = 330  # the cascade's shock is at step 300: 300 pre-shock steps


def _overrides(traders: int, sets: dict) -> dict:
    return {**sets, "agents.traders.count": traders}


def one_run(scenario_path: str, traders: int, seed: int, steps: int | None, sets: dict) -> dict:
    """One timed run in this process: step-loop and end-to-end seconds, market health, peak RSS."""
    import gc

    # a finished run's model holds reference cycles (mesa agents and the model): free it before
    # this run is built, so the peak RSS is one run's, not two
    gc.collect()
    _reset_peak_rss()

    from simulator.experiments import run
    from simulator.world import metrics
    from simulator.world.model import PerpModel

    t0 = time.perf_counter()
    sc = run.load_scenario(scenario_path, _overrides(traders, sets))
    if steps is not None:
        sc = run.with_overrides(sc, {"steps": int(steps)})
    model = PerpModel(sc, seed, base_dir=getattr(sc, "_base_dir", None))
    t1, c1 = time.perf_counter(), time.process_time()
    model.run()
    t2, c2 = time.perf_counter(), time.process_time()
    summary = metrics.summarize(model.timeseries(), model.venue.events.to_frame(), run.run_meta(model))
    t3 = time.perf_counter()
    return {
        "traders": traders,
        "steps": sc.steps,
        "loop_s": t2 - t1,
        "loop_cpu_s": c2 - c1,
        "total_s": t3 - t0,
        "two_sided_pre_shock": float(summary["two_sided_share_pre_shock"]),
        "residual": summary["conservation_residual_max_abs"],
        "maxrss_mb": _peak_rss_mb(),
        "events": len(model.venue.events),
        "recorded_mb": recorded_mb(model),
    }


def recorded_mb(model) -> float:
    """What a run keeps because it ran longer or more happened: the event log's arrays, the
    audit trail's balance snapshots and the per-step series (MB)."""
    events = sum(a.nbytes for part in model.venue.events._parts for a in part[4].values())
    audit = sum(r[k].nbytes for r in model.audit.rows for k in ("changed", "wallet", "qty", "cost"))
    series = sum(a.nbytes for a in model.series.values())
    return (events + audit + series) / 2**20


def fresh_run(scenario_path: str, traders: int, seed: int, steps: int | None, sets: dict) -> dict:
    """``one_run`` in a fresh warmed process, with that process's floor (``floor_mb``)."""
    _warm()
    floor = _floor_rss_mb()
    return {**one_run(scenario_path, traders, seed, steps, sets), "floor_mb": floor}


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets the high-water mark (VmHWM) to the current RSS, so
    # the peak measured after a run is that run's, not the largest of the process's earlier runs
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    import resource

    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_ms(repeats: int = 5) -> float:
    """Milliseconds (best of ``repeats``) of a fixed mix of interpreter work and small numpy
    calls, the kind a step is made of: this VM's CPU speed drifts up to 2x over minutes, and two
    benchmark runs compare only when this figure is alike."""
    import numpy as np

    a = np.arange(256, dtype=np.int64)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        acc = 0
        for i in range(20_000):
            acc += int(a[i & 255]) + len(a[: i & 31])
        for _ in range(2_000):
            acc += int(np.flatnonzero(a > 128).sum())
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def _floor_rss_mb() -> float:
    """Resident memory of a warmed worker before any run: imports plus the loaded kernels."""
    import gc

    gc.collect()
    rss = _status_mb("VmRSS")
    return rss if rss is not None else _peak_rss_mb()


def _warm() -> bool:
    # import (and compile) everything a run needs before the clock starts
    from simulator.experiments import run  # noqa: F401
    from simulator.world import metrics  # noqa: F401
    try:
        from simulator.venue import kernels
    except ImportError:  # a checkout from before the kernels (benchmarking an old version)
        return False
    if hasattr(run, "warm_up"):
        run.warm_up()
    else:  # a checkout from before run.warm_up
        kernels.warm_up()
    return True


def fit(sizes, seconds_per_step) -> tuple[float, float]:
    """Least squares ``s = a + b n``: (fixed seconds per step, seconds per trader per step)."""
    n = len(sizes)
    mx = sum(sizes) / n
    my = sum(seconds_per_step) / n
    sxx = sum((x - mx) ** 2 for x in sizes)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(sizes, seconds_per_step)) / sxx
    return my - b * mx, b


def batch_figures(executor: str, runs: int, traders: int, steps: int | None, workers: int | None,
                  sets: dict) -> dict:
    """One timed batch of ``runs`` runs: wall seconds, runs per minute, the mean time inside a
    run (``BatchReport.run_s / runs``), the pool's worker start-up, and the CPU seconds of this
    process and its pool workers (with the warm fork server's start-up: ``BatchReport.worker_cpu_s``)."""
    from simulator.experiments.batch import batch_scenario, plan_tasks, run_batch, scenario_run_fn

    over = _overrides(traders, sets)
    if steps is not None:
        over["steps"] = int(steps)
    data, designs = batch_scenario(SCENARIO, None, [], [], over)
    tasks = plan_tasks(runs, designs, None, data["seed"])
    with tempfile.TemporaryDirectory() as out:
        load0 = os.getloadavg()[0]
        c0 = os.times()
        t0 = time.perf_counter()
        report = run_batch(data, scenario_run_fn, tasks, Path(out), executor=executor, workers=workers, progress=False)
        elapsed = time.perf_counter() - t0
        c1 = os.times()
    if report.failed:
        raise RuntimeError(f"benchmark batch had failed runs: {report.failures[:1]}")
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    if report.worker_cpu_s is not None:  # the pool's workers (and its warm fork server) report theirs
        cpu += report.worker_cpu_s
    else:  # serial, or no /proc: the reaped children
        cpu += (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    return {
        "runs": len(tasks),
        "wall_s": elapsed,
        "rpm": len(tasks) / elapsed * 60,
        "run_s": report.run_s / len(tasks),
        "worker_start_s": report.worker_start_s,
        "parent_runs": report.parent_runs,
        "cpu_s": cpu,
        "load": (load0, os.getloadavg()[0]),
    }


def _print_batch(batch_runs: int, batch_traders: int, steps, workers: int, sets: dict) -> None:
    print(f"batch: {batch_runs} runs of the {batch_traders:,}-trader cascade, serial vs process pool of {workers} workers")
    fig = {}
    for executor in ("serial", "process"):
        f = fig[executor] = batch_figures(executor, batch_runs, batch_traders, steps, workers, sets)
        start = ""
        if f["worker_start_s"] is not None:
            start = f" workers ready after {f['worker_start_s']:.2f} s (the batch process ran {f['parent_runs']} runs meanwhile);"
        print(f"batch, {batch_traders:,} traders, {executor:>7}: {f['rpm']:7.1f} runs/minute ({f['runs']} runs, "
              f"{f['wall_s']:.1f} s);{start} {f['run_s']:.3f} s per run; CPU {f['cpu_s']:.1f} s "
              f"({f['runs'] / f['cpu_s'] * 60:.1f} runs per CPU-minute); load {f['load'][0]:.2f} -> {f['load'][1]:.2f}")
    s, p = fig["serial"], fig["process"]
    print(f"batch speed-up, process pool ({workers} workers) vs serial: {p['rpm'] / s['rpm']:.2f}x on wall time")
    # what the pool would do with a core per worker: its CPU seconds spread over the workers
    print(f"  on CPU time (serial CPU / (pool CPU / {workers} workers), start-up included): "
          f"{s['cpu_s'] / (p['cpu_s'] / workers):.2f}x; per run in the pool vs serial: "
          f"{p['run_s'] / s['run_s']:.2f}x the time. On a shared machine take the final figure again idle.")


#: Peak growth beyond what the run recorded that still counts as flat (allocator noise, MB).
FLAT_TOLERANCE_MB = 5.0


def _print_steps_check(traders: int, steps: int, sets: dict) -> None:
    """The same population for ``steps`` and ``3 x steps``: is memory flat in the step count?"""
    ctx = get_context("spawn")
    runs = []
    for n_steps in (steps, 3 * steps):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            runs.append(pool.submit(fresh_run, str(SCENARIO), traders, 0, n_steps, sets).result())
    a, b = runs
    for r in runs:
        print(f"memory in the step count, {traders:,} traders, {r['steps']:,} steps: peak {r['maxrss_mb']:.0f} MB "
              f"(floor {r['floor_mb']:.0f}: +{r['maxrss_mb'] - r['floor_mb']:.1f} MB); {r['events']:,} events; "
              f"recorded {r['recorded_mb']:.1f} MB")
    grew = (b["maxrss_mb"] - b["floor_mb"]) - (a["maxrss_mb"] - a["floor_mb"])
    recorded = b["recorded_mb"] - a["recorded_mb"]
    verdict = "flat" if grew - recorded <= FLAT_TOLERANCE_MB else "NOT FLAT"
    print(f"  3x the steps: the run adds {grew:+.1f} MB, of which recorded {recorded:+.1f} MB: {verdict} "
          f"(the rest {grew - recorded:+.1f} MB; flat means <= {FLAT_TOLERANCE_MB:.0f} MB)")


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        import yaml

        out[key] = yaml.safe_load(value)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, short runs, tiny batch")
    p.add_argument("--sizes", default=None, help="comma-separated trader counts (default 1000,10000,100000)")
    p.add_argument("--repeats", type=int, default=3, help="runs per size (at least 3)")
    p.add_argument("--steps", type=int, default=None, help="default: the scenario's 900 steps")
    p.add_argument("--batch-runs", type=int, default=16, help="runs of the timed batches (default 16)")
    p.add_argument("--batch-only", action="store_true", help="only the batch section (no per-size table)")
    p.add_argument("--batch-traders", type=int, default=1_000)
    p.add_argument("--workers", type=int, default=None, help="process pool size (default: the cores)")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--skip-steps-check", action="store_true", help="no memory-in-the-step-count check")
    p.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE",
                   help="scenario override, as for perpstress run (e.g. to bench another market)")
    args = p.parse_args(argv)
    sets = _parse_sets(args.sets)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (QUICK_SIZES if args.quick else SIZES)
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else None)
    repeats = max(3, args.repeats)
    batch_runs = 2 if args.quick else args.batch_runs
    batch_traders = 300 if args.quick else args.batch_traders

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    print(f"machine: {cores} cores usable ({os.cpu_count()} online); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"reference work {reference_ms():.1f} ms (lower: a faster spell of this machine; compare runs at alike values)")
    print(f"python {sys.version.split()[0]}; scenario {SCENARIO.name}; steps {steps or 'scenario default'}; "
          f"{repeats} runs per size, interleaved{'; QUICK smoke run: figures are not comparable' if args.quick else ''}")
    if sets:
        print(f"overrides: {sets}")

    if args.batch_only:
        print()
        _print_batch(batch_runs, batch_traders, steps, args.workers or cores, sets)
        load = os.getloadavg()
        print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; reference work {reference_ms():.1f} ms")
        return 0

    # one fresh process per size (its peak RSS is that size's), runs interleaved across sizes
    ctx = get_context("spawn")
    pools = {n: ProcessPoolExecutor(max_workers=1, mp_context=ctx) for n in sizes}
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    try:
        for n in sizes:
            pools[n].submit(_warm).result()
        floor = max(pools[n].submit(_floor_rss_mb).result() for n in sizes)
        for r in range(repeats):
            for n in sizes:
                results[n].append(pools[n].submit(one_run, str(SCENARIO), n, r, steps, sets).result())
    finally:
        for pool in pools.values():
            pool.shutdown()

    print()
    print(f"{'traders':>8} {'two-sided':>9}  {'step loop M trader-steps/s':>27}  {'end-to-end':>10}  {'ms/step':>8}  "
          f"{'CPU-time':>9}  {'peak RSS':>9}")
    print(f"{'':>8} {'pre-shock':>9}  {'median':>9} {'min':>8} {'max':>8}  {'median':>10}  {'median':>8}  "
          f"{'M t-s/s':>9}  {'MB':>9}")
    live_sizes, live_sps, live_cpu = [], [], []
    refused = []
    for n in sizes:
        rs = results[n]
        share = min(x["two_sided_pre_shock"] for x in rs)
        if not share >= LIVE_SHARE:
            refused.append(n)
            print(f"{n:>8} {share:>9.1%}  REFUSED: book two-sided on {share:.1%} of pre-shock steps "
                  f"(< {LIVE_SHARE:.0%}): a dead market, no figure")
            continue
        loop = sorted(n * x["steps"] / x["loop_s"] / 1e6 for x in rs)
        total = statistics.median(n * x["steps"] / x["total_s"] / 1e6 for x in rs)
        sps = statistics.median(x["loop_s"] / x["steps"] for x in rs)
        cpu = statistics.median(x["loop_cpu_s"] / x["steps"] for x in rs)
        rss = max(x["maxrss_mb"] for x in rs)
        live_sizes.append(n)
        live_sps.append(sps)
        live_cpu.append(cpu)
        print(f"{n:>8} {share:>9.1%}  {statistics.median(loop):>9.2f} {loop[0]:>8.2f} {loop[-1]:>8.2f}  "
              f"{total:>10.2f}  {sps * 1e3:>8.3f}  {n / cpu / 1e6:>9.2f}  {rss:>9.0f}")
    print(f"memory floor (a warmed worker before any run: imports and loaded kernels): {floor:.0f} MB")
    if len(live_sizes) >= 2:
        fixed, per = fit(live_sizes, live_sps)
        print(f"\nfit over {len(live_sizes)} sizes: fixed {fixed * 1e3:.3f} ms/step + {per * 1e9:.1f} ns per trader-step")
        fixed, per = fit(live_sizes, live_cpu)
        print(f"  the same on CPU time (what a loaded machine does not distort): fixed {fixed * 1e3:.3f} ms/step"
              f" + {per * 1e9:.1f} ns per trader-step")
    elif live_sizes:
        print("\nfit: needs two live sizes")

    if live_sizes and not args.skip_steps_check:
        _print_steps_check(max(live_sizes), results[max(live_sizes)][0]["steps"], sets)

    if not args.skip_batch:
        print()
        _print_batch(batch_runs, batch_traders, steps, args.workers or cores, sets)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; reference work {reference_ms():.1f} ms")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
