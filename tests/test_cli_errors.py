"""Every CLI error is one ``error: ...`` line on stderr, exit 2, before any work, and nothing is
written (issue 9). A genuine bug still shows its traceback (exit 1 through the entry point)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
CASCADE = str(ROOT / "scenarios/cascade.yaml")
TINY = ["--set", "agents.traders.count=30", "--set", "steps=60", "--set", "shocks.0.step=20"]


def _one_error(capsys, expected: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and expected in err[0], err[0]
    return err[0]


@pytest.fixture()
def batch_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "b"
    assert main(["batch", CASCADE, "--runs", "2", "--executor", "serial", "--quiet", "--out", str(out), *TINY]) == 0
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = [
    (["run", CASCADE, "--seed", "-1"], "argument --seed: -1 is negative"),
    (["batch", CASCADE, "--runs", "2", "--seed", "-1"], "argument --seed: -1 is negative"),
    (["run", str(ROOT / "scenarios")], "is a folder; give a scenario file"),
    (["run", "nosuch_scenario"], "nosuch_scenario: no such file or bundled scenario"),
    (["batch", CASCADE, "--runs", "2", "--workers", "0"], "argument --workers: 0 is too small"),
    (["batch", CASCADE, "--runs", "2", "--keep-series", "-1"], "argument --keep-series: -1 is negative"),
    (["batch", CASCADE, "--runs", "0"], "argument --runs: 0 is too small"),
    (["batch", CASCADE], "--runs N is required"),
    (["compare", "nosuch_folder"], "compare nosuch_folder: no such folder"),
    (["compare", "x", "--n-boot", "0"], "argument --n-boot: 0 is too small"),
    (["batch", "--resume", "nosuch_folder"], "--resume nosuch_folder: no such folder"),
    (["run", CASCADE, "--steps", "x"], "argument --steps: invalid int value: 'x'"),
    (["run", CASCADE, "--set", "agents.traders.count"], "use FIELD.PATH=VALUE"),
    (["run", CASCADE, "--set", "a..b=1"], "is not a dotted field path"),
    (["fit", str(ROOT / "scenarios/inverse_crash.yaml"), "--targets", str(ROOT / "scenarios/targets/2025-10-10.yaml")],
     "markets.settlement: calibration supports linear (USD-margined) markets only"),
]


@pytest.mark.parametrize("argv,expected", CASES, ids=[" ".join(a[:1] + a[2:])[:40] for a, _ in CASES])
def test_one_line_exit_2_nothing_written(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc_info:
        raise SystemExit(main(argv))
    assert exc_info.value.code == 2
    _one_error(capsys, expected)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_scheduler_fails_fast_leaving_nothing(tmp_path, capsys):
    out = tmp_path / "b"
    port = _free_port()
    assert main(["batch", CASCADE, "--runs", "2", "--scheduler", f"tcp://127.0.0.1:{port}", "--out", str(out), *TINY]) == 2
    _one_error(capsys, "cannot connect")
    assert not out.exists()


def test_run_out_checks_before_simulating(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["run", CASCADE, "--out", str(f), *TINY]) == 2
    _one_error(capsys, "exists and is a file")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root can write anyway
            assert main(["run", CASCADE, "--out", str(ro / "r"), *TINY]) == 2
            _one_error(capsys, "permission denied")
    finally:
        ro.chmod(0o700)


def test_run_out_refuses_an_existing_run_folder_unless_force(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", CASCADE, "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    first = (out / "summary.json").read_text()
    assert main(["run", CASCADE, "--out", str(out), *TINY, "--seed", "9"]) == 2
    _one_error(capsys, "already a run folder; choose another folder or pass --force")
    assert (out / "summary.json").read_text() == first
    assert main(["run", CASCADE, "--out", str(out), *TINY, "--seed", "9", "--force"]) == 0
    assert json.loads((out / "run.json").read_text())["seed"] == 9
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    modes = {oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert len(modes) == 1  # every file follows the umask


def test_resume_with_damaged_manifest(batch_dir, capsys):
    m = batch_dir / "manifest.json"
    text = m.read_text()
    m.write_text(text[: len(text) // 2])
    assert main(["batch", "--resume", str(batch_dir)]) == 2
    _one_error(capsys, "manifest.json is unreadable or truncated")
    m.write_text("")
    assert main(["batch", "--resume", str(batch_dir)]) == 2
    _one_error(capsys, "manifest.json is unreadable or truncated")


def test_resume_refuses_other_arguments(batch_dir, capsys):
    assert main(["batch", CASCADE, "--runs", "5", "--resume", str(batch_dir)]) == 2
    _one_error(capsys, "--resume continues the batch exactly as its manifest records it; drop FILE, --runs")


def test_second_batch_on_a_locked_folder(batch_dir, capsys):
    import fcntl

    fd = os.open(batch_dir / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert main(["batch", "--resume", str(batch_dir), "--executor", "serial"]) == 2
        _one_error(capsys, "another batch is writing to")
    finally:
        os.close(fd)
    # a stale .lock (dead PID written in it, nobody holding it) does not block
    (batch_dir / ".lock").write_text("999999\n")
    assert main(["batch", "--resume", str(batch_dir), "--executor", "serial", "--quiet"]) == 0


def test_compare_errors_write_nothing(batch_dir, tmp_path, capsys):
    for p in ("compare.csv", "probabilities.csv"):
        (batch_dir / p).unlink()
    assert main(["compare", str(batch_dir), "--baseline", "nosuch"]) == 2
    _one_error(capsys, "baseline design 'nosuch' has no ok runs")
    assert main(["compare", str(batch_dir), "--metrics", "nosuch"]) == 2
    _one_error(capsys, "metrics not in the results: ['nosuch']")
    assert not (batch_dir / "compare.csv").exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert main(["compare", str(plain)]) == 2
    _one_error(capsys, "not a batch folder")
    assert list(plain.iterdir()) == []
    run_file = next((batch_dir / "runs").glob("*.parquet"))
    run_file.write_bytes(run_file.read_bytes()[:100])
    assert main(["compare", str(batch_dir)]) == 2
    _one_error(capsys, "unreadable run file")
    assert not (batch_dir / "compare.csv").exists()


def test_help_lists_defaults_presets_and_metrics(capsys):
    for cmd in ("run", "batch", "compare", "validate"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
    out = capsys.readouterr().out
    assert "bitmex" in out and "hyperliquid" in out  # presets in batch --help
    assert "deficit_total" in out and "venue_loss" in out  # metrics in compare --help
    assert "(default: 5)" in out and "(default: 2000)" in out and "(default: process)" in out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("perpstress ")


def test_a_genuine_bug_is_not_hidden(monkeypatch):
    from simulator.cli import run_cmd

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(run_cmd, "cmd_scenarios", boom)
    with pytest.raises(ZeroDivisionError):
        main(["scenarios"])
