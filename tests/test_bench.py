"""``python -m simulator.bench --quick`` prints its table and refuses a dead market.

A smoke run only: nothing here asserts a speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "simulator.bench", "--quick", "--sizes", "300,600", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_quick_bench_prints_every_figure():
    r = _bench()
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for text in ("cores usable", "load average", "M trader-steps/s", "ms/step", "peak RSS", "fit over 2 sizes",
                 "ns per trader-step", "runs/minute", "speed-up", "memory floor",
                 "memory in the step count", "3x the steps"):
        assert text in out, text
    assert "REFUSED" not in out


def test_quick_bench_refuses_a_dead_market():
    # no market makers and no arbitrageurs' basis ladder (it alone would keep a two-sided book):
    # the book is empty before the shock
    r = _bench("--skip-batch", "--set", "agents.market_makers.count=0", "--set", "agents.arbitrageurs.quote_levels=0",
               "--set", "agents.traders.initial_positions=0")
    assert "REFUSED" in r.stdout, r.stdout + r.stderr
    assert "M trader-steps/s" in r.stdout  # the header still prints
    assert r.returncode == 1


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_rss_is_the_runs_own_not_the_processes():
    # a worker runs all repeats of its size: a 200 MB array freed before a run must not count as
    # that run's peak (the process's high-water mark keeps it until reset)
    from simulator import bench

    big = np.ones(25_000_000)  # 200 MB, every page written
    del big
    peak_before = bench._peak_rss_mb()
    bench._reset_peak_rss()
    assert bench._peak_rss_mb() < peak_before - 150
