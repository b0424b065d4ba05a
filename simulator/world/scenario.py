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
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from simulator.venue.adl import RANKINGS
from simulator.world import bundled, limits
from simulator.world.index import IndexModel, IndexShock
from simulator.venue.prices import FUNDING_FORMULAS, MARK_METHODS
from simulator.world.yamlsafe import MAX_BYTES, YamlError, load_file


class ScenarioError(ValueError):
    """A scenario file that cannot run, with a message naming file, field and what is allowed."""


class Strict(BaseModel):
    # no .inf/.nan anywhere: they overflow the integer ledger or poison every metric
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data):
        return limits.reject_bool_for_number(cls, data)


# ------------------------------------------------------------------------- market
class Tier(Strict):
    floor: float = Field(ge=0, description="notional floor of the tier, quote currency (inverse: converted to "
                         "coin at the opening index price)")
    rate: float = Field(gt=0, lt=1, description="maintenance margin rate")


class Market(Strict):
    name: str = "BTC-PERP"
    tick_size: float = Field(0.1, gt=0)
    lot_size: float = Field(0.001, gt=0, description="linear: base units per lot; inverse: the contract's face "
                            "value in the quote currency (BitMEX XBTUSD: 1 USD)")
    settlement: Literal["linear", "inverse"] = Field(
        "linear", description="linear: margin, PnL and every money amount in the quote currency (1e-6 USD cash "
        "unit); inverse (coin-margined, BitMEX XBTUSD): margin, PnL, fees, funding and the insurance fund in the "
        "base coin (1e-8 coin cash unit), a position of q contracts worth q x lot_size / price coin. Every market "
        "of a scenario has the same settlement; in an inverse scenario the quote-currency amounts of the file "
        "(insurance_fund, backstop_capital, capital, tier floors, cap_per_event) are converted to coin once, at "
        "market 0's opening index price")
    coin: str = Field("BTC", pattern=r"^[A-Za-z0-9]{1,10}$",
                      description="inverse only: the settlement coin's symbol (reports; XBTUSD settles in BTC)")
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
    slice_share: float | None = Field(
        None, gt=0, lt=1,
        description="Hyperliquid's partial liquidation: a position worth more than slice_above is sent to the "
        "book this share at a time (None: the whole position, or partial's rule)",
    )
    slice_above: float = Field(100_000, ge=0, description="quote currency: position value above which it is sliced")
    slice_cooldown_seconds: float = Field(
        30.0, ge=0, description="after a slice, liquidation orders are for the whole position for this long"
    )

    @model_validator(mode="after")
    def _one_partial_rule(self):
        if self.partial and self.slice_share is not None:
            raise ValueError("partial and slice_share are two partial-liquidation rules; set one of them")
        return self


class BackstopStage(Strict):
    stage: Literal["backstop"]
    trigger: float = Field(2 / 3, gt=0, le=1)
    max_leverage: float | None = Field(None, ge=1)
    pays_deficits: bool = False


class InsuranceFundStage(Strict):
    stage: Literal["insurance_fund"]
    surplus_policy: Literal["all_remaining_margin", "fee", "none"] = "all_remaining_margin"
    clearance_fee: float = Field(0.0, ge=0, lt=0.1)
    cap_per_event: float | None = Field(None, gt=0, description="quote currency")
    takeover: bool = False
    takeover_max_leverage: float | None = Field(None, ge=1, description="optional cap; None: the balance against the loss")
    takeover_share_step: float | None = Field(
        None, gt=0, le=1,
        description="Paradex's partial liquidation (needs takeover): the fund takes the same share of every position, "
        "the smallest multiple of this step that brings the margin ratio below takeover_target_ratio",
    )
    takeover_target_ratio: float = Field(0.9, gt=0, lt=1, description="margin ratio (maintenance / equity) to get below")
    takeover_penalty: float = Field(
        0.7, ge=0, le=1, description="penalty paid to the fund: share x this x maintenance margin"
    )

    @model_validator(mode="after")
    def _share_needs_takeover(self):
        if self.takeover_share_step is not None and not self.takeover:
            raise ValueError("takeover_share_step is a partial takeover: set takeover: true")
        return self


class ADLStage(Strict):
    stage: Literal["adl"]
    ranking: Literal[RANKINGS] = "pnl_x_leverage"  # type: ignore[valid-type]
    price: Literal["bankruptcy", "mark", "previous_mark"] = "bankruptcy"
    trigger: Literal["fund_cannot_pay", "negative_equity", "unfilled", "fund_drawdown"] = "fund_cannot_pay"
    drawdown_threshold: float = Field(0.3, gt=0, lt=1, description="fund_drawdown: fall from the window's peak (fraction)")
    window_seconds: float = Field(28_800.0, gt=0, description="fund_drawdown: look-back window for the fund's peak")
    profit_percentile: float = Field(
        0.5, ge=0, le=1, description="profit_bands: PnL% quantile of the opposite side that opens the first band"
    )


class SocializeStage(Strict):
    stage: Literal["socialize"]
    weights: Literal["equity", "profit", "position", "withdrawal_factor"] = "equity"
    when: Literal["immediate", "settlement"] = "immediate"
    scope: Literal["all_equity", "derivatives_only", "settlement_asset_holders"] = "all_equity"
    delay_seconds: float = Field(
        0.0, ge=0, le=86_400, description="when immediate: charge this many scenario seconds after the deficit"
    )

    @model_validator(mode="after")
    def _delay_is_immediate(self):
        if self.delay_seconds > 0 and self.when == "settlement":
            raise ValueError("delay_seconds applies to when: immediate (settlement has its own timing)")
        if self.weights == "withdrawal_factor" and (self.when != "immediate" or self.delay_seconds > 0):
            raise ValueError(
                "weights: withdrawal_factor is repaid by later withdrawals (Paradex socialized loss factor); "
                "it takes when: immediate and delay_seconds: 0"
            )
        return self


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
    funding_adjustment: float = Field(
        0.0, ge=0, le=0.01, description="extra funding rate per settlement while the guard is on, paid by "
        "the side holding more lots above max_leverage"
    )
    window_seconds: float = Field(30 * 86_400.0, gt=0, description="averaging window of open-interest value")


class Venue(Strict):
    mark: Mark = Field(default_factory=Mark)
    funding: Funding = Field(default_factory=Funding)
    insurance_fund: float = Field(1_000_000.0, ge=0, description="starting balance, quote (an inverse run holds "
                                  "it in the coin: converted at the opening index price)")
    backstop_capital: float = Field(0.0, ge=0, description="backstop vault capital, quote")
    max_rounds: int = Field(20, ge=1, le=1000)
    unwind_fraction: float = Field(0.2, gt=0, le=1)
    unwind_band: float = Field(0.02, gt=0, lt=1)
    fund_guard: FundGuard | None = None
    waterfall: list[StageConfig] = Field(
        default_factory=lambda: [BookStage(stage="book"), InsuranceFundStage(stage="insurance_fund"), ADLStage(stage="adl")],
        min_length=1,
    )


class Contract(Strict):
    """How a design's venue settles every market of the scenario (e.g. BitMEX's inverse XBTUSD):
    the fields given replace the scenario's markets' own."""

    settlement: Literal["linear", "inverse"]
    lot_size: float | None = Field(None, gt=0, description="linear: base units per lot; inverse: face value, quote")
    tick_size: float | None = Field(None, gt=0)
    coin: str | None = Field(None, pattern=r"^[A-Za-z0-9]{1,10}$")


class Design(Strict):
    """A named waterfall design: stage order and settings, and optionally the fund's and the
    vault's capital, the funding rule, the fund health guard and the contract its markets settle
    with (each None: the scenario's)."""

    name: str = Field(min_length=1)
    description: str = ""
    waterfall: list[StageConfig] = Field(min_length=1)
    insurance_fund: float | None = Field(None, ge=0)
    backstop_capital: float | None = Field(None, ge=0)
    funding: Funding | None = Field(None, description="the venue's funding rule; None: the scenario's")
    fund_guard: FundGuard | None = Field(None, description="the venue's fund health guard; None: the scenario's")
    contract: Contract | None = Field(None, description="settlement of every market under this design (an "
                                      "inverse contract holds margin and the fund in the coin); None: the scenario's")


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
    multi_market_share: float = Field(
        0.0, ge=0, le=1,
        description="share of cross-margin traders holding every market on one account (a loss in one coin can liquidate the others)",
    )
    hedger_leverage: Distribution | None = Field(
        None, description="hedgers' own leverage distribution (may be below 1x); None: the traders' leverage"
    )

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
    inventory_skew: float = Field(
        0.005, ge=0, le=0.2,
        description="reservation price: the ladder is centred on fair x (1 - inventory_skew x inventory / limit), "
        "inventory / limit clipped to [-1, 1] (0: centred on the index)")
    limit_quote_share: float = Field(
        0.2, ge=0, le=1,
        description="share of the level size still quoted, at the inventory limit, on the side that adds to "
        "inventory (0: that side is not quoted at the limit)")
    leverage: float = Field(10, ge=1)
    vol_window: int = Field(20, ge=2)
    scale_with_traders: bool = Field(
        True, description="capital and level_notional are per agents.reference_traders traders and scale with agents.traders.count"
    )


class Arbitrageurs(Strict):
    count: int = Field(2, ge=0, le=1000)
    capital: float = Field(500_000, gt=0)
    threshold: float = Field(0.001, gt=0, lt=0.5, description="basis that triggers a trade")
    leverage: float = Field(5, ge=1)
    max_trade_notional: float = Field(100_000, gt=0)
    quote_levels: int = Field(
        5, ge=0, le=50,
        description="resting basis quotes per side: bids from index x (1 - threshold) down, asks from "
        "index x (1 + threshold) up (0: takers only)")
    quote_spacing: float = Field(0.004, gt=0, lt=0.1, description="fraction of the index between quote levels")
    quote_notional: float = Field(
        20_000, gt=0, description="quote notional per level, cut to the capital room the taker path uses")
    quote_growth: float = Field(
        2.0, ge=1, le=10,
        description="each deeper quote level holds this many times the size of the one before (the edge grows "
        "with the discount)")
    scale_with_traders: bool = Field(
        True, description="capital, max_trade_notional and quote_notional are per agents.reference_traders traders "
        "and scale with agents.traders.count"
    )


class Agents(Strict):
    traders: Traders = Field(default_factory=Traders)
    market_makers: MarketMakers = Field(default_factory=MarketMakers)
    arbitrageurs: Arbitrageurs = Field(default_factory=Arbitrageurs)
    reference_traders: int = Field(
        1000, ge=1, le=1_000_000,
        description="the trader population the liquidity providers' capital and depth are given for; "
        "above it, those with scale_with_traders grow in proportion to agents.traders.count",
    )

    def liquidity_scale(self) -> float:
        """Factor applied to the scaling liquidity providers' capital and size: the population
        over ``reference_traders``, never below 1. Liquidity grows with the crowd but never
        falls below what the file gives: one trader's order does not shrink with the population,
        so a smaller book would only make small runs lumpier."""
        return max(1.0, self.traders.count / self.reference_traders)

    def effective_market_makers(self) -> MarketMakers:
        """The makers as the model runs them: capital and level_notional scaled to the population."""
        mm = self.market_makers
        if not mm.scale_with_traders:
            return mm
        k = self.liquidity_scale()
        return mm.model_copy(update={"capital": mm.capital * k, "level_notional": mm.level_notional * k})

    def effective_arbitrageurs(self) -> Arbitrageurs:
        """The arbitrageurs as the model runs them: capital and trade size scaled to the population."""
        arb = self.arbitrageurs
        if not arb.scale_with_traders:
            return arb
        k = self.liquidity_scale()
        return arb.model_copy(update={"capital": arb.capital * k, "max_trade_notional": arb.max_trade_notional * k,
                                      "quote_notional": arb.quote_notional * k})


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


class WithdrawalWave(Strict):
    """A bank run: at ``step`` a random ``share`` of the traders' accounts (every trader row:
    cross accounts, isolated positions and their spot wallets, whales) each withdraws
    ``fraction`` of its free collateral: equity above the initial margin of its positions, at
    most the cash in its wallet. Drawn from the run's own withdrawal stream."""

    kind: Literal["withdrawal_wave"]
    step: int = Field(ge=0)
    share: float = Field(gt=0, le=1, description="share of trader accounts that withdraw")
    fraction: float = Field(1.0, gt=0, le=1, description="share of its free collateral each withdraws")
    of: Literal["free_collateral"] = Field("free_collateral", description="what the fraction is of")


Shock = Annotated[
    Union[IndexMove, LiquidityWithdrawal, OracleStall, FundingSpike, Crowding, Whale, WithdrawalWave],
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
                if d.fund_guard is not None:
                    venue = venue.model_copy(update={"fund_guard": d.fund_guard})
                update = {"venue": venue}
                if d.contract is not None:
                    patch = {k: v for k, v in d.contract.model_dump().items() if v is not None}
                    update["markets"] = [m.model_copy(update=patch) for m in self.markets]
                return self.model_copy(update=update)
        raise ScenarioError(f"{self.name}: no design named {name!r}; designs: {[d.name for d in self.designs]}")


# --------------------------------------------------------------------------- loading
try:
    PRESETS_DIR = bundled.presets_dir()
except bundled.BundleMissing:  # pragma: no cover - a broken installation
    PRESETS_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


#: Files parsed in this process: resolved path -> (the bytes parsed, a private copy of the data).
_PARSED: dict[str, tuple[bytes, Any]] = {}
_PARSED_MAX = 64


def read_yaml(path: str | Path) -> Any:
    """A YAML file through the bounded safe loader (``ScenarioError`` naming the file).

    A file whose bytes are those already parsed in this process is not parsed again (a batch
    or a benchmark loads the same scenario for every run): the caller gets a fresh deep copy of
    that parse, its own to change, exactly what parsing the same text again returns."""
    key = raw = None
    try:
        p = Path(path)
        if p.is_file() and p.stat().st_size <= MAX_BYTES:  # anything else: the loader says what is wrong
            key, raw = str(p.resolve()), p.read_bytes()
    except (OSError, ValueError):
        key = raw = None
    hit = _PARSED.get(key) if key is not None else None
    if hit is not None and hit[0] == raw:
        return copy.deepcopy(hit[1])
    try:
        data = load_file(path)
    except YamlError as exc:
        raise ScenarioError(str(exc)) from None
    if key is not None and _same_bytes(path, raw):  # not rewritten while it was parsed
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = (raw, copy.deepcopy(data))
    return data


def _same_bytes(path: str | Path, raw: bytes) -> bool:
    try:
        return Path(path).read_bytes() == raw
    except OSError:
        return False


def load_design(path_or_preset: str | Path) -> Design:
    """A design from a YAML file, or a bundled venue preset by name (``binance``, ``hyperliquid``...)."""
    path = Path(path_or_preset)
    if not path.is_file():
        candidate = PRESETS_DIR / f"{path_or_preset}.yaml"
        if not candidate.exists():
            raise ScenarioError(
                f"{path_or_preset}: no such design file or preset; presets: {preset_names()}"
            )
        path = candidate
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a design file must hold a mapping of fields, got {type(data).__name__}")
    try:
        design = Design.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format(exc, str(path))) from None
    problems = limits.check_design(design, "")
    if problems:
        raise ScenarioError("\n".join(f"{path}: {field}: {msg}" for field, msg in problems))
    return design


def _format(error: ValidationError, source: str) -> str:
    lines = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        field, sep, rest = msg.removeprefix("Value error, ").partition(limits.FIELD_SEP)
        if sep and field.startswith("["):
            loc, msg = ".".join(p for p in (loc if e["loc"] else "", field[1:]) if p), rest
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
    except RecursionError:
        raise ScenarioError(f"{source}: nested too deeply") from None
    problems = limits.check_scenario(scenario)
    if problems:
        raise ScenarioError("\n".join(f"{source}: {path}: {msg}" for path, msg in problems))
    _check_files(scenario, source, base_dir)
    _check_opening(scenario, source)
    scenario._base_dir = base_dir
    return scenario


def first_shock_step(scenario: Scenario) -> int:
    """The first step of the first scripted shock, or ``scenario.steps`` without one. Crowding
    and whales at step 0 are the market's starting state, not a shock."""
    steps = [s.step for s in scenario.shocks if not (isinstance(s, (Crowding, Whale)) and s.step == 0)]
    return min(steps, default=scenario.steps)


# ------------------------------------------------------------------ opening capacity
#: Step-0 inventory a liquidity provider takes against the traders' net opening position, as a
#: share of equity x leverage: arbitrageurs up to 0.8 (well above initial margin); market makers
#: up to half their inventory limit (``market_makers.inventory_limit``, at most 0.8), so the side
#: that adds to their inventory still quotes at least half size from the first step. What they
#: cannot take is not opened (the model counts it; the summary reports the share).
ARB_OPENING_SHARE = 0.8
MAKER_OPENING_SHARE = 0.5
#: ``validate`` rejects a scenario whose expected opening would be cut by more than this share.
MAX_OPENING_CUT = 0.1


def maker_opening_share(mm: MarketMakers) -> float:
    return min(MAKER_OPENING_SHARE * mm.inventory_limit, ARB_OPENING_SHARE)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _mean_clipped(dist: Distribution, lo: float = 0.0) -> float:
    """E[clip(median * exp(sigma Z), lo, cap)] for a standard normal Z (closed form)."""
    med, s, cap = dist.median, dist.sigma, dist.cap
    hi = math.inf if cap is None else cap
    if s == 0:
        return min(max(med, lo), hi)
    mean = med * math.exp(s * s / 2)
    out = mean
    if hi < math.inf:  # E[min(X, c)] = E[X; X < c] + c P(X >= c)
        b = math.log(hi / med) / s
        out = mean * _phi(b - s) + hi * (1 - _phi(b))
    if lo > 0:  # + E[(lo - X)+]
        a = math.log(lo / med) / s
        out += lo * _phi(a) - mean * _phi(a - s)
    return out


def expected_opening(scenario: Scenario) -> tuple[float, float]:
    """(expected net opening notional the liquidity providers must take at step 0, their
    capacity to take it), quote currency, from the distributions' parameters (no draw).

    Mirrors ``LeveragedTrader.initial_orders``: a share ``initial_positions`` of traders opens
    ``capital x leverage x position_fraction x U(0.5, 1)`` (isolated: ``0.98`` of the posted
    margin), long with probability ``long_share`` except hedgers (always short); step-0 whales
    add their notional. Capacity: ``ARB_OPENING_SHARE`` / ``maker_opening_share`` of the
    (population-scaled) capital x leverage of arbitrageurs and market makers.
    """
    a = scenario.agents
    t = a.traders
    capital = _mean_clipped(t.capital)
    leverage = _mean_clipped(t.leverage, lo=1.0)
    iso = t.isolated_share
    use = 0.75 * ((1 - iso) * t.position_fraction + iso * t.isolated_margin * 0.98)
    h = t.strategies.get("hedger", 0.0)
    side = (1 - h) * (2 * t.long_share - 1) - h
    per_trader = capital * leverage * use * side
    n_markets = len(scenario.markets)
    net = [t.count * t.initial_positions * per_trader / n_markets for _ in range(n_markets)]
    for s in scenario.shocks:
        if isinstance(s, Whale) and s.step == 0:
            net[s.market] += s.notional if s.side == "long" else -s.notional
    mm, arb = a.effective_market_makers(), a.effective_arbitrageurs()
    max_lev = min(m.max_leverage for m in scenario.markets)
    capacity = (arb.count * arb.capital * min(arb.leverage, max_lev) * ARB_OPENING_SHARE
                + mm.count * mm.capital * min(mm.leverage, max_lev) * maker_opening_share(mm))
    return float(sum(abs(x) for x in net)), float(capacity)


def _check_opening(scenario: Scenario, source: str) -> None:
    """Reject a scenario whose liquidity providers cannot take the traders' opening position."""
    net, capacity = expected_opening(scenario)
    if net <= 0 or capacity >= net * (1 - MAX_OPENING_CUT):
        return
    a = scenario.agents
    scaled = a.market_makers.scale_with_traders and a.arbitrageurs.scale_with_traders
    hint = "" if scaled else "set agents.market_makers.scale_with_traders and agents.arbitrageurs.scale_with_traders to true, "
    raise ScenarioError(
        f"{source}: agents.market_makers.capital: the market makers and arbitrageurs can hold about "
        f"${capacity:,.0f} of the {a.traders.count:,} traders' expected net opening position of ${net:,.0f} "
        f"({1 - capacity / net:.0%} would not open, and the book would be one-sided from the start); "
        f"{hint}raise agents.market_makers.capital or agents.arbitrageurs.capital, "
        f"or lower agents.traders.initial_positions"
    )


def _check_files(scenario: Scenario, source: str, base_dir: Path | None) -> None:
    for i, model in enumerate(scenario.index.models):
        path = getattr(model, "path", None)
        if path is None:
            continue
        p = Path(path).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        field = f"{source}: index.models.{i}.path"
        if p.is_dir():
            raise ScenarioError(f"{field}: {str(p)!r} is a folder, not a CSV file")
        if not p.exists():
            raise ScenarioError(f"{field}: file {str(p)!r} does not exist")
        from simulator.world.index import replay_coverage

        try:
            covered = replay_coverage(model, scenario.step_seconds, base_dir)
        except (ValueError, OSError, OverflowError) as exc:
            raise ScenarioError(f"{field}: {' '.join(str(exc).split())}") from None
        if covered < scenario.steps:
            raise ScenarioError(
                f"{field}: {str(p)!r} covers only {covered} steps of {scenario.step_seconds:g} s; the scenario has "
                f"{scenario.steps} steps (fewer steps, or a longer file)"
            )


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a YAML scenario; ``overrides`` maps dotted paths to values."""
    path = Path(path)
    data = read_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise ScenarioError(f"{path}: the file must hold a mapping of fields, got {type(data).__name__}")
        data = apply_overrides(data, overrides, source=str(path))
    scenario = validate(data, str(path), base_dir=path.parent)
    scenario._base_dir = path.parent.resolve()
    return scenario


def apply_overrides(data: dict, overrides: dict[str, Any], source: str = "<scenario>") -> dict:
    """Set dotted paths (``agents.traders.count``, ``shocks.0.move``) in a copy of ``data``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the file must hold a mapping of fields, got {type(data).__name__}")
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted or any(not p for p in dotted.split(".")):
            raise ScenarioError(f"{source}: override {dotted!r}: give a dotted field path such as agents.traders.count")
        node = data
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[:depth]) or "(top level)"
            if isinstance(node, list):
                try:
                    key = int(part)
                except ValueError:
                    raise ScenarioError(
                        f"{source}: override {dotted!r}: {here} is a list; {part!r} is not a list index (0..{len(node) - 1})"
                    ) from None
                if not -len(node) <= key < len(node):
                    raise ScenarioError(
                        f"{source}: override {dotted!r}: {here} has {len(node)} item(s); no index {key}"
                    )
                if last:
                    node[key] = value
                else:
                    node = node[key]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    nxt = node.get(part)
                    if nxt is None:
                        nxt = node[part] = {}
                    node = nxt
            else:
                raise ScenarioError(
                    f"{source}: override {dotted!r}: {here} is a single value ({node!r}), it has no field {part!r}"
                )
    return data


def validate_sweep(data: dict, source: str, base_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every cell of the scenario's ``sweep:`` grid applied and validated; the cells."""
    import itertools

    sweep = data.get("sweep") or {}
    if not isinstance(sweep, dict):
        raise ScenarioError(f"{source}: sweep: give a mapping of field path -> list of values")
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"{source}: sweep.{key}: give a non-empty list of values")
    keys = list(sweep)
    cells = [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))] if keys else [{}]
    base = {k: v for k, v in data.items() if k != "sweep"}
    for cell in cells:
        if cell:
            validate(apply_overrides(base, cell, f"{source}: sweep"), f"{source} (sweep cell {cell})", base_dir)
    return cells
