"""Memory a run leaves behind and what its buffers grow with (structure, never a timing or an RSS)."""

from __future__ import annotations

import gc
import weakref

import mesa

from simulator.world.model import PerpModel
from simulator.world.scenario import validate


def _scenario(steps: int = 20, traders: int = 60):
    return validate({"name": "mem", "seed": 3, "steps": steps,
                     "index": {"models": [{"kind": "gbm", "start_price": 50_000, "volatility": 0.5}]},
                     "agents": {"traders": {"count": traders}, "market_makers": {"count": 2, "capital": 2_000_000},
                                "arbitrageurs": {"count": 1}}})


def test_a_finished_model_is_freed_with_its_venue():
    # mesa 3.3 keys its per-model id counters by the model itself in a class-level dict: every
    # model a pool worker ever ran stayed alive (a whole 100k-trader run, ~70 MB, per run)
    model = PerpModel(_scenario())
    model.run()
    model.agents  # the trader agents too (100 mesa Agents made on demand)
    dead_model, dead_venue = weakref.ref(model), weakref.ref(model.venue)
    del model
    gc.collect()
    assert dead_model() is None and dead_venue() is None


def test_agent_ids_still_count_from_one_per_model_while_two_are_alive():
    a, b = PerpModel(_scenario()), PerpModel(_scenario())
    # exchange 1, makers 2-3, arbitrageur 4, traders 5..64 (reserved), backstop vault 65
    assert a.exchange.unique_id == b.exchange.unique_id == 1
    assert a.backstop_vault.unique_id == b.backstop_vault.unique_id == 65
    assert next(mesa.Agent._ids[a]) == next(mesa.Agent._ids[b]) == 66  # the next agent of each


def test_the_record_is_preallocated_and_a_quiet_market_logs_nothing_per_step():
    # memory flat in the step count: every series is one buffer of n_steps values from set-up
    # on, written in place; a market that trades without a liquidation adds no event
    model = PerpModel(_scenario(steps=200))
    buffers = {k: (id(a), a.nbytes) for k, a in model.series.items()}
    assert all(n == 200 * 8 for _, n in buffers.values())  # float64 x 200 steps
    for _ in range(150):
        model.step()
    assert {k: (id(a), a.nbytes) for k, a in model.series.items()} == buffers
    assert len(model.venue.events) == 0 and model.venue.events._parts == []
    assert model.series["mark"][149] > 0  # written in place


def test_the_event_frame_fills_each_column_from_the_parts_that_give_it():
    # built column by column: a column given by one part only takes the defaults elsewhere
    # (-1 for integers, NaN for floats, "" for text), scalars stretch to the part's length
    import numpy as np

    from simulator.venue.events import EventLog

    log = EventLog()
    log.step, log.round = 3, 1
    log.add("deficit", stage="book", account=[5, 6], amount=[10, 20])
    log.step, log.round = 4, 0
    log.add("unwind", account=7, market=0, qty=-3, price=101.0)
    df = log.to_frame()
    assert df["step"].tolist() == [3, 3, 4] and df["round"].tolist() == [1, 1, 0]
    assert df["kind"].tolist() == ["deficit", "deficit", "unwind"]
    assert df["stage"].tolist() == ["book", "book", ""] and df["reason"].tolist() == ["", "", ""]
    assert df["account"].tolist() == [5, 6, 7] and df["amount"].tolist() == [10, 20, -1]
    assert df["qty"].tolist() == [-1, -1, -3] and df["market"].tolist() == [-1, -1, 0]
    assert np.isnan(df["price"].iloc[0]) and df["price"].iloc[2] == 101.0
    assert str(df["kind"].dtype) == "string" and df["amount"].dtype == np.int64
