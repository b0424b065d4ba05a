"""The end-of-run aggregates computed with numpy equal their pandas definitions (issue 13).

``PerpModel.timeseries``, ``who_paid.who_paid``, ``metrics.summarize`` and the run's
socialization meta replaced groupby / merge / per-kind copies with numpy. The pandas versions of
the first two stay (``PerpModel.timeseries_reference``, ``who_paid.who_paid_reference``) and are
compared here to the last bit (``DataFrame.equals``, column order, dtypes and the float bits);
the summary's numbers are recomputed here with pandas. The runs have liquidations at several
stages, ADL and socialization (each test checks that they do, so it cannot pass vacuously).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simulator.experiments import run
from simulator.world import metrics, scenario as scenario_mod, who_paid
from simulator.world.model import PerpModel, _sums_by_step
from simulator.world.bundled import scenario_path

#: Cascade with an empty insurance fund and a waterfall book -> fund -> ADL -> socialize: at 300
#: traders and seed 0 it liquidates, deleverages and socializes within 400 steps.
_WATERFALL = [{"stage": "book", "price_band": 0.1}, {"stage": "insurance_fund", "surplus_policy": "all_remaining_margin"},
              {"stage": "adl", "ranking": "pnl_x_leverage", "price": "bankruptcy", "trigger": "fund_cannot_pay"},
              {"stage": "socialize", "weights": "profit"}]
RUNS = {
    # name: (scenario, overrides, seed, steps to run or None for all)
    "adl_and_socialize": ("cascade", {"agents.traders.count": 300, "venue.insurance_fund": 0, "steps": 400,
                                      "venue.waterfall": _WATERFALL}, 0, None),
    "two_markets": ("october_2025", {"agents.traders.count": 200}, 3, None),
    "stopped_after_last_event": ("cascade", {"agents.traders.count": 300}, 2, 330),
    "bank_run": ("bank_run", {"agents.traders.count": 200}, 0, None),
    "no_events": ("calm", {"agents.traders.count": 100, "steps": 50}, 0, None),
}
_MODELS: dict = {}


def _model(name: str) -> PerpModel:
    if name not in _MODELS:
        scen, overrides, seed, steps = RUNS[name]
        sc = run.load_scenario(scenario_path(scen), overrides)
        model = PerpModel(sc, seed, base_dir=sc._base_dir)
        if steps is None:
            model.run()
        else:
            for _ in range(steps):
                model.step()
        _MODELS[name] = model
    return _MODELS[name]


def _kinds(model) -> dict:
    return model.venue.events.to_frame()["kind"].value_counts().to_dict()


def _assert_same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert list(a.dtypes) == list(b.dtypes)
    assert a.index.equals(b.index)
    assert a.equals(b)
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":  # equals() calls 0.0 and -0.0 equal; the Parquet bytes do not
            assert np.array_equal(x.view(np.int64), y.view(np.int64)), c


def test_sums_by_step_by_hand():
    # steps 0,0 | 2,2,2 | 3 over five steps; binary fractions, so every order gives the same sum:
    # step 0: 1.5 + 2.25 = 3.75; step 1: none = 0; step 2: 0.5 + 0.25 + 0.125 = 0.875;
    # step 3: -4; step 4: none = 0
    steps = np.array([0, 0, 2, 2, 2, 3])
    values = np.array([1.5, 2.25, 0.5, 0.25, 0.125, -4.0])
    assert _sums_by_step(steps, values, 5).tolist() == [3.75, 0.0, 0.875, -4.0, 0.0]
    assert _sums_by_step(steps[:0], values[:0], 3).tolist() == [0.0, 0.0, 0.0]


def test_sums_by_step_add_in_pandas_order():
    # 0.1 + 0.2 + 0.3 depends on the order of the additions ((0.1 + 0.2) + 0.3 is
    # 0.6000000000000001 in Python); the per-step sums must be pandas' groupby sums to the bit
    rng = np.random.default_rng(13)
    cases = [(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]))]
    for _ in range(200):
        n = int(rng.integers(1, 300))
        steps = np.sort(rng.integers(0, 20, n))
        cases.append((steps, rng.normal(0, 1, n) * 10.0 ** rng.integers(-6, 15, n)))
    for steps, values in cases:
        ref = pd.DataFrame({"step": steps, "v": values}).groupby("step")["v"].sum()
        mine = _sums_by_step(steps, values, int(steps.max()) + 1)
        expected = np.zeros(len(mine))
        expected[ref.index.to_numpy()] = ref.to_numpy()
        assert np.array_equal(mine.view(np.int64), expected.view(np.int64))


@pytest.mark.parametrize("name", list(RUNS))
def test_timeseries_equals_the_merged_groupbys(name):
    model = _model(name)
    kinds = _kinds(model)
    if name == "adl_and_socialize":
        assert kinds["liquidation"] > 0 and kinds["adl"] > 0 and kinds["socialize"] > 0
    if name == "no_events":
        assert not kinds
    ts = model.timeseries()
    _assert_same_frame(ts, model.timeseries_reference())
    # the per-step counts add up to the log's liquidation rows, and every step is a row
    assert ts["liquidations"].sum() == kinds.get("liquidation", 0)
    assert ts["step"].tolist() == list(range(model.t))
    if name == "stopped_after_last_event":
        # steps after the last event have no aggregate: the count column becomes float (0.0),
        # as the merge's NaN filled with 0 makes it
        last = int(model.venue.events.to_frame()["step"].max())
        assert last < model.t - 1 and ts["liquidations"].dtype == np.float64


@pytest.mark.parametrize("name", ["adl_and_socialize", "bank_run", "two_markets"])
def test_who_paid_equals_the_groupby_table(name):
    model = _model(name)
    ev = model.venue.events.to_frame()
    classes = who_paid.account_classes(model)
    _assert_same_frame(who_paid.who_paid(ev, classes), who_paid.who_paid_reference(ev, classes))
    # a plain dict, and one that leaves accounts out (their rows count as "unknown")
    as_dict = dict(classes.items())
    _assert_same_frame(who_paid.who_paid(ev, as_dict), who_paid.who_paid_reference(ev, as_dict))
    paid = set(ev.loc[ev["kind"].isin(["adl", "adl_haircut", "socialize"]), "account"].tolist())
    partial = {a: c for a, c in as_dict.items() if a not in sorted(paid)[:3]}
    table = who_paid.who_paid(ev, partial)
    _assert_same_frame(table, who_paid.who_paid_reference(ev, partial))
    if paid:
        unknown = table[table["class"] == "unknown"].iloc[0]
        assert unknown["accounts"] == 0 and unknown["accounts_hit"] == min(3, len(paid))
    # the shortfall is its three parts (module docstring)
    assert (table["shortfall"] == table["adl_price_haircut"] + table["adl_settlement_haircut"] + table["socialized"]).all()


def _distinct(frame: pd.DataFrame) -> int:
    return int(len(frame[["step", "round", "account"]].drop_duplicates()))


@pytest.mark.parametrize("name", ["adl_and_socialize", "bank_run", "two_markets"])
def test_summary_counts_equal_pandas(name):
    """The summary's distinct counts and per-account sums, recomputed with pandas groupbys."""
    model = _model(name)
    ev = model.venue.events.to_frame()
    meta = run.run_meta(model)
    s = metrics.summarize(model.timeseries(), ev, meta)
    liq = ev[ev["kind"] == "liquidation"]
    adl = ev[ev["kind"] == "adl"]
    soc = ev[ev["kind"] == "socialize"]
    assert s["liquidation_count"] == _distinct(liq) > 0
    assert s["liquidated_accounts"] == liq["account"].nunique()
    liq_adl = liq[liq["stage"] == "adl"]
    assert s["adl_cases"] == _distinct(liq_adl)
    assert s["adl_cases_solvent"] == _distinct(liq_adl[liq_adl["equity"] > 0])
    assert s["adl_accounts"] == adl["account"].nunique()
    per_acc = adl.groupby("account")["pnl"].sum().to_numpy(dtype=float)
    assert s["adl_gini"] == (metrics.gini(np.clip(per_acc, 0, None)) if len(per_acc) >= 2 else 0.0)
    assert s["socialized_accounts"] == soc["account"].nunique()
    cash = meta["cash_unit"]
    covers = ev[ev["kind"] == "cover"]
    for by in ("insurance_fund", "backstop", "adl", "socialize"):
        assert s[f"covered_{by}"] == int(covers.loc[covers["stage"] == by, "amount"].sum()) * cash
    if len(soc):
        per_payer = soc.groupby("account")["amount"].sum()
        total = int(soc["amount"].sum())
        assert s["socialized_max_share_pct"] == 100.0 * float(per_payer.max()) / total
        zero = set(meta["zero_position_accounts"])
        charged = [(int(st), int(a)) in zero for st, a in zip(soc["step"], soc["account"])]
        assert s["socialized_share_zero_position"] == float(soc["amount"].to_numpy()[charged].sum()) / total
        first = soc.drop_duplicates("account")
        assert meta["equity_before_socialization"] == {int(a): float(e) for a, e in zip(first["account"], first["score"])}
        assert meta["zero_position_accounts"] == [(int(st), int(a)) for st, a in zip(soc.loc[soc["qty"] == 0, "step"],
                                                                                     soc.loc[soc["qty"] == 0, "account"])]
    makers = [int(a) for a in meta["maker_accounts"]]
    first_shock = meta["first_shock_step"]
    assert s["makers_liquidated"] == liq.loc[liq["account"].isin(makers), "account"].nunique()
    assert s["liquidations_pre_shock"] == _distinct(liq[liq["step"] < first_shock])
    if name == "adl_and_socialize":
        assert s["adl_fills"] > 0 and s["socialized_total"] > 0 and not math.isnan(s["socialized_max_share_pct"])


def test_market_health_of_a_frame_counts_makers_and_cases():
    # three liquidation rows by hand: maker 7 at steps 1 and 5 (two cases), trader 9 at step 1;
    # first shock at step 3: before it, two cases (steps 1: accounts 7 and 9), one maker (7)
    liq = pd.DataFrame({"step": [1, 1, 5], "round": [0, 0, 0], "account": [7, 9, 7]})
    meta = {"maker_accounts": [7], "first_shock_step": 3}
    out = metrics.market_health(pd.DataFrame(), liq, meta)
    assert (out["makers_liquidated"], out["makers_liquidated_pre_shock"], out["liquidations_pre_shock"]) == (1, 1, 2)
    empty = metrics.market_health(pd.DataFrame(), liq.iloc[:0], meta)
    assert (empty["makers_liquidated"], empty["liquidations_pre_shock"]) == (0, 0)


def test_a_scenario_file_read_twice_is_parsed_once_and_copied(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nsteps: 10\nlist: [1, 2]\n")
    calls = []
    real = scenario_mod.load_file
    monkeypatch.setattr(scenario_mod, "load_file", lambda p: calls.append(p) or real(p))
    first = scenario_mod.read_yaml(path)
    first["list"].append(3)  # the caller's own copy: the next read does not see it
    second = scenario_mod.read_yaml(path)
    assert second == {"name": "x", "steps": 10, "list": [1, 2]} and len(calls) == 1
    path.write_text("name: y\nsteps: 10\nlist: [1, 2]\n")  # new bytes: parsed again
    assert scenario_mod.read_yaml(path)["name"] == "y" and len(calls) == 2
