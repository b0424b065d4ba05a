"""Batch runner: planning, seeds, executors, failures, resume, interruption, atomic files."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import multiprocessing as mp
import os
import pickle
import time

import numpy as np
import pandas as pd
import pytest

from simulator.experiments.batch import (
    BatchReport,
    ManifestMismatchError,
    Task,
    WorkerLostError,
    expand_grid,
    load_manifest,
    load_results,
    load_series,
    make_cell_ids,
    plan_tasks,
    run_batch,
    scenario_run_fn,
    seed_sequence_from_row,
    task_filename,
    task_seed_sequence,
)
from simulator.experiments.batch.store import _atomic_write_bytes

try:
    import dask.distributed  # noqa: F401

    HAVE_DISTRIBUTED = True
except Exception:  # pragma: no cover
    HAVE_DISTRIBUTED = False

SCENARIO = {"name": "toy", "seed": 11, "steps": 5, "index": {"vol": 0.8}}
DESIGNS = ["A", "B"]
GRID = {"index.shock": [-0.3, -0.1], "venue.fund": [1e6]}
OFFSET = {"A": 0.0, "B": 2.0}


# ------------------------------------------------------------------ toy run functions
def toy_run(scenario: dict, task: Task) -> dict:
    """Draws from the task's seed; metrics depend on design and cell (top level: picklable)."""
    rng = np.random.default_rng(task_seed_sequence(task))
    draws = rng.normal(size=scenario["steps"])
    shock = float(task.cell.get("index.shock", 0.0))
    path = 100.0 * np.exp(np.cumsum(scenario["index"]["vol"] * 0.1 * draws) + shock)
    return {
        "draw0": float(draws[0]),
        "loss": float(-draws.sum() + OFFSET[task.design] - 10 * shock),
        "count": int(rng.integers(0, 100)),
        "adl_notional": float(max(0.0, -draws.min() - 1.0)),
        "fund_depleted": bool(draws.max() > 1.5),
        "label": f"{task.design}-{task.run_index}",
        "_series": pd.DataFrame({"step": np.arange(len(path)), "price": path}),
    }


def toy_run_fails_at_2(scenario: dict, task: Task) -> dict:
    if task.run_index == 2:
        raise ValueError(f"boom in run {task.run_index}")
    return toy_run(scenario, task)


def toy_run_interrupt_at_3(scenario: dict, task: Task) -> dict:
    if task.run_index == 3 and task.design == "B":
        raise KeyboardInterrupt
    return toy_run(scenario, task)


def toy_run_worker_dies(scenario: dict, task: Task) -> dict:
    if task.run_index == 4:
        os._exit(3)
    return toy_run(scenario, task)


def toy_run_bad_metric(scenario: dict, task: Task) -> dict:
    out = toy_run(scenario, task)
    if task.run_index == 1:
        out["path"] = [1, 2, 3]
    return out


_PREPARED_IN: list[int] = []  # pids of the processes where _toy_prepare ran


def _toy_prepare() -> None:
    _PREPARED_IN.append(os.getpid())


def toy_run_prepared(scenario: dict, task: Task) -> dict:
    """toy_run plus how many times this process ran the prepare hook before the run."""
    return {**toy_run(scenario, task), "prepared_here": _PREPARED_IN.count(os.getpid())}


toy_run_prepared.prepare = _toy_prepare


def toy_run_slow_in_workers(scenario: dict, task: Task) -> dict:
    """toy_run, one second slower in a pool worker (a child process) than in the batch process."""
    if mp.parent_process() is not None:
        time.sleep(1.0)
    return toy_run(scenario, task)


toy_run_slow_in_workers.prepare = _toy_prepare


def _prepare_fails() -> None:
    raise RuntimeError("kernels unavailable")


def toy_run_prepare_fails(scenario: dict, task: Task) -> dict:
    return toy_run(scenario, task)


toy_run_prepare_fails.prepare = _prepare_fails


def _table(out_dir) -> pd.DataFrame:
    """Results without the timing column (the only executor-dependent value)."""
    return load_results(out_dir).drop(columns=["elapsed_s"])


def _tasks(n=6, seed=11):
    return plan_tasks(n, DESIGNS, expand_grid(GRID), seed=seed)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted serial batch: the table every other executor must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    report = run_batch(SCENARIO, toy_run, _tasks(), out, executor="serial", keep_series=2, progress=False)
    assert report.exit_code == 0
    return out, _table(out)


# ------------------------------------------------------------------ planning and seeds
def test_expand_grid_order_and_cell_ids():
    cells = expand_grid({"shock": [-0.3, -0.1], "fund": [1e6, 250000.0]})
    assert cells == [
        {"shock": -0.3, "fund": 1e6},
        {"shock": -0.3, "fund": 250000.0},
        {"shock": -0.1, "fund": 1e6},
        {"shock": -0.1, "fund": 250000.0},
    ]
    assert make_cell_ids(cells) == [
        "shock=-0.3,fund=1e6",
        "shock=-0.3,fund=2.5e5",
        "shock=-0.1,fund=1e6",
        "shock=-0.1,fund=2.5e5",
    ]
    assert expand_grid({}) == [{}]
    assert make_cell_ids([{}]) == ["base"]
    # dotted paths shorten to the shortest unique suffix
    assert make_cell_ids([{"index.shocks.0.size": 0.1, "agents.traders.size": 2, "steps": 100}]) == [
        "0.size=0.1,traders.size=2,steps=100"
    ]
    with pytest.raises(ValueError, match="at least one value"):
        expand_grid({"shock": []})
    with pytest.raises(ValueError, match="same id"):
        make_cell_ids([{"x": 1}, {"x": 1}])


def test_plan_tasks_order_and_seeds():
    tasks = plan_tasks(3, ["A", "B"], [{"s": 1}, {"s": 2}], seed=42)
    assert len(tasks) == 12
    # run-major: every cell and design of run 0 first
    assert [(t.run_index, t.cell_id, t.design) for t in tasks[:4]] == [
        (0, "s=1", "A"),
        (0, "s=1", "B"),
        (0, "s=2", "A"),
        (0, "s=2", "B"),
    ]
    children = np.random.SeedSequence(42).spawn(3)
    for t in tasks:
        assert t.seed == 42 and t.spawn_key == (t.run_index,)
        ss = task_seed_sequence(t)
        np.testing.assert_array_equal(ss.generate_state(8), children[t.run_index].generate_state(8))
    assert plan_tasks(2, ["A"], None, seed=1)[0].cell == {}
    assert plan_tasks(2, ["A"], None, seed=1)[0].cell_id == "base"
    with pytest.raises(ValueError, match="unique"):
        plan_tasks(2, ["A", "A"], None, seed=1)


def test_common_random_numbers(reference):
    _, df = reference
    # same run index -> same draws, whatever the design and the cell
    per_run = df.groupby("run_index")["draw0"].nunique()
    assert (per_run == 1).all()
    assert df.groupby("run_index")["draw0"].first().nunique() == df["run_index"].nunique()
    # the design effect is exactly the offset on every path (paired)
    a = df[df.design == "A"].set_index(["cell_id", "run_index"])["loss"]
    b = df[df.design == "B"].set_index(["cell_id", "run_index"])["loss"]
    np.testing.assert_allclose((b - a).to_numpy(), 2.0)
    # a row gives back its seed sequence
    row = df.iloc[5]
    ss = seed_sequence_from_row(row)
    np.testing.assert_array_equal(
        ss.generate_state(4), np.random.SeedSequence(11).spawn(6)[row["run_index"]].generate_state(4)
    )


def test_result_rows_and_layout(reference):
    out, df = reference
    assert len(df) == 6 * 2 * 2
    assert list(df.columns[:5]) == ["run_index", "design", "cell_id", "cell.index.shock", "cell.venue.fund"]
    for col in ("seed_entropy", "spawn_key", "status", "error", "traceback"):
        assert col in df.columns
    assert (df["status"] == "ok").all() and df["error"].isna().all()
    assert (df["seed_entropy"] == 11).all()
    assert df["spawn_key"].tolist() == [json.dumps([int(i)]) for i in df["run_index"]]
    # sorted by cell_id, design, run_index
    keys = list(zip(df.cell_id, df.design, df.run_index))
    assert keys == sorted(keys)
    assert set(df["cell_id"]) == {"shock=-0.3,fund=1e6", "shock=-0.1,fund=1e6"}
    # manifest and status
    m = load_manifest(out)
    assert m["scenario"] == SCENARIO and m["seed"] == 11 and m["n_runs"] == 6 and m["designs"] == DESIGNS
    assert [c["cell_id"] for c in m["cells"]] == ["shock=-0.3,fund=1e6", "shock=-0.1,fund=1e6"]
    assert m["perpstress"] and m["sessions"][0]["executor"] == "serial"
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    # one parquet per task, nothing else (no temp files)
    names = os.listdir(out / "runs")
    assert len(names) == 24 and all(n.endswith(".parquet") and not n.startswith(".") for n in names)
    assert task_filename("shock=-0.3,fund=1e6", "A", 3) in names
    # series kept for run indices 0 and 1 only
    series = load_series(out)
    assert sorted(series["run_index"].unique()) == [0, 1]
    assert len(os.listdir(out / "series")) == 2 * 2 * 2
    one = series[(series.run_index == 1) & (series.design == "B") & (series.cell_id == "shock=-0.1,fund=1e6")]
    assert one["step"].tolist() == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ executors
@pytest.mark.parametrize("mp_context", ["spawn", "forkserver"])
def test_process_pool_matches_serial(reference, tmp_path, mp_context):
    # under forkserver a worker's parent is the fork server, not the batch process: the worker's
    # parent check must not take that for a dead batch (it did: every worker exited at start)
    _, ref = reference
    report = run_batch(SCENARIO, toy_run, _tasks(), tmp_path, executor="process", workers=2, keep_series=2, progress=False,
                       mp_context=mp_context)
    assert (report.ok, report.failed, report.skipped, report.exit_code) == (24, 0, 0, 0)
    pd.testing.assert_frame_equal(_table(tmp_path), ref)
    assert len(os.listdir(tmp_path / "series")) == 8


def test_a_prepared_batch_process_runs_tasks_while_its_workers_start(reference, tmp_path):
    # the batch process has run the prepare hook (a serial batch before): it takes tasks from the
    # back of the queue until a worker finishes one. 24 tasks, 2 workers: the first 4 go to the
    # pool (two per worker in flight), and a worker's run takes 1 s, so the batch process runs
    # the other 20 itself; the results are the serial ones
    _, ref = reference
    serial = run_batch(SCENARIO, toy_run_slow_in_workers, _tasks(), tmp_path / "s", executor="serial",
                       keep_series=2, progress=False)
    assert serial.exit_code == 0 and serial.parent_runs == 0
    report = run_batch(SCENARIO, toy_run_slow_in_workers, _tasks(), tmp_path / "p", executor="process", workers=2,
                       keep_series=2, progress=False)
    assert (report.ok, report.failed, report.parent_runs) == (24, 0, 20)
    pd.testing.assert_frame_equal(_table(tmp_path / "p"), ref)
    assert len(os.listdir(tmp_path / "p" / "series")) == 8


@pytest.mark.skipif(not HAVE_DISTRIBUTED, reason="dask.distributed cannot be imported")
def test_dask_local_cluster_matches_serial(reference, tmp_path):
    _, ref = reference
    report = run_batch(SCENARIO, toy_run, _tasks(), tmp_path, executor="dask", workers=2, keep_series=2, progress=False)
    assert report.exit_code == 0 and report.ok == 24
    pd.testing.assert_frame_equal(_table(tmp_path), ref)


def test_process_pool_tasks_do_not_carry_the_scenario(reference, tmp_path, monkeypatch):
    # a scenario of ~200 kB: if a task carried it, every submitted call would pickle to > 200 kB
    marker = "SCENARIO-PAYLOAD-" + "x" * 200_000
    big = {**SCENARIO, "notes": marker}
    sent: list[bytes] = []
    original = cf.ProcessPoolExecutor.submit

    def recording_submit(self, fn, /, *args, **kwargs):
        sent.append(pickle.dumps((fn, args, kwargs)))
        return original(self, fn, *args, **kwargs)

    monkeypatch.setattr(cf.ProcessPoolExecutor, "submit", recording_submit)
    report = run_batch(big, toy_run, _tasks(), tmp_path, executor="process", workers=2, keep_series=2, progress=False)
    assert report.ok == 24
    task_calls = [b for b in sent if b"_worker_execute" in b]
    assert len(task_calls) == 24  # one submitted call per task
    assert all(b"SCENARIO-PAYLOAD" not in b and len(b) < 2_000 for b in sent), max(map(len, sent))
    # the workers still ran with the scenario: toy_run reads its steps and vol
    pd.testing.assert_frame_equal(_table(tmp_path), reference[1])


@pytest.mark.parametrize("executor", ["serial", "process", "dask"])
def test_prepare_hook_runs_once_per_process_before_its_runs(reference, tmp_path, executor):
    if executor == "dask" and not HAVE_DISTRIBUTED:
        pytest.skip("dask.distributed cannot be imported")
    _, ref = reference
    # bound with functools.partial (as calibrate binds its run function): the wrapped hook runs
    run_fn = functools.partial(toy_run_prepared) if executor == "process" else toy_run_prepared
    report = run_batch(SCENARIO, run_fn, _tasks(), tmp_path, executor=executor, workers=2, keep_series=2,
                       progress=False)
    assert report.exit_code == 0 and report.ok == 24
    got = _table(tmp_path)
    # 1 in every run: the process running it was prepared exactly once, before its first run
    assert (got["prepared_here"] == 1).all()
    pd.testing.assert_frame_equal(got.drop(columns=["prepared_here"]), ref)


@pytest.mark.parametrize("mp_context", ["spawn", "forkserver"])
def test_pool_workers_start_before_the_manifest_is_written(reference, tmp_path, monkeypatch, mp_context):
    from simulator.experiments.batch import executors, warm_server

    started_at_manifest = []
    original = executors._atomic_write_json

    def spy(path, obj):
        if path.name == "manifest.json":
            if mp_context == "spawn":
                started_at_manifest.append(len(mp.active_children()))
            else:  # the warm server the workers will fork from is running (and importing) by then
                server = warm_server._SERVERS.get(executors._preload(toy_run))
                started_at_manifest.append(int(server is not None and server._forkserver_pid is not None))
        return original(path, obj)

    monkeypatch.setattr(executors, "_atomic_write_json", spy)
    report = run_batch(SCENARIO, toy_run, _tasks(), tmp_path, executor="process", workers=2, keep_series=2,
                       progress=False, mp_context=mp_context)
    assert report.ok == 24
    assert started_at_manifest == [2 if mp_context == "spawn" else 1]  # spawn: both workers already importing
    pd.testing.assert_frame_equal(_table(tmp_path), reference[1])


def test_failing_prepare_fails_the_runs_not_the_pool(tmp_path):
    report = run_batch(SCENARIO, toy_run_prepare_fails, _tasks(2), tmp_path, executor="process", workers=2,
                       progress=False)
    # 2 runs x 2 cells x 2 designs, each fails with the hook's error; no worker is lost
    assert (report.ok, report.failed, report.exit_code) == (0, 8, 1)
    df = load_results(tmp_path)
    assert (df["error"] == "RuntimeError: kernels unavailable").all()


def test_report_adds_up_run_time_and_worker_start(tmp_path):
    report = run_batch(SCENARIO, toy_run, _tasks(2), tmp_path / "p", executor="process", workers=2, progress=False)
    rows = load_results(tmp_path / "p")
    # run_s is the sum of the rows' elapsed_s (the time inside run_fn), not the wall time
    assert report.run_s == pytest.approx(rows["elapsed_s"].sum(), rel=1e-9)
    assert report.worker_start_s is not None and 0 <= report.worker_start_s <= report.elapsed_s
    # resuming the finished batch on a pool: nothing runs, the early-started pool is let go
    again = run_batch(SCENARIO, toy_run, _tasks(2), tmp_path / "p", executor="process", workers=2, progress=False,
                      resume=True)
    assert (again.ok, again.skipped, again.run_s, again.worker_start_s) == (0, 8, 0.0, None)
    serial = run_batch(SCENARIO, toy_run, _tasks(2), tmp_path / "s", executor="serial", progress=False)
    assert serial.worker_start_s is None  # no pool, no worker start-up


# ------------------------------------------------------------------ failures and resume
def test_failed_run_is_recorded_and_retried_on_resume(reference, tmp_path):
    _, ref = reference
    report = run_batch(SCENARIO, toy_run_fails_at_2, _tasks(), tmp_path, executor="serial", progress=False)
    assert (report.ok, report.failed, report.exit_code) == (20, 4, 1)
    assert {(f["run_index"], f["error"]) for f in report.failures} == {(2, "ValueError: boom in run 2")}
    df = load_results(tmp_path)
    bad = df[df.status == "failed"]
    assert len(bad) == 4 and (bad.run_index == 2).all()
    assert (bad["error"] == "ValueError: boom in run 2").all()
    assert bad["traceback"].str.contains("toy_run_fails_at_2").all()
    assert (bad["seed_entropy"] == 11).all() and (bad["spawn_key"] == "[2]").all()
    assert bad["loss"].isna().all()
    assert (df[df.status == "ok"]["loss"].notna()).all()
    # resume retries only the failed runs
    report = run_batch(SCENARIO, toy_run, _tasks(), tmp_path, executor="serial", keep_series=2, progress=False, resume=True)
    assert (report.ok, report.failed, report.skipped, report.exit_code) == (4, 0, 20, 0)
    got = _table(tmp_path)
    pd.testing.assert_frame_equal(got[ref.columns], ref)
    assert len(load_manifest(tmp_path)["sessions"]) == 2


def test_bad_metric_value_fails_the_run(tmp_path):
    report = run_batch(SCENARIO, toy_run_bad_metric, _tasks(3), tmp_path, executor="serial", progress=False)
    assert report.failed == 4 and report.exit_code == 1
    df = load_results(tmp_path)
    assert df.loc[df.status == "failed", "error"].str.contains("'path'").all()


def test_keyboard_interrupt_then_resume(reference, tmp_path):
    _, ref = reference
    tasks = _tasks()
    k = next(i for i, t in enumerate(tasks) if t.run_index == 3 and t.design == "B")
    with pytest.raises(KeyboardInterrupt):
        run_batch(SCENARIO, toy_run_interrupt_at_3, tasks, tmp_path, executor="serial", keep_series=2, progress=False)
    # everything before task k is on disk, nothing after
    names = set(os.listdir(tmp_path / "runs"))
    assert names == {task_filename(*t.key) for t in tasks[:k]}
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "interrupted"
    report = run_batch(SCENARIO, toy_run, tasks, tmp_path, executor="serial", keep_series=2, progress=False, resume=True)
    assert (report.skipped, report.ok, report.failed) == (k, len(tasks) - k, 0)
    pd.testing.assert_frame_equal(_table(tmp_path), ref)
    pd.testing.assert_frame_equal(load_series(tmp_path), load_series(reference[0]))


def test_keyboard_interrupt_in_process_pool(reference, tmp_path):
    _, ref = reference
    with pytest.raises(KeyboardInterrupt):
        run_batch(SCENARIO, toy_run_interrupt_at_3, _tasks(), tmp_path, executor="process", workers=2, keep_series=2, progress=False)
    done = load_results(tmp_path)
    assert len(done) < 24 and (done.status == "ok").all()
    report = run_batch(SCENARIO, toy_run, _tasks(), tmp_path, executor="process", workers=2, keep_series=2, progress=False, resume=True)
    assert report.exit_code == 0 and report.skipped == len(done)
    pd.testing.assert_frame_equal(_table(tmp_path), ref)


def test_killed_worker_keeps_finished_results(reference, tmp_path):
    _, ref = reference
    with pytest.raises(WorkerLostError, match="resume=True") as info:
        run_batch(SCENARIO, toy_run_worker_dies, _tasks(), tmp_path, executor="process", workers=2, keep_series=2, progress=False)
    err = info.value
    assert err.not_done and all(isinstance(t, Task) for t in err.not_done)
    done = load_results(tmp_path)
    assert (done.status == "ok").all() and not (done.run_index == 4).any()
    assert len(done) + len(err.not_done) == 24
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "worker_lost"
    report = run_batch(SCENARIO, toy_run, _tasks(), tmp_path, executor="serial", keep_series=2, progress=False, resume=True)
    assert report.exit_code == 0 and report.ok == len(err.not_done)
    pd.testing.assert_frame_equal(_table(tmp_path), ref)


def test_manifest_mismatch_on_resume(tmp_path):
    run_batch(SCENARIO, toy_run, _tasks(2), tmp_path, executor="serial", progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        run_batch(SCENARIO, toy_run, _tasks(2), tmp_path, executor="serial", progress=False)
    with pytest.raises(ManifestMismatchError, match=r"seed differs \(11 in the manifest, 12 now\)"):
        run_batch(SCENARIO, toy_run, _tasks(2, seed=12), tmp_path, executor="serial", progress=False, resume=True)
    other = {**SCENARIO, "index": {"vol": 0.5}}
    with pytest.raises(ManifestMismatchError, match=r"scenario differs \(index.vol: 0.8 in the manifest, 0.5 now\)"):
        run_batch(other, toy_run, _tasks(2), tmp_path, executor="serial", progress=False, resume=True)
    with pytest.raises(ManifestMismatchError, match="n_runs differ"):
        run_batch(SCENARIO, toy_run, _tasks(3), tmp_path, executor="serial", progress=False, resume=True)
    # the same batch resumes fine (nothing left to do)
    report = run_batch(SCENARIO, toy_run, _tasks(2), tmp_path, executor="serial", progress=False, resume=True)
    assert isinstance(report, BatchReport) and report.skipped == 8 and report.ok == 0


# ------------------------------------------------------------------ atomic files
def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "x.parquet"
    _atomic_write_bytes(target, b"first")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        _atomic_write_bytes(target, b"second")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["x.parquet"] and target.read_bytes() == b"first"


def test_stale_temp_files_are_cleaned_on_resume(tmp_path):
    run_batch(SCENARIO, toy_run, _tasks(2), tmp_path, executor="serial", progress=False)
    stale = tmp_path / "runs" / ".half-written.parquet.abc.tmp"
    stale.write_bytes(b"partial")
    assert load_results(tmp_path).shape[0] == 8  # readers ignore temp files
    run_batch(SCENARIO, toy_run, _tasks(2), tmp_path, executor="serial", progress=False, resume=True)
    assert not stale.exists()
    assert all(n.endswith(".parquet") and not n.startswith(".") for n in os.listdir(tmp_path / "runs"))


def test_unpicklable_run_fn_is_refused_for_process_pool(tmp_path):
    with pytest.raises(TypeError, match="picklable"):
        run_batch(SCENARIO, lambda s, t: {}, _tasks(1), tmp_path, executor="process", workers=1, progress=False)
    with pytest.raises(ValueError, match="executor='dask'"):
        run_batch(SCENARIO, toy_run, _tasks(1), tmp_path, executor="process", scheduler="tcp://127.0.0.1:1", progress=False)


# ------------------------------------------------------------------ warm fork server (default)
CASCADE = {"agents.traders.count": 40, "steps": 60, "shocks.0.step": 20}


def scenario_probe(scenario: dict, task: Task) -> dict:
    """scenario_run_fn, plus whether this process's model was prepared by its parent process (the
    warm fork server) rather than by this process."""
    import sys

    out = scenario_run_fn(scenario, task)
    out.pop("_series")
    preload = sys.modules.get("simulator.experiments.batch.preload")
    out["prepared_by_parent"] = getattr(preload, "PREPARED_IN", None) == os.getppid()
    return out


scenario_probe.prepare = scenario_run_fn.prepare
scenario_probe.preload = scenario_run_fn.preload


def _cascade_probe_tasks():
    from simulator.experiments.batch import batch_scenario
    from simulator.world.bundled import scenario_path

    data, designs = batch_scenario(scenario_path("cascade"), None, [], [], CASCADE)
    return data, plan_tasks(3, designs, None, 5)


def test_default_pool_forks_prepared_workers_with_serial_results(tmp_path):
    data, tasks = _cascade_probe_tasks()
    pool = run_batch(data, scenario_probe, tasks, tmp_path / "p", workers=2, progress=False)  # process, forkserver
    serial = run_batch(data, scenario_probe, tasks, tmp_path / "s", executor="serial", progress=False)
    assert (pool.ok, serial.ok) == (3, 3)
    assert load_manifest(tmp_path / "p")["sessions"][0]["mp_context"] == "forkserver"
    got, ref = _table(tmp_path / "p"), _table(tmp_path / "s")
    # every pool run was in a worker whose parent (the fork server) had prepared the model before
    # forking it; the serial runs prepared in this process
    assert got["prepared_by_parent"].all() and not ref["prepared_by_parent"].any()
    pd.testing.assert_frame_equal(got.drop(columns="prepared_by_parent"), ref.drop(columns="prepared_by_parent"))
    # the same pool started again in this process: its server is warm already, the workers are
    # forks of it (they import nothing), and the results are the same again
    again = run_batch(data, scenario_probe, tasks, tmp_path / "q", workers=2, progress=False)
    pd.testing.assert_frame_equal(_table(tmp_path / "q"), got)
    assert again.ok == 3 and again.worker_cpu_s is not None and again.worker_cpu_s > 0
