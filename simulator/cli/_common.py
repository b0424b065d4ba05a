"""Helpers shared by the command modules. Imports nothing from ``simulator.cli``."""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.world import bundled
from simulator.world.scenario import ScenarioError
from simulator.world.yamlsafe import YamlError, load_value


class CliError(ScenarioError):
    """A bad command line: ``perpstress`` prints ``error: <message>`` and exits with 2."""


def parse_set(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CliError(f"--set {item!r}: use FIELD.PATH=VALUE, e.g. agents.traders.count=500")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise CliError(f"--set {item!r}: {key!r} is not a dotted field path such as agents.traders.count")
        try:
            out[key] = load_value(value, f"--set {key}")
        except YamlError as exc:
            raise CliError(str(exc)) from None
    return out


def resolve_scenario(arg: str) -> Path:
    """A scenario argument: a file path, or the name of a bundled scenario (``cascade``)."""
    path = Path(arg)
    if path.is_dir():
        raise CliError(f"{arg}: is a folder; give a scenario file (e.g. {arg.rstrip('/')}/cascade.yaml) "
                       f"or a bundled scenario name ({', '.join(bundled.scenario_names())})")
    if path.exists():
        return path
    found = bundled.scenario_path(arg)
    if found is not None:
        return found
    raise CliError(f"{arg}: no such file or bundled scenario; bundled: {', '.join(bundled.scenario_names())} "
                   "(perpstress scenarios lists them)")


def _int_type(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is {what}; give at least {minimum}")
        return value

    parse.__name__ = "integer"
    return parse


seed_int = _int_type(0, "negative")
non_negative_int = _int_type(0, "negative")
positive_int = _int_type(1, "too small")
