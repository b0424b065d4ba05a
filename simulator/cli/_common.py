"""Helpers shared by the command modules. Imports nothing from ``simulator.cli``."""

from __future__ import annotations

import yaml

from simulator.world.scenario import ScenarioError


def parse_set(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: use FIELD.PATH=VALUE, e.g. agents.traders.count=500")
        key, value = item.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out
