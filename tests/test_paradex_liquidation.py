"""Paradex's partial liquidation (``insurance_fund`` with ``takeover_share_step``), on the docs'
own example (docs.paradex.trade, risk-system/liquidations).

Alice: long 0.1 BTC from 60,000 and short 1 ETH from 3,000 with 1,000 USDC; marks 54,800 and
3,400; maintenance 1 %. Unrealised -520 - 400 = -920, account value 80 < MMR 54.80 + 34 = 88.80.
Cash unit: one cent. BTC lot 0.01 (cv 1: 10 lots at 54,800 = 548,000 cents), ETH lot 0.1 (cv 10).

For a share s the predicted MMR is (1 - s) x 88.80, the penalty s x fee x 88.80 and the margin
ratio (1 - s) x 88.80 / (80 - penalty); the share is the smallest multiple of 20 % with a ratio
below 90 %. The docs' table uses a fee of 50 % (20 %: 71.04 / 71.12 = 99.9 %; 40 %: penalty
17.76, 53.28 / 62.24 = 85.6 % -> 40 %) while its text sets the fee at 70 %; both are checked.
"""

from __future__ import annotations

from simulator.venue.margin import MarginTiers
from simulator.venue.market import MarketSpec


def _market(name, lot):
    return MarketSpec(name=name, tick_size=1.0, lot_size=lot, cash_unit=0.01, max_leverage=100.0,
                      taker_fee_ppm=0, maker_fee_ppm=0, tiers=MarginTiers((0,), (10_000,)))


def _alice(make_venue, fee, wf=None):
    wf = wf or [{"stage": "insurance_fund", "takeover": True, "surplus_policy": "none",
                 "takeover_share_step": 0.2, "takeover_target_ratio": 0.9, "takeover_penalty": fee}]
    v = make_venue(waterfall=wf, markets=[_market("BTC", 0.01), _market("ETH", 0.1)], fund=1_000_000)
    alice, bob = (int(a) for a in v.add_accounts(2, "trader", [100_000, 10_000_000]))
    v.ledger.trade(0, alice, bob, 10, 60_000)   # Alice long 0.1 BTC
    v.ledger.trade(1, bob, alice, 10, 3_000)    # Alice short 1 ETH
    v.set_index([54_800, 3_400])
    v.update_marks()
    assert v.equity()[alice] == 8_000 and v.maintenance()[alice].sum() == 8_880
    return v, alice


def test_the_docs_table_fee_50_takes_40_percent(make_venue):
    v, alice = _alice(make_venue, 0.5)
    fund0 = int(v.equity()[v.insurance_fund])
    v.liquidate()
    led = v.ledger
    # long 0.06 BTC and short 0.6 ETH left
    assert led.qty[alice].tolist() == [6, -6]
    # realised 40 % x -920 = -368 and paid 17.76: 1,000 - 368 - 17.76 = 614.24
    assert led.wallet[alice] == 61_424
    # equity 62.24, MMR 53.28: ratio 85.6 %, healthy again
    assert v.equity()[alice] == 6_224 and v.maintenance()[alice].sum() == 5_328
    assert not v.liquidatable()[alice]
    # the fund holds the 40 % at mark and received the penalty
    assert led.qty[v.insurance_fund].tolist() == [4, -4]
    assert int(v.equity()[v.insurance_fund]) - fund0 == 1_776
    assert v.conservation_residual() == 0


def test_the_docs_rule_fee_70_takes_60_percent(make_venue):
    # 20 %: penalty 12.432 -> 1,243 cents, ratio 7,104 / 6,757 > 90 %; 40 %: penalty 2,486,
    # 5,328 / 5,514 = 96.6 %; 60 %: penalty 0.6 x 0.7 x 8,880 = 3,729.6 -> 3,729 (floor),
    # MMR 3,552 / equity 4,271 = 83.2 % < 90 %
    v, alice = _alice(make_venue, 0.7)
    v.liquidate()
    assert v.ledger.qty[alice].tolist() == [4, -4]
    assert v.equity()[alice] == 8_000 - 3_729
    assert v.maintenance()[alice].sum() == 3_552
    assert v.conservation_residual() == 0


def test_a_full_share_takes_every_position_and_leaves_the_rest_of_the_equity(make_venue):
    # steps of 50 % and a 1 % target: at 50 % the ratio is 44.40 / (80 - 31.08) = 91 %; at 100 %
    # the MMR is 0 (ratio 0): the fund takes all positions and the penalty 0.7 x 88.80 = 62.16,
    # Alice keeps 80 - 62.16 = 17.84
    wf = [{"stage": "insurance_fund", "takeover": True, "surplus_policy": "none",
           "takeover_share_step": 0.5, "takeover_target_ratio": 0.01, "takeover_penalty": 0.7}]
    v, alice = _alice(make_venue, 0.7, wf)
    v.liquidate()
    assert v.ledger.qty[alice].tolist() == [0, 0]
    assert v.ledger.wallet[alice] == 8_000 - 6_216
    assert v.conservation_residual() == 0
