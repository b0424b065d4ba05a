"""Experiments: running scenarios and comparing designs.

run (one run and its results folder; the notebook API), batch/ (plan, executors, store, and the
scenario run function), compare (statistics across a batch folder).

May import ``simulator.world`` and ``simulator.venue``; never figures or cli.
"""
