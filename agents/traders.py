"""Leveraged traders: trend followers, mean reverters, noise traders and hedgers.

Each trader is a mesa Agent holding only its ledger account and its slot in the population's
arrays; ``LeveragedTrader.step_all`` decides for every trader at once in numpy and sends one
batch of market orders per market to the venue. Traders never touch the ledger.
"""

from __future__ import annotations

import numpy as np

from agents.account import AccountAgent
from simulator.venue import kernels
from simulator.venue.book import BUY

STRATEGIES = ("trend", "mean_revert", "noise", "hedger")
_K = None  # the compiled decision pass once loaded (``_kernels``)
_WARMED = False  # the decision kernels are loaded in this process (``LeveragedTrader.warm_up``)


class TraderPopulation:
    """Per-trader parameters as arrays (index = slot)."""

    def __init__(self, accounts, market, strategy, leverage, capital, cfg, isolated=None, wallets=None, size_share=None):
        self.accounts = accounts
        # share of the account's buying power one slot uses: 1 for a one-market trader, 1/k for
        # a cross-margin trader holding k markets on one account (one slot per market)
        self.size_share = np.ones(len(accounts)) if size_share is None else size_share
        self.isolated = np.zeros(len(accounts), dtype=bool) if isolated is None else isolated
        self.wallets = wallets  # isolated traders' spot wallets (no positions), -1 for cross
        self.market = market
        self.strategy = strategy  # index into STRATEGIES
        self.leverage = leverage
        self.capital = capital
        self.cfg = cfg
        self.long_share = cfg.long_share
        self.trade_probability = cfg.trade_probability

    def __len__(self) -> int:
        return len(self.accounts)


def draw_population(model, cfg, n_markets: int, rng: np.random.Generator) -> TraderPopulation:
    """Draw capital, leverage, strategy and market for every trader; open their accounts."""
    n = cfg.count
    capital = _lognormal(rng, cfg.capital, n)
    leverage = np.maximum(_lognormal(rng, cfg.leverage, n), 1.0)
    shares = np.array([cfg.strategies.get(s, 0.0) for s in STRATEGIES])
    strategy = rng.choice(len(STRATEGIES), size=n, p=shares / shares.sum())
    market = rng.integers(0, n_markets, size=n)
    if cfg.hedger_leverage is not None:
        # hedgers (short perp against spot held elsewhere) run their own, often sub-1x, leverage
        hedger = strategy == STRATEGIES.index("hedger")
        leverage = np.where(hedger, np.maximum(_lognormal(rng, cfg.hedger_leverage, n), 0.05), leverage)
    venue = model.venue
    # isolated margin: the position's account holds only the margin posted to it (margin checks
    # are per ledger row, so a row with one position is an isolated position); the rest of the
    # capital sits in a spot wallet with no position (``spot=True``), which a liquidation cannot
    # touch; an equity-weighted socialization charges it unless its scope is derivatives_only
    isolated = rng.random(n) < cfg.isolated_share
    posted = np.where(isolated, capital * cfg.isolated_margin, capital)
    accounts = venue.add_accounts(n, "trader", venue.markets[0].cash(posted), leverage=leverage)
    wallets = np.full(n, -1, dtype=np.int64)
    if isolated.any():
        rest = venue.markets[0].cash(capital[isolated] - posted[isolated])
        wallets[isolated] = venue.add_accounts(int(isolated.sum()), "trader", rest, leverage=1.0, spot=True)
    size_share = np.ones(n)
    if cfg.multi_market_share > 0 and n_markets > 1:
        # cross-margin traders holding every market on one account: one extra slot per other
        # market (same account, capital, leverage and strategy); each slot sizes its entries
        # on 1/n_markets of the account's buying power, so a loss in one coin eats the margin
        # of the others and can liquidate them (drawn last: no other draw moves)
        multi = np.flatnonzero((rng.random(n) < cfg.multi_market_share) & ~isolated)
        size_share[multi] = 1.0 / n_markets
        slot = np.repeat(multi, n_markets - 1)
        others = (market[multi][:, None] + np.arange(1, n_markets)[None, :]) % n_markets
        accounts = np.concatenate([accounts, accounts[slot]])
        market = np.concatenate([market, others.reshape(-1)])
        strategy = np.concatenate([strategy, strategy[slot]])
        leverage = np.concatenate([leverage, leverage[slot]])
        capital = np.concatenate([capital, capital[slot]])
        isolated = np.concatenate([isolated, isolated[slot]])
        wallets = np.concatenate([wallets, wallets[slot]])
        size_share = np.concatenate([size_share, size_share[slot]])
    return TraderPopulation(accounts, market, strategy, leverage, capital, cfg, isolated, wallets, size_share)


def _lognormal(rng, dist, n):
    x = dist.median * np.exp(dist.sigma * rng.standard_normal(n))
    return np.minimum(x, dist.cap) if dist.cap is not None else x


class LeveragedTrader(AccountAgent):
    """One leveraged trader; the class decides for all of them in ``step_all``."""

    def __init__(self, model, account: int, slot: int):
        super().__init__(model, account)
        self.slot = slot  # index into the population's arrays

    @classmethod
    def made_for(cls, model, account: int, slot: int, unique_id: int) -> "LeveragedTrader":
        """The agent of population slot ``slot``, with a unique id reserved beforehand (the
        model makes trader agents only when asked for them; see ``PerpModel.agents``)."""
        agent = cls.__new__(cls)
        agent.model = model
        agent.unique_id = unique_id
        agent.pos = None
        agent.account = account
        agent.slot = slot
        model.register_agent(agent)
        return agent

    @staticmethod
    def initial_orders(pop: TraderPopulation, venue, rng, share: float):
        """Sizes and sides of the positions a share of traders hold at step 0 (opening auction)."""
        everyone = np.arange(len(pop))
        holds = rng.random(len(pop)) < share
        side = _entry_side(pop, everyone, rng, np.zeros(venue.n_markets), np.zeros(venue.n_markets))
        lots = _entry_lots(pop, everyone, venue, venue.equity(pop.accounts), pop.cfg.position_fraction, rng)
        return holds & (lots > 0), side, lots

    @classmethod
    def step_all(cls, model) -> None:
        """Every trader decides and sends its order: the compiled pass (``agents/_nb_traders``),
        with exactly the draws and results of ``step_all_reference``."""
        k = _K or _kernels()
        if k is None:
            return cls.step_all_reference(model)
        pop: TraderPopulation = model.traders
        n = len(pop.accounts)  # len(pop), without the method call
        if n == 0:
            return
        venue, rng = model.venue, model.trader_rng
        led = venue.ledger
        cfg = pop.cfg
        draw = rng.random(n)
        with_stops = cfg.stop_loss is not None or cfg.take_profit is not None
        marks = venue.prices.mark  # ``venue.marks``, read once
        cv = led.contract_values
        idx, acting, acc, equity = k.watched_equity(draw, float(pop.trade_probability), pop.accounts, pop.market,
                                                    with_stops, led.wallet, led.qty, led.cost, marks, cv, led.inverse)
        watched = len(idx)
        if watched == 0:
            return
        trend_sign, reversion_sign = model.signal_signs()
        coin_draw = rng.random(watched)  # _entry_side's draw
        size_draw = rng.uniform(0.5, 1.0, watched)  # _entry_lots' draw
        lots, order_side, close = k.decide(
            idx, acting, equity, coin_draw, size_draw, pop.accounts, pop.market, pop.strategy, pop.leverage,
            pop.isolated, pop.size_share, led.qty, led.cost, marks, cv, venue.leverage,
            trend_sign, reversion_sign,
            float(pop.long_share), float(cfg.position_fraction),
            float(cfg.stop_loss or 0.0), cfg.stop_loss is not None,
            float(cfg.take_profit or 0.0), cfg.take_profit is not None, led.inverse, led.any_inverse)
        send = (lots > 0).nonzero()[0]  # np.flatnonzero of a 1-d array, one call
        if len(send) == 0:
            return
        send = send[rng.permutation(len(send))]  # arrival order
        if len(marks) == 1 and venue.compiled_submit(0):  # gather and submit: one compiled call
            mark = float(marks[0])
            venue.submit_by(0, k.send_decided, (send, acc, order_side, lots, close, int(mark * (1 + _BAND)),
                                                int(mark * (1 - _BAND)), 0))
            return
        _send_orders(venue, send, None if len(marks) == 1 else pop.market[idx], acc, order_side, lots, close)

    @staticmethod
    def warm_up(model) -> None:
        """Load the decision kernels with the types ``step_all`` gives them (this model's
        arrays, no trader selected): a kernel first met inside a timed run would load there."""
        global _WARMED
        k = _kernels()
        if k is None or _WARMED:
            return
        _WARMED = True
        pop: TraderPopulation = model.traders
        venue = model.venue
        led = venue.ledger
        none = np.zeros(0, dtype=np.int64)
        k.watched_equity(np.zeros(0), 0.5, pop.accounts[:0], pop.market[:0], True, led.wallet, led.qty, led.cost,
                         venue.marks, venue.contract_values, led.inverse)
        equity = k.equity_of(led.wallet, led.qty, led.cost, venue.marks, venue.contract_values, none, led.inverse)
        signs = np.zeros(venue.n_markets)
        k.decide(none, np.zeros(0, dtype=bool), equity, np.zeros(0), np.zeros(0), pop.accounts, pop.market,
                 pop.strategy, pop.leverage, pop.isolated, pop.size_share, led.qty, led.cost, venue.marks,
                 venue.contract_values, venue.leverage, signs, signs, 0.5, 0.1, 0.0, False, 0.0, False, led.inverse,
                 led.any_inverse)
        if venue.n_markets == 1 and venue.compiled_submit(0):  # no order: nothing moves
            venue.submit_by(0, k.send_decided, (none, none, none, none, np.zeros(0, dtype=bool), 1, 1, 0))

    @classmethod
    def step_all_reference(cls, model) -> None:
        """``step_all`` in numpy only (the reference the compiled pass is tested against)."""
        pop: TraderPopulation = model.traders
        if len(pop) == 0:
            return
        venue, rng = model.venue, model.trader_rng
        led = venue.ledger
        cfg = pop.cfg
        act = rng.random(len(pop)) < pop.trade_probability
        # only the traders who act this step, plus anyone whose stop-loss/take-profit may fire
        watch = act.copy()
        if cfg.stop_loss is not None or cfg.take_profit is not None:
            watch |= led.qty[pop.accounts, pop.market] != 0
        idx = np.flatnonzero(watch)
        if len(idx) == 0:
            return
        acc, market = pop.accounts[idx], pop.market[idx]
        equity = venue.equity(acc)
        pos = led.qty[acc, market]
        cost = led.cost[acc, market]
        u = venue.value_cash(pos, market, venue.marks[market]) - cost
        margin = np.maximum(np.abs(cost) / pop.leverage[idx], 1)
        has = pos != 0
        stop = np.zeros(len(idx), dtype=bool)
        if cfg.stop_loss is not None:
            stop |= has & (u <= -cfg.stop_loss * margin)
        if cfg.take_profit is not None:
            stop |= has & (u >= cfg.take_profit * margin)
        trend, deviation = model.signals()
        side = _entry_side(pop, idx, rng, trend, deviation)
        acting = act[idx]
        hedger = pop.strategy[idx] == STRATEGIES.index("hedger")
        reverse = acting & has & ~hedger & (np.sign(pos) != side)
        close = (stop | reverse) & (equity > 0)
        opening = acting & ~has & (equity > 0)
        open_lots = _entry_lots(pop, idx, venue, equity, cfg.position_fraction, rng)
        lots = np.where(close, np.abs(pos), np.where(opening, open_lots, 0))
        order_side = np.where(close, -np.sign(pos), side)
        send = np.flatnonzero(lots > 0)
        if len(send) == 0:
            return
        send = send[rng.permutation(len(send))]  # arrival order
        _send_orders(venue, send, market, acc, order_side, lots, close)


#: market orders carry a 10 % price protection
_BAND = 0.1


def _send_orders(venue, send, market, acc, order_side, lots, close) -> None:
    """One batch of market orders per market, in arrival order ``send`` (``market`` per
    order; None on a one-market venue)."""
    band = _BAND
    marks = venue.marks
    for m in range(len(marks)):
        k = send if market is None else send[market[send] == m]
        if len(k) == 0:
            continue
        s = np.asarray(order_side[k], dtype=np.int64)
        # the float limits truncated toward zero, as numpy's astype does
        mark = float(marks[m])
        limit = np.where(s == BUY, int(mark * (1 + band)), int(mark * (1 - band)))
        venue.submit_orders(m, acc[k], s, lots[k], limit, reduce_only=close[k])


def _kernels():
    """The compiled decision pass (``agents._nb_traders``), or None without numba (kept in
    ``_K`` once loaded: ``step_all`` then skips the lookup)."""
    global _K
    _K = kernels.load("agents._nb_traders")
    return _K


def _entry_side(pop: TraderPopulation, idx, rng, trend, deviation) -> np.ndarray:
    """Side the traders ``idx`` would open now: +1 long, -1 short."""
    coin = np.where(rng.random(len(idx)) < pop.long_share, 1, -1)
    t = np.sign(trend[pop.market[idx]])
    d = -np.sign(deviation[pop.market[idx]])
    s = pop.strategy[idx]
    side = np.select(
        [s == 0, s == 1, s == 2, s == 3],
        [np.where(t != 0, t, coin), np.where(d != 0, d, coin), coin, -1],
    )
    return side.astype(np.int64)


def _entry_lots(pop: TraderPopulation, idx, venue, equity, fraction, rng) -> np.ndarray:
    m = pop.market[idx]
    price = venue.lot_cash(m, venue.marks[m])  # cash per lot
    # the trader's leverage, capped by the market's maximum (the venue's setting for the account)
    lev = np.minimum(pop.leverage[idx], venue.leverage[pop.accounts[idx], m])
    # an isolated position uses all the margin posted to it; a cross account a fraction of equity
    # (0.98 leaves room for the taker fee in the initial-margin check)
    use = np.where(pop.isolated[idx], 0.98, fraction) * rng.uniform(0.5, 1.0, len(idx)) * pop.size_share[idx]
    size = np.clip(equity, 0, None) * lev * use
    return np.floor(size / price).astype(np.int64)

