"""The scenario file schema (pydantic) and its loader.

A scenario is validated completely before anything runs. A wrong key, a wrong type or an
impossible value raises ``ScenarioError`` whose message names the file, the field path and
what is allowed, e.g.::

    scenarios/bad.yaml: agents.traders.leverage.median: Input should be greater than 0

Units in the file are human ones: prices and money in the quote currency (USD), sizes in base
units, rates as fractions (0.005 = 0.5 %), durations in steps except where a field says seconds
(``step_seconds``, ``venue.funding.interval_seconds``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from simulator.adl import RANKINGS
from simulator.index import IndexModel, IndexShock
from simulator.prices import FUNDING_FORMULAS, MARK_METHODS


class ScenarioError(ValueError):
    """A scenario file that cannot run, with a message naming file, field and what is allowed."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------- market
class Tier(Strict):
    floor: float = Field(ge=0, description="notional floor of the tier, quote currency")
    rate: float = Field(gt=0, lt=1, description="maintenance margin rate")


class Market(Strict):
    name: str = "BTC-PERP"
    tick_size: float = Field(0.1, gt=0)
    lot_size: float = Field(0.001, gt=0)
    max_leverage: float = Field(50.0, ge=1, le=200)
    taker_fee: float = Field(0.00045, ge=0, lt=0.01)
    maker_fee: float = Field(0.00015, ge=0, lt=0.01)
    maintenance_tiers: list[Tier] = Field(default_factory=lambda: [Tier(floor=0, rate=0.005)], min_length=1)

    @field_validator("maintenance_tiers")
    @classmethod
    def _tiers_ordered(cls, tiers):
        if tiers[0].floor != 0:
            raise ValueError("the first tier's floor must be 0")
        for a, b in zip(tiers, tiers[1:]):
            if b.floor <= a.floor or b.rate < a.rate:
                raise ValueError("tiers must have increasing floors and non-decreasing rates")
        return tiers


# ----------------------------------------------------------------------- waterfall
class BookStage(Strict):
    stage: Literal["book"]
    partial: bool = False
    partial_buffer: float = Field(0.1, ge=0, le=1)
    price_band: float | None = Field(None, gt=0, lt=1)
    limit_at_bankruptcy: bool = False


class BackstopStage(Strict):
    stage: Literal["backstop"]
    trigger: float = Field(2 / 3, gt=0, le=1)
    max_leverage: float | None = Field(None, ge=1)


class InsuranceFundStage(Strict):
    stage: Literal["insurance_fund"]
    surplus_policy: Literal["all_remaining_margin", "fee", "none"] = "all_remaining_margin"
    clearance_fee: float = Field(0.0, ge=0, lt=0.1)
    cap_per_event: float | None = Field(None, gt=0, description="quote currency")
    takeover: bool = False
    takeover_max_leverage: float | None = Field(5.0, ge=1, description="None: maintenance margin only")


class ADLStage(Strict):
    stage: Literal["adl"]
    ranking: Literal[RANKINGS] = "pnl_x_leverage"  # type: ignore[valid-type]
    price: Literal["bankruptcy", "mark", "previous_mark"] = "bankruptcy"


class SocializeStage(Strict):
    stage: Literal["socialize"]
    weights: Literal["equity", "profit", "position"] = "equity"
    when: Literal["immediate", "settlement"] = "immediate"


StageConfig = Annotated[
    Union[BookStage, BackstopStage, InsuranceFundStage, ADLStage, SocializeStage],
    Field(discriminator="stage"),
]


class Mark(Strict):
    method: Literal[MARK_METHODS] = "median"  # type: ignore[valid-type]
    basis_ema_alpha: float = Field(0.1, gt=0, le=1)


class Funding(Strict):
    """Funding: settled every ``interval_seconds`` of scenario time (simulator/prices.py)."""

    formula: Literal[FUNDING_FORMULAS] = "binance"  # type: ignore[valid-type]
    interval_seconds: float = Field(28_800.0, gt=0, description="scenario seconds between settlements (8 h)")
    rate_period_seconds: float | None = Field(
        None, gt=0, description="period the premium, interest and band refer to; a settlement pays "
        "interval / period of it (Hyperliquid: 8 h rate paid hourly). None: the interval"
    )
    cap: float = Field(0.0075, ge=0, lt=1, description="bound on the rate paid per settlement")
    interest: float = Field(0.0001, ge=-0.01, le=0.01, description="interest per rate period")
    clamp_band: float = Field(0.0005, ge=0, lt=0.1, description="binance formula: bound on interest - premium")
    interval: int | None = Field(None, exclude=True, description="removed: a step count")

    @field_validator("interval")
    @classmethod
    def _no_step_interval(cls, v):
        if v is not None:
            raise ValueError(
                "removed: the funding interval is a duration, not a step count; use interval_seconds "
                "(e.g. 28800 for 8 h; interval_seconds = interval x step_seconds keeps the old timing)"
            )
        return v


class FundGuard(Strict):
    """While the fund is below ``threshold`` x average open-interest value, cap new leverage."""

    threshold: float = Field(0.2, gt=0, le=10)
    max_leverage: float = Field(5.0, ge=1, le=200)


class Venue(Strict):
    mark: Mark = Field(default_factory=Mark)
    funding: Funding = Field(default_factory=Funding)
    insurance_fund: float = Field(1_000_000.0, ge=0, description="starting balance, quote")
    backstop_capital: float = Field(0.0, ge=0, description="backstop vault capital, quote")
    max_rounds: int = Field(20, ge=1, le=1000)
    unwind_fraction: float = Field(0.2, gt=0, le=1)
    unwind_band: float = Field(0.02, gt=0, lt=1)
    fund_guard: FundGuard | None = None
    waterfall: list[StageConfig] = Field(
        default_factory=lambda: [BookStage(stage="book"), InsuranceFundStage(stage="insurance_fund"), ADLStage(stage="adl")],
        min_length=1,
    )


class Design(Strict):
    """A named waterfall design: stage order and settings, and optionally the fund's balance."""

    name: str = Field(min_length=1)
    description: str = ""
    waterfall: list[StageConfig] = Field(min_length=1)
    insurance_fund: float | None = Field(None, ge=0)
    backstop_capital: float | None = Field(None, ge=0)
    funding: Funding | None = Field(None, description="the venue's funding rule; None: the scenario's")


# -------------------------------------------------------------------------- agents
class Distribution(Strict):
    """A positive quantity across a population: lognormal around a median, optionally capped."""

    median: float = Field(gt=0)
    sigma: float = Field(0.0, ge=0, le=5)
    cap: float | None = Field(None, gt=0)


class Traders(Strict):
    count: int = Field(1000, ge=0, le=1_000_000)
    capital: Distribution = Field(default_factory=lambda: Distribution(median=10_000, sigma=1.0))
    leverage: Distribution = Field(default_factory=lambda: Distribution(median=5, sigma=0.6, cap=50))
    long_share: float = Field(0.5, ge=0, le=1, description="share of new positions opened long (crowding)")
    strategies: dict[Literal["trend", "mean_revert", "noise", "hedger"], float] = Field(
        default_factory=lambda: {"trend": 0.3, "mean_revert": 0.2, "noise": 0.45, "hedger": 0.05}
    )
    isolated_share: float = Field(0.0, ge=0, le=1, description="share of traders on isolated margin")
    isolated_margin: float = Field(
        0.3, gt=0, le=1, description="share of an isolated trader's capital posted to its position; the rest stays in a spot wallet"
    )
    trade_probability: float = Field(0.02, ge=0, le=1, description="chance per step to act")
    position_fraction: float = Field(0.8, gt=0, le=1, description="share of max size used per entry")
    stop_loss: float | None = Field(None, gt=0, lt=1, description="close at this loss, fraction of margin")
    take_profit: float | None = Field(None, gt=0, description="close at this gain, fraction of margin")
    trend_lookback: int = Field(30, ge=1)
    initial_positions: float = Field(0.5, ge=0, le=1, description="share of traders holding a position at step 0")

    @field_validator("strategies")
    @classmethod
    def _shares(cls, v):
        total = sum(v.values())
        if any(x < 0 for x in v.values()) or abs(total - 1) > 1e-6:
            raise ValueError(f"strategy shares must be non-negative and sum to 1 (they sum to {total:g})")
        return v


class MarketMakers(Strict):
    count: int = Field(4, ge=0, le=1000)
    capital: float = Field(2_000_000, gt=0)
    levels: int = Field(10, ge=1, le=200)
    half_spread: float = Field(0.0002, gt=0, lt=0.1, description="fraction of mark")
    level_spacing: float = Field(0.0005, gt=0, lt=0.1, description="fraction of mark between levels")
    level_notional: float = Field(50_000, gt=0, description="quote notional per level")
    vol_sensitivity: float = Field(50.0, ge=0, description="depth shrinks as exp(-k * realised vol per step)")
    spread_vol_multiplier: float = Field(2.0, ge=0)
    inventory_limit: float = Field(0.5, gt=0, description="max inventory notional as a share of capital x leverage")
    leverage: float = Field(10, ge=1)
    vol_window: int = Field(20, ge=2)


class Arbitrageurs(Strict):
    count: int = Field(2, ge=0, le=1000)
    capital: float = Field(500_000, gt=0)
    threshold: float = Field(0.001, gt=0, lt=0.5, description="basis that triggers a trade")
    leverage: float = Field(5, ge=1)
    max_trade_notional: float = Field(100_000, gt=0)


class Agents(Strict):
    traders: Traders = Field(default_factory=Traders)
    market_makers: MarketMakers = Field(default_factory=MarketMakers)
    arbitrageurs: Arbitrageurs = Field(default_factory=Arbitrageurs)


# -------------------------------------------------------------------------- shocks
class _Shock(Strict):
    step: int = Field(ge=0)
    duration: int = Field(1, ge=1)


class IndexMove(IndexShock):
    kind: Literal["index_move"]


class LiquidityWithdrawal(_Shock):
    kind: Literal["liquidity_withdrawal"]
    fraction: float = Field(gt=0, le=1, description="share of market-maker depth withdrawn")


class OracleStall(_Shock):
    kind: Literal["oracle_stall"]
    lag: int | None = Field(None, ge=1, description="steps of lag; None freezes the index")


class FundingSpike(_Shock):
    kind: Literal["funding_spike"]
    rate: float = Field(gt=-0.1, lt=0.1, description="premium added per step")


class Crowding(_Shock):
    kind: Literal["crowding"]
    long_share: float = Field(ge=0, le=1)
    trade_probability: float | None = Field(None, ge=0, le=1)


class Whale(_Shock):
    kind: Literal["whale"]
    notional: float = Field(gt=0, description="quote notional of the position")
    leverage: float = Field(gt=0)
    side: Literal["long", "short"] = "long"
    market: int = Field(0, ge=0)


Shock = Annotated[
    Union[IndexMove, LiquidityWithdrawal, OracleStall, FundingSpike, Crowding, Whale],
    Field(discriminator="kind"),
]


class Index(Strict):
    models: list[IndexModel] = Field(min_length=1)
    correlation: float = Field(0.0, ge=-1, le=1)


class Scenario(Strict):
    """A complete scenario: markets, index, venue, agents, shocks, designs and sweeps."""

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0)
    steps: int = Field(600, ge=1, le=10_000_000)
    step_seconds: float = Field(1.0, gt=0)
    markets: list[Market] = Field(default_factory=lambda: [Market()], min_length=1)
    index: Index
    venue: Venue = Field(default_factory=Venue)
    agents: Agents = Field(default_factory=Agents)
    shocks: list[Shock] = Field(default_factory=list)
    designs: list[Design] = Field(default_factory=list)
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="dotted field path -> values")
    _base_dir: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.index.models) != len(self.markets):
            raise ValueError(
                f"index.models has {len(self.index.models)} entries but there are {len(self.markets)} markets; give one per market"
            )
        for i, s in enumerate(self.shocks):
            if s.step >= self.steps:
                raise ValueError(f"shocks[{i}].step = {s.step} is after the last step ({self.steps - 1})")
            if isinstance(s, Whale) and s.market >= len(self.markets):
                raise ValueError(f"shocks[{i}].market = {s.market}; allowed: 0..{len(self.markets) - 1}")
            if isinstance(s, IndexMove) and s.markets and max(s.markets) >= len(self.markets):
                raise ValueError(f"shocks[{i}].markets names a market beyond 0..{len(self.markets) - 1}")
        fundings = [("venue.funding", self.venue.funding)] + [
            (f"designs[{i}].funding", d.funding) for i, d in enumerate(self.designs) if d.funding is not None
        ]
        for where, f in fundings:
            if f.interval_seconds < self.step_seconds:
                raise ValueError(
                    f"{where}.interval_seconds = {f.interval_seconds:g} is shorter than step_seconds "
                    f"({self.step_seconds:g}); at most one settlement per step"
                )
        names = [d.name for d in self.designs]
        if len(set(names)) != len(names):
            raise ValueError(f"designs: names must be unique, got {names}")
        for path, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep.{path}: give at least one value")
        return self

    def design(self, name: str) -> "Scenario":
        """This scenario with the venue's waterfall (and fund, if set) replaced by a design's."""
        for d in self.designs:
            if d.name == name:
                venue = self.venue.model_copy(update={"waterfall": d.waterfall})
                if d.insurance_fund is not None:
                    venue = venue.model_copy(update={"insurance_fund": d.insurance_fund})
                if d.backstop_capital is not None:
                    venue = venue.model_copy(update={"backstop_capital": d.backstop_capital})
                if d.funding is not None:
                    venue = venue.model_copy(update={"funding": d.funding})
                return self.model_copy(update={"venue": venue})
        raise ScenarioError(f"{self.name}: no design named {name!r}; designs: {[d.name for d in self.designs]}")


# --------------------------------------------------------------------------- loading
PRESETS_DIR = Path(__file__).resolve().parents[1] / "scenarios" / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_design(path_or_preset: str | Path) -> Design:
    """A design from a YAML file, or a bundled venue preset by name (``binance``, ``hyperliquid``...)."""
    path = Path(path_or_preset)
    if not path.exists():
        candidate = PRESETS_DIR / f"{path_or_preset}.yaml"
        if not candidate.exists():
            raise ScenarioError(
                f"{path_or_preset}: no such design file or preset; presets: {preset_names()}"
            )
        path = candidate
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Design.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format(exc, str(path))) from None


def _format(error: ValidationError, source: str) -> str:
    lines = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here; check the spelling against the schema)"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def validate(data: dict, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Validate a scenario dict; raise ``ScenarioError`` naming source, field and what is allowed."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the file must hold a mapping of fields, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format(exc, source)) from None
    _check_files(scenario, source, base_dir)
    scenario._base_dir = base_dir
    return scenario


def _check_files(scenario: Scenario, source: str, base_dir: Path | None) -> None:
    for i, model in enumerate(scenario.index.models):
        path = getattr(model, "path", None)
        if path is None:
            continue
        p = Path(path)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.exists():
            raise ScenarioError(f"{source}: index.models.{i}.path: file {str(p)!r} does not exist")


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a YAML scenario; ``overrides`` maps dotted paths to values."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if overrides:
        data = apply_overrides(data, overrides, source=str(path))
    scenario = validate(data, str(path), base_dir=path.parent)
    scenario._base_dir = path.parent.resolve()
    return scenario


def apply_overrides(data: dict, overrides: dict[str, Any], source: str = "<scenario>") -> dict:
    """Set dotted paths (``agents.traders.count``, ``shocks.0.move``) in a copy of ``data``."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            key = int(part) if isinstance(node, list) else part
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                if isinstance(node, dict):
                    node = node.setdefault(key, {})
                else:
                    raise ScenarioError(f"{source}: override {dotted!r}: no element {part!r}") from None
        last = parts[-1]
        if isinstance(node, list):
            try:
                node[int(last)] = value
            except (ValueError, IndexError):
                raise ScenarioError(f"{source}: override {dotted!r}: no element {last!r}") from None
        else:
            node[last] = value
    return data
