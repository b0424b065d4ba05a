"""Shared hypothesis strategies for venue-level property tests.

``fill_batches()`` draws a ledger case: a contract value, some accounts, set-up fills and then
batches of fills (buyer, seller, lots, price) in which accounts are often hit on both sides.

``venue_runs()`` draws a whole run: 2-3 markets with different contract values, a waterfall drawn
from the registered stages and their options, a few market makers and cheap high-leverage
traders, and a list of steps (index moves up to +-30 %, quotes, market orders, deposits,
withdrawals and withdrawal waves, through ``Venue.withdraw`` so a withdrawal factor applies). ``build_venue`` and ``play_step`` turn it into a ``Venue`` and drive one step the
way the exchange agent does.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from simulator.venue.adl import RANKINGS
from simulator.venue.book import BUY, SELL
from simulator.venue.margin import MarginTiers
from simulator.venue.market import MarketSpec
from simulator.venue.prices import FundingConfig, MarkConfig
from simulator.venue.venue import Venue, VenueConfig
from simulator.venue.waterfall import ADL_PRICES, SCOPES, SURPLUS_POLICIES, TIMINGS, TRIGGERS, WEIGHTS

# (tick_size, lot_size, cash_unit): contract values 1, 100, 5, 1
SPEC_UNITS = [(1.0, 1.0, 1.0), (0.1, 0.001, 1e-6), (0.5, 0.1, 0.01), (0.01, 1.0, 0.01)]
# inverse (tick_size, contract face value, cash_unit): K = 2e8 (BitMEX XBTUSD in sats), 1e8 (a
# 100 USD contract in micro-coins), 1e5 (coarse: large rounding per fill)
INVERSE_UNITS = [(0.5, 1.0, 1e-8), (1.0, 100.0, 1e-6), (0.1, 1.0, 1e-4)]

STAGE_OPTIONS = {
    "book": st.fixed_dictionaries({}, optional={
        "partial": st.booleans(),
        "partial_buffer": st.sampled_from([0.0, 0.1, 0.5]),
        "price_band": st.one_of(st.none(), st.sampled_from([0.01, 0.05, 0.3])),
        "limit_at_bankruptcy": st.booleans(),
        "slice_share": st.sampled_from([0.2, 0.5]),  # Hyperliquid's slices (cash units below)
        "slice_above": st.sampled_from([0, 10**4, 10**6]),
        "slice_cooldown_seconds": st.sampled_from([0.0, 30.0]),
    }),
    "backstop": st.fixed_dictionaries({}, optional={
        "trigger": st.sampled_from([0.5, 2 / 3, 1.0]),
        "max_leverage": st.one_of(st.none(), st.sampled_from([2.0, 10.0])),
        "pays_deficits": st.booleans(),
    }),
    "insurance_fund": st.fixed_dictionaries({}, optional={
        "surplus_policy": st.sampled_from(SURPLUS_POLICIES),
        "clearance_fee": st.sampled_from([0.0, 0.005, 0.015]),
        "cap_per_event": st.one_of(st.none(), st.integers(0, 10**7)),
        "takeover": st.booleans(),
        "takeover_max_leverage": st.one_of(st.none(), st.sampled_from([3.0, 20.0])),
        "takeover_share_step": st.sampled_from([0.2, 0.5]),  # Paradex's partial takeover
        "takeover_penalty": st.sampled_from([0.0, 0.7]),
    }),
    "adl": st.fixed_dictionaries({}, optional={
        "ranking": st.sampled_from(RANKINGS),
        "price": st.sampled_from(ADL_PRICES),
        "trigger": st.sampled_from(TRIGGERS),
        "profit_percentile": st.sampled_from([0.0, 0.5, 0.9, 1.0]),
    }),
    "socialize": st.fixed_dictionaries({}, optional={
        "weights": st.sampled_from(WEIGHTS),
        "when": st.sampled_from(TIMINGS),
        "scope": st.sampled_from(SCOPES),
        "delay_seconds": st.sampled_from([0.0, 30.0, 90.0]),
    }),
}


def _valid(opts: dict) -> dict:
    if opts.get("takeover_share_step") is not None:  # a partial takeover is a takeover
        opts["takeover"] = True
    if opts.get("slice_share") is not None:  # one partial-liquidation rule per book stage
        opts.pop("partial", None)
    if opts.get("when") == "settlement":  # a delay is for immediate socialization only
        opts.pop("delay_seconds", None)
    if opts.get("weights") == "withdrawal_factor":  # repaid by withdrawals: no timing of its own
        opts.pop("when", None)
        opts.pop("delay_seconds", None)
    return opts


def stage_entry(name: str):
    return STAGE_OPTIONS[name].map(lambda opts: {"stage": name, **_valid(opts)})


# any order, or (half the time) position stages before deficit stages, so that deficits reach
# the insurance fund and socialization often
CANONICAL = ["book", "backstop", "adl", "insurance_fund", "socialize"]
stage_names = st.tuples(
    st.lists(st.sampled_from(CANONICAL), min_size=1, max_size=5, unique=True), st.booleans()
).map(lambda t: sorted(t[0], key=CANONICAL.index) if t[1] else t[0])
waterfalls = stage_names.flatmap(lambda names: st.tuples(*(stage_entry(n) for n in names)).map(list))
# a waterfall ending in the withdrawal factor (Paradex), so withdrawals often repay a fronted loss
withdrawal_factor_waterfalls = st.tuples(
    st.lists(st.sampled_from(["book", "insurance_fund"]), max_size=2, unique=True).flatmap(
        lambda names: st.tuples(*(stage_entry(n) for n in names)).map(list)),
    st.sampled_from(SCOPES),
).map(lambda t: t[0] + [{"stage": "socialize", "weights": "withdrawal_factor", "scope": t[1]}])

# two socialize stages that both use the loss pool (a delayed one and a settlement one, either
# order) after the position stages: neither may charge what the other fronted
two_socialize_waterfalls = st.tuples(
    st.lists(st.sampled_from(["book", "insurance_fund"]), max_size=2, unique=True).flatmap(
        lambda names: st.tuples(*(stage_entry(n) for n in names)).map(list)),
    st.sampled_from([30.0, 90.0]), st.booleans(),
).map(lambda t: t[0] + (lambda pair: pair if t[2] else pair[::-1])(
    [{"stage": "socialize", "weights": "equity", "delay_seconds": t[1]},
     {"stage": "socialize", "weights": "equity", "when": "settlement"}]))


@st.composite
def market_specs(draw, i: int):
    """A linear market, or (one time in three) an inverse one: the ledger supports any mix; a
    scenario file allows one settlement per run."""
    inverse = draw(st.integers(0, 2)) == 2
    tick, lot, cash = draw(st.sampled_from(INVERSE_UNITS if inverse else SPEC_UNITS))
    two_tiers = draw(st.booleans())
    base = draw(st.sampled_from([4_000, 5_000, 10_000, 50_000]))
    if two_tiers:
        tiers = MarginTiers((0, draw(st.sampled_from([10**4, 10**6, 10**8]))), (base, base * 2))
    else:
        tiers = MarginTiers((0,), (base,))
    return MarketSpec(
        name=f"M{i}", tick_size=tick, lot_size=lot, cash_unit=cash, max_leverage=100.0,
        taker_fee_ppm=draw(st.sampled_from([0, 450])), maker_fee_ppm=draw(st.sampled_from([0, 150, -50])),
        tiers=tiers, settlement="inverse" if inverse else "linear",
    )


@st.composite
def steps(draw, n_markets: int, n_traders: int, n_steps: int):
    out = []
    for _ in range(n_steps):
        out.append({
            "returns": draw(st.lists(st.one_of(st.floats(-0.3, 0.3), st.sampled_from([-0.3, -0.15, 0.15, 0.3])),
                                     min_size=n_markets, max_size=n_markets)),
            # per market: quotes (maker 0/1, side, distance from the index as a fraction (a
            # negative one crosses the index, so quotes of one batch may cross each other), lots)
            "quotes": draw(st.lists(
                st.lists(st.tuples(st.integers(0, 1), st.sampled_from([BUY, SELL]),
                                   st.one_of(st.floats(-0.01, 0.05), st.sampled_from([0.001, 0.005, 0.02])),
                                   st.integers(0, 30)), min_size=1, max_size=8),
                min_size=n_markets, max_size=n_markets)),
            "orders": draw(st.lists(
                st.tuples(st.integers(0, n_traders - 1), st.integers(0, n_markets - 1),
                          st.sampled_from([BUY, SELL]), st.integers(1, 40), st.booleans()),
                min_size=1, max_size=3 * n_traders)),
            "deposit": draw(st.one_of(st.none(), st.tuples(st.integers(0, n_traders - 1), st.floats(0.0, 2.0)))),
            "withdraw": draw(st.one_of(st.none(), st.tuples(st.integers(0, n_traders - 1), st.floats(0.0, 1.0)))),
            # a withdrawal wave: (share of traders, fraction of free collateral), as the model runs it
            "wave": draw(st.one_of(st.none(), st.tuples(st.sampled_from([0.3, 1.0]), st.sampled_from([0.5, 1.0])))),
        })
    return out


@st.composite
def venue_runs(draw):
    n_markets = draw(st.integers(2, 3))
    n_traders = draw(st.integers(3, 8))
    return {
        "markets": [draw(market_specs(i)) for i in range(n_markets)],
        "prices": draw(st.lists(st.sampled_from([50.0, 1_000.0, 30_000.0]), min_size=n_markets, max_size=n_markets)),
        "waterfall": draw(st.one_of(waterfalls, withdrawal_factor_waterfalls, two_socialize_waterfalls)),
        "mark": draw(st.sampled_from(["median", "index", "mid"])),
        "fund": draw(st.sampled_from([0.0, 0.5, 20.0])),  # in units of one lot's value
        "backstop": draw(st.sampled_from([0.0, 1.0, 50.0])),
        "deposits": draw(st.lists(st.floats(0.01, 1.0), min_size=n_traders, max_size=n_traders)),
        "leverage": draw(st.lists(st.sampled_from([5.0, 20.0, 50.0, 100.0]), min_size=n_traders, max_size=n_traders)),
        "funding_every": draw(st.integers(1, 4)),
        # fund guard: None or (threshold, funding_adjustment, window_seconds)
        "guard": draw(st.sampled_from([None, (0.2, 0.0, 60.0), (5.0, 0.001, 30 * 86_400.0), (5.0, 0.01, 30.0)])),
        "funding_formula": draw(st.sampled_from(["binance", "premium_plus_interest"])),
        "seed": draw(st.integers(0, 2**16)),
        "steps": draw(steps(n_markets, n_traders, draw(st.integers(3, 10)))),
    }


def build_venue(run):
    markets = run["markets"]
    lot_value = np.array([m.contract_value // int(m.to_ticks(p)) if m.inverse else int(m.to_ticks(p)) * m.contract_value
                          for m, p in zip(markets, run["prices"])])
    unit = int(lot_value.max())
    cfg = VenueConfig(
        markets=markets, waterfall=run["waterfall"], mark=MarkConfig(method=run["mark"]),
        funding=FundingConfig(formula=run["funding_formula"]),  # settled every funding_every steps by play_step
        insurance_fund=int(run["fund"] * unit), backstop_capital=int(run["backstop"] * unit),
        step_seconds=run.get("step_seconds", 30.0),  # a step is 30 s: delays of 30 and 90 s land
    )
    if run.get("guard") is not None:
        cfg.fund_guard_threshold, cfg.fund_guard_funding_adjustment, cfg.fund_guard_window_seconds = run["guard"]
    venue = Venue(cfg, np.random.default_rng(run["seed"]))
    makers = venue.add_accounts(2, "market_maker", 10**6 * unit, leverage=100.0)
    traders = venue.add_accounts(len(run["deposits"]), "trader",
                                 [int(d * unit) for d in run["deposits"]], leverage=run["leverage"])
    venue.add_accounts(1, "trader", unit // 2, leverage=1.0, spot=True)  # a spot wallet, never trades
    venue.set_index(run["prices"])
    return venue, makers, traders, np.array(run["prices"], dtype=float), unit


def play_step(venue, makers, traders, prices, unit, step, i, funding_every):
    """One step as the exchange agent runs it; returns the new index prices."""
    venue.step = venue.events.step = i
    prices = np.maximum(prices * (1 + np.array(step["returns"])), 1e-3)
    venue.set_index(prices)
    venue.cancel_orders(makers)
    for m in range(venue.n_markets):
        mid = float(venue.prices.index[m])
        quotes = step["quotes"][m]
        px = [max(1, int(round(mid * (1 - d)))) if side == BUY else max(1, int(round(mid * (1 + d))))
              for _, side, d, _ in quotes]
        venue.post_quotes(m, [makers[k] for k, *_ in quotes], [q[1] for q in quotes], px, [q[3] for q in quotes])
    by_market: dict[int, dict] = {}  # one order per trader and market per step
    for t, m, side, q, reduce_only in step["orders"]:
        by_market.setdefault(m, {}).setdefault(int(traders[t]), (side, q, reduce_only))
    for m, orders in by_market.items():
        owners = list(orders)
        venue.submit_orders(m, owners, [o[0] for o in orders.values()], [o[1] for o in orders.values()],
                            reduce_only=[o[2] for o in orders.values()])
    if step["deposit"] is not None:
        t, x = step["deposit"]
        amount = int(x * unit)
        venue.deposit([traders[t]], [amount])
    if step["withdraw"] is not None:
        t, x = step["withdraw"]
        a = int(traders[t])
        free = _free_collateral(venue, np.array([a]))[0]
        if free > 0:
            venue.withdraw([a], [int(free * x)])
    if step.get("wave") is not None:  # a bank run: the spot wallet and the first share of traders
        share, x = step["wave"]
        rows = np.concatenate([np.flatnonzero(venue.spot), traders[: max(1, int(len(traders) * share))]])
        amount = (np.clip(_free_collateral(venue, rows), 0, None) * x).astype(np.int64)
        if (amount > 0).any():
            venue.withdraw(rows[amount > 0], amount[amount > 0])
    venue.update_marks()
    if (i + 1) % funding_every == 0:
        venue.apply_funding()
    venue.unwind_venue_positions()
    venue.liquidate()
    return prices


def _free_collateral(venue, rows) -> np.ndarray:
    """Equity above the initial margin of the rows' positions, at most their cash."""
    return venue.free_collateral(rows)


@st.composite
def fill_batches(draw, max_accounts: int = 5):
    """``(cv, n_accounts, setup, batches)``: fills are ``(buyer, seller, lots, price)`` tuples.

    Few accounts and few price levels, so one batch often holds the same account on both sides,
    several reductions of one position, flips, self-trades and zero-lot fills.
    """
    n = draw(st.integers(2, max_accounts))
    acc = st.integers(0, n - 1)
    fill = st.tuples(acc, acc, st.one_of(st.integers(0, 12), st.integers(1, 10**4)),
                     st.one_of(st.integers(1, 200), st.integers(90, 110), st.integers(1, 10**6)))
    cv = draw(st.sampled_from([1, 3, 100]))
    setup = draw(st.lists(fill, max_size=6))
    batches = draw(st.lists(st.lists(fill, min_size=1, max_size=12), min_size=1, max_size=3))
    return cv, n, setup, batches
