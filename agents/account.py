"""The base of every trading agent: a mesa Agent that owns one ledger account."""

from __future__ import annotations

import mesa


class AccountAgent(mesa.Agent):
    """A mesa Agent holding only its ledger row; its class decides for all members at once.

    State lives in the venue's arrays, never on the agent object, so a class's ``step_all``
    is one vectorised pass over its accounts.
    """

    def __init__(self, model, account: int):
        super().__init__(model)
        self.account = account
