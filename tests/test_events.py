"""Event log: every waterfall event reaches ``EventLog.to_frame()`` with its columns filled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import move_to
from simulator.venue.book import BUY
from simulator.venue.events import COLUMNS, KINDS, EventLog

# columns each kind must fill (the others may hold the defaults -1 / NaN / "")
REQUIRED = {
    "liquidation": ["stage", "account", "market", "qty", "price", "bankruptcy_price"],
    "deficit": ["stage", "account", "amount"],
    "surplus": ["stage", "account", "amount"],
    "fund_payout": ["stage", "account", "amount"],
    "fund_surplus": ["stage", "account", "amount"],
    "takeover": ["stage", "account", "counterparty", "amount"],
    "adl": ["stage", "account", "counterparty", "market", "qty", "price", "bankruptcy_price", "amount", "pnl", "score"],
    "adl_haircut": ["stage", "account", "counterparty", "amount", "weight"],
    "socialize": ["stage", "account", "amount", "weight"],
    "socialize_pending": ["stage", "account", "amount"],
    "venue_loss": ["account", "amount"],
    "unwind": ["account", "market", "qty", "price"],
}


def case(make_venue, waterfall, mark=104, bid=101, fund=0, backstop=0, wallet=700, step=0):
    """L long 100 @ 110 from S (wallet 700); M bids ``bid``; Z holds cash only."""
    v = make_venue(waterfall=waterfall, fund=fund, backstop=backstop)
    v.events.step = step
    L, S, M, Z = (int(i) for i in v.add_accounts(4, "trader", [wallet, 1_400, 2_700, 4_000]))
    v.ledger.trade(0, L, S, 100, 110)
    move_to(v, mark)
    if bid:
        v.post_quotes(0, [M], [BUY], [bid], [100])
    v.liquidate()
    assert v.conservation_residual() == 0
    return v, dict(L=L, S=S, M=M, Z=Z)


def all_event_frames(make_venue):
    frames = []
    # book fill worse than bankruptcy: deficit, part paid by the fund, the rest socialized
    v, a = case(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"}, {"stage": "socialize"}], fund=50, step=1)
    frames.append((v.events.to_frame(), a))
    # fill better than bankruptcy: surplus to the fund
    v, a = case(make_venue, [{"stage": "book"}, {"stage": "insurance_fund"}], bid=105, step=2)
    frames.append((v.events.to_frame(), a))
    # empty book: ADL at bankruptcy (mark 102: equity -100)
    v, a = case(make_venue, [{"stage": "book"}, {"stage": "adl"}], mark=102, bid=None, step=3)
    frames.append((v.events.to_frame(), a))
    # backstop takeover, then the vault unwinds into a bid
    v, a = case(make_venue, [{"stage": "backstop"}], mark=103, bid=None, backstop=10_000, wallet=750, step=4)
    v.post_quotes(0, [a["M"]], [BUY], [102], [100])
    v.unwind_venue_positions()
    frames.append((v.events.to_frame(), a))
    # deferred socialization, then a venue loss when nobody can pay
    v, a = case(make_venue, [{"stage": "book"}, {"stage": "socialize", "when": "settlement"}], step=5)
    v.settle_period()
    frames.append((v.events.to_frame(), a))
    v, a = case(make_venue, [{"stage": "book"}], step=6)
    frames.append((v.events.to_frame(), a))
    return frames


def test_every_waterfall_event_kind_is_in_the_frame_with_its_columns(make_venue):
    seen = set()
    for df, acc in all_event_frames(make_venue):
        assert list(df.columns) == list(COLUMNS)
        for col, dtype in COLUMNS.items():
            if dtype is object:
                assert pd.api.types.is_string_dtype(df[col]), col
            else:
                assert df[col].dtype == np.dtype(dtype), col
        assert df.step.nunique() == 1 and df.step.iloc[0] >= 1  # the log's step is stamped
        for kind, cols in REQUIRED.items():
            rows = df[df.kind == kind]
            if not len(rows):
                continue
            seen.add(kind)
            for col in cols:
                vals = rows[col]
                if COLUMNS[col] is object:
                    assert (vals != "").all(), (kind, col)
                elif COLUMNS[col] is float:
                    assert vals.notna().all(), (kind, col)
                else:
                    assert (vals != -1).all() or col in ("qty", "amount", "pnl"), (kind, col)
            if kind in ("deficit", "surplus", "fund_payout", "fund_surplus", "socialize", "socialize_pending",
                        "venue_loss"):
                assert (rows.amount > 0).all(), kind
        # the liquidated account is L in every liquidation row
        liq = df[df.kind == "liquidation"]
        assert set(liq.account) <= {acc["L"]}
    assert seen == set(REQUIRED)


def test_event_rows_carry_the_right_accounts(make_venue):
    v, a = case(make_venue, [{"stage": "book"}, {"stage": "adl"}], mark=102, bid=None)
    df = v.events.to_frame()
    adl = df[df.kind == "adl"].iloc[0]
    # the deleveraged counterparty is S (the only short), the case L; S buys 100 at L's
    # bankruptcy price 103 (recorded as the fill price; the ledger trades at mark 102 and moves
    # the 100 of negative equity in cash)
    assert (adl.account, adl.counterparty, adl.qty, adl.price) == (a["S"], a["L"], 100, 103.0)
    assert (adl.reason, adl.rank_quantile) == ("fund_empty", 1.0)
    # S's unrealised PnL on the closed lots at mark: 100 x (110 - 102) = 800
    assert adl.pnl == 800
    cut = df[df.kind == "adl_haircut"].iloc[0]
    assert (cut.account, cut.counterparty, cut.amount, cut.weight) == (a["S"], a["L"], 100, 1.0)
    # bankruptcy price of the case (11,000 - 700)/100 = 103 on its rows
    assert df[df.kind == "liquidation"].bankruptcy_price.tolist() == [103.0]


def test_add_broadcasts_and_validates():
    log = EventLog()
    log.step, log.round = 7, 2
    log.add("socialize", account=np.array([1, 2, 3]), amount=np.array([5, 6, 7]), stage="socialize", weight=0.5)
    log.add("venue_loss", account=np.zeros(0, dtype=np.int64), amount=np.zeros(0, dtype=np.int64))  # nothing
    log.add("adl", account=np.zeros(0, dtype=np.int64), market=0, price=1.0)  # empty array + scalars: nothing
    assert len(log) == 3 and log.count("socialize") == 3 and log.count("venue_loss") == 0
    df = log.to_frame()
    assert df.step.tolist() == [7, 7, 7] and df["round"].tolist() == [2, 2, 2]
    assert df.weight.tolist() == [0.5] * 3 and df.market.tolist() == [-1] * 3
    with pytest.raises(ValueError):
        log.add("bailout", account=1)
    with pytest.raises(ValueError):
        log.add("deficit", acount=1)
    empty = EventLog().to_frame()
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0
    assert set(REQUIRED) <= set(KINDS)


def test_frame_is_built_once_and_each_caller_gets_an_independent_copy():
    log = EventLog()
    log.add("deficit", stage="book", account=3, amount=40)
    a = log.to_frame()
    b = log.to_frame()
    assert log._frame is not None and a is not b
    a.loc[0, "amount"] = 999  # a caller editing its frame changes no one else's
    assert b["amount"].tolist() == [40] and log.to_frame()["amount"].tolist() == [40]
    log.step = 1
    log.add("venue_loss", account=5, amount=10)  # a new event: the frame is rebuilt
    c = log.to_frame()
    assert c["kind"].tolist() == ["deficit", "venue_loss"] and c["step"].tolist() == [0, 1]
