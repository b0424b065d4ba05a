"""The bundled scenarios, venue presets and replay data, wherever perpstress is installed.

A wheel (``pip install .``) carries the repository's top-level ``scenarios/`` folder as
``simulator/_bundled/scenarios`` (``setup.py`` copies it at build time); an editable or dev
checkout reads the repository's ``scenarios/`` folder directly. ``scenarios_dir()`` returns
whichever exists (the installed copy first), read through ``importlib.resources``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


class BundleMissing(FileNotFoundError):
    """Neither an installed nor a checkout copy of the bundled scenarios was found."""


def scenarios_dir() -> Path:
    """Folder of the bundled scenario files (``presets/`` and ``data/`` inside it)."""
    try:
        installed = resources.files("simulator") / "_bundled" / "scenarios"
        if installed.is_dir():
            return Path(str(installed))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        pass
    checkout = Path(__file__).resolve().parents[2] / "scenarios"
    if checkout.is_dir():
        return checkout
    raise BundleMissing("the bundled scenarios folder is missing from this installation (reinstall perpstress)")


def presets_dir() -> Path:
    return scenarios_dir() / "presets"


def scenario_names() -> list[str]:
    """Names of the bundled scenarios (``cascade``, ``flash_crash``...)."""
    return sorted(p.stem for p in scenarios_dir().glob("*.yaml"))


def preset_names() -> list[str]:
    """Names of the bundled venue presets (``bitmex``, ``hyperliquid``...)."""
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def scenario_path(name: str) -> Path | None:
    """The bundled scenario called ``name`` (``cascade`` or ``cascade.yaml``), or None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    p = scenarios_dir() / f"{stem}.yaml"
    return p if p.is_file() else None


def preset_path(name: str) -> Path | None:
    """The bundled preset called ``name``, or None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    p = presets_dir() / f"{stem}.yaml"
    return p if p.is_file() else None


def first_comment(path: Path) -> str:
    """The first comment line of a YAML file (its one-line description), or ''."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                s = line.strip()
                if s.startswith("#"):
                    text = s.lstrip("#").strip()
                    if text:
                        return text
                elif s:
                    break
    except OSError:
        return ""
    return ""
