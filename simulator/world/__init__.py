"""The simulated world around the venue.

scenario (the YAML schema and loading), index (index price paths and shocks), model (the mesa
``PerpModel`` and its step order), metrics (one run's summary).

May import ``simulator.venue`` and ``agents``; never experiments, figures or cli.
"""
