"""Warm-up of the venue's step path: every kernel a run calls, loaded before the clock starts.

``kernels.warm_up`` calls ``step_path`` (by module name: this module imports the venue, which
imports ``kernels``). Numba loads a compiled kernel from its on-disk cache the first time it
meets a type signature; a kernel first met inside a timed run (a market order, a liquidation)
would load there instead.
"""

from __future__ import annotations

import numpy as np

from simulator.venue import kernels
from simulator.venue.prices import MarkConfig
from simulator.venue.venue import Venue, VenueConfig


def step_path() -> None:
    """Load the step path's kernels with the types a run gives them, by running a tiny venue:
    quotes, cancels, market orders (with and without reduce-only flags and limits), marks, a
    liquidation through the default waterfall, the venue rows' unwinds, the record's scans and
    the index window statistics. A kernel first met inside a timed run would load there instead."""
    # the mark follows the index, so the drop to 50 liquidates the long traders
    v = Venue(VenueConfig(insurance_fund=10**9, mark=MarkConfig(method="index")), np.random.default_rng(0))
    v.set_index([100.0])
    v.update_marks(roll=True)
    makers = v.add_accounts(2, "market_maker", 10**11, leverage=5.0)
    traders = v.add_accounts(4, "trader", 10**5, leverage=20.0)
    for index in (100.0, 99.0, 50.0, 50.0):
        v.set_index([index])
        v.update_marks(roll=True)
        mark = int(v.marks[0])
        v.cancel_orders(makers)
        v.post_quotes(0, np.repeat(makers, 4), np.tile([1, 1, -1, -1], 2),
                      np.tile([mark - 1, mark - 2, mark + 1, mark + 2], 2), np.full(8, 20))
        sides = np.array([1, 1, -1, 1], dtype=np.int64)
        v.submit_orders(0, traders, sides, np.full(4, 10, dtype=np.int64),
                        np.where(sides == 1, mark * 2, 1), reduce_only=np.zeros(4, dtype=bool))
        v.submit_orders(0, traders[:1], np.array([-1]), np.array([1]), mark // 2)
        v.books[0].depth_within(0.01, float(mark))
        v.books[0].submit(traders[:1], [1], [1], [mark])  # an IOC straight into the book (unwinds)
        # inventory for the unwinds: the fund and the engine take a position from a maker
        v.opening_auction(0, [v.insurance_fund, v.engine, makers[0]], [5, -3, -2], mark)
        v.unwind_venue_positions()
        v.unwind_venue_positions(holders=[v.insurance_fund, v.engine])
        v.update_marks(roll=False)
        v.liquidate()
        v.ledger.totals(v.marks)
        v.equity(np.array([v.insurance_fund, v.backstop, v.engine]))
    p = kernels.prices()
    if p is not None:
        path = np.cumsum(np.ones((40, 1)), axis=0)
        p.window_std_table(path, 10, 40)
        p.window_signals_table(path, 10, 40)

