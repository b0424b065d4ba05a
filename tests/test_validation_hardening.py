"""Bad scenario inputs (issue 9): each is rejected by ``perpstress validate`` with one line that
names the file and the field, exit 2, before anything runs, and nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
CASCADE = yaml.safe_load((ROOT / "scenarios/cascade.yaml").read_text())

# (--set overrides, text expected in the one error line)
BAD_SETS = [
    ({"venue.insurance_fund": "1e13"}, "venue.insurance_fund: 1e+13 is more than the ledger can hold"),
    ({"venue.insurance_fund": "1e300"}, "venue.insurance_fund: 1e+300 is more than the ledger can hold"),
    ({"venue.insurance_fund": ".inf"}, "venue.insurance_fund: Input should be a finite number"),
    ({"venue.insurance_fund": ".nan"}, "venue.insurance_fund: Input should be a finite number"),
    ({"agents.market_makers.capital": ".inf"}, "agents.market_makers.capital: Input should be a finite number"),
    ({"markets.0.tick_size": ".inf"}, "markets.0.tick_size: Input should be a finite number"),
    ({"step_seconds": ".inf"}, "step_seconds: Input should be a finite number"),
    ({"shocks.0": "{kind: whale, step: 10, notional: 1e15, leverage: 5}"}, "shocks.0.notional: 1e+15 is more than"),
    ({"markets.0.tick_size": "1e-9"}, "markets.0: lot_size x tick_size = 1e-12 must be a whole multiple"),
    ({"markets.0.tick_size": "1e6"}, "markets.0.tick_size: 1e+06 is more than 1/100 of the start price"),
    ({"markets.0.lot_size": "1000"}, "markets.0.lot_size: one lot is worth 1e+08"),
    ({"index.correlation": "2"}, "index.correlation: Input should be less than or equal to 1"),
    ({"agents.traders.count": "true"}, "agents.traders.count: expected a number, got the boolean true"),
    ({"agents.traders.leverage.median": "400"}, "agents.traders.leverage.median: 400 is above every market's max_leverage"),
    ({"index.models.0.drift": "-1e6"}, "index.models.0.drift: -1e+06 a year drives the index"),
    ({"markets.0.maintenance_tiers": "[{floor: 0, rate: 0.05}]"}, "markets.0.maintenance_tiers.0.rate: 0.05 is not below the initial margin rate"),
    ({"name": "../../escape"}, "name: '../../escape': use letters, digits"),
    ({"shocks.x.move": "-0.1"}, "override 'shocks.x.move': shocks is a list; 'x' is not a list index"),
    ({"shocks.7.move": "-0.1"}, "override 'shocks.7.move': shocks has 1 item(s); no index 7"),
    ({"steps.a.b": "1"}, "override 'steps.a.b': steps is a single value (900), it has no field 'a'"),
    ({"sweep": "{shocks.x.move: [-0.1]}"}, "override 'shocks.x.move': shocks is a list"),
    ({"sweep": "{venue.insurance_fund: [1e6, .inf]}"}, "venue.insurance_fund: Input should be a finite number"),
]


@pytest.mark.parametrize("sets,expected", BAD_SETS, ids=[next(iter(s)) + "=" + next(iter(s.values())) for s, _ in BAD_SETS])
def test_bad_values_are_one_clear_line(sets, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["validate", str(ROOT / "scenarios/cascade.yaml")]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "cascade.yaml" in err[0] and expected in err[0], err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value,expected", [
    ("!!python/object/apply:os.system [echo hi]", "tagged YAML values (!tag) are not allowed"),
    ("[1, 2", "--set venue.insurance_fund: not valid YAML: line 1"),
    ("&a [1, *a]", "anchors and aliases"),
])
def test_bad_set_values(value, expected, capsys):
    assert main(["validate", str(ROOT / "scenarios/cascade.yaml"), "--set", f"venue.insurance_fund={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh")
)

BAD_FILES = [
    (BOMB, "refusing a possible alias bomb"),
    ("name: x\nname: y\n", "line 2: duplicate key 'name'"),
    ("[" * 100_000, "nested more than 64 levels deep"),
    (b"name: \xff\xfe\n", "not UTF-8 text"),
    (b"\x00\x01\x02binary", "a binary file, not YAML text"),
    ("- just\n- a list\n", "the file must hold a mapping of fields, got list"),
]


@pytest.mark.parametrize("text,expected", BAD_FILES, ids=["bomb", "dupkey", "deep", "latin1", "binary", "list"])
def test_bad_files(text, expected, tmp_path, capsys):
    p = _write(tmp_path, text)
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(p) in err[0] and expected in err[0], err


def _replay_scenario(tmp_path, csv_text: str | bytes | None, **model):
    data = yaml.safe_load((ROOT / "scenarios/october_2025.yaml").read_text())
    data["steps"] = 100
    data["shocks"] = []
    data["markets"] = data["markets"][:1]  # one replayed market: the CSV under test
    data["index"]["models"] = data["index"]["models"][:1]
    data["agents"]["traders"].pop("multi_market_share", None)
    if csv_text is None:
        (tmp_path / "prices").mkdir()
        data["index"]["models"][0] = {"kind": "replay", "path": "prices", **model}
    else:
        _write(tmp_path, csv_text, "prices.csv")
        data["index"]["models"][0] = {"kind": "replay", "path": "prices.csv", **model}
    return _write(tmp_path, yaml.safe_dump(data))


GOOD_ROWS = "".join(f"{1760129100000000 + i * 1_000_000},{100000 + i}\n" for i in range(200))

BAD_CSV = [
    ("", {}, "the file is empty"),
    ("timestamp,price\n", {}, "a header but no rows"),
    ("timestamp,cost\n1760129100000000,1\n", {}, "no column(s) ['price']"),
    ("timestamp,price\n1760129100000000,abc\n", {}, "column 'price' is not numeric"),
    ("timestamp,price\n" + GOOD_ROWS.replace(",100005\n", ",0\n"), {}, "prices must be finite and > 0 (row 6: 0.0)"),
    ("timestamp,price\n" + GOOD_ROWS.replace(",100005\n", ",inf\n"), {}, "prices must be finite and > 0"),
    ("timestamp,price\n" + GOOD_ROWS[:400], {}, "covers only"),
    (b"\x00\x01PK\x03\x04" * 50, {}, "a binary file, not CSV text"),
    ("timestamp,price\nyesterday,100\n", {}, "neither numeric nor ISO-8601"),
    ("timestamp,price\n" + GOOD_ROWS, {"timestamp_unit": "s"}, "check timestamp_unit"),
    (None, {}, "is a folder, not a CSV file"),
]


@pytest.mark.parametrize("csv_text,model,expected", BAD_CSV,
                         ids=["empty", "header", "nocol", "text", "zero", "inf", "short", "binary", "badts", "unit", "dir"])
def test_replay_files_are_read_by_validate(csv_text, model, expected, tmp_path, capsys):
    p = _replay_scenario(tmp_path, csv_text, **model)
    before = sorted(os.listdir(tmp_path))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index.models.0.path" in err[0] and expected in err[0], err
    assert sorted(os.listdir(tmp_path)) == before


def test_good_replay_passes(tmp_path, capsys):
    p = _replay_scenario(tmp_path, "timestamp,price\n" + GOOD_ROWS)
    assert main(["validate", str(p)]) == 0, capsys.readouterr().err


def test_validate_accepts_presets_and_design_files(tmp_path, capsys):
    assert main(["validate", "bitmex", str(ROOT / "scenarios/presets/drift.yaml"), "cascade"]) == 0
    out = capsys.readouterr().out
    assert "bitmex: ok (design bitmex" in out and "drift.yaml: ok (design drift" in out and "cascade: ok" in out
    bad = _write(tmp_path, "name: x\nwaterfall: [{stage: insurance_fund, cap_per_event: 1e14}]\n")
    assert main(["validate", str(bad)]) == 2
    assert "waterfall.0.cap_per_event: 1e+14 is more than" in capsys.readouterr().err


def test_every_bundled_file_still_validates(capsys):
    files = sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))
    assert main(["validate", *files]) == 0, capsys.readouterr().err


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # the parse cache must not read a file the bounded loader refuses on its size: 4 MB + 1 byte
    from simulator.world import scenario as sc
    from simulator.world.yamlsafe import MAX_BYTES

    big = tmp_path / "huge.yaml"
    with open(big, "wb") as fh:
        fh.truncate(MAX_BYTES + 1)  # sparse: nothing is written
    reads = []
    original = Path.read_bytes

    def counting(self):
        reads.append(self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    with pytest.raises(sc.ScenarioError, match=r"huge\.yaml: 4,194,305 bytes, larger than 4 MB"):
        sc.read_yaml(big)
    assert reads == []
