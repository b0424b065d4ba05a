"""The mesa Model: owns the step order and the agents; the exchange agent owns the venue.

One step (DESIGN.md §8): index -> market makers quote -> arbitrageurs and traders send orders
-> book -> ledger -> mark -> funding -> backstop unwind -> liquidation rounds and waterfall ->
record. Every random draw comes from a Generator spawned from the run's SeedSequence, one per
purpose, so adding a draw in one agent class never shifts another's (the withdrawal waves' stream
is the seventh child: spawning it leaves the first six, and every earlier result, unchanged).
"""

from __future__ import annotations

import itertools
import weakref
from pathlib import Path

import mesa
import numpy as np
import pandas as pd

from agents.arbitrageurs import Arbitrageur
from agents.backstop import BackstopVault
from agents.exchange import Exchange
from agents.market_makers import MarketMaker
from agents.traders import LeveragedTrader, draw_population
from simulator.venue import kernels
from simulator.venue.fixedpoint import largest_remainder
from simulator.world.index import index_paths
from simulator.venue.margin import MarginTiers
from simulator.venue.market import MarketSpec
from simulator.venue.prices import FundingConfig, MarkConfig
from simulator.venue.prices import funding_due as settlement_due
from simulator.world.scenario import (
    ARB_OPENING_SHARE,
    Crowding,
    FundingSpike,
    IndexMove,
    LiquidityWithdrawal,
    OracleStall,
    Scenario,
    Whale,
    WithdrawalWave,
    maker_opening_share,
)
from simulator.venue.venue import Venue, VenueConfig
from simulator.venue.audit import SnapshotRecorder

CASH_UNIT = 1e-6
INVERSE_CASH_UNIT = 1e-8  # an inverse (coin-margined) run's ledger counts satoshis of its coin
SERIES = (
    "index", "venue_index", "mark", "last", "best_bid", "best_ask", "depth_bid_1pct", "depth_ask_1pct",
    "open_interest", "funding_rate", "insurance_fund", "backstop_equity", "cascade_depth", "rejections",
    "residual", "long_share", "fund_guard", "engine_equity",
)


def is_inverse(scenario: Scenario) -> bool:
    """The scenario's markets are inverse (coin-margined); validation makes them all alike."""
    return scenario.markets[0].settlement == "inverse"


def cash_unit(scenario: Scenario) -> float:
    """Settlement asset per ledger cash unit: 1e-6 USD (linear) or 1e-8 coin (inverse)."""
    return INVERSE_CASH_UNIT if is_inverse(scenario) else CASH_UNIT


def settlement_asset(scenario: Scenario) -> str:
    """What money is counted in: ``USD`` (linear) or the inverse markets' coin (e.g. ``BTC``)."""
    return scenario.markets[0].coin if is_inverse(scenario) else "USD"


def market_specs(scenario: Scenario, quote_per_coin: float = 1.0) -> list[MarketSpec]:
    """The markets; an inverse scenario's quote amounts (tier floors) become coin at
    ``quote_per_coin`` (the opening index price of market 0)."""
    unit = cash_unit(scenario)
    per_cash = unit * (quote_per_coin if is_inverse(scenario) else 1.0)  # quote currency per cash unit
    specs = []
    for m in scenario.markets:
        tiers = MarginTiers(
            floors=tuple(int(round(t.floor / per_cash)) for t in m.maintenance_tiers),
            mmr_ppm=tuple(int(round(t.rate * 1e6)) for t in m.maintenance_tiers),
        )
        specs.append(MarketSpec(
            name=m.name, tick_size=m.tick_size, lot_size=m.lot_size, cash_unit=unit,
            max_leverage=m.max_leverage, taker_fee_ppm=int(round(m.taker_fee * 1e6)),
            maker_fee_ppm=int(round(m.maker_fee * 1e6)), tiers=tiers,
            settlement=m.settlement, quote_per_coin=quote_per_coin if m.settlement == "inverse" else 1.0,
        ))
    return specs


def venue_config(scenario: Scenario, quote_per_coin: float = 1.0) -> VenueConfig:
    """The venue of a scenario; ``quote_per_coin`` converts an inverse scenario's quote amounts
    (fund, backstop capital, caps, tier floors) to its coin (the opening index price)."""
    v = scenario.venue
    per_cash = INVERSE_CASH_UNIT * quote_per_coin if is_inverse(scenario) else CASH_UNIT  # quote per cash unit
    guard = v.fund_guard
    return VenueConfig(
        markets=market_specs(scenario, quote_per_coin),
        waterfall=[_stage_kwargs(s, per_cash) for s in v.waterfall],
        mark=MarkConfig(method=v.mark.method, basis_ema_alpha=v.mark.basis_ema_alpha),
        funding=FundingConfig(**v.funding.model_dump()),
        insurance_fund=int(round(v.insurance_fund / per_cash)),
        backstop_capital=int(round(v.backstop_capital / per_cash)),
        max_rounds=v.max_rounds,
        unwind_fraction=v.unwind_fraction,
        unwind_band=v.unwind_band,
        fund_guard_threshold=None if guard is None else guard.threshold,
        fund_guard_max_leverage=5.0 if guard is None else guard.max_leverage,
        fund_guard_funding_adjustment=0.0 if guard is None else guard.funding_adjustment,
        fund_guard_window_seconds=30 * 86_400.0 if guard is None else guard.window_seconds,
        step_seconds=scenario.step_seconds,
    )


def _stage_kwargs(stage, per_cash: float = CASH_UNIT) -> dict:
    d = stage.model_dump()
    if d.get("cap_per_event") is not None:
        d["cap_per_event"] = int(round(d["cap_per_event"] / per_cash))
    if d.get("slice_above") is not None:
        d["slice_above"] = int(round(d["slice_above"] / per_cash))
    return d


class PerpModel(mesa.Model):
    """A perpetual venue with leveraged traders, market makers and arbitrageurs.

    Args:
        scenario: a validated scenario.
        seed: int or SeedSequence for this run (defaults to the scenario's seed).
        base_dir: folder that relative data paths in the scenario are resolved against.
    """

    def __init__(self, scenario: Scenario, seed=None, base_dir: Path | None = None):
        if isinstance(seed, np.random.SeedSequence):
            # a fresh copy: spawn() advances the object's counter, and the same sequence
            # passed twice must give the same run
            ss = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)
        else:
            ss = np.random.SeedSequence(scenario.seed if seed is None else seed)
        s_model, s_index, s_venue, s_traders, s_makers, s_setup, s_withdrawals = ss.spawn(7)
        super().__init__(rng=np.random.default_rng(s_model))
        self._shocks_by_kind: dict = {}  # the scenario's shocks by kind (``_shocks``)
        self._crowded = False  # a crowding shock set the traders' shares last step
        self.scenario = scenario
        self.n_steps = scenario.steps
        self.t = 0
        self.trader_rng = np.random.default_rng(s_traders)
        self.arb_rng = np.random.default_rng(s_makers)
        setup_rng = np.random.default_rng(s_setup)
        self.withdrawal_rng = np.random.default_rng(s_withdrawals)

        index_moves = [s for s in scenario.shocks if isinstance(s, IndexMove)]
        self.index_path = index_paths(
            scenario.index.models, scenario.steps, scenario.step_seconds, np.random.default_rng(s_index),
            correlation=scenario.index.correlation, shocks=index_moves, base_dir=base_dir,
        )
        self._log_returns = None  # realised_vol's log returns of the index path, made once
        self._vol_table = None  # realised_vol of every step (the kernels), made at its first use
        self._signal_table = None  # signal_signs of every step (the kernels), made at its first use
        self.venue_index_path = self._oracle_view(self.index_path)

        # an inverse run holds money in the coin: quote amounts convert once, at the opening index
        self.cash_unit = cash_unit(scenario)
        self.quote_per_coin = float(self.venue_index_path[0, 0]) if is_inverse(scenario) else 1.0
        self.venue = Venue(venue_config(scenario, self.quote_per_coin), np.random.default_rng(s_venue))
        self.exchange = Exchange(self, self.venue)
        self.exchange.open_step(self.venue_index_path[0])

        a = scenario.agents
        # the liquidity providers as they run: capital and depth scaled to the population
        self.maker_config = a.effective_market_makers()
        self.arb_config = a.effective_arbitrageurs()
        mm, arb = self.maker_config, self.arb_config
        self.maker_accounts = self.venue.add_accounts(mm.count, "market_maker", self.cash(mm.capital), leverage=mm.leverage)
        self.arb_accounts = self.venue.add_accounts(arb.count, "arbitrageur", self.cash(arb.capital), leverage=arb.leverage)
        MarketMaker.create_agents(self, mm.count, list(self.maker_accounts))
        Arbitrageur.create_agents(self, arb.count, list(self.arb_accounts))
        self.traders = draw_population(self, a.traders, len(scenario.markets), setup_rng)
        # one mesa Agent per trader is made only when someone asks for the agents (``agents``,
        # ``agents_by_type``): stepping never touches one object per trader. Their unique ids
        # are reserved now, so they are the ids they would have had if made here.
        self._trader_ids = _reserve_agent_ids(self, len(self.traders))
        LeveragedTrader.warm_up(self)  # once per process: the decision kernels load at set-up
        self.backstop_vault = BackstopVault(self, self.venue.backstop)
        self.whales = {}
        self._open_initial_positions(setup_rng)
        self.venue.settle_period()  # the first profit window starts after set-up

        # the record's column buffers: one row per series (``series[k]`` is a view of its row),
        # written one step (a column) at a time by ``_record``
        self._series_rows = np.full((len(SERIES), self.n_steps), np.nan)
        self.series = dict(zip(SERIES, self._series_rows))
        # several markets: per-market prices as well (market 0 keeps the plain columns)
        self.market_names = [m.name for m in scenario.markets] if len(scenario.markets) > 1 else []
        for name in self.market_names:
            for k in ("index", "mark", "last", "open_interest"):
                self.series[f"{k}_{name}"] = np.full(self.n_steps, np.nan)
        if is_inverse(scenario):
            self.series["insurance_fund_usd"] = np.full(self.n_steps, np.nan)
        self.residual_max = 0
        self.audit = SnapshotRecorder(scenario.step_seconds)  # balance snapshots every 60 s

    # ----------------------------------------------------------------- agents
    @property
    def agents(self) -> mesa.agent.AgentSet:
        """Every mesa agent of the model, the traders included (made on first access)."""
        self._make_trader_agents()
        return super().agents

    @property
    def agents_by_type(self) -> dict:
        """The model's agents by class, the traders included (made on first access)."""
        self._make_trader_agents()
        return super().agents_by_type

    @property
    def agent_types(self) -> list[type]:
        self._make_trader_agents()
        return super().agent_types

    def _make_trader_agents(self) -> None:
        """One ``LeveragedTrader`` per population slot, with the ids reserved at set-up."""
        ids = self.__dict__.pop("_trader_ids", None)
        if ids is None:
            return
        pop = self.traders
        for slot, (uid, account) in enumerate(zip(ids, pop.accounts.tolist())):
            LeveragedTrader.made_for(self, account, slot, uid)

    # ------------------------------------------------------------------ set-up
    def _oracle_view(self, path: np.ndarray) -> np.ndarray:
        """The index as the venue sees it: stalled (frozen) or lagged during oracle shocks."""
        seen = path.copy()
        for s in self.scenario.shocks:
            if isinstance(s, OracleStall):
                end = min(s.step + s.duration, len(path))
                if s.lag is None:
                    seen[s.step:end] = path[s.step]
                else:
                    src = np.clip(np.arange(s.step, end) - s.lag, 0, None)
                    seen[s.step:end] = path[src]
        return seen

    def _open_initial_positions(self, rng) -> None:
        """Step-0 positions for a share of traders (and whales at step 0), crossed at the index
        against the market makers and arbitrageurs, who hold the other side as hedged inventory."""
        venue = self.venue
        pop = self.traders
        # the traders' (and step-0 whales') net opening position per market, and the part of it
        # nobody had the capacity to take (not opened; reported in the summary)
        self.opening_net_lots = np.zeros(venue.n_markets, dtype=np.int64)
        self.opening_unfilled_lots = np.zeros(venue.n_markets, dtype=np.int64)
        holds, side, lots = LeveragedTrader.initial_orders(pop, venue, rng, self.scenario.agents.traders.initial_positions)
        for m in range(venue.n_markets):
            k = holds & (pop.market == m)
            accounts = list(pop.accounts[k])
            qtys = list(side[k] * lots[k])
            for i, s in enumerate(self.scenario.shocks):
                if isinstance(s, Whale) and s.step == 0 and s.market == m:
                    acc, q = self._open_whale(i, s)
                    accounts.append(acc)
                    qtys.append(q)
            net = int(np.sum(qtys)) if qtys else 0
            self.opening_net_lots[m] = abs(net)
            if net != 0:
                absorbed = self._absorb_imbalance(m, net)
                short = abs(net) - sum(abs(q) for _, q in absorbed)
                if short > 0:
                    qtys = _cut_side(qtys, int(np.sign(net)), short)
                    self.opening_unfilled_lots[m] = short
                for acc, q in absorbed:
                    accounts.append(acc)
                    qtys.append(q)
            venue.opening_auction(m, accounts, qtys, int(venue.marks[m]))
        lot_quote = venue.marks.astype(float) * venue.contract_values * CASH_UNIT  # at the opening price
        if venue.ledger.any_inverse:
            lot_quote = np.array([spec.lot_quote(p) for spec, p in zip(venue.markets, venue.marks)], dtype=float)
        self.opening_net_notional = float((self.opening_net_lots * lot_quote).sum())
        self.opening_unfilled_notional = float((self.opening_unfilled_lots * lot_quote).sum())

    def _absorb_imbalance(self, m: int, net: int):
        """Who holds the other side of the traders' net position at step 0: arbitrageurs first
        (a cash-and-carry short against crowded longs, hedged in spot), up to their capacity,
        then market makers pro rata to equity, up to theirs (``maker_opening_share``): a maker
        stays far above initial margin and keeps quoting both sides. What neither can take is
        returned untaken: the caller leaves that part of the opening unfilled."""
        venue = self.venue
        lot_cash = venue.lot_cash(m, venue.marks[m]) if venue.inverse[m] else int(venue.marks[m]) * int(venue.contract_values[m])
        left = abs(net)
        out = []
        mm = self.maker_config
        for accounts, share in ((self.arb_accounts, ARB_OPENING_SHARE),
                                (self.maker_accounts, maker_opening_share(mm))):
            if left == 0 or len(accounts) == 0:
                continue
            eq = np.clip(venue.equity(accounts), 1, None)
            # notional already held in other markets uses the same equity (cross margin)
            if venue.ledger.any_inverse:
                held = venue.ledger.notional(venue.ledger.qty[accounts], venue.marks).sum(axis=1).astype(float)
            else:
                held = (np.abs(venue.ledger.qty[accounts]) * venue.marks.astype(float) * venue.contract_values).sum(axis=1)
            room = np.clip(eq * venue.leverage[accounts, m] * share - held, 0, None)
            capacity = (room / lot_cash).astype(np.int64)
            take = min(left, int(capacity.sum()))
            if take <= 0:
                continue
            parts = _capped_split(take, eq, capacity)
            out += [(int(a), int(-np.sign(net) * q)) for a, q in zip(accounts, parts) if q]
            left -= take
        return out

    def _open_whale(self, i, s: Whale):
        venue = self.venue
        spec = venue.markets[s.market]
        # the margin for the position plus the taker fee of opening it through the book
        deposit = s.notional / s.leverage + s.notional * self.scenario.markets[s.market].taker_fee
        acc = int(venue.add_accounts(1, "trader", self.cash(deposit), leverage=s.leverage)[0])
        price = spec.to_price(venue.marks[s.market])
        lots = int(spec.lots_for_quote(s.notional, venue.marks[s.market]) if spec.inverse else spec.to_lots(s.notional / price))
        self.whales[i] = acc
        return acc, lots if s.side == "long" else -lots

    def cash(self, quote: float) -> int:
        """A quote-currency amount of the scenario in ledger cash units (an inverse run: in
        satoshis of its coin at the opening index price)."""
        if self.quote_per_coin != 1.0 or self.cash_unit != CASH_UNIT:
            return int(round(quote / (self.quote_per_coin * self.cash_unit)))
        return _cash(quote)

    # --------------------------------------------------------------- signals
    def signals(self):
        """(trend, deviation) per market from the venue's index: the return over the lookback,
        and the distance of the index from its mean over the same window."""
        look = self.scenario.agents.traders.trend_lookback
        lo = max(0, self.t - look)
        window = self.venue_index_path[lo : self.t + 1]
        trend = window[-1] - window[0]
        deviation = window[-1] - window.mean(axis=0)
        return trend, deviation

    def signal_signs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sign(trend), -sign(deviation))`` of ``signals``, what the traders act on. The index
        path is fixed for the run, so with the kernels every step's signs are computed at once
        (``_nb_prices.window_signals_table``, each row the per-step window's signs)."""
        k = kernels.prices()
        if k is None or not self.venue_index_path.flags.c_contiguous:
            trend, deviation = self.signals()
            return np.sign(np.asarray(trend, dtype=float)), -np.sign(np.asarray(deviation, dtype=float))
        if self._signal_table is None:
            look = self.scenario.agents.traders.trend_lookback
            self._signal_table = k.window_signals_table(self.venue_index_path, look, self.n_steps)
        trend, reversion = self._signal_table
        return trend[self.t], reversion[self.t]

    def realised_vol(self) -> np.ndarray:
        """The makers' realised volatility of the index's log returns over their window (numpy's
        ``std``, bit for bit; every step's at once with the kernels: ``window_std_table``)."""
        if self._log_returns is None:  # the index path is fixed for the run: its returns once
            self._log_returns = np.ascontiguousarray(np.diff(np.log(self.index_path), axis=0))
        w = self.scenario.agents.market_makers.vol_window
        k = kernels.prices()
        if k is not None:
            if self._vol_table is None:
                self._vol_table = k.window_std_table(self._log_returns, w, self.n_steps)
            return self._vol_table[self.t]
        lo = max(0, self.t - w)
        if self.t + 1 - lo < 3:
            return np.zeros(self.index_path.shape[1])
        return self._log_returns[lo : self.t].std(axis=0)

    def spot_ticks(self, m: int) -> float:
        """The real index of market ``m`` now, in ticks: what makers and arbitrageurs hedge
        against, even while the venue's oracle is stalled or lagging."""
        return self.index_path[self.t, m] / self.venue.markets[m].tick_size

    def _shocks(self, kind) -> list:
        """The scenario's shocks of ``kind`` as ``(position in the list, shock)``, listed once."""
        cache = self._shocks_by_kind
        if kind not in cache:
            cache[kind] = [(i, s) for i, s in enumerate(self.scenario.shocks) if isinstance(s, kind)]
        return cache[kind]

    def _active(self, kind):
        shocks = self._shocks(kind)
        if not shocks:  # the usual case: no shock of this kind
            return []
        t = self.t
        return [s for _, s in shocks if s.step <= t < s.step + s.duration]

    def liquidity_withdrawn(self) -> float:
        if not self._shocks(LiquidityWithdrawal):
            return 0.0
        return max([s.fraction for s in self._active(LiquidityWithdrawal)], default=0.0)

    def withdrawal_wave(self, wave: WithdrawalWave) -> np.ndarray:
        """A bank run (``WithdrawalWave``): each trader row withdraws with probability
        ``share`` (one uniform draw per row, in row order, from the withdrawal stream) a
        ``fraction`` of its free collateral, ``min(wallet, equity - initial margin)``, rounded
        down to the cash unit. Returns the rows that withdrew something."""
        venue = self.venue
        led = venue.ledger
        rows = np.flatnonzero(led.kind == "trader")
        draw = self.withdrawal_rng.random(len(rows))
        rows = rows[draw < wave.share]
        if len(rows) == 0:
            return rows
        leverage = venue.leverage[rows]
        if venue.fund_guard_active():
            leverage = np.minimum(leverage, venue.config.fund_guard_max_leverage)
        free = venue.free_collateral(rows, leverage)
        amount = np.floor(np.clip(free, 0, None) * wave.fraction).astype(np.int64)
        go = amount > 0
        if go.any():
            venue.withdraw(rows[go], amount[go])
        return rows[go]

    # ------------------------------------------------------------------- step
    def step(self) -> None:
        t = self.t
        venue = self.venue
        self.exchange.open_step(self.venue_index_path[t])
        crowd = self._active(Crowding)
        if crowd or t == 0 or self._crowded:  # the scenario's crowding, or back to the traders' own
            cfg = self.scenario.agents.traders
            self.traders.long_share = crowd[-1].long_share if crowd else cfg.long_share
            tp = crowd[-1].trade_probability if crowd else None
            self.traders.trade_probability = cfg.trade_probability if tp is None else tp
            self._crowded = bool(crowd)
        # the arbitrageurs' stale basis quotes are pulled with the makers' (none may block a
        # maker's post-only quote)
        MarketMaker.step_all(self, also_cancel=Arbitrageur.quoting_accounts(self))
        for i, s in self._shocks(Whale):
            if s.step == t and t > 0:
                acc, q = self._open_whale(i, s)
                venue.submit_orders(s.market, [acc], [int(np.sign(q))], [abs(q)])
        Arbitrageur.step_all(self)
        LeveragedTrader.step_all(self)
        for _, s in self._shocks(WithdrawalWave):
            if s.step == t:
                self.withdrawal_wave(s)
        spikes = self._active(FundingSpike)
        premium = np.full(venue.n_markets, sum(s.rate for s in spikes)) if spikes else None
        funding_due = settlement_due(t, self.scenario.step_seconds, self.scenario.venue.funding.interval_seconds)
        if venue.holds_inventory():  # the usual step: nobody has anything to unwind
            self.backstop_vault.step()
            venue.unwind_venue_positions(holders=[venue.insurance_fund, venue.engine])
        self.exchange.close_step(funding_due, premium)
        self._record(t)
        self.audit.maybe_record(t, venue)
        self.t += 1

    def _record(self, t: int) -> None:
        """The step's values of every series, stored as one column of the record's buffers (in
        ``SERIES`` order, the same float operations as one store per series)."""
        venue = self.venue
        spec = venue.markets[0]
        book = venue.books[0]
        tick = spec.tick_size
        marks = venue.marks
        # Python scalars: an int64 times a float is the float product of the int as a float
        mark0 = int(marks[0])
        bids, asks = book.bids.price, book.asks.price
        bb = int(bids[0]) if len(bids) else None
        ba = int(asks[0]) if len(asks) else None
        ref = (None if bb is None or ba is None else (bb + ba) / 2) or float(mark0)  # book.mid()
        dbid, dask = book.depth_within(0.01, ref)
        lot_quote = spec.lot_quote(ref)
        # one pass over the ledger: conservation residual, net lots and open interest
        residual, net_lots, long_lots, (fund, backstop, engine) = venue.step_totals()
        long0 = int(long_lots[0])
        rate = self.exchange.funding_rate
        unit = self.cash_unit
        self._series_rows[:, t] = (
            self.index_path[t, 0],
            self.venue_index_path[t, 0],
            mark0 * tick,
            venue.prices.last[0] * tick,
            np.nan if bb is None else bb * tick,
            np.nan if ba is None else ba * tick,
            dbid * lot_quote,
            dask * lot_quote,
            long0 * spec.lot_size if spec.inverse else long0 * spec.lot_size * mark0 * tick,
            np.nan if rate is None else rate[0],
            fund * unit,  # the settlement asset (USD or coin)
            backstop * unit,
            self.exchange.cascade_depth,
            venue.rejections,
            residual,
            self.traders.long_share,
            float(venue.fund_guard_active()),
            engine * unit,
        )
        s = self.series
        if "insurance_fund_usd" in s:  # an inverse fund's dollar value: coin x mark
            s["insurance_fund_usd"][t] = fund * unit * mark0 * tick
        for m, name in enumerate(self.market_names):
            tk = venue.markets[m].tick_size
            s[f"index_{name}"][t] = self.index_path[t, m]
            s[f"mark_{name}"][t] = marks[m] * tk
            s[f"last_{name}"][t] = venue.prices.last[m] * tk
            lot = venue.markets[m].lot_size
            s[f"open_interest_{name}"][t] = long_lots[m] * lot if venue.inverse[m] else long_lots[m] * lot * marks[m] * tk
        if residual != 0 or np.count_nonzero(net_lots):
            raise RuntimeError(f"ledger broke conservation at step {t}: residual {residual}")

    def run(self, progress=None) -> None:
        """Run all steps; ``progress`` is an optional callable called with the step count."""
        while self.t < self.n_steps:
            self.step()
            if progress is not None:
                progress(1)
        self.audit.finish(self.t - 1, self.venue)

    def timeseries(self) -> pd.DataFrame:
        """Per-step series (market 0 prices and book; venue totals), with per-step waterfall
        aggregates from the event log (0 on a step without such events).

        Built once from arrays: the values, dtypes and column order of ``timeseries_reference``
        (the series merged with ``step_aggregates`` and ``market_aggregates``), which it falls
        back to for an empty or unordered event log."""
        ev = self.venue.events.to_frame()
        steps = ev["step"].to_numpy()
        if not len(ev) or (len(steps) > 1 and (np.diff(steps) < 0).any()):
            return self.timeseries_reference(ev)
        t = self.t
        data = {"step": np.arange(t), **{k: v[:t] for k, v in self.series.items()}}  # the frame copies them
        n = int(steps[-1]) + 1  # the aggregates' rows: steps 0 .. the last event's
        for name, (values, whole) in _aggregates(ev, self.venue, self.market_names, n).items():
            if n >= t:
                data[name] = values[:t]
            else:  # steps after the last event: none of anything (a merge's NaN filled with 0)
                data[name] = np.concatenate([values, np.zeros(t - n)])
                whole = False
            if values.dtype.kind == "i" and not whole:
                data[name] = data[name].astype(float)
        return pd.DataFrame(data)

    def timeseries_reference(self, ev: pd.DataFrame | None = None) -> pd.DataFrame:
        """``timeseries`` through pandas merges of ``step_aggregates`` and ``market_aggregates``
        (the definition ``timeseries`` is tested against)."""
        df = pd.DataFrame({"step": np.arange(self.n_steps), **self.series})
        df = df.iloc[: self.t]
        ev = self.venue.events.to_frame() if ev is None else ev
        per_step = step_aggregates(ev, self.venue)
        if self.market_names:
            per_step = per_step.merge(market_aggregates(ev, self.venue, self.market_names), on="step", how="outer")
        return df.merge(per_step, on="step", how="left").fillna(
            {c: 0 for c in per_step.columns if c != "step"}
        )


#: Who covered deficits, per step (``cover_<stage>`` columns of the timeseries).
COVERS = ("insurance_fund", "backstop", "adl", "socialize", "socialize_pending", "venue")
#: The liquidation stages with a ``liq_<stage>`` column.
_LIQ_STAGES = ("book", "backstop", "insurance_fund", "adl", "engine")
_STEP_COLUMNS = ("liquidations", "liq_notional", *(f"liq_{s}" for s in _LIQ_STAGES), "adl_notional", "socialized",
                 "venue_loss", "deficit", *(f"cover_{c}" for c in COVERS))


def _event_quote(events: pd.DataFrame, venue) -> np.ndarray:
    """Each event's quote notional: |qty| x price x tick x lot (an inverse contract: its face
    value |qty| x lot); 0 without a price."""
    tick = np.array([m.tick_size for m in venue.markets])
    lot = np.array([m.lot_size for m in venue.markets])
    mk = events["market"].to_numpy().clip(0)
    qty = np.abs(events["qty"].to_numpy())
    price = events["price"].to_numpy()
    quote = qty * np.where(np.isnan(price), 0.0, price) * tick[mk] * lot[mk]
    if venue.ledger.any_inverse:  # an inverse contract's quote notional is its face value
        quote = np.where(venue.inverse[mk], qty * lot[mk], quote)
    return quote


def _sums_by_step(steps: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sums of ``values`` per step ``0 .. n - 1`` (0.0 where none), ``steps`` non-decreasing.

    ``np.add.reduceat`` over each step's run of rows: what pandas' ``groupby("step").sum()``
    computes for sorted groups without NaN (its reduceat path), bit for bit, so the sums equal
    ``step_aggregates``' to the last bit (the tests check both on runs with every stage)."""
    out = np.zeros(n)
    if len(steps):
        starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]])
        out[steps[starts]] = np.add.reduceat(values, starts)
    return out


def _aggregates(events: pd.DataFrame, venue, names, n: int) -> dict[str, tuple[np.ndarray, bool]]:
    """The columns of ``step_aggregates`` and then ``market_aggregates`` (when ``names``) over
    steps ``0 .. n - 1`` from a non-empty event log in step order: name -> (values, whether
    every step has a value: the liquidation count stays integer only then, as a merge keeps it)."""
    steps = events["step"].to_numpy()
    codes, kinds = pd.factorize(events["kind"])
    scodes, stages = pd.factorize(events["stage"])
    kind_code = {str(k): i for i, k in enumerate(kinds)}
    stage_code = {str(s): i for i, s in enumerate(stages)}

    def of_kind(kind: str) -> np.ndarray:
        return codes == kind_code.get(kind, -2)

    def at_stage(stage: str) -> np.ndarray:
        return scodes == stage_code.get(stage, -2)

    def sums(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
        return _sums_by_step(steps[mask], values[mask], n)

    quote = _event_quote(events, venue)
    cash = events["amount"].to_numpy() * venue.markets[0].cash_unit
    out: dict[str, tuple[np.ndarray, bool]] = {}
    liq = of_kind("liquidation")
    count = np.bincount(steps[liq], minlength=n)[:n].astype(np.int64)
    out["liquidations"] = (count, bool(count.all()))
    out["liq_notional"] = (sums(liq, quote), True)
    for stage in _LIQ_STAGES:
        out[f"liq_{stage}"] = (sums(liq & at_stage(stage), quote), True)
    out["adl_notional"] = (sums(of_kind("adl"), quote), True)
    out["socialized"] = (sums(of_kind("socialize"), cash), True)
    cover = of_kind("cover")
    out["venue_loss"] = (sums(cover & at_stage("venue"), cash), True)
    out["deficit"] = (sums(of_kind("deficit"), cash), True)
    for c in COVERS:
        out[f"cover_{c}"] = (sums(cover & at_stage(c), cash), True)
    if names:
        market = events["market"].to_numpy()
        adl = of_kind("adl")
        backstop = at_stage("backstop")
        for m, name in enumerate(names):
            here = market == m
            out[f"liq_notional_{name}"] = (sums(here & liq, quote), True)
            out[f"liq_backstop_{name}"] = (sums(here & liq & backstop, quote), True)
            out[f"adl_notional_{name}"] = (sums(here & adl, quote), True)
    return out


def step_aggregates(events: pd.DataFrame, venue) -> pd.DataFrame:
    """Liquidations by stage, ADL, socialized loss, venue loss and the deficit with who covered
    it per step (notionals in the quote currency, money in the settlement asset).

    The pandas definition (groupby per column): ``PerpModel.timeseries`` computes the same
    columns from arrays."""
    cols = list(_STEP_COLUMNS)
    if events.empty:
        return pd.DataFrame(columns=["step", *cols]).astype({"step": np.int64})
    spec_tick = np.array([m.tick_size for m in venue.markets])
    spec_lot = np.array([m.lot_size for m in venue.markets])
    mk = events["market"].to_numpy().clip(0)
    quote = (events["qty"].abs() * events["price"].fillna(0) * spec_tick[mk] * spec_lot[mk]).to_numpy()
    if venue.ledger.any_inverse:  # an inverse contract's quote notional is its face value
        quote = np.where(venue.inverse[mk], events["qty"].abs().to_numpy() * spec_lot[mk], quote)
    # only the columns aggregated here: each filter below copies its rows of these five
    e = pd.DataFrame({"step": events["step"], "kind": events["kind"], "stage": events["stage"], "quote": quote,
                      "cash": events["amount"] * venue.markets[0].cash_unit})
    liq = e[e.kind == "liquidation"]
    out = pd.DataFrame({"step": np.arange(int(events["step"].max()) + 1)})
    g = lambda frame, col: frame.groupby("step")[col].sum()  # noqa: E731
    out["liquidations"] = out.step.map(liq.groupby("step").size()).fillna(0)
    out["liq_notional"] = out.step.map(g(liq, "quote")).fillna(0)
    for stage in ("book", "backstop", "insurance_fund", "adl", "engine"):
        out[f"liq_{stage}"] = out.step.map(g(liq[liq.stage == stage], "quote")).fillna(0)
    out["adl_notional"] = out.step.map(g(e[e.kind == "adl"], "quote")).fillna(0)
    out["socialized"] = out.step.map(g(e[e.kind == "socialize"], "cash")).fillna(0)
    covers = e[e.kind == "cover"]
    out["venue_loss"] = out.step.map(g(covers[covers.stage == "venue"], "cash")).fillna(0)
    out["deficit"] = out.step.map(g(e[e.kind == "deficit"], "cash")).fillna(0)
    for c in COVERS:
        out[f"cover_{c}"] = out.step.map(g(covers[covers.stage == c], "cash")).fillna(0)
    return out


def market_aggregates(events: pd.DataFrame, venue, names) -> pd.DataFrame:
    """Per step and market: liquidated and ADL'd notional (``liq_notional_<name>``,
    ``liq_backstop_<name>``, ``adl_notional_<name>``), quote currency."""
    cols = [f"{k}_{n}" for n in names for k in ("liq_notional", "liq_backstop", "adl_notional")]
    if events.empty:
        return pd.DataFrame(columns=["step", *cols]).astype({"step": np.int64})
    tick = np.array([m.tick_size for m in venue.markets])
    lot = np.array([m.lot_size for m in venue.markets])
    mk = events["market"].to_numpy().clip(0)
    quote = (events["qty"].abs() * events["price"].fillna(0) * tick[mk] * lot[mk]).to_numpy()
    if venue.ledger.any_inverse:
        quote = np.where(venue.inverse[mk], events["qty"].abs().to_numpy() * lot[mk], quote)
    e = pd.DataFrame({"step": events["step"], "market": events["market"], "kind": events["kind"],
                      "stage": events["stage"], "quote": quote})
    out = pd.DataFrame({"step": np.arange(int(events["step"].max()) + 1)})
    for m, name in enumerate(names):
        em = e[e["market"] == m]
        liq = em[em.kind == "liquidation"]
        out[f"liq_notional_{name}"] = out.step.map(liq.groupby("step")["quote"].sum()).fillna(0)
        out[f"liq_backstop_{name}"] = out.step.map(liq[liq.stage == "backstop"].groupby("step")["quote"].sum()).fillna(0)
        out[f"adl_notional_{name}"] = out.step.map(em[em.kind == "adl"].groupby("step")["quote"].sum()).fillna(0)
    return out


def _capped_split(total: int, weights, caps) -> np.ndarray:
    """Split ``total`` pro rata to ``weights`` without giving any part more than its cap
    (water-filling; ``total <= caps.sum()``)."""
    caps = np.asarray(caps, dtype=np.int64)
    parts = np.zeros(len(caps), dtype=np.int64)
    left = int(total)
    while left > 0:
        open_ = caps - parts > 0
        w = np.where(open_, np.asarray(weights, dtype=np.int64), 0)
        if w.sum() == 0:
            w = open_.astype(np.int64)
        add = np.minimum(largest_remainder(left, w), caps - parts)
        parts += add
        left -= int(add.sum())
    return parts


def _cut_side(qtys, side: int, cut: int) -> list[int]:
    """Take ``cut`` lots off the orders on ``side`` (+1 buys, -1 sells), pro rata to their size,
    so every trader on the crowded side is filled the same share of its opening order."""
    q = np.asarray(qtys, dtype=np.int64)
    on = np.sign(q) == side
    keep = largest_remainder(int(np.abs(q[on]).sum()) - cut, np.abs(q[on]))
    q = q.copy()
    q[on] = side * keep
    return [int(v) for v in q]


class _AgentIdCounters(weakref.WeakKeyDictionary):
    """mesa's per-model unique-id counters (``mesa.Agent._ids``) without keeping the models alive.

    mesa 3.3 keeps them in a class-level ``defaultdict`` keyed by the model (mesa issue #3179):
    every model ever built stays in memory with its ledger, book and event log, so a process
    that runs many models (a pool worker, the benchmark) grows by a whole run each time. Weak
    keys free a finished model; a model's counter still starts at 1, so every id is the same.
    """

    def __getitem__(self, model):
        try:
            return super().__getitem__(model)
        except KeyError:
            counter = self[model] = itertools.count(1)
            return counter


def _release_finished_models() -> None:
    """Install the weak counters once, carrying over the counters of models still alive (a
    mesa with the upstream fix, mesa#3180, has no class-level counters: nothing to do)."""
    ids = getattr(mesa.Agent, "_ids", None)
    if ids is not None and not isinstance(ids, weakref.WeakKeyDictionary):
        weak = _AgentIdCounters()
        weak.update(ids)
        mesa.Agent._ids = weak


_release_finished_models()


def _reserve_agent_ids(model, n: int) -> range:
    """Take the next ``n`` mesa unique ids of ``model`` (as ``n`` Agent constructions would)."""
    counter = mesa.Agent._ids[model]
    start = next(counter)
    mesa.Agent._ids[model] = itertools.count(start + n)
    return range(start, start + n)


def _cash(quote: float) -> int:
    return int(round(quote / CASH_UNIT))
