"""Index, mark price and funding for every market of the venue.

The index comes from outside (the scenario's price path, possibly a stalled oracle). The mark
is what margin uses; the default is the median of (index + EMA of the basis, book mid, last
trade), which resists a single manipulated input.

Funding (DESIGN.md §4, §5) is settled every ``interval_seconds`` of scenario time (a duration,
never a step count: ``funding_due``) from the premium averaged over the interval, longs paying
shorts when positive; payers round up and receivers round down, so the remainder (never
negative) goes to the fee pool. The rate (``FundingConfig.formula``):

- ``binance``: ``P + clamp(I - P, -clamp_band, +clamp_band)``, then clamped to ``+-cap``
  (Binance, and the same family at BitMEX, Bybit, OKX, Hyperliquid): a small premium pays the
  interest rate I alone.
- ``premium_plus_interest``: ``P + I``, clamped to ``+-cap`` (the simulator's earlier rule).

``P``, ``I`` and the band are per ``rate_period_seconds`` (default: the interval); a settlement
pays ``interval / rate_period`` of that rate (Hyperliquid: an 8-hour rate paid hourly at 1/8),
and ``cap`` bounds the rate actually paid per settlement.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from simulator.venue import kernels
from simulator.venue.fixedpoint import PPB, muldiv_ceil
from simulator.venue.settlement import exposure

MARK_METHODS = ("median", "index", "mid", "last", "index_basis")


@dataclass
class MarkConfig:
    method: str = "median"
    basis_ema_alpha: float = 0.1

    def __post_init__(self):
        if self.method not in MARK_METHODS:
            raise ValueError(f"mark method {self.method!r}; allowed: {MARK_METHODS}")
        if not 0 < self.basis_ema_alpha <= 1:
            raise ValueError("basis_ema_alpha must be in (0, 1]")


FUNDING_FORMULAS = ("binance", "premium_plus_interest")


@dataclass
class FundingConfig:
    """Funding settings; rates are fractions (0.0001 = 0.01 %).

    Args:
        interval_seconds: scenario seconds between settlements (Binance: 8 h = 28,800).
        formula: ``binance`` or ``premium_plus_interest`` (see the module docstring).
        cap: bound on the rate paid per settlement.
        interest: interest component I per rate period (Binance: 0.01 % per 8 h).
        clamp_band: the ``binance`` formula's bound on ``I - P`` (Binance: 0.05 %).
        rate_period_seconds: the period P, I and the band refer to; None: the interval.
    """

    interval_seconds: float = 28_800.0
    formula: str = "binance"
    cap: float = 0.0075
    interest: float = 0.0001
    clamp_band: float = 0.0005
    rate_period_seconds: float | None = None

    def __post_init__(self):
        if not self.interval_seconds > 0:
            raise ValueError("funding interval_seconds must be > 0")
        if self.formula not in FUNDING_FORMULAS:
            raise ValueError(f"funding formula {self.formula!r}; allowed: {FUNDING_FORMULAS}")
        if not 0 <= self.cap < 1:
            raise ValueError("funding cap must be in [0, 1)")
        if not 0 <= self.clamp_band < 1:
            raise ValueError("funding clamp_band must be in [0, 1)")
        if self.rate_period_seconds is not None and not self.rate_period_seconds > 0:
            raise ValueError("funding rate_period_seconds must be > 0")

    def rate(self, premium) -> np.ndarray:
        """Rate paid at one settlement for an average ``premium`` (array, per market)."""
        premium = np.asarray(premium, dtype=float)
        if self.formula == "binance":
            raw = premium + np.clip(self.interest - premium, -self.clamp_band, self.clamp_band)
        else:
            raw = premium + self.interest
        if self.rate_period_seconds is not None and self.rate_period_seconds != self.interval_seconds:
            raw = raw * (self.interval_seconds / self.rate_period_seconds)
        return np.clip(raw, -self.cap, self.cap)


def funding_due(step: int, step_seconds: float, interval_seconds: float) -> bool:
    """Whether a settlement falls in ``step``, the scenario time ``(step * S, (step + 1) * S]``:
    the step at whose end the time reaches or crosses a multiple of the interval (once per
    step). Exact: both durations are read as the decimals they print as."""
    num, den = _ratio(step_seconds, interval_seconds)
    return (step + 1) * num // den > step * num // den


@lru_cache(maxsize=64)
def _ratio(step_seconds: float, interval_seconds: float) -> tuple[int, int]:
    """``step_seconds / interval_seconds`` as an exact fraction of integers."""
    r = Fraction(str(step_seconds)) / Fraction(str(interval_seconds))
    return r.numerator, r.denominator


class PriceState:
    """Per-market index, mark, previous mark, last trade and basis EMA (ticks, float)."""

    def __init__(self, n_markets: int, mark: MarkConfig | None = None):
        self.config = mark or MarkConfig()
        self.index = np.full(n_markets, np.nan)
        self.last = np.full(n_markets, np.nan)
        self.basis_ema = np.zeros(n_markets)
        self.mark = np.zeros(n_markets, dtype=np.int64)
        self.previous_mark = np.zeros(n_markets, dtype=np.int64)
        self.premium_sum = np.zeros(n_markets)
        self.premium_count = 0
        # running extremes of the mark since the last settlement (``reset_extremes``): the
        # momentum peak the ``profit_bands`` ADL ranking compares entries with
        self.mark_high = np.zeros(n_markets, dtype=np.int64)
        self.mark_low = np.zeros(n_markets, dtype=np.int64)

    def set_index(self, index_ticks) -> None:
        self.index = np.array(index_ticks, dtype=float)
        if not self.mark.all():  # a market without a mark yet
            self.mark = np.where(self.mark == 0, np.round(self.index), self.mark).astype(np.int64)
            self.previous_mark = self.mark.copy()
            self.last = np.where(np.isnan(self.last), self.index, self.last)
            self._track_extremes()

    def update_mark(self, mids, roll: bool = True) -> np.ndarray:
        """Recompute the mark from index, ``mids`` (NaN where the book is one-sided) and last.

        ``roll`` saves the current mark as ``previous_mark`` first (once per step, not per
        liquidation round). The compiled ``_nb_prices.update_mark``, bit for bit
        ``update_mark_reference``.
        """
        k = kernels.prices()
        mids = kernels.f64(mids)
        if k is None or len(mids) != len(self.index):  # (a scalar mid broadcasts in numpy)
            return self.update_mark_reference(mids, roll)
        if roll:
            self.previous_mark = self.mark.copy()
        # the state arrays are always C-contiguous float64 / int64 (made here or by
        # ``set_index``, and only written element-wise elsewhere): no conversion calls, and the
        # kernel writes the new values into them
        k.update_mark_into(mids, self.index, self.last, self.basis_ema, self.mark, self.mark_high, self.mark_low,
                           self.premium_sum, float(self.config.basis_ema_alpha), bool(roll),
                           k.METHODS.get(self.config.method, 4))
        if roll:
            self.premium_count += 1
        return self.mark

    def roll_marks(self, prices, tick_sizes, mids) -> bool:
        """``set_index(max(rint(prices / tick_sizes), 1))`` then ``update_mark(mids, roll=True)``
        in one compiled call (``_nb_prices.roll_marks``, the same float operations in the same
        order). False, with nothing changed, when that call does not apply (no kernel, a price
        not finite, a market without a mark yet): the caller then takes the two-call path."""
        k = kernels.prices()
        if k is None:
            return False
        if len(self.index) != len(self.mark):
            return False
        if not k.roll_marks_into(prices, tick_sizes, mids, self.index, self.mark, self.previous_mark, self.last,
                                 self.basis_ema, self.mark_high, self.mark_low, self.premium_sum,
                                 float(self.config.basis_ema_alpha), k.METHODS.get(self.config.method, 4)):
            return False
        self.premium_count += 1
        return True

    def update_mark_reference(self, mids, roll: bool = True) -> np.ndarray:
        """``update_mark`` in numpy (the reference of the compiled kernel)."""
        mids = np.asarray(mids, dtype=float)
        if roll:
            self.previous_mark = self.mark.copy()
            basis = np.where(np.isnan(mids), 0.0, mids - self.index)
            a = self.config.basis_ema_alpha
            self.basis_ema = (1 - a) * self.basis_ema + a * basis
        fair = self.index + self.basis_ema
        mid = np.where(np.isnan(mids), fair, mids)
        method = self.config.method
        if method == "median":
            m = _median3(fair, mid, self.last)
        elif method == "index":
            m = self.index
        elif method == "index_basis":
            m = fair
        elif method == "mid":
            m = mid
        else:
            m = self.last
        self.mark = np.maximum(np.round(m), 1).astype(np.int64)
        self._track_extremes()
        if roll:
            self.premium_sum += (self.mark - self.index) / self.index
            self.premium_count += 1
        return self.mark

    def _track_extremes(self) -> None:
        fresh = self.mark_high == 0
        self.mark_high = np.where(fresh, self.mark, np.maximum(self.mark_high, self.mark))
        self.mark_low = np.where(fresh, self.mark, np.minimum(self.mark_low, self.mark))

    def reset_extremes(self) -> None:
        """A settlement starts a new momentum window at the current mark."""
        self.mark_high = self.mark.copy()
        self.mark_low = self.mark.copy()

    def funding_rate(self, cfg: FundingConfig) -> np.ndarray:
        """Rate for the interval just ended, from the average premium; resets the average."""
        premium = self.premium_sum / max(self.premium_count, 1)
        self.premium_sum[:] = 0
        self.premium_count = 0
        return cfg.rate(premium)


def funding_payments(qty, marks, contract_values, rate, inverse=None) -> np.ndarray:
    """Cash each account pays (positive) or receives (negative), per market summed.

    ``payment = ceil(exposure * rate)`` with the signed notional at mark (linear
    ``qty * mark * cv``; inverse ``sign(q) floor(|q| K / mark)`` in the coin, as BitMEX charges
    funding on the position's value in XBT): a long pays when the rate is positive, a short
    receives ``floor``; the sum over accounts is therefore ``>= 0`` and is the fee pool's.
    """
    rate_ppb = np.round(np.asarray(rate, dtype=float) * PPB).astype(np.int64)
    if inverse is not None and np.any(inverse):
        value = exposure(qty, marks, contract_values, inverse)
    else:
        value = qty * (np.asarray(marks, dtype=np.int64) * np.asarray(contract_values))[None, :]
    return muldiv_ceil(value, rate_ppb[None, :], PPB).sum(axis=1)


def _median3(a, b, c):
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
