"""Shared fixtures for the venue-core tests.

Markets here use ``tick_size = lot_size = cash_unit = 1`` unless a test says otherwise, so the
contract value is 1 and a price in ticks, a notional and a cash amount are the same number:
every expected value in the tests can be worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.venue.margin import MarginTiers
from simulator.venue.market import MarketSpec
from simulator.venue.prices import MarkConfig
from simulator.venue.venue import Venue, VenueConfig


def unit_market(name: str = "X", mmr_ppm: int = 10_000, tiers: MarginTiers | None = None,
                taker_fee_ppm: int = 0, maker_fee_ppm: int = 0, max_leverage: float = 100.0) -> MarketSpec:
    """Contract value 1: 1 lot x 1 tick = 1 cash unit. Default: one tier, MM = 1 % of notional."""
    return MarketSpec(
        name=name, tick_size=1.0, lot_size=1.0, cash_unit=1.0, max_leverage=max_leverage,
        taker_fee_ppm=taker_fee_ppm, maker_fee_ppm=maker_fee_ppm,
        tiers=tiers or MarginTiers((0,), (mmr_ppm,)),
    )


@pytest.fixture
def make_venue():
    """``make_venue(waterfall, markets=None, fund=0, backstop=0, seed=0, mark="index")``.

    The mark follows the index exactly (``mark="index"``) so a test sets it with
    ``move(venue, price)``.
    """

    def make(waterfall=({"stage": "book"},), markets=None, fund=0, backstop=0, seed=0, mark="index", **kw):
        cfg = VenueConfig(
            markets=list(markets or [unit_market()]), waterfall=[dict(s) for s in waterfall],
            mark=MarkConfig(method=mark), insurance_fund=fund, backstop_capital=backstop, **kw,
        )
        return Venue(cfg, np.random.default_rng(seed))

    return make


def move_to(venue: Venue, *prices) -> None:
    """Set index and (with ``mark="index"``) mark to ``prices`` (one per market), rolling once."""
    venue.set_index(list(prices))
    venue.update_marks()


@pytest.fixture
def move():
    return move_to


# Property tests explore new random cases on every local run; on CI (CI=true) they replay a
# fixed derandomized set, so a landing never depends on the luck of the draw. Every local run
# draws new cases: run the property tests a few times before a change lands.
import os  # noqa: E402

from hypothesis import settings as _hsettings  # noqa: E402

_hsettings.register_profile("ci", derandomize=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    _hsettings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
elif os.environ.get("CI"):
    _hsettings.load_profile("ci")
