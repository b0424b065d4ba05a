"""The book stays two-sided through a crash (issue: the bundled crash scenarios left the book
without a bid for hundreds of steps). Makers quote around an inventory reservation price and keep a
thin adding side at their limit; arbitrageurs rest a basis ladder under and over the index.

The whole-run check fails on the model before this change (cascade at its own 1,000 traders was
two-sided on 75.6 % of its 900 steps, no bid from step 335 to 528)."""

from __future__ import annotations

import numpy as np

from golden_runs import ROOT
from agents.arbitrageurs import basis_ladder
from agents.market_makers import _kernels, ladder
from simulator.experiments import run
from simulator.venue.book import BUY, SELL
from simulator.world import metrics


def test_cascade_keeps_a_two_sided_book_and_still_cascades():
    sc = run.load_scenario(ROOT / "scenarios/cascade.yaml")
    assert sc.agents.traders.count == 1000  # the file's own population
    s = run.run_scenario(sc).summary
    assert s["two_sided_share"] >= metrics.MIN_TWO_SIDED_SHARE, s["two_sided_share"]
    # ... and it is still a cascade: liquidation rounds within a step, the last trade below the
    # index low, and deficits the insurance fund pays
    assert s["liquidation_count"] > 100 and s["max_cascade_depth"] >= 2
    assert s["last_min"] < s["index_min"]
    assert s["deficit_total"] > 0 and s["covered_insurance_fund"] > 0


def test_reservation_price_ladder_by_hand():
    # two makers, equity 100,000 cash, leverage 10, inventory_limit 0.5: limit 500,000 cash.
    # Maker 7 is long 50 lots at fair 10,000 (cv 1): inventory 500,000, skew +1 (at the limit);
    # maker 8 is short 25 lots: -250,000, skew -0.5. inventory_skew 0.01:
    #   r7 = 10,000 x (1 - 0.01 x 1) = 9,900;  r8 = 10,000 x (1 + 0.01 x 0.5) = 10,050.
    # half spread 0.001, spacing 0.002, 2 levels: offsets 0.001, 0.003.
    #   maker 7: bids floor(9,900 x 0.999) = floor(9,890.1) = 9,890, floor(9,900 x 0.997) = floor(9,870.3) = 9,870;
    #            asks ceil(9,900 x 1.001) = ceil(9,909.9) = 9,910, ceil(9,900 x 1.003) = ceil(9,929.7) = 9,930
    #   maker 8: bids floor(10,039.95) = 10,039, floor(10,019.85) = 10,019;
    #            asks ceil(10,060.05) = 10,061, ceil(10,080.15) = 10,081
    # Sizes, 100 lots per level, limit_quote_share 0.25 (the limit takes off 0.75 of the adding side):
    #   maker 7 bids 100 x (1 - 1 x 0.75) = 25 (a thin bid at the limit, not none), asks 100;
    #   maker 8 bids 100, asks 100 x (1 - 0.5 x 0.75) = 62.5 -> 62.
    accounts = np.array([7, 8])
    equity = np.array([100_000, 100_000])
    qty = np.zeros((9, 1), dtype=np.int64)
    qty[7, 0], qty[8, 0] = 50, -25
    inventory = qty[accounts, 0] * 10_000.0
    args = (10_000.0, 0.5, 10.0, 100.0, 0.001, 0.002, 2)
    owners, sides, prices, lots = ladder(accounts, equity, inventory, *args, 0.01, 0.25)
    assert owners.tolist() == [7, 7, 8, 8, 7, 7, 8, 8]
    assert sides.tolist() == [BUY] * 4 + [SELL] * 4
    assert prices.tolist() == [9_890, 9_870, 10_039, 10_019, 9_910, 9_930, 10_061, 10_081]
    assert lots.tolist() == [25, 25, 100, 100, 100, 100, 62, 62]
    # the compiled ladder gives the same quotes from the ledger's lots
    fair, limit, lev, base, half, spacing, levels = args
    got = _kernels().maker_ladder(accounts, equity, qty, 0, fair, 1, limit, lev, base, half, spacing, levels, False,
                                  0.01, 0.25)
    for a, b in zip(got, (owners, sides, prices, lots)):
        assert a.tolist() == b.tolist()
    # without skew and limit share the adding side of a maker at its limit is not quoted and
    # both ladders sit around the index: maker 7 quotes asks only, 10,010 and 10,030; maker 8's
    # asks are 100 x (1 - 0.5) = 50 lots
    o, s, p, q = ladder(accounts, equity, inventory, *args, 0.0, 0.0)
    assert o.tolist() == [8, 8, 7, 7, 8, 8] and s.tolist() == [BUY, BUY] + [SELL] * 4
    assert p.tolist() == [9_990, 9_970, 10_010, 10_030, 10_010, 10_030]
    assert q.tolist() == [100, 100, 100, 100, 50, 50]


def test_arbitrageur_basis_ladder_by_hand():
    # index 20,000.3 ticks, threshold 0.001, levels 0.004 apart, 10 lots at the nearest level,
    # doubling: 10, 20, 40 lots wanted at levels 0, 1, 2.
    #   bids floor(20,000.3 x 0.999) = floor(19,980.2997) = 19,980, x 0.995 = 19,900.2985 -> 19,900,
    #        x 0.991 = 19,820.2973 -> 19,820
    #   asks ceil(20,000.3 x 1.001) = ceil(20,020.3003) = 20,021, x 1.005 = 20,100.3015 -> 20,101
    # Room: 70 lots to buy fills all three (10 + 20 + 40); 15 lots to sell: 10, then the 5 left.
    # A second arbitrageur with no room to buy (at its cap) quotes asks only: 12 lots, 10 then 2.
    owners, sides, prices, lots = basis_ladder(np.array([3, 4]), np.array([70, 0]), np.array([15, 12]), 20_000.3,
                                               0.001, 0.004, 3, 10, 2.0)
    assert owners.tolist() == [3, 3, 3, 3, 3, 4, 4]
    assert sides.tolist() == [BUY, BUY, BUY, SELL, SELL, SELL, SELL]
    assert prices.tolist() == [19_980, 19_900, 19_820, 20_021, 20_101, 20_021, 20_101]
    assert lots.tolist() == [10, 20, 40, 10, 5, 10, 2]
