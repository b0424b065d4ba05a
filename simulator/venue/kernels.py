"""Compiled hot-path kernels (numba, ``cache=True``), exact int64.

Each kernel computes exactly what the numpy code it replaces computes, bit for bit: integer
``//`` and ``%`` keep Python's floor semantics in numba as in numpy, and int64 products wrap
the same way in both (the ledger's limits keep every product in range anyway). The numpy
versions stay next to the callers as the reference (``Ledger.trade_reference``,
``Venue.liquidatable_reference``) and the tests compare the two.

Import this module lazily (``simulator.venue.kernels.get()``): importing numba costs a few
hundred milliseconds that ``perpstress --help`` should not pay. Without numba, ``get()``
returns None and the callers use the numpy versions.
"""

from __future__ import annotations

import importlib

import numpy as np

PPM = 1_000_000
_KERNELS = None
_TRIED = False
_MODULES: dict = {}


def get():
    """The compiled kernels module namespace, or None when numba is not installed."""
    global _KERNELS, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            from simulator.venue import _nb as _KERNELS
        except ImportError:  # pragma: no cover - numba is a dependency
            _KERNELS = None
    return _KERNELS


def load(module: str):
    """A compiled-kernel module by dotted name (imported once, on first use), or None without
    numba; the agents' kernels (``agents._nb_makers``, ``agents._nb_traders``) load through it too."""
    if module not in _MODULES:
        try:
            _MODULES[module] = importlib.import_module(module)
        except ImportError:  # pragma: no cover - numba is a dependency
            _MODULES[module] = None
    return _MODULES[module]


def scan():
    """Whole-ledger scans (``_nb_scan``: maintenance scan, ledger totals), or None (once
    loaded, one dict lookup, as ``prices``)."""
    return _MODULES.get("simulator.venue._nb_scan") or load("simulator.venue._nb_scan")


def book():
    """Order-book and quote kernels (``_nb_book``), or None (once loaded, one dict lookup)."""
    return _MODULES.get("simulator.venue._nb_book") or load("simulator.venue._nb_book")


def prices():
    """The mark update (``_nb_prices``), or None (once loaded, one dict lookup: it is asked
    for two or three times a step)."""
    return _MODULES.get("simulator.venue._nb_prices") or load("simulator.venue._nb_prices")


def f64(a) -> np.ndarray:
    """``a`` as a C-contiguous, writable float64 array (``i64`` for floats)."""
    if type(a) is np.ndarray and a.dtype == np.float64 and a.ndim == 1:
        flags = a.flags
        if flags.c_contiguous and flags.writeable:
            return a
    return np.require(np.atleast_1d(np.asarray(a, dtype=np.float64)), np.float64, ["C", "W"])


def i64(a) -> np.ndarray:
    """``a`` as a C-contiguous, writable int64 array (one compiled signature per kernel)."""
    if type(a) is np.ndarray and a.dtype == np.int64:
        flags = a.flags
        if flags.c_contiguous and flags.writeable:
            return a  # the common case, without np.require's overhead
    return np.require(a, np.int64, ["C", "W"])


def i64_1d(a) -> np.ndarray:
    """``a`` (an array or a scalar) as a one-dimensional ``i64`` array."""
    if type(a) is np.ndarray and a.dtype == np.int64 and a.ndim == 1:
        flags = a.flags
        if flags.c_contiguous and flags.writeable:
            return a
    return np.require(np.atleast_1d(a), np.int64, ["C", "W"])


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel on tiny inputs."""
    k = get()
    if k is None:
        return
    w = np.zeros(2, dtype=np.int64)
    q = np.zeros((2, 1), dtype=np.int64)
    c = np.zeros((2, 1), dtype=np.int64)
    one = np.ones(1, dtype=np.int64)
    k.trade(w, q, c, 0, np.zeros(1, dtype=np.int64), one, one, one, 1)
    k.trade_values(w, q, c, 0, np.zeros(1, dtype=np.int64), one, one, -one)
    tiers = (np.zeros((1, 1), dtype=np.int64), np.full((1, 1), 5000, dtype=np.int64),
             np.zeros((1, 1), dtype=np.int64), one)
    k.liquidatable(w, q, c, one, one, np.ones(1, dtype=np.bool_), *tiers, np.zeros(2, dtype=np.bool_))
    k.match(one, one, one, one, True, one, one, one, one)
    k.match(one, one, one, one, False, one, one, one, one)
    k.ledger_totals(w, q, c, one, one)
    load("simulator.venue.warm_up").step_path()  # by name: that module imports the venue
