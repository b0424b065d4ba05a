"""The loss waterfall: an ordered list of stages, each one small unit (one module per stage).

A liquidation round hands every account below maintenance (a *case*, worst first) to the
scenario's stages in two passes:

1. **close** — position stages take the cases' positions off, in list order, each only when
   its trigger allows: ``book`` (IOC into the book), ``backstop`` (a vault takes over below a
   fraction of MM), ``insurance_fund`` with ``takeover`` (while its balance covers the loss),
   ``adl`` (only when its ``trigger`` fires; a solvent case is never deleveraged by default).
   Then the venue's liquidation **engine** takes any case still open with equity <= 0 at
   mark, so no bankrupt position stays open unrecorded (``engine.py``); once per step the
   engine's own mark-to-market loss on that inventory is covered like a deficit.
2. **cover** — deficit stages pay what flat cases still owe, in list order:
   ``insurance_fund`` (and its surplus policy), ``backstop`` with ``pays_deficits``,
   ``socialize``. Whatever is still owed is the venue's own loss (injected and recorded).

Every deficit is attributed exactly: per case, ``deficit`` events == ``cover`` events by stage
(fund, backstop, adl, socialize, socialize_pending, venue); ``Cases`` explains how and checks
it at the end of every round. The round attributes every change after each stage, so a new
stage is one class with ``close`` and/or ``cover``, registered in ``STAGES``.
"""

from __future__ import annotations

from simulator.venue.waterfall import engine
from simulator.venue.waterfall.adl import ADL_PRICES, REASONS, TRIGGERS, ADLStage
from simulator.venue.waterfall.backstop import BackstopStage
from simulator.venue.waterfall.book import BookStage
from simulator.venue.waterfall.cases import COVER_STAGES, Cases
from simulator.venue.waterfall.insurance_fund import SURPLUS_POLICIES, InsuranceFundStage
from simulator.venue.waterfall.socialize import SCOPES, TIMINGS, WEIGHTS, SocializeStage
from simulator.venue.waterfall.stage import Stage

STAGES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (BookStage, BackstopStage, InsuranceFundStage, ADLStage, SocializeStage)
}

__all__ = [
    "ADL_PRICES", "COVER_STAGES", "REASONS", "SCOPES", "STAGES", "SURPLUS_POLICIES", "TIMINGS", "TRIGGERS", "WEIGHTS",
    "ADLStage", "BackstopStage", "BookStage", "Cases", "InsuranceFundStage", "SocializeStage", "Stage",
    "build_waterfall", "cover_engine_inventory", "run_cover", "run_round",
]


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


def run_round(venue, stages: list[Stage], cases: Cases) -> None:
    """One liquidation round of ``cases`` through ``stages``: close, engine, cover, venue loss."""
    for stage in stages:
        stage.close(venue, cases)
        cases.update(venue, stage.name, covering=stage.name != "book")
        cases.record_flat(venue, stage.name)
    engine.take_bankrupt(venue, cases)
    cases.record_flat(venue, engine.STAGE)
    run_cover(venue, stages, cases)


def run_cover(venue, stages: list[Stage], cases: Cases) -> None:
    """The cover pass: deficit stages in list order, then the venue's own loss."""
    for stage in stages:
        stage.cover(venue, cases)
        cases.update(venue, stage.name)  # a stage that forgot to attribute its cover
    engine.cover_venue_loss(venue, cases)
    cases.check_settled(venue)


def cover_engine_inventory(venue, stages: list[Stage]) -> None:
    """A broke inventory holder's mark-to-market loss goes down the deficit stages (``engine``)."""
    cases = engine.inventory_loss_case(venue)
    if cases is not None:
        run_cover(venue, stages, cases)
