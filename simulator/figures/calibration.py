"""Simulated vs real, per calibration target (``perpstress calibrate`` writes ``fit.png``).

One row per target: the real value (black diamond), its acceptance region (green band: value
+- tolerance, and/or the min/max bound), and the simulated runs (grey dots) with their mean and
90 % band (blue). Reads the fit table and the best candidate's runs; draws nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.figures.style import _new_figure


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def fit_figure(fit: pd.DataFrame, runs: pd.DataFrame, keys: list[str]):
    n = len(fit)
    fig = _new_figure((7.5, 1.1 * n + 0.8), 120)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, (_, r), key in zip(axes, fit.iterrows(), keys):
        real = r["real"]
        x = pd.to_numeric(runs[key], errors="coerce").to_numpy(dtype=float) if key in runs else np.zeros(0)
        x = x[np.isfinite(x)]
        lo = r["min"] if _finite(r["min"]) else None
        hi = r["max"] if _finite(r["max"]) else None
        if _finite(r["tolerance"]):
            lo = max(lo, real - r["tolerance"]) if lo is not None else real - r["tolerance"]
            hi = min(hi, real + r["tolerance"]) if hi is not None else real + r["tolerance"]
        if r["metric"] == "adl_profile":
            lo = 0.0  # a distance: never below 0
        span = [v for v in (lo, hi, real, *x) if _finite(v)]
        left, right = min(span), max(span)
        pad = 0.1 * (right - left) or 0.1 * abs(right) or 0.1
        ax.axvspan(lo if lo is not None else left - pad, hi if hi is not None else right + pad,
                   color="#2E8B57", alpha=0.15, lw=0)
        if len(x):
            ax.scatter(x, np.zeros(len(x)) + 0.15 * np.linspace(-1, 1, len(x)), s=10, color="#888888", zorder=2)
            ax.errorbar([r["sim_mean"]], [0], xerr=[[r["sim_mean"] - r["sim_p05"]], [r["sim_p95"] - r["sim_mean"]]],
                        fmt="o", color="#3B75AF", capsize=4, zorder=3)
        ax.plot([real], [0], marker="D", color="black", ms=7, zorder=4, ls="none")
        ax.set_xlim(left - pad, right + pad)
        ax.set_ylim(-0.5, 0.5)
        ax.set_yticks([])
        label = r["metric"] + ("" if r["market"] == "all" else f" {r['market']}")
        if r["metric"] == "adl_profile":
            label += "\n(TV distance)"
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.text(1.01, 0.5, "within" if r["within"] else "OUT", transform=ax.transAxes, va="center", fontsize=8,
                color="#2E8B57" if r["within"] else "#D6472B")
    axes[0].set_title("simulated (blue: mean and 90 % band; grey: runs) vs real (black); green: target", fontsize=9)
    return fig


def save_fit_figure(fit: pd.DataFrame, runs: pd.DataFrame, keys: list[str], path: str | Path) -> Path:
    path = Path(path)
    fig = fit_figure(fit, runs, keys)
    fig.savefig(path, dpi=120)
    return path
