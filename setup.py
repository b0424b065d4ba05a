"""Packaging hook: ship the top-level ``scenarios/`` folder (scenarios, presets, data) inside
the wheel as ``simulator/_bundled/scenarios`` so a non-editable install finds it with
``importlib.resources`` (``simulator.world.bundled``). Everything else is in pyproject.toml.
In an editable checkout nothing is copied: the repo's ``scenarios/`` is read directly."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class build_py_with_scenarios(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        src = HERE / "scenarios"
        dst = Path(self.build_lib) / "simulator" / "_bundled" / "scenarios"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": build_py_with_scenarios})
