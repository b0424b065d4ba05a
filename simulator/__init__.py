"""perpstress: agent-based stress testing of crypto perpetual-futures venues.

Sub-packages, in the one direction their imports may point:

    venue        the exchange (exact money, book, margin, prices, liquidation, the waterfall);
                 imports nothing else from perpstress
    world        scenario schema, index paths, the mesa model, one run's metrics;
                 imports venue and ``agents`` (the top-level package of mesa agents)
    experiments  one run and its results folder, batches, statistics; imports world and venue
    figures      figures and the HTML report, drawn from results folders
    cli          the ``perpstress`` command line; may import everything above
    bench        ``python -m simulator.bench``; may import anything

``simulator.run`` is a lazy alias of ``simulator.experiments.run`` (the notebook API).
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    if name == "run":
        return importlib.import_module("simulator.experiments.run")
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
