"""A non-editable ``pip install .`` ships the bundled scenarios, presets and replay data.

The wheel is installed into a fresh virtualenv (no pip, no network: ``--no-deps
--no-build-isolation``; the dependencies come from this environment's site-packages through a
``.pth`` line, which does not activate this checkout's editable install), and ``perpstress`` is
run from an empty folder elsewhere.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("pkg")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    Path(purelib, "_deps_from_test_env.pth").write_text(here + "\n")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # build from a copy so the checkout gets no build/ or egg-info droppings
    src = base / "src"
    import shutil

    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "results", "build", "*.egg-info",
                                                            "__pycache__", ".hypothesis", ".pytest_cache", "_bundled"))
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-build-isolation", str(src)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    shutil.rmtree(src)  # the installed package must not need the source tree
    work = base / "elsewhere"
    work.mkdir()
    return venv / "bin" / "perpstress", work


def _run(exe, cwd, *args, timeout=240):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_installed_package_lists_and_runs_bundled_scenarios(installed):
    exe, work = installed
    r = _run(exe, work, "--version")
    assert r.returncode == 0 and r.stdout.startswith("perpstress ")
    r = _run(exe, work, "scenarios")
    assert r.returncode == 0, r.stderr
    assert "_bundled" in r.stdout and "cascade" in r.stdout and "bitmex" in r.stdout
    r = _run(exe, work, "validate", "october_2025", "bitmex")  # replay data and a preset from the wheel
    assert r.returncode == 0, r.stderr
    r = _run(exe, work, "run", "cascade", "--steps", "50", "--set", "agents.traders.count=50",
             "--set", "shocks.0.step=10", "--out", "one")
    assert r.returncode == 0, r.stderr
    assert (work / "one" / "summary.json").exists()
    r = _run(exe, work, "batch", "cascade", "--runs", "2", "--preset", "bitmex", "--set", "agents.traders.count=50",
             "--set", "steps=60", "--set", "shocks.0.step=30", "--executor", "serial", "--out", "b")
    assert r.returncode == 0, r.stderr
    assert "presets: []" not in r.stderr
    assert len(list((work / "b" / "runs").glob("*.parquet"))) == 4
