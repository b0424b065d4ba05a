"""The mark update, compiled (numba, ``cache=True``): ``PriceState.update_mark`` in one call.

The same float operations in the same order as ``PriceState.update_mark_reference`` (numpy),
element by element, so the marks, the basis EMA, the running extremes and the premium sum are
bit for bit the reference's: ``np.maximum`` / ``np.minimum`` propagate NaN here too, and
``np.round`` to whole ticks is ``rint`` (half to even). Imported lazily through
``kernels.prices()``.
"""

from __future__ import annotations

import numba
import numpy as np

njit = numba.njit(cache=True, nogil=True)

#: ``MarkConfig.method`` as the kernel's code (anything else: the last trade).
METHODS = {"median": 0, "index": 1, "index_basis": 2, "mid": 3}


@njit
def _max(a, b):
    return a if np.isnan(a) else (b if np.isnan(b) else max(a, b))


@njit
def _min(a, b):
    return a if np.isnan(a) else (b if np.isnan(b) else min(a, b))


@njit
def update_mark(mids, index, last, basis_ema, mark_high, mark_low, premium_sum, alpha, roll, method):
    """New (mark, mark high and mark low as the rows of one (3, markets) array; basis EMA);
    with ``roll`` the EMA steps and the premium of the new mark is added to ``premium_sum`` (in
    place). Two arrays back, not four: each array handed back to Python costs a box."""
    n = len(index)
    ema = np.empty(n, np.float64)
    out = np.empty((3, n), np.int64)
    mark = out[0]
    high = out[1]
    low = out[2]
    keep = 1 - alpha
    for i in range(n):
        missing = np.isnan(mids[i])
        if roll:
            basis = 0.0 if missing else mids[i] - index[i]
            ema[i] = keep * basis_ema[i] + alpha * basis
        else:
            ema[i] = basis_ema[i]
        fair = index[i] + ema[i]
        mid = fair if missing else mids[i]
        if method == 0:
            m = _max(_min(fair, mid), _min(_max(fair, mid), last[i]))
        elif method == 1:
            m = index[i]
        elif method == 2:
            m = fair
        elif method == 3:
            m = mid
        else:
            m = last[i]
        mark[i] = np.int64(_max(np.rint(m), 1.0))
        if mark_high[i] == 0:
            high[i] = mark[i]
            low[i] = mark[i]
        else:
            high[i] = max(mark_high[i], mark[i])
            low[i] = min(mark_low[i], mark[i])
        if roll:
            premium_sum[i] += (mark[i] - index[i]) / index[i]
    return out, ema


@njit
def _pairwise_sum(a, lo, n, col, mean, square):
    """numpy's pairwise sum (``pairwise_sum`` of ``add.reduce`` along a contiguous run) of
    ``a[lo : lo + n, col]``, or with ``square`` of ``(a - mean) ** 2``: sequential below 8
    terms, eight running sums up to 128, halves (a multiple of 8) above."""
    if n < 8:
        res = 0.0
        for i in range(n):
            x = a[lo + i, col]
            if square:
                x = (x - mean) * (x - mean)
            res += x
        return res
    if n <= 128:
        r = np.empty(8, np.float64)
        for j in range(8):
            x = a[lo + j, col]
            if square:
                x = (x - mean) * (x - mean)
            r[j] = x
        i = 8
        while i < n - (n % 8):
            for j in range(8):
                x = a[lo + i + j, col]
                if square:
                    x = (x - mean) * (x - mean)
                r[j] += x
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            x = a[lo + i, col]
            if square:
                x = (x - mean) * (x - mean)
            res += x
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(a, lo, n2, col, mean, square) + _pairwise_sum(a, lo + n2, n - n2, col, mean, square)


@njit
def window_std(returns, lo, hi):
    """``returns[lo:hi].std(axis=0)`` of a C-contiguous (steps, markets) float array, bit for
    bit numpy's: the mean, then the mean of squared deviations, then the root. With one column
    numpy sums the run pairwise (``_pairwise_sum``); with several it adds row after row."""
    n = hi - lo
    m_count = returns.shape[1]
    out = np.empty(m_count, np.float64)
    for c in range(m_count):
        if m_count == 1:
            mean = _pairwise_sum(returns, lo, n, c, 0.0, False) / n
            var = _pairwise_sum(returns, lo, n, c, mean, True)
        else:
            s = returns[lo, c]
            for i in range(lo + 1, hi):
                s += returns[i, c]
            mean = s / n
            d = returns[lo, c] - mean
            var = d * d
            for i in range(lo + 1, hi):
                d = returns[i, c] - mean
                var += d * d
        out[c] = np.sqrt(var / n)
    return out


@njit
def window_signals(path, lo, hi):
    """The traders' signals over ``path[lo:hi]`` (steps x markets, C-contiguous), as signs:
    ``sign(last - first)`` (trend) and ``-sign(last - mean)`` (mean reversion), the mean
    summed as numpy's ``mean(axis=0)`` sums (``window_std``'s order), so every sign is the
    one ``np.sign`` gives on ``PerpModel.signals``."""
    n = hi - lo
    m_count = path.shape[1]
    trend = np.empty(m_count, np.float64)
    reversion = np.empty(m_count, np.float64)
    for c in range(m_count):
        if m_count == 1:
            s = _pairwise_sum(path, lo, n, c, 0.0, False)
        else:
            s = path[lo, c]
            for i in range(lo + 1, hi):
                s += path[i, c]
        last = path[hi - 1, c]
        trend[c] = _sign(last - path[lo, c])
        reversion[c] = -_sign(last - s / n)
    return trend, reversion


@njit
def _sign(x):
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return x if np.isnan(x) else 0.0


@njit
def roll_marks(prices, tick_sizes, mids, mark, last, basis_ema, mark_high, mark_low, premium_sum, alpha, method):
    """A step's opening in one call: the index ``prices`` (quote currency) to whole ticks, as
    ``Venue.set_index`` converts them (``max(rint(price / tick), 1)``), then ``update_mark`` with
    ``roll``. Returns ``(ok, marks, floats)``: ``marks`` rows the new mark, high, low and the
    previous mark (a copy of ``mark``); ``floats`` rows the basis EMA and the index in ticks.
    Not ``ok`` (nothing changed, ``premium_sum`` untouched) when a price is not finite, the
    lengths differ or a market has no mark yet: the caller takes the numpy path."""
    n = len(mark)
    ints = np.empty((4, n), np.int64)
    floats = np.empty((2, n), np.float64)
    if len(prices) != n or len(tick_sizes) != n:
        return False, ints, floats
    index = floats[1]
    for i in range(n):
        r = prices[i] / tick_sizes[i]
        if not np.isfinite(r) or mark[i] == 0:
            return False, ints, floats
        index[i] = max(np.rint(r), 1.0)
    for i in range(n):
        ints[3, i] = mark[i]
    marks, ema = update_mark(mids, index, last, basis_ema, mark_high, mark_low, premium_sum, alpha, True, method)
    for i in range(n):
        ints[0, i] = marks[0, i]
        ints[1, i] = marks[1, i]
        ints[2, i] = marks[2, i]
        floats[0, i] = ema[i]
    return True, ints, floats


@njit
def update_mark_into(mids, index, last, basis_ema, mark, mark_high, mark_low, premium_sum, alpha, roll, method):
    """``update_mark`` written into the state arrays in place (``mark``, ``mark_high``,
    ``mark_low``, ``basis_ema``): nothing is handed back to Python."""
    marks, ema = update_mark(mids, index, last, basis_ema, mark_high, mark_low, premium_sum, alpha, roll, method)
    for i in range(len(mark)):
        mark[i] = marks[0, i]
        mark_high[i] = marks[1, i]
        mark_low[i] = marks[2, i]
        basis_ema[i] = ema[i]


@njit
def roll_marks_into(prices, tick_sizes, mids, index, mark, previous_mark, last, basis_ema, mark_high, mark_low,
                    premium_sum, alpha, method):
    """``roll_marks`` written into the state arrays in place (``index``, ``previous_mark``, then
    what ``update_mark_into`` writes). Returns ``ok``; when not ``ok`` nothing is written."""
    ok, ints, floats = roll_marks(prices, tick_sizes, mids, mark, last, basis_ema, mark_high, mark_low, premium_sum,
                                  alpha, method)
    if not ok:
        return False
    for i in range(len(mark)):
        mark[i] = ints[0, i]
        mark_high[i] = ints[1, i]
        mark_low[i] = ints[2, i]
        previous_mark[i] = ints[3, i]
        basis_ema[i] = floats[0, i]
        index[i] = floats[1, i]
    return True


@njit
def window_std_table(returns, window, steps):
    """``window_std(returns, max(0, t - window), t)`` for every step ``t < steps`` (zeros where
    the window holds fewer than two returns): the makers' realised volatility of the whole run
    in one call, each row the per-step call's values."""
    out = np.zeros((steps, returns.shape[1]), np.float64)
    for t in range(steps):
        lo = max(0, t - window)
        if t + 1 - lo < 3:
            continue
        out[t] = window_std(returns, lo, t)
    return out


@njit
def window_signals_table(path, lookback, steps):
    """``window_signals(path, max(0, t - lookback), t + 1)`` for every step ``t < steps``: the
    traders' signs of the whole run in one call, (trend rows, mean-reversion rows)."""
    m_count = path.shape[1]
    trend = np.empty((steps, m_count), np.float64)
    reversion = np.empty((steps, m_count), np.float64)
    for t in range(steps):
        a, b = window_signals(path, max(0, t - lookback), t + 1)
        trend[t] = a
        reversion[t] = b
    return trend, reversion
