"""Mesa agents: account (base), traders, market_makers, arbitrageurs, exchange, backstop.

Each decides in one numpy pass for its whole class. Agents act on the venue through its public
methods and may import only ``simulator.venue`` and ``agents`` (``simulator.world.model``
imports them, never the other way round).
"""
