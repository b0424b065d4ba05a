"""Exact integer arithmetic for the ledger.

Cash is an int64 count of the settlement asset's smallest unit (default 1e-6 USD),
positions are int64 lots and prices int64 ticks. Rates (fees, margin ratios) are
integers in parts per million (``PPM``); funding rates in parts per billion (``PPB``).

``muldiv`` computes ``floor(x * num / den)`` without the int64 overflow that a plain
``x * num`` would hit for billion-dollar notionals.
"""

from __future__ import annotations

import numpy as np

PPM = 1_000_000
PPB = 1_000_000_000


def muldiv(x, num, den):
    """Exact ``floor(x * num / den)`` for int64 arrays or ints.

    Splits ``x = q * den + r`` so that only ``r * num`` (with ``0 <= r < den``) is
    multiplied at full width. Requires ``den > 0`` and ``den * |num| < 2**63``.
    """
    q, r = np.divmod(x, den)
    return q * num + (r * num) // den


def muldiv_ceil(x, num, den):
    """Exact ``ceil(x * num / den)``."""
    return -muldiv(-np.asarray(x, dtype=np.int64), num, den)


def largest_remainder(total: int, weights) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` that add up exactly.

    Hamilton's method: each part gets ``floor(total * w / sum(w))`` and the units left over go
    one each to the largest fractional remainders (ties to the lower index, so the split is
    deterministic). Python integers are used inside, so no product can overflow.

    Args:
        total: the non-negative integer amount to split.
        weights: non-negative integer weights, not all zero.

    Returns:
        int64 array of parts, ``parts.sum() == total``.
    """
    total = int(total)  # a numpy int64 total would make ``total * v`` overflow silently
    w = [int(v) for v in np.asarray(weights).ravel()]
    if total < 0:
        raise ValueError("total must be non-negative")
    if any(v < 0 for v in w):
        raise ValueError("weights must be non-negative")
    wsum = sum(w)
    if wsum == 0:
        raise ValueError("weights must not all be zero")
    quotients = [total * v // wsum for v in w]
    remainders = [total * v % wsum for v in w]
    left = total - sum(quotients)
    order = sorted(range(len(w)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        quotients[i] += 1
    return np.array(quotients, dtype=np.int64)
