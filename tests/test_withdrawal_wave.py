"""Withdrawal waves (a scripted bank run) in the model, and the bundled ``bank_run`` scenario."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from golden_runs import ROOT, SMALL
from simulator.experiments import run
from simulator.world.model import SERIES, PerpModel
from simulator.world.scenario import WithdrawalWave

CALM = {"agents.traders.count": 60, "steps": 40}


def calm(**extra):
    return run.load_scenario(ROOT / "scenarios/calm.yaml", {**CALM, **extra})


def test_wave_draws_from_its_own_stream_and_changes_nothing_before_it():
    """A wave at the last step: every series and event before it is identical to the run
    without it (the other streams are untouched), and the rows that withdraw are exactly those
    whose draw from the seventh child of the run's SeedSequence is below ``share``."""
    plain = run.run_scenario(calm())
    waved = run.run_scenario(calm(shocks=[{"kind": "withdrawal_wave", "step": 39, "share": 0.5}]))
    again = run.run_scenario(calm(shocks=[{"kind": "withdrawal_wave", "step": 39, "share": 0.5}]))
    before = lambda r: r.timeseries.loc[r.timeseries.step < 39, list(SERIES)]  # noqa: E731
    pd.testing.assert_frame_equal(before(plain), before(waved))
    ev0, ev1 = plain.events, waved.events
    assert ev0[ev0.step < 39].astype(str).values.tolist() == ev1[ev1.step < 39].astype(str).values.tolist()
    pd.testing.assert_frame_equal(waved.events, again.events)

    w = ev1[ev1.kind == "withdrawal"]
    assert len(w) > 0 and (w.step == 39).all() and (w.weight == 0).all()  # no withdrawal factor in calm
    model = PerpModel(calm())
    rows = np.flatnonzero(model.venue.ledger.kind == "trader")
    stream = np.random.default_rng(np.random.SeedSequence(1).spawn(7)[6])  # calm's seed is 1
    chosen = set(rows[stream.random(len(rows)) < 0.5].tolist())
    assert set(w.account.tolist()) <= chosen
    assert waved.summary["withdrawn"] == pytest.approx(w.amount.sum() * 1e-6)


def test_each_row_takes_its_share_of_free_collateral():
    """share 1: every trader row withdraws floor(0.5 x min(wallet, equity - initial margin));
    a row without free collateral withdraws nothing. The ledger counts exactly that."""
    model = PerpModel(calm())
    for _ in range(10):
        model.step()
    v = model.venue
    rows = np.flatnonzero(v.ledger.kind == "trader")
    im = v.initial()[rows].sum(axis=1)
    free = np.minimum(v.ledger.wallet[rows], v.equity(rows) - im)
    want = {int(a): int(f) // 2 for a, f in zip(rows, free) if int(f) // 2 > 0}
    before = v.ledger.withdrawals
    took = model.withdrawal_wave(WithdrawalWave(kind="withdrawal_wave", step=10, share=1.0, fraction=0.5))
    ev = v.events.to_frame().query("kind == 'withdrawal'")
    assert dict(zip(ev.account.tolist(), ev.amount.tolist())) == want
    assert set(took.tolist()) == set(want)
    assert v.ledger.withdrawals - before == sum(want.values())
    # what is left covers the initial margin of every withdrawer's positions
    took = np.array(sorted(want))
    assert (v.equity(took) >= v.initial()[took].sum(axis=1)).all()
    assert v.conservation_residual() == 0


@pytest.fixture(scope="module")
def bank_run():
    sc = run.load_scenario(ROOT / "scenarios/bank_run.yaml", SMALL)
    return run.run_scenario(sc)


def test_bank_run_withdrawals_pay_the_factor_and_the_rest_stays_outstanding(bank_run):
    s, ev = bank_run.summary, bank_run.events
    assert s["deficit_total"] > s["fund_start"]  # the fund cannot pay: the loss pool fronts the rest
    assert s["venue_loss"] == 0
    w = ev[ev.kind == "withdrawal"]
    assert set(w.step) == {340, 460}
    haircut = ev[(ev.kind == "socialize") & (ev.reason == "withdrawal_factor")]
    # each withdrawal paid the published factor: haircut / (paid out + haircut), up to the
    # rounding of one cash unit in the venue's favour
    both = haircut.merge(w, on=["step", "account"], suffixes=("_cut", "_paid"))
    assert len(both) == len(haircut) > 0
    gross = both.amount_cut + both.amount_paid
    assert (both.amount_cut >= both.weight_cut * gross - 1e-6).all()
    assert (both.amount_cut <= both.weight_cut * gross + 1).all()
    assert np.allclose(both.weight_paid, both.amount_cut / gross)
    assert s["withdrawal_haircut"] == pytest.approx(s["covered_socialize"]) and s["withdrawal_haircut"] > 0
    # nobody paid what was not withdrawn: it is outstanding, not socialized and not a venue loss
    assert s["socialized_outstanding"] == pytest.approx(s["socialize_pending"]) and s["socialized_outstanding"] > 0
    covers = sum(s[k] for k in ("covered_insurance_fund", "covered_backstop", "covered_adl", "covered_socialize",
                                "socialize_pending", "venue_loss"))
    assert covers == pytest.approx(s["deficit_total"])
