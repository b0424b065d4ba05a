"""The venue: the exchange itself, exact and agent-free.

fixedpoint (integer maths), ledger (cash, lots, cost), book (limit order book), margin,
market (contract specs), prices (mark, funding), events (the event log), adl (ranking and
allocation), waterfall/ (one module per loss stage + the registry ``STAGES``), venue (the
``Venue`` and its liquidation round loop).

No randomness of its own beyond what it is given. Imports nothing from perpstress outside
``simulator.venue`` (no world, agents, experiments, figures or cli).
"""
