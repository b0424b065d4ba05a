"""Auto-deleveraging: every ranking on one hand-built ledger, ADL prices, and the allocators.

The ledger (contract value 1, maintenance 1 %, mark 80 after a fall from 100):

    account  position      wallet  U at 80          equity  notional  MM
    A        short 4 @ 81     10   324 - 320 =   4      14       320    4
    B        short 6 @ 120   100   720 - 480 = 240     340       480    5
    C        short 5 @ 100  1000   500 - 400 = 100    1100       400    4
    D        short 5 @ 75     60   375 - 400 = -25      35       400    4
    F        long 20 - n     1e6   (filler long: the shorts sold to F; not a candidate)
    L        long n @ 100    120n/7 (the case: n = 7 -> wallet 120, equity 120 + 560 - 700 = -20)

Scores at mark 80 (higher first):

    pnl_x_leverage  PnL% = U/|cost|, EffLev = notional/equity; PnL% x EffLev if PnL% > 0 else PnL%/EffLev
        A 4/324 x 320/14 = 0.2822   B 240/720 x 480/340 = 0.4706   C 0.2 x 400/1100 = 0.0727
        D (-25/375) / (400/35) = -0.0058                         -> B, A, C, D
    binance  max(0,U)/max(1,wallet) x MM/equity
        A 4/10 x 4/14 = 0.1143   B 240/100 x 5/340 = 0.0353   C 0.1 x 4/1100 = 0.0004   D 0
                                                                 -> A, B, C, D
    hyperliquid  (entry/mark for a short) x notional/equity
        A 81/80 x 320/14 = 23.14   B 1.5 x 480/340 = 2.12   C 1.25 x 400/1100 = 0.45
        D 75/80 x 400/35 = 10.71                                 -> A, D, B, C

With n = 7 lots to close, bankruptcy price P_b = (700 - 120)/7 = 82.857: each lot closed costs its
counterparty 2.857 above mark; the 20 of deficit is split by the notional closed at mark (lots x 80)
with the largest-remainder method.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import move_to
from simulator.venue.adl import allocate_max_leverage, allocate_pro_rata, allocate_queue, scores


def build(make_venue, waterfall, n=7, seed=0, fund=0, prev_mark=None):
    v = make_venue(waterfall=waterfall, seed=seed, fund=fund)
    A, B, C, D = (int(x) for x in v.add_accounts(4, "trader", [10, 100, 1_000, 60]))
    F, L = (int(x) for x in v.add_accounts(2, "trader", [10**6, 120 * n // 7]))
    for acc, lots, entry in ((A, 4, 81), (B, 6, 120), (C, 5, 100), (D, 5, 75)):
        v.ledger.trade(0, F, acc, lots, entry)
    v.ledger.trade(0, L, F, n, 100)
    if prev_mark is not None:
        move_to(v, prev_mark)
    move_to(v, 80)
    return v, dict(A=A, B=B, C=C, D=D, F=F, L=L)


def adl_result(v, acc, qty_before):
    """(victims in queue order, lots taken per victim, haircut paid per victim) by letter."""
    name = {i: k for k, i in acc.items()}
    ev = v.events.to_frame()
    adl = ev[ev.kind == "adl"]
    order = [name[a] for a in adl.account]
    taken = {name[a]: int(qty_before[a] - v.ledger.qty[a, 0]) * -1 for a in adl.account}
    cut = ev[ev.kind == "adl_haircut"]
    paid = {name[a]: int(x) for a, x in zip(cut.account, cut.amount)}
    return order, taken, paid


CASES = [
    # ranking, n, victims in order, lots taken, haircut paid (largest remainder of 20 by lots x 80)
    # B 6 @ 480, A 1 @ 80 (total 560): 20*480/560 = 17.14, 20*80/560 = 2.86 -> 17, 2 + 1 -> 17, 3
    ("pnl_x_leverage", 7, ["B", "A"], {"B": 6, "A": 1}, {"B": 17, "A": 3}),
    # A 4 @ 320, B 3 @ 240: 11.43, 8.57 -> 11, 8 + 1 to B (0.57 > 0.43) -> 11, 9
    ("binance", 7, ["A", "B"], {"A": 4, "B": 3}, {"A": 11, "B": 9}),
    # Hyperliquid ranks only positions in profit: D (U = -25) is out; A 23.14, B 2.12, C 0.45
    # -> A 4, B 3: 11, 9 as for binance
    ("hyperliquid", 7, ["A", "B"], {"A": 4, "B": 3}, {"A": 11, "B": 9}),
    # profitable A 4, B 6, C 5 (15 lots), 7 to take: 1.87, 2.8, 2.33 -> 1, 2, 2 + 2 units to the
    # largest remainders A (0.87) and B (0.8) -> A 2, B 3, C 2; D (a loser) untouched.
    # Listed by PnL%: B 0.33, C 0.2, A 0.012. Haircuts: 240 -> 8.57, 160 -> 5.71, 160 -> 5.71
    # -> 8, 5, 5 + 2 -> 8, 6, 6
    ("pro_rata", 7, ["B", "C", "A"], {"B": 3, "C": 2, "A": 2}, {"B": 8, "C": 6, "A": 6}),
    # leverage lots x 80 / equity: A 22.9, D 11.4, B 1.41, C 0.36. Water level L with
    # (4 - L x 14/80) + (5 - L x 35/80) = 7 -> L = 3.27 (above B's 1.41, so B, C untouched):
    # ideal A 3.43, D 3.57 -> 3, 3 and the last lot to the higher leverage left: A (1 x 80/14 =
    # 5.7 vs D 2 x 80/35 = 4.6) -> A 4, D 3
    ("max_leverage", 7, ["A", "D"], {"A": 4, "D": 3}, {"A": 11, "D": 9}),
    # n = 6 (deficit 120*6//7 = 102 wallet: 102 + 480 - 600 = -18): 9 - 0.6125 L = 6 -> L = 4.9:
    # ideal A 3.14, D 2.86 -> 3, 2, last lot to D (3 x 80/35 = 6.9 vs A 1 x 80/14 = 5.7) -> A 3, D 3;
    # haircut 18 over 240, 240 -> 9, 9
    ("max_leverage", 6, ["A", "D"], {"A": 3, "D": 3}, {"A": 9, "D": 9}),
]


@pytest.mark.parametrize("ranking, n, victims, lots, haircut", CASES)
def test_adl_ranking_by_hand(make_venue, ranking, n, victims, lots, haircut):
    v, acc = build(make_venue, [{"stage": "adl", "ranking": ranking, "price": "bankruptcy"}], n=n)
    deficit = -int(v.equity()[acc["L"]])
    assert deficit == (20 if n == 7 else 18)
    before = v.ledger.qty[:, 0].copy()
    assert v.liquidate() == 1
    order, taken, paid = adl_result(v, acc, before)
    assert order == victims
    assert taken == lots
    assert paid == haircut
    # at the bankruptcy price the case ends at exactly zero and the counterparties paid exactly
    # its deficit
    assert v.ledger.qty[acc["L"], 0] == 0 and v.equity()[acc["L"]] == 0
    assert sum(paid.values()) == deficit
    ev = v.events.to_frame()
    assert ev[ev.kind == "deficit"].amount.tolist() == [deficit]
    assert not (ev.kind == "venue_loss").any()
    # the untouched accounts kept their positions
    for k in "ABCD":
        if k not in lots:
            assert v.ledger.qty[acc[k], 0] == before[acc[k]]
    assert v.conservation_residual() == 0
    assert v.ledger.qty.sum(axis=0).tolist() == [0]


def test_adl_records_leverage_after_and_the_profitable_side(make_venue):
    # pnl_x_leverage takes B's 6 lots and 1 of A's: A keeps short 3 @ 81 with wallet
    # 10 + 1 (realised) - 3 (haircut) = 8, equity 8 + (243 - 240) = 11, leverage 240 / 11;
    # B is flat. The ranked side held 3 positions in profit (A, B, C; D loses): 2 of 3 hit.
    v, acc = build(make_venue, [{"stage": "adl"}])
    v.liquidate()
    assert v.adl_leverage_after == pytest.approx(240 / 11)
    assert v.adl_profitable.nonzero()[0].tolist() == sorted(acc[k] for k in "ABC")


def test_scores_match_the_hand_table(make_venue):
    v, acc = build(make_venue, [{"stage": "adl"}])
    c = np.array([acc[k] for k in "ABCD"])
    led = v.ledger
    kw = dict(qty=led.qty[c, 0], cost=led.cost[c, 0], wallet=led.wallet[c], equity=v.equity()[c], mark=80, cv=1,
              mm=v.maintenance()[c].sum(axis=1), cash_per_usd=1.0, rng=None)
    assert scores("pnl_x_leverage", **kw) == pytest.approx(
        [4 / 324 * 320 / 14, 240 / 720 * 480 / 340, 100 / 500 * 400 / 1100, (-25 / 375) / (400 / 35)])
    assert scores("binance", **kw) == pytest.approx([4 / 10 * 4 / 14, 240 / 100 * 5 / 340, 100 / 1000 * 4 / 1100, 0])
    assert scores("hyperliquid", **kw) == pytest.approx(
        [81 / 80 * 320 / 14, 120 / 80 * 480 / 340, 100 / 80 * 400 / 1100, 75 / 80 * 400 / 35])
    with pytest.raises(ValueError):
        scores("pro_rata", **kw)


def expected_random_queue(seed):
    # dYdX v4 (deleveraging.go): a pseudo-random start among the opposite side, then in order
    # (ledger order A, B, C, D here), wrapping around; one draw from the venue's rng.
    start = int(np.random.default_rng(seed).integers(4))
    return ["ABCD"[(start + i) % 4] for i in range(4)]


def random_run(make_venue, seed):
    v, acc = build(make_venue, [{"stage": "adl", "ranking": "random"}], seed=seed)
    before = v.ledger.qty[:, 0].copy()
    v.liquidate()
    assert v.equity()[acc["L"]] == 0 and v.conservation_residual() == 0
    return adl_result(v, acc, before)


def test_random_ranking_follows_the_venue_rng(make_venue):
    sizes = {"A": 4, "B": 6, "C": 5, "D": 5}
    orders = {}
    for seed in range(8):
        order, taken, _ = random_run(make_venue, seed)
        queue = expected_random_queue(seed)
        # walk the queue taking whole positions until 7 lots
        want, left = {}, 7
        for k in queue:
            if left == 0:
                break
            want[k] = min(sizes[k], left)
            left -= want[k]
        assert order == list(want) and taken == want
        assert random_run(make_venue, seed)[0] == order  # same seed, same order
        orders[seed] = tuple(order)
    assert len(set(orders.values())) > 1  # another seed, another order


def test_adl_at_mark_leaves_the_deficit_for_the_next_stage(make_venue):
    # the fund holds 10 of the 20 deficit: it cannot pay, so ADL (at mark) fires first
    v, acc = build(make_venue, [{"stage": "adl", "price": "mark"}, {"stage": "insurance_fund"}], fund=10)
    v.liquidate()
    # L sold its 7 lots at 80: wallet 120 + 560 - 700 = -20; the fund pays its 10, the venue 10
    ev = v.events.to_frame()
    assert not (ev.kind == "adl_haircut").any()
    assert ev[ev.kind == "adl"].amount.tolist() == [0, 0]  # filled at mark: no haircut vs mark
    assert ev[ev.kind == "adl"].reason.tolist() == ["fund_empty", "fund_empty"]
    assert ev[ev.kind == "deficit"].amount.tolist() == [20]
    assert ev[ev.kind == "fund_payout"].amount.tolist() == [10]
    assert ev[ev.kind == "venue_loss"].amount.tolist() == [10]
    covers = ev[ev.kind == "cover"]
    assert dict(zip(covers.stage, covers.amount)) == {"insurance_fund": 10, "venue": 10}
    assert v.ledger.wallet[v.insurance_fund] == 0
    assert v.equity()[acc["L"]] == 0
    # the deleveraged shorts closed at mark: B's 6 lots realised 6 x (120 - 80) = 240
    assert v.ledger.wallet[acc["B"]] == 100 + 240
    assert v.conservation_residual() == 0


def test_adl_at_mark_with_no_stage_after_is_a_venue_loss(make_venue):
    v, acc = build(make_venue, [{"stage": "adl", "price": "mark"}])
    v.liquidate()
    ev = v.events.to_frame()
    assert ev[ev.kind == "venue_loss"].amount.tolist() == [20]
    assert v.ledger.injections == 20
    assert v.conservation_residual() == 0


def test_adl_at_previous_mark(make_venue):
    # Hyperliquid: fills at the previous mark (85 here, mark now 80). L sells 7 @ 85:
    # wallet 120 + 7 x 85 - 700 = 15 left (its surplus). B (6 lots) and A (1 lot) buy 5 above
    # mark: the haircut vs mark recorded on the adl rows is 30 and 5.
    v, acc = build(make_venue, [{"stage": "adl", "price": "previous_mark"}], prev_mark=85)
    assert v.prices.previous_mark.tolist() == [85] and v.marks.tolist() == [80]
    v.liquidate()
    ev = v.events.to_frame()
    adl = ev[ev.kind == "adl"]
    assert adl.price.tolist() == [85.0, 85.0]
    assert dict(zip(adl.account, adl.amount)) == {acc["B"]: 30, acc["A"]: 5}
    assert v.ledger.wallet[acc["L"]] == 15
    # at mark L was 20 short (120 + 7 x 80 - 700): that is its deficit, which the price
    # haircut (35) covered, leaving 15 over as a surplus
    assert ev[ev.kind == "deficit"].amount.tolist() == [20]
    assert ev[ev.kind == "surplus"].amount.tolist() == [15]
    assert v.conservation_residual() == 0


def test_adl_never_touches_accounts_without_a_position(make_venue):
    # Hyperliquid's invariant: a rich account with no open position never shares the loss
    v, acc = build(make_venue, [{"stage": "adl"}])
    z = int(v.add_accounts(1, "trader", 10**6)[0])
    v.liquidate()
    assert v.ledger.wallet[z] == 10**6
    ev = v.events.to_frame()
    assert z not in set(ev.account) | set(ev.counterparty)


def test_the_backstop_vault_is_in_the_adl_queue(make_venue):
    # the only short is the backstop vault: it is deleveraged like anyone (L at 50: equity
    # 10 + 500 - 1,000 = -490, which the vault pays at the bankruptcy price)
    v = make_venue(waterfall=[{"stage": "adl"}], backstop=10**6)
    L = int(v.add_accounts(1, "trader", 10)[0])
    v.ledger.trade(0, L, v.backstop, 10, 100)
    move_to(v, 50)
    assert v.liquidate() == 1
    assert v.ledger.qty[[L, v.backstop], 0].tolist() == [0, 0]
    ev = v.events.to_frame()
    assert ev[ev.kind == "adl_haircut"].amount.tolist() == [490]
    # the vault realises its short's profit 10 x (100 - 50) = 500 and pays the 490
    assert v.ledger.wallet[v.backstop] == 10**6 + 500 - 490
    assert v.conservation_residual() == 0


def test_with_no_counterparty_the_engine_closes_the_case_and_the_venue_pays(make_venue):
    # the only short is the venue's liquidation engine (never deleveraged): ADL cannot close L,
    # so the engine takes it at mark 50 (netting its own short) and the -490 is the venue's loss
    v = make_venue(waterfall=[{"stage": "adl"}])
    L = int(v.add_accounts(1, "trader", 10)[0])
    v.ledger.trade(0, L, v.engine, 10, 100)
    move_to(v, 50)
    assert v.liquidate() == 1
    assert v.ledger.qty[[L, v.engine], 0].tolist() == [0, 0]
    ev = v.events.to_frame()
    assert not (ev.kind == "adl").any()
    assert ev[ev.kind == "liquidation"].stage.tolist() == ["engine"]
    assert ev[ev.kind == "venue_loss"].amount.tolist() == [490]
    assert v.ledger.injections == 490 and v.conservation_residual() == 0


def test_adl_does_not_deleverage_other_cases(make_venue):
    # two cases on opposite sides in the same round only have each other: no ADL between them.
    # X long 10 @ 100 (wallet 5) vs Y short 10 @ 100 (wallet 5): at mark 100 neither is bankrupt,
    # but at 1 % MM both are below maintenance (5 < 10).
    v = make_venue(waterfall=[{"stage": "adl"}])
    X, Y = (int(i) for i in v.add_accounts(2, "trader", 5))
    v.ledger.trade(0, X, Y, 10, 100)
    move_to(v, 100)
    assert v.liquidatable()[[X, Y]].tolist() == [True, True]
    v.liquidate()
    assert v.ledger.qty[[X, Y], 0].tolist() == [10, -10]
    assert v.conservation_residual() == 0


def test_partial_adl_moves_the_closed_share_of_equity_exactly_even_at_real_notionals(make_venue):
    # BTC-PERP units (cv = 100 micro-USD per lot-tick): L long 10,000 lots (10 BTC) @ 100,000 USD,
    # half bought from the engine (not ADL-able), half from trader S. Mark 89,000 USD:
    # L's equity = 1e11 + 1e4 x (890,000 - 1,000,000) x 100 = 1e11 - 1.1e11 = -1e10 (-10,000 USD).
    # ADL closes S's half (5,000 lots); at bankruptcy S pays half the deficit: exactly 5e9. The
    # engine takes the other half at mark and the other 5e9 is the venue's loss.
    from simulator.venue.market import MarketSpec

    v = make_venue(waterfall=[{"stage": "adl"}], markets=[MarketSpec()])
    L, S = (int(i) for i in v.add_accounts(2, "trader", [10**11, 10**13]))
    v.ledger.trade(0, L, v.engine, 5_000, 1_000_000)
    v.ledger.trade(0, L, S, 5_000, 1_000_000)
    v.set_index([89_000.0])
    v.update_marks()
    assert int(v.equity()[L]) == -10**10
    v.liquidate()
    ev = v.events.to_frame()
    assert ev[ev.kind == "adl_haircut"].amount.tolist() == [5 * 10**9]
    assert ev[ev.kind == "deficit"].amount.tolist() == [10**10]
    covers = ev[ev.kind == "cover"]
    assert dict(zip(covers.stage, covers.amount)) == {"adl": 5 * 10**9, "venue": 5 * 10**9}
    assert int(v.equity()[L]) == 0 and v.ledger.qty[L, 0] == 0
    assert v.conservation_residual() == 0


# ------------------------------------------------------------- allocators
def test_allocate_queue_takes_whole_positions_down_the_queue():
    # scores 0.5, 0.9, 0.1, 0.9 -> queue 1, 3 (tie: earlier position first), 0, 2
    take = allocate_queue(np.array([0.5, 0.9, 0.1, 0.9]), np.array([4, 3, 5, 2]), 7)
    assert take.tolist() == [2, 3, 0, 2]
    assert allocate_queue(np.array([1.0, 2.0]), np.array([1, 1]), 5).tolist() == [1, 1]


def test_allocate_pro_rata_falls_back_to_losers_only_when_winners_run_out():
    lots = np.array([4, 6, 5, 10])
    profitable = np.array([True, True, False, False])
    # winners hold 10: 8 of them by 4:6 -> 3.2, 4.8 -> 3, 4 + 1 to the larger remainder (0.8) -> 3, 5
    assert allocate_pro_rata(lots, profitable, 8).tolist() == [3, 5, 0, 0]
    # 13 needed: all 10 winner lots, then 3 from the losers by 5:10 -> 1, 2
    assert allocate_pro_rata(lots, profitable, 13).tolist() == [4, 6, 1, 2]


def test_allocate_max_leverage_cuts_broke_accounts_first():
    lots = np.array([5, 3, 10])
    equity = np.array([-5, 100, 100])
    # the broke account goes first and entirely (5); the other 3 lots: leverages 3 x 10/100 = 0.3
    # and 10 x 10 / 100 = 1.0 -> cut the second until its leverage is 0.7 (3 lots) -> [5, 0, 3]
    assert allocate_max_leverage(lots, equity, 10.0, 8).tolist() == [5, 0, 3]
    # equal equity and lots: level cut shared, the odd lot to the first
    assert allocate_max_leverage(np.array([4, 4]), np.array([10, 10]), 1.0, 3).tolist() in ([2, 1], [1, 2])
    assert allocate_max_leverage(np.array([4, 4]), np.array([10, 10]), 1.0, 3).sum() == 3


# ------------------------------------------------------------------ profit_bands (issue 11)
# The hand ledger above, marks 100 then 80 (running high 100, low 80). PnL% over the whole
# opposite side: A 4/324 = 0.0123, B 240/720 = 0.3333, C 100/500 = 0.2, D -25/375 = -0.0667.
#   percentile 0.5: linear median of the four = (0.0123 + 0.2)/2 = 0.106 -> band {B, C};
#     by lowest effective leverage C 400/1100 = 0.36, B 480/340 = 1.41; then the rest of the
#     profitable side: A (22.9); D (a loser) last and never taken. Queue C, B, A, D.
#     7 lots: C 5, B 2; haircut 20 by lots x 80 (400, 160): 14.29, 5.71 -> 14, 5 + 1 to B -> 14, 6
#   percentile 0.9: 0.2 + 0.7 x (0.3333 - 0.2) = 0.293 -> band {B}: too little (6 lots), the
#     rest of the profitable side by leverage: C, A. 7 lots: B 6, C 1; haircut by 480, 80:
#     17.14, 2.86 -> 17, 2 + 1 to C -> 17, 3
@pytest.mark.parametrize("percentile, victims, lots, haircut, quantiles", [
    (0.5, ["C", "B"], {"C": 5, "B": 2}, {"C": 14, "B": 6}, [1.0, 0.75]),
    (0.9, ["B", "C"], {"B": 6, "C": 1}, {"B": 17, "C": 3}, [1.0, 0.75]),
])
def test_profit_bands_by_hand(make_venue, percentile, victims, lots, haircut, quantiles):
    wf = [{"stage": "adl", "ranking": "profit_bands", "profit_percentile": percentile}]
    v, acc = build(make_venue, wf, prev_mark=100)
    assert (int(v.prices.mark_high[0]), int(v.prices.mark_low[0])) == (100, 80)
    before = v.ledger.qty[:, 0].copy()
    assert v.liquidate() == 1
    order, taken, paid = adl_result(v, acc, before)
    assert (order, taken, paid) == (victims, lots, haircut)
    assert v.equity()[acc["L"]] == 0 and v.conservation_residual() == 0
    ev = v.events.to_frame()
    # the queue quantile of the new order: 4 ranked (D too), front = 1, second = 0.75
    assert ev[ev.kind == "adl"].rank_quantile.tolist() == quantiles
    assert v.ledger.qty[acc["D"], 0] == before[acc["D"]]


def test_profit_bands_ties_go_to_the_entry_nearest_the_momentum_peak():
    # two shorts, same group (percentile 0: both in the band), same leverage 160/80 = 2;
    # running high 100: entries 90 (distance 0.10) and 98 (0.02) -> the one at 98 first
    kw = dict(qty=np.array([-2, -2]), cost=np.array([-180, -196]), wallet=None, equity=np.array([80, 80]),
              mark=80, cv=1, mm=None, cash_per_usd=1.0, rng=None, percentile=0.0, mark_high=100.0, mark_low=80.0)
    assert scores("profit_bands", **kw).tolist() == [1.0, 2.0]
    # a higher leverage loses the tie-break's privilege: lowest leverage first
    kw["equity"] = np.array([80, 40])
    assert scores("profit_bands", **kw).tolist() == [2.0, 1.0]


def test_profit_bands_never_deleverages_a_losing_position(make_venue):
    # n = 7 but only D (a loser, 5 lots) and A (4 lots, in profit) are short: A goes, D stays;
    # the 3 lots left are the engine's (venue loss)
    v = make_venue(waterfall=[{"stage": "adl", "ranking": "profit_bands"}])
    A, D, F, L = (int(x) for x in v.add_accounts(4, "trader", [10, 60, 10**6, 120]))
    v.ledger.trade(0, F, A, 4, 81)
    v.ledger.trade(0, F, D, 5, 75)
    v.ledger.trade(0, L, F, 7, 100)
    move_to(v, 80)
    v.liquidate()
    assert v.ledger.qty[A, 0] == 0 and v.ledger.qty[D, 0] == -5
    assert v.conservation_residual() == 0
