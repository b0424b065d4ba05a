"""The loss waterfall: an ordered list of stages, each one small unit.

A liquidation round hands every account below maintenance (a *case*) to the stages in the
scenario's order. Position stages (``book``, ``backstop``, ``adl``, and ``insurance_fund``
when it takes positions over) close what is left of the case's positions; once a case is flat,
its wallet is its *surplus* (> 0) or *deficit* (< 0), and deficit stages (``insurance_fund``,
``socialize``) cover what they can. Whatever is still negative after the last stage is the
venue's own loss (``cover_venue_loss``): injected from outside and recorded, never hidden.

When a case's positions are gone, its wallet is logged once as a ``deficit`` or ``surplus``
event, before any stage covers or takes it (``Cases.record_outcome``), so the deficit events add
up to what the covers (fund payouts, negative takeover margins, ADL haircuts, socialization,
venue loss) paid. A partial book close that brings a case back above maintenance marks it
``restored``: later position stages leave the rest of its position alone.

Every stage is a class with ``run(venue, cases)`` and, if it defers work to the end of a
settlement window, ``settle(venue)``. One module per stage (``book``, ``backstop``,
``insurance_fund``, ``adl``, ``socialize``); ``base`` holds what they share (``Cases``,
``Stage``, ``take_over``, ``cover_venue_loss``). A new stage is one new module whose class is
registered in ``STAGES`` below; ``build_waterfall`` looks stages up there.

Conventions that make "at the bankruptcy price" exact in integers: a takeover or an ADL fill
trades at the mark (whole ticks), and the case's remaining equity (positive or negative) then
moves in cash to the other side, so the case ends at exactly zero, which is what a fill at the
(fractional) bankruptcy price would give.
"""

from __future__ import annotations

from simulator.venue.waterfall.adl import ADL_PRICES, ADLStage
from simulator.venue.waterfall.backstop import BackstopStage
from simulator.venue.waterfall.base import Cases, Stage, cover_venue_loss, take_over
from simulator.venue.waterfall.book import BookStage
from simulator.venue.waterfall.insurance_fund import SURPLUS_POLICIES, InsuranceFundStage
from simulator.venue.waterfall.socialize import TIMINGS, WEIGHTS, SocializeStage

__all__ = [
    "ADL_PRICES", "SURPLUS_POLICIES", "TIMINGS", "WEIGHTS",
    "Cases", "Stage", "take_over", "cover_venue_loss",
    "BookStage", "BackstopStage", "InsuranceFundStage", "ADLStage", "SocializeStage",
    "STAGES", "build_waterfall",
]

# The registry: stage name (the scenario's ``stage:`` key) -> class.
STAGES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (BookStage, BackstopStage, InsuranceFundStage, ADLStage, SocializeStage)
}


def build_waterfall(config: list[dict]) -> list[Stage]:
    """Stages from the scenario's list of ``{"stage": name, **settings}``, in order."""
    stages = []
    for i, entry in enumerate(config):
        entry = dict(entry)
        name = entry.pop("stage", None)
        if name not in STAGES:
            raise ValueError(f"waterfall[{i}].stage is {name!r}; allowed: {sorted(STAGES)}")
        stages.append(STAGES[name](**entry))
    return stages
