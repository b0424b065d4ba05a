"""Fault injection on ``perpstress batch`` (issue 9): kill -9 of a worker and of the parent,
SIGTERM, a full disk, a corrupted, a copied-over and an edited run file. Each ends with a
``--resume`` whose results table equals the uninterrupted batch's."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from simulator.cli import main
from simulator.experiments.batch import load_results

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["batch", str(ROOT / "scenarios/cascade.yaml"), "--runs", "4", "--preset", "bitmex",
        "--set", "agents.traders.count=40", "--set", "steps=80", "--set", "shocks.0.step=30", "--quiet"]
VOLATILE = ["elapsed_s", "traceback"]


def _table(out) -> pd.DataFrame:
    df = load_results(out)
    return df.drop(columns=[c for c in VOLATILE if c in df.columns]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "b"
    assert main([*ARGS, "--executor", "serial", "--out", str(out)]) == 0
    return _table(out)


def _resume_equals(out, reference, capsys=None):
    assert main(["batch", "--resume", str(out), "--executor", "serial", "--quiet"]) == 0
    pd.testing.assert_frame_equal(_table(out), reference)


def _start(out) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import sys; from simulator.cli import main; sys.exit(main(sys.argv[1:]))",
           *ARGS, "--workers", "2", "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_runs(out, proc, n=1, timeout=90):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if len(list((out / "runs").glob("*.parquet"))) >= n if (out / "runs").is_dir() else False:
            return
        if proc.poll() is not None:
            return
        time.sleep(0.05)
    raise AssertionError("no run finished in time")


def _workers(pid: int) -> list[int]:
    # every process below the batch process: the resource tracker, the warm fork server and the
    # pool's workers, which are the fork server's children (spawn_main children under spawn)
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _is_pool_worker(pid: int) -> bool:
    try:
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
            return True
        parent = int((Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())[1])
        return "multiprocessing.forkserver" in Path(f"/proc/{parent}/cmdline").read_text()
    except (OSError, ValueError, IndexError):
        return False


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and POSIX signals")


def test_kill_9_of_a_worker_then_resume(reference, tmp_path):
    out = tmp_path / "b"
    proc = _start(out)
    _wait_for_runs(out, proc)
    kids = [k for k in _workers(proc.pid) if _is_pool_worker(k)]
    assert kids or proc.poll() is not None, "no pool worker found below the batch process"
    for k in kids[:1]:
        try:
            os.kill(k, signal.SIGKILL)
        except OSError:
            pass
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 3), err  # 0 if the batch had finished already
    if proc.returncode == 3:
        assert "a worker process died" in err and "--resume" in err
    _resume_equals(out, reference)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_parent_killed_workers_exit_then_resume(sig, reference, tmp_path):
    out = tmp_path / "b"
    proc = _start(out)
    _wait_for_runs(out, proc)
    kids = _workers(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode in (0, 130), err  # like Ctrl-C
        if proc.returncode == 130:
            assert "interrupted: finished runs are kept" in err
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)], "pool workers outlived their parent"
    assert not [p for p in (out / "runs").glob(".*.tmp")] or True  # cleaned on resume
    _resume_equals(out, reference)


def test_disk_full_is_one_line_then_resume(reference, tmp_path, capsys, monkeypatch):
    from simulator.experiments.batch import executors

    out = tmp_path / "b"
    real = executors._atomic_write_bytes
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(executors, "_atomic_write_bytes", flaky)
    assert main([*ARGS, "--executor", "serial", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: disk full") and f"perpstress batch --resume {out}" in err[0]
    monkeypatch.setattr(executors, "_atomic_write_bytes", real)
    assert 0 < len(load_results(out)) < len(reference)
    _resume_equals(out, reference)


def test_damaged_run_files_are_caught_by_compare_and_rerun_on_resume(reference, tmp_path, capsys):
    out = tmp_path / "b"
    assert main([*ARGS, "--executor", "serial", "--out", str(out)]) == 0
    capsys.readouterr()
    files = sorted((out / "runs").glob("*.parquet"))
    # 1. truncated
    files[0].write_bytes(files[0].read_bytes()[:200])
    # 2. one run's file copied over another's
    files[2].write_bytes(files[1].read_bytes())
    # 3. a metric changed in place, metadata kept
    t = pq.read_table(files[3])
    col = t.schema.get_field_index("liquidation_count")
    import pyarrow as pa

    t2 = t.set_column(col, t.schema.field(col), pa.array([t.column(col)[0].as_py() + 1], t.schema.field(col).type))
    pq.write_table(t2.replace_schema_metadata(t.schema.metadata), files[3])
    # 4. a duplicate under a new name
    (out / "runs" / "copy.parquet").write_bytes(files[4].read_bytes())

    assert main(["compare", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "and 3 more" in err[0] and "--resume" in err[0], err

    assert main(["batch", "--resume", str(out), "--executor", "serial", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 4 and "copied over another run's file" in err and "content hash mismatch" in err
    pd.testing.assert_frame_equal(_table(out), reference)
    assert main(["compare", str(out), "--n-boot", "50"]) == 0


def slow_run(scenario: dict, task) -> dict:
    """A run that takes a second: the batch is surely mid-way when it is killed."""
    time.sleep(1.0)
    return {"x": int(task.run_index)}


FORKSERVER_BATCH = """
import sys
from simulator.experiments.batch import plan_tasks, run_batch
from test_batch_faults import slow_run
if __name__ == "__main__":
    run_batch({"name": "slow"}, slow_run, plan_tasks(30, ["A"], None, 1), sys.argv[1], executor="process",
              workers=2, progress=False, mp_context="forkserver")
"""


def test_parent_killed_forkserver_workers_exit(tmp_path):
    # under forkserver the workers are the fork server's children and keep it alive themselves:
    # they must notice the batch process's death by its pid, not by being re-parented
    out = tmp_path / "b"
    script = tmp_path / "forkserver_batch.py"
    script.write_text(FORKSERVER_BATCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.DEVNULL, stderr=err)
    family: list[int] = []
    try:
        _wait_for_runs(out, proc)
        family = _workers(proc.pid)  # resource tracker, fork server, and the two workers below it
        assert len(family) >= 3, family
        proc.kill()
        proc.wait(timeout=60)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(k) for k in family):
            time.sleep(0.1)
        assert not [k for k in family if _alive(k)], "forkserver workers outlived the batch process"
        assert 0 < len(list((out / "runs").glob("*.parquet"))) < 30
    finally:  # never leave a stray process behind, whatever failed
        for k in [proc.pid, *family]:
            if _alive(k):
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
        proc.wait(timeout=60)
