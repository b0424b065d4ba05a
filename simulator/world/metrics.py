"""Per-run summary metrics (DESIGN.md §6) and across-run statistics helpers.

``summarize(timeseries, events, meta)`` turns one run into one flat dict of scalars (one row
of a batch's Parquet table; the keys are ``SUMMARY_KEYS``, always all of them, in that order).
The pure functions ``cvar``, ``describe``, ``paired_bootstrap_ci`` and ``gini`` aggregate a
metric over Monte Carlo runs.

Units: every money figure in the summary is in the run's **settlement asset**
(``settlement_asset``: the quote currency, USD, for linear markets; the coin, e.g. BTC, for an
inverse run), i.e. ledger cash units times ``meta["cash_unit"]``; the ``fund_*_usd`` keys give
the insurance fund in the quote currency (coin x mark for an inverse run). Notionals are in the
quote currency: ``|qty| * price * lot_size * tick_size`` of the event's market (``qty`` in lots,
``price`` in ticks), for an inverse contract its face value ``|qty| * lot_size``; fractions are fractions (0.3 = 30 %) unless the
key ends in ``_pct``. NaN marks a metric that is undefined for the run (documented per key).

Inputs (the contract with the run machinery):

* ``events``: ``EventLog.to_frame()`` (see ``simulator.venue.events.KINDS``).
* ``timeseries``: one row per step with at least ``step, index, last, mark,
  depth_bid_1pct, insurance_fund, residual`` (quote-currency floats, ``residual`` an int);
  optional ``cascade_depth`` and ``max_leverage_after_adl``. Missing columns give NaN.
* ``meta``: ``cash_unit``; ``tick_size`` and ``lot_size`` (market 0) or lists ``tick_sizes``
  and ``lot_sizes`` indexed by market; ``insurance_fund_start`` (quote); optional
  ``zero_position_accounts``, ``equity_before_socialization``, ``profitable_accounts``,
  ``maker_accounts``, ``first_shock_step``, ``opening_net_notional``, ``opening_unfilled_notional``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from simulator.world.who_paid import hedger_metrics

#: Every key ``summarize`` returns, in order; one line each (the docstring of ``summarize``
#: gives the full definitions).
SUMMARY_KEYS: tuple[str, ...] = (
    # run
    "steps",
    "conservation_residual_max_abs",
    # prices
    "index_min",
    "last_min",
    "mark_min",
    "overshoot",
    "max_drawdown",
    "drawdown_peak_step",
    "drawdown_trough_step",
    "steps_to_half_recovery",
    # liquidations
    "liquidation_count",
    "liquidation_events",
    "liquidated_accounts",
    "liquidation_notional",
    "liq_notional_book",
    "liq_notional_backstop",
    "liq_notional_insurance_fund",
    "liq_notional_adl",
    "liq_notional_engine",
    "max_cascade_depth",
    "amplification_r",
    # deficit
    "deficit_total",
    "surplus_total",
    "covered_insurance_fund",
    "covered_backstop",
    "covered_adl",
    "covered_socialize",
    "venue_loss",
    "deficit_covered_total",
    "socialize_pending",
    "engine_equity_end",
    # insurance fund
    "fund_start",
    "fund_min",
    "fund_end",
    "fund_drawdown",
    "fund_depleted",
    "fund_depleted_step",
    "fund_paid",
    "fund_received",
    # ADL
    "adl_triggered",
    "adl_cases",
    "adl_cases_solvent",
    "adl_accounts",
    "adl_fills",
    "adl_notional",
    "adl_pnl_taken",
    "adl_profit_taken",
    "adl_haircut",
    "adl_paid_beyond_deficit",
    "adl_notional_fund_empty",
    "adl_notional_fund_drawdown",
    "adl_notional_negative_equity",
    "adl_notional_takeover_refused",
    "adl_notional_book_exhausted",
    "adl_notional_price_band",
    "adl_shortfall",
    "adl_overshoot",
    "adl_gini",
    "adl_share_winners_hit",
    "max_leverage_after_adl",
    # socialization
    "socialization_triggered",
    "socialized_total",
    "socialized_accounts",
    "socialized_max_haircut_pct",
    "socialized_max_share_pct",
    "socialized_share_zero_position",
    "venue_loss_occurred",
    # market health
    "two_sided_share",
    "two_sided_share_pre_shock",
    "steps_empty_side",
    "makers_liquidated",
    "makers_liquidated_pre_shock",
    "liquidations_pre_shock",
    "opening_unfilled_share",
)
#: What ADL and socialization cost hedging traders (``simulator.world.who_paid``); appended
#: last, in their own tuple, so edits of the list above merge cleanly.
HEDGER_KEYS: tuple[str, ...] = ("hedger_shortfall", "hedger_shortfall_pct")
#: Withdrawals and the withdrawal factor (Paradex socialized loss factor); see ``summarize``.
WITHDRAWAL_KEYS: tuple[str, ...] = ("withdrawn", "withdrawal_haircut", "socialized_outstanding")
#: The run's settlement: the asset money figures are in, its cash unit, and the insurance fund's
#: value in the quote currency (an inverse fund is held in coin: its dollar value falls with the
#: price even before it pays anything).
SETTLEMENT_KEYS: tuple[str, ...] = ("settlement_asset", "cash_unit", "fund_start_usd", "fund_min_usd", "fund_end_usd")
SUMMARY_KEYS = SUMMARY_KEYS + WITHDRAWAL_KEYS + SETTLEMENT_KEYS + HEDGER_KEYS

_STAGES = ("book", "backstop", "insurance_fund", "adl", "engine")
#: Why ADL fired (the ``reason`` of ``adl`` events; simulator.venue.waterfall.adl).
ADL_REASONS = ("fund_empty", "fund_drawdown", "negative_equity", "takeover_refused", "book_exhausted", "price_band")
NAN = float("nan")


# ============================================================== across-run statistics
def _clean(x) -> np.ndarray:
    """1-D float array with NaN removed (bools become 0/1)."""
    a = np.asarray(x, dtype=float).ravel()
    return a[~np.isnan(a)]


def cvar(x, level: float = 0.95) -> float:
    """Expected shortfall of a *loss-like* metric: the mean of its upper ``1 - level`` tail.

    Convention (upper tail, larger = worse): with ``n`` non-NaN values sorted descending, the
    tail holds mass ``m = n * (1 - level)`` observations; the ``floor(m)`` largest count fully
    and the next one with weight ``m - floor(m)`` (the Acerbi-Tasche estimator), divided by
    ``m``. When ``m`` is a whole number this is just the mean of the ``m`` largest values
    (1..100 at 95 %: mean of 96..100 = 98); when ``m < 1`` it is the maximum. For a
    gain-like metric pass ``-x`` and negate. NaN when there is no value.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = np.sort(_clean(x))[::-1]
    n = len(a)
    if n == 0:
        return NAN
    m = round(n * (1 - level), 9)  # 100 * (1 - 0.95) is 5.000000000000004 in floats
    k = int(math.floor(m))
    frac = m - k
    total = float(a[:k].sum())
    if frac > 0:
        total += frac * float(a[k])
    return total / m


def describe(values) -> dict[str, float]:
    """``mean, median, p95, p99, cvar95`` and ``n`` (count) of the non-NaN values.

    Percentiles use numpy's default linear interpolation; ``cvar95`` is ``cvar(values, 0.95)``
    (upper tail). Booleans count as 0/1, so the mean of a flag is its probability. All
    statistics are NaN (and ``n`` is 0) when no value is left.
    """
    a = _clean(values)
    if len(a) == 0:
        return {"mean": NAN, "median": NAN, "p95": NAN, "p99": NAN, "cvar95": NAN, "n": 0}
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "cvar95": cvar(a, 0.95),
        "n": int(len(a)),
    }


def paired_bootstrap_ci(a, b, n_boot: int = 2000, level: float = 0.95, rng=None) -> tuple[float, float, float]:
    """Mean paired difference ``b - a`` and its percentile-bootstrap confidence interval.

    ``a[i]`` and ``b[i]`` are the same metric for two designs run on the same seed (common
    random numbers). Pairs with a NaN on either side are dropped. Each bootstrap replicate
    resamples whole pairs with replacement and takes the mean difference; the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the replicates.

    Args:
        rng: a ``numpy.random.Generator`` (required: the caller owns the randomness).

    Returns:
        ``(mean_difference, low, high)``; all NaN when no pair is left.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    d = (b - a)[~(np.isnan(a) | np.isnan(b))]
    n = len(d)
    if n == 0:
        return NAN, NAN, NAN
    est = float(d.mean())
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)  # bound the index matrix to ~16 MB
    for lo in range(0, n_boot, chunk):
        hi = min(n_boot, lo + chunk)
        means[lo:hi] = d[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return est, float(low), float(high)


def gini(x) -> float:
    """Gini coefficient of non-negative values (NaN ignored).

    ``G = sum_i sum_j |x_i - x_j| / (2 n^2 mean)``: 0 when all values are equal (or all zero,
    or fewer than two values), ``(n - 1) / n`` when one of ``n`` values holds everything
    (``[0, 0, 0, 4]`` gives 0.75). Raises ``ValueError`` on a negative value.
    """
    a = np.sort(_clean(x))
    n = len(a)
    if n and a[0] < 0:
        raise ValueError("gini needs non-negative values")
    total = float(a.sum())
    if n < 2 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(2 * (i * a).sum() / (n * total) - (n + 1) / n)


# ================================================================== per-run summary
def _col(frame: pd.DataFrame, name: str) -> np.ndarray | None:
    if frame is None or name not in frame.columns:
        return None
    col = frame[name]
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iufb":  # already numeric: to_numeric keeps it
        return col.to_numpy(dtype=float)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)


def _nanmin(a) -> float:
    if a is None or len(a) == 0 or np.isnan(a).all():
        return NAN
    return float(np.nanmin(a))


def _nanmax(a) -> float:
    if a is None or len(a) == 0 or np.isnan(a).all():
        return NAN
    return float(np.nanmax(a))


def _market_scale(meta: Mapping, markets: np.ndarray) -> np.ndarray:
    """Quote currency per (lot x tick), per row's market."""
    if "lot_sizes" in meta or "tick_sizes" in meta:
        lots = np.asarray(meta.get("lot_sizes", [meta.get("lot_size")]), dtype=float)
        ticks = np.asarray(meta.get("tick_sizes", [meta.get("tick_size")]), dtype=float)
        scale = lots * ticks
        m = np.clip(markets.astype(np.int64), 0, None)
        return scale[m]
    return np.full(len(markets), float(meta["lot_size"]) * float(meta["tick_size"]))


def _notional(rows: pd.DataFrame, meta: Mapping) -> np.ndarray:
    """Quote notional of event rows: |qty| * price * lot * tick (an inverse contract: its face
    value |qty| * lot, whatever the price)."""
    if len(rows) == 0:
        return np.zeros(0)
    return _notional_of(rows["qty"].to_numpy(dtype=float), rows["price"].to_numpy(dtype=float),
                        rows["market"].to_numpy(), meta)


def _notional_of(qty: np.ndarray, price: np.ndarray, market: np.ndarray, meta: Mapping) -> np.ndarray:
    """``_notional`` of rows given as arrays (qty and price as floats)."""
    q = np.abs(qty)
    v = q * price * _market_scale(meta, market)
    if any(meta.get("inverse") or ()):
        m = np.clip(market.astype(np.int64), 0, None)
        inverse = np.asarray(meta["inverse"], dtype=bool)[m]
        v = np.where(inverse, q * np.asarray(meta["lot_sizes"], dtype=float)[m], v)
    return np.nan_to_num(v)


def _price_metrics(ts: pd.DataFrame) -> dict:
    out = {}
    idx = _col(ts, "index")
    out["index_min"] = _nanmin(idx)
    out["last_min"] = _nanmin(_col(ts, "last"))
    out["mark_min"] = _nanmin(_col(ts, "mark"))
    out["overshoot"] = (
        (out["index_min"] - out["last_min"]) / out["index_min"]
        if out["index_min"] > 0 and not math.isnan(out["last_min"])
        else NAN
    )
    out.update(max_drawdown=NAN, drawdown_peak_step=-1, drawdown_trough_step=-1, steps_to_half_recovery=NAN)
    out["_peak_pos"] = -1
    if idx is None or len(idx) == 0 or np.isnan(idx).all():
        return out
    steps = _col(ts, "step")
    steps = np.arange(len(idx), dtype=float) if steps is None else steps
    peak_run = np.fmax.accumulate(idx)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak_run > 0, (peak_run - idx) / peak_run, np.nan)
    if np.isnan(dd).all():
        return out
    trough = int(np.nanargmax(dd))
    max_dd = float(dd[trough])
    out["max_drawdown"] = max(0.0, max_dd)
    if not max_dd > 0:
        return out
    peak_val = peak_run[trough]
    peak_pos = int(np.flatnonzero(idx[: trough + 1] == peak_val)[-1])  # last touch before the drop
    out["_peak_pos"] = peak_pos
    out["drawdown_peak_step"] = int(steps[peak_pos])
    out["drawdown_trough_step"] = int(steps[trough])
    half = idx[trough] + 0.5 * (peak_val - idx[trough])
    after = np.flatnonzero(idx[trough + 1 :] >= half)
    if len(after):
        out["steps_to_half_recovery"] = float(steps[trough + 1 + after[0]] - steps[trough])
    return out


def _fund_metrics(ts: pd.DataFrame, meta: Mapping) -> dict:
    fund = _col(ts, "insurance_fund")
    start = meta.get("insurance_fund_start")
    if start is None:
        start = float(fund[0]) if fund is not None and len(fund) else NAN
    start = float(start)
    series_min = _nanmin(fund)
    fund_min = float(np.nanmin([start, series_min])) if not (math.isnan(start) and math.isnan(series_min)) else NAN
    end = float(fund[~np.isnan(fund)][-1]) if fund is not None and (~np.isnan(fund)).any() else start
    depleted_step = -1
    if fund is not None:
        hit = np.flatnonzero(fund <= 0)
        if len(hit):
            steps = _col(ts, "step")
            depleted_step = int(steps[hit[0]]) if steps is not None else int(hit[0])
    # the fund's value in the quote currency: the same numbers for a linear run; an inverse
    # run's fund is coin x mark (the ``insurance_fund_usd`` series; the start at the opening price)
    usd = _col(ts, "insurance_fund_usd")
    if usd is None:
        start_usd, min_usd, end_usd = start, fund_min, end
    else:
        start_usd = start * float(meta.get("quote_per_coin", 1.0))
        min_usd = float(np.nanmin([start_usd, _nanmin(usd)]))
        end_usd = float(usd[~np.isnan(usd)][-1]) if (~np.isnan(usd)).any() else start_usd
    return {
        "fund_start_usd": start_usd,
        "fund_min_usd": min_usd,
        "fund_end_usd": end_usd,
        "fund_start": start,
        "fund_min": fund_min,
        "fund_end": end,
        "fund_drawdown": max(0.0, start - fund_min) if not math.isnan(fund_min) else NAN,
        # a fund that starts empty cannot be depleted; one that had money and reached 0 was
        "fund_depleted": bool(start > 0 and fund_min <= 0) if not math.isnan(fund_min) else False,
        "fund_depleted_step": depleted_step,
    }


def _zero_position_mask(step: np.ndarray, account: np.ndarray, zero) -> np.ndarray:
    """Socialize rows (their steps and accounts) charged to a zero-position account (ids, or
    (step, account) pairs to match each charge's step)."""
    zero = list(zero)
    if zero and isinstance(zero[0], (tuple, list)):
        pairs = {(int(s), int(a)) for s, a in zero}
        return np.array([(s, a) in pairs for s, a in zip(step.astype(np.int64).tolist(), account.astype(np.int64).tolist())],
                        dtype=bool)
    return np.isin(account, np.array([int(a) for a in zero], dtype=np.int64))


class _EventColumns:
    """The event frame's columns as numpy arrays, each converted once (numbers as stored;
    ``text``: ``astype(str)``, elementwise, so a subset of it is the subset's ``astype(str)``)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self._raw: dict[str, np.ndarray] = {}
        self._text: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def raw(self, name: str, pos: np.ndarray) -> np.ndarray:
        if not len(self.frame):
            return np.zeros(0, dtype=np.int64)
        if name not in self._raw:
            self._raw[name] = self.frame[name].to_numpy()
        return self._raw[name][pos]

    def int64(self, name: str, pos: np.ndarray) -> np.ndarray:
        """``frame[name].take(pos).to_numpy(dtype=np.int64)``."""
        a = self.raw(name, pos)
        return a if a.dtype == np.int64 else pd.Series(a).to_numpy(dtype=np.int64)

    def float(self, name: str, pos: np.ndarray) -> np.ndarray:
        """``frame[name].take(pos).to_numpy(dtype=float)``."""
        a = self.raw(name, pos)
        return a.astype(float) if a.dtype.kind in "iuf" else pd.Series(a).to_numpy(dtype=float)

    def text(self, name: str, pos: np.ndarray) -> np.ndarray:
        if not len(self.frame):
            return np.zeros(0, dtype=str)
        if name not in self._text:
            # astype(str) of each distinct value once (elementwise: the column's own astype(str))
            col = self.frame[name]
            codes, uniques = pd.factorize(col, use_na_sentinel=False)
            as_str = pd.Series(uniques, dtype=col.dtype).astype(str).to_numpy()
            self._text[name] = (codes, as_str)
        codes, as_str = self._text[name]
        return as_str[codes[pos]]


class _Rows:
    """Some rows of the event frame (the kind's, for an ``amount`` filter): ``text(column)``."""

    def __init__(self, cols: _EventColumns, pos: np.ndarray):
        self.cols, self.pos = cols, pos

    def text(self, name: str) -> np.ndarray:
        return self.cols.text(name, self.pos)


def _distinct_rows(*columns: np.ndarray) -> int:
    """Distinct rows of these columns (``drop_duplicates``)."""
    if not len(columns[0]):
        return 0
    if all(c.dtype.kind in "iu" for c in columns):
        # one int64 key per row, mixed radix over each column's range (distinct rows <-> keys)
        key, span = np.zeros(len(columns[0]), dtype=np.int64), 1
        for c in columns:
            c = c.astype(np.int64)
            low = int(c.min())
            width = int(c.max()) - low + 1
            span *= width
            if span >= 2**62:
                break
            key = key * width + (c - low)
        else:
            return int(len(np.unique(key)))
    return int(len(pd.DataFrame({i: c for i, c in enumerate(columns)}).drop_duplicates()))


def _nunique(a: np.ndarray) -> int:
    """Distinct values (``nunique``)."""
    return int(len(np.unique(a))) if a.dtype.kind in "iu" else int(pd.Series(a).nunique())


def _sums_by(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys, int64 sum of ``values`` per key): ``groupby(keys).sum()``."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    out = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(out, inverse, values)
    return uniq, out


def summarize(timeseries: pd.DataFrame, events: pd.DataFrame, meta: Mapping) -> dict[str, float | int | bool]:
    """One run's summary (DESIGN.md §6): a flat dict with exactly ``SUMMARY_KEYS``.

    Money and notionals in quote currency, fractions as fractions. Definitions:

    Run
        ``steps``: rows of ``timeseries``. ``conservation_residual_max_abs``: max |residual|
        (int; must be 0).

    Prices (``index``, ``last``, ``mark`` columns)
        ``index_min``, ``last_min``, ``mark_min``: minima (NaN ignored).
        ``overshoot = (index_min - last_min) / index_min`` (> 0: trades printed below the
        index low). ``max_drawdown``: largest peak-to-trough fall of the index as a fraction
        of the running peak (0 when it never falls). ``drawdown_peak_step`` /
        ``drawdown_trough_step``: the steps of that peak (its last touch before the fall) and
        trough (-1 without a fall). ``steps_to_half_recovery``: steps from the trough to the
        first later step whose index is >= trough + (peak - trough) / 2; NaN if never or no
        fall.

    Liquidations (``liquidation`` events)
        ``liquidation_count``: liquidation cases = distinct (step, round, account) with at
        least one liquidation row (an ADL'd case has one row per fill, a takeover one per
        market: these are one case). ``liquidation_events``: raw rows.
        ``liquidated_accounts``: distinct accounts. ``liquidation_notional``: sum of
        |qty| * price * lot * tick; ``liq_notional_<stage>`` the same for the rows whose
        ``stage`` is book, backstop, insurance_fund (takeover) or adl. ``max_cascade_depth``:
        max of the ``cascade_depth`` column, else from events (max distinct rounds with a
        liquidation in one step). ``amplification_r`` (SBF's R):
        ``liquidation_notional / (100 * max_drawdown) / mean(depth_bid_1pct over the steps
        up to and including the drawdown peak)``, i.e. notional liquidated per 1 % of index
        fall over the bid depth within 1 % before the fall (R > 1: runaway). NaN without a
        fall or with zero/unknown depth.

    Deficit
        ``deficit_total``: sum of ``deficit`` events. ``surplus_total``: sum of ``surplus``
        events. ``covered_insurance_fund``: ``fund_payout`` amounts plus deficits the fund
        absorbed by taking over a case with negative margin (``-amount`` of ``takeover`` rows
        with stage insurance_fund and amount < 0). ``covered_backstop``: the same for
        stage backstop. ``covered_adl``: what deleveraged counterparties paid: ``adl_haircut``
        amounts > 0 plus ``adl`` amounts > 0 (fill price worse than mark for them).
        ``covered_socialize``: ``socialize`` amounts. ``venue_loss``: ``venue_loss`` amounts.
        ``deficit_covered_total``: the sum of the five covers above (equals
        ``deficit_total`` when deficit events are recorded before any cover; a check).
        ``socialize_pending``: deficits parked for settlement (``socialize_pending``).

    Insurance fund (``insurance_fund`` column, fund equity)
        ``fund_start``: ``meta["insurance_fund_start"]`` (else the first row). ``fund_min``:
        min of start and the series. ``fund_end``: last value. ``fund_drawdown`` = start -
        min (>= 0). ``fund_depleted``: min <= 0. ``fund_depleted_step``: first step with
        fund <= 0, -1 if none. ``fund_paid`` / ``fund_received``: ``fund_payout`` /
        ``fund_surplus`` totals.

    ADL (``adl`` rows: account = deleveraged counterparty, counterparty = the case)
        ``adl_triggered``: any ADL fill. ``adl_accounts``: distinct counterparties.
        ``adl_fills``: rows. ``adl_notional``: sum |qty| * price * lot * tick.
        ``adl_pnl_taken``: sum of ``pnl`` (the counterparties' unrealised PnL on the closed
        lots, at mark; net, so a loser closed by a random queue counts negative).
        ``adl_profit_taken``: the same over positive ``pnl`` only (profit taken from winners).
        ``adl_haircut``: cash the counterparties paid (= ``covered_adl``).
        ``adl_shortfall``: the negative equity, at mark, of the cases ADL was matched against:
        per case (step, round, case account), ``sum(qty * (price - bankruptcy_price)) * lot *
        tick`` over its ``liquidation`` rows with stage adl, plus its ``adl`` amounts (the
        haircut vs mark, which moves a fill at a non-mark price back to mark), clipped at 0
        per case (a case with equity left has no shortfall). ``adl_overshoot``, after Chitra
        (arXiv 2512.01112: the trader-profit haircut beyond the minimum needed to cover the
        shortfall): ``max(0, adl_profit_taken - adl_shortfall)``. ``adl_gini``: Gini of the
        per-account profit taken (positive part of each account's summed ``pnl``) over the
        ADL'd accounts, 0 with fewer than 2. ``adl_share_winners_hit``: ADL'd accounts with
        positive PnL taken / ``meta["profitable_accounts"]`` (the number of profitable
        accounts on the deleveraged side, supplied by the run); NaN without it or if 0.
        ``max_leverage_after_adl``: max of that timeseries column, else NaN.

    Market health: see ``market_health`` (two-sided book share, steps with an empty side,
    makers liquidated, liquidations before the first shock, share of the opening not taken).

    Socialization (``socialize`` rows)
        ``socialization_triggered``: any charge. ``socialized_total``: sum charged.
        ``socialized_accounts``: distinct accounts charged. ``socialized_max_haircut_pct``:
        max over charged accounts of 100 * total charged / equity before socialization, from
        ``meta["equity_before_socialization"]`` ({account: equity in cash units}; accounts
        missing or with equity <= 0 skipped); NaN without it. ``socialized_max_share_pct``:
        100 * the largest share of ``socialized_total`` paid by one account (always defined
        when something was charged). ``socialized_share_zero_position``: share of
        ``socialized_total`` charged to ``meta["zero_position_accounts"]`` (account ids, or
        (step, account) pairs to match each charge's step); NaN without that key or without a
        charge. ``venue_loss_occurred``: any venue loss.

    Withdrawals (``withdrawal`` rows; ``socialize`` rows with reason ``withdrawal_factor``)
        ``withdrawn``: cash paid out to withdrawing accounts. ``withdrawal_haircut``: what the
        withdrawal factor kept of withdrawals (repaying the socialized loss; also counted in
        ``covered_socialize`` and ``socialized_total``). ``socialized_outstanding``: socialized
        loss the loss pool fronted and nobody has paid by the end of the run (not in any
        ``covered_*``): ``meta["socialized_outstanding"]`` (the loss pool's balance) when given,
        else from the events (``socialize_pending``; the two are equal).
    """
    cash = float(meta["cash_unit"])
    ev = events if events is not None else pd.DataFrame(columns=["kind"])
    # the kinds as codes (no Python string per event); the rows of kind k are those whose
    # value's str() is k, as comparing ``astype(str)`` selects them, in the frame's order
    codes, kinds = pd.factorize(ev["kind"]) if len(ev) else (np.zeros(0, dtype=np.intp), [])
    code_of: dict[str, list[int]] = {}
    for i, value in enumerate(kinds):
        code_of.setdefault(str(value), []).append(i)
    positions: dict[str, np.ndarray] = {}
    cols = _EventColumns(ev)  # each column read out of the frame once, then indexed

    def where_kind(k: str) -> np.ndarray:
        if k not in positions:
            positions[k] = np.flatnonzero(np.isin(codes, code_of.get(k, [])))
        return positions[k]

    def amount(k: str, where=None) -> int:
        pos = where_kind(k) if len(ev) else np.zeros(0, dtype=np.intp)
        a = cols.int64("amount", pos) if len(pos) else np.zeros(0, dtype=np.int64)
        if where is not None and len(a):
            a = a[where(_Rows(cols, pos), a)]
        return int(a.sum())

    def notional(pos: np.ndarray) -> np.ndarray:
        if not len(pos):
            return np.zeros(0)
        return _notional_of(cols.float("qty", pos), cols.float("price", pos), cols.raw("market", pos), meta)

    out: dict = {}
    ts = timeseries if timeseries is not None else pd.DataFrame()
    out["steps"] = int(len(ts))
    res = _col(ts, "residual")
    out["conservation_residual_max_abs"] = int(np.nanmax(np.abs(res))) if res is not None and len(res) and not np.isnan(res).all() else 0

    # ---- prices
    price = _price_metrics(ts)
    peak_pos = price.pop("_peak_pos")
    out.update(price)

    # ---- liquidations
    lpos = where_kind("liquidation") if len(ev) else np.zeros(0, dtype=np.intp)
    liq = _LiquidationRows(cols, lpos)
    liq_n = notional(lpos)
    out["liquidation_count"] = liq.cases(slice(None))
    out["liquidation_events"] = int(len(lpos))
    out["liquidated_accounts"] = _nunique(liq["account"]) if len(lpos) else 0
    out["liquidation_notional"] = float(liq_n.sum())
    stage = cols.text("stage", lpos) if len(lpos) else np.zeros(0, dtype=str)
    for s in _STAGES:
        out[f"liq_notional_{s}"] = float(liq_n[stage == s].sum())
    cascade = _col(ts, "cascade_depth")
    if cascade is not None and len(cascade) and not np.isnan(cascade).all():
        out["max_cascade_depth"] = int(np.nanmax(cascade))
    elif len(lpos):
        out["max_cascade_depth"] = int(pd.DataFrame({"step": liq["step"], "round": liq["round"]})
                                       .groupby("step")["round"].nunique().max())
    else:
        out["max_cascade_depth"] = 0
    depth = _col(ts, "depth_bid_1pct")
    r = NAN
    if peak_pos >= 0 and depth is not None and out["max_drawdown"] > 0:
        pre = depth[: peak_pos + 1]
        mean_depth = float(np.nanmean(pre)) if not np.isnan(pre).all() else NAN
        if mean_depth > 0:
            r = out["liquidation_notional"] / (100.0 * out["max_drawdown"]) / mean_depth
    out["amplification_r"] = r

    # ---- deficit: every deficit event is covered by cover events (simulator.venue.waterfall.cases)
    def covered(by: str) -> int:
        return amount("cover", lambda r, a: r.text("stage") == by)

    out["deficit_total"] = amount("deficit") * cash
    out["surplus_total"] = amount("surplus") * cash
    for by in ("insurance_fund", "backstop", "adl", "socialize"):
        out[f"covered_{by}"] = covered(by) * cash
    out["venue_loss"] = covered("venue") * cash
    out["socialize_pending"] = covered("socialize_pending") * cash
    out["deficit_covered_total"] = amount("cover") * cash
    out["engine_equity_end"] = float(meta.get("engine_equity_end", 0.0))

    # ---- insurance fund
    out.update(_fund_metrics(ts, meta))
    out["fund_paid"] = amount("fund_payout") * cash
    out["fund_received"] = (amount("fund_surplus") + amount(
        "takeover", lambda r, a: (r.text("stage") == "insurance_fund") & (a > 0))) * cash

    # ---- ADL
    apos = where_kind("adl") if len(ev) else np.zeros(0, dtype=np.intp)
    at_adl = stage == "adl"  # the liquidation rows ADL took
    out["adl_triggered"] = bool(len(apos) > 0)
    out["adl_cases"] = liq.cases(at_adl)
    if at_adl.any():
        out["adl_cases_solvent"] = liq.cases(at_adl & (liq["equity"] > 0))
    else:
        out["adl_cases_solvent"] = 0
    adl_account = cols.raw("account", apos) if len(apos) else np.zeros(0, dtype=np.int64)
    out["adl_accounts"] = _nunique(adl_account) if len(apos) else 0
    out["adl_fills"] = int(len(apos))
    adl_n = notional(apos)
    out["adl_notional"] = float(adl_n.sum())
    pnl = cols.int64("pnl", apos) if len(apos) else np.zeros(0, dtype=np.int64)
    out["adl_pnl_taken"] = int(pnl.sum()) * cash
    out["adl_profit_taken"] = int(pnl[pnl > 0].sum()) * cash
    out["adl_haircut"] = (amount("adl_haircut", lambda r, a: a > 0) + amount("adl", lambda r, a: a > 0)) * cash
    out["adl_paid_beyond_deficit"] = max(0.0, out["adl_haircut"] - out["covered_adl"])
    reason = cols.text("reason", apos) if len(apos) else np.zeros(0, dtype=str)
    for r in ADL_REASONS:
        out[f"adl_notional_{r}"] = float(adl_n[reason == r].sum())
    out["adl_shortfall"] = amount("deficit", lambda r, a: r.text("stage") == "adl") * cash
    out["adl_overshoot"] = max(0.0, out["adl_profit_taken"] - out["adl_shortfall"])
    if len(apos):
        per_acc = _sums_by(adl_account, pnl)[1].astype(float)
        out["adl_gini"] = gini(np.clip(per_acc, 0, None)) if len(per_acc) >= 2 else 0.0
        winners_hit = int((per_acc > 0).sum())
    else:
        out["adl_gini"] = 0.0
        winners_hit = 0
    profitable = meta.get("profitable_accounts")
    out["adl_share_winners_hit"] = winners_hit / float(profitable) if profitable else NAN
    lev_after = meta.get("max_leverage_after_adl")
    out["max_leverage_after_adl"] = float(lev_after) if lev_after is not None else _nanmax(_col(ts, "max_leverage_after_adl"))

    # ---- socialization
    spos = where_kind("socialize") if len(ev) else np.zeros(0, dtype=np.intp)
    soc_total = amount("socialize")
    out["socialization_triggered"] = bool(soc_total > 0)
    out["socialized_total"] = soc_total * cash
    soc_account = cols.raw("account", spos) if len(spos) else np.zeros(0, dtype=np.int64)
    out["socialized_accounts"] = _nunique(soc_account) if len(spos) else 0
    soc_amount = cols.int64("amount", spos) if len(spos) else np.zeros(0, dtype=np.int64)
    payers, per_payer = _sums_by(soc_account, soc_amount) if len(spos) else (np.zeros(0), np.zeros(0, dtype=np.int64))
    eq_before = meta.get("equity_before_socialization")
    max_pct = NAN
    if eq_before is not None and len(per_payer):
        eq = {int(k): float(v) for k, v in dict(eq_before).items()}
        pct = [100.0 * float(c) / eq[int(a)] for a, c in zip(payers.tolist(), per_payer.tolist()) if eq.get(int(a), 0) > 0]
        max_pct = max(pct) if pct else NAN
    out["socialized_max_haircut_pct"] = max_pct
    out["socialized_max_share_pct"] = 100.0 * float(per_payer.max()) / soc_total if soc_total > 0 else NAN
    zero = meta.get("zero_position_accounts")
    share_zero = NAN
    if zero is not None and soc_total > 0:
        mask = _zero_position_mask(cols.raw("step", spos), soc_account, zero)
        share_zero = float(soc_amount[mask].sum()) / soc_total
    out["socialized_share_zero_position"] = share_zero
    out["venue_loss_occurred"] = bool(out["venue_loss"] > 0)
    out["withdrawn"] = amount("withdrawal") * cash
    out["withdrawal_haircut"] = amount(
        "socialize", lambda r, a: r.text("reason") == "withdrawal_factor") * cash
    owed = meta.get("socialized_outstanding")
    out["socialized_outstanding"] = float(owed) if owed is not None else out["socialize_pending"]
    out.update(hedger_metrics(events, meta))  # HEDGER_KEYS
    out["settlement_asset"] = str(meta.get("settlement_asset", "USD"))
    out["cash_unit"] = cash

    out.update(_market_health(ts, liq, meta))
    return {k: _plain(out[k]) for k in SUMMARY_KEYS}


def market_health(ts: pd.DataFrame, liq: pd.DataFrame, meta: Mapping) -> dict:
    """Is the market alive? (market 0's book, as recorded at the end of each step.)

    ``two_sided_share``: share of steps with both a best bid and a best ask (NaN without the
    ``best_bid``/``best_ask`` columns or rows). ``two_sided_share_pre_shock``: the same over the
    steps before ``meta["first_shock_step"]`` (NaN without it or with no such step).
    ``steps_empty_side``: steps with no bid or no ask. ``makers_liquidated``: distinct
    ``meta["maker_accounts"]`` with a liquidation row; ``makers_liquidated_pre_shock`` and
    ``liquidations_pre_shock`` (cases, as ``liquidation_count``) before the first shock.
    ``opening_unfilled_share``: share of the traders' net opening position nobody had the
    capacity to take at step 0 (``meta["opening_unfilled_notional"] /
    meta["opening_net_notional"]``; 0 when the net is 0, NaN without them).
    """
    if len(liq):
        liq = _LiquidationRows.of_frame(liq)
    else:
        liq = _LiquidationRows(_EventColumns(liq.iloc[:0]), np.zeros(0, dtype=np.intp))
    return _market_health(ts, liq, meta)


def _market_health(ts: pd.DataFrame, liq: "_LiquidationRows", meta: Mapping) -> dict:
    """``market_health`` of the liquidation rows as arrays."""
    out = {}
    bid, ask = _col(ts, "best_bid"), _col(ts, "best_ask")
    first = meta.get("first_shock_step")
    if bid is not None and ask is not None and len(bid):
        two = ~np.isnan(bid) & ~np.isnan(ask)
        out["two_sided_share"] = float(two.mean())
        out["steps_empty_side"] = int((~two).sum())
        step = _col(ts, "step")
        pre = two[step < first] if first is not None and step is not None else two[:0]
        out["two_sided_share_pre_shock"] = float(pre.mean()) if len(pre) else NAN
    else:
        out["two_sided_share"] = out["two_sided_share_pre_shock"] = NAN
        out["steps_empty_side"] = 0
    makers = np.array([int(a) for a in meta.get("maker_accounts", ())], dtype=np.int64)
    n = len(liq)
    before = liq["step"] < first if n and first is not None else np.zeros(n, dtype=bool)
    account = liq["account"] if n else np.zeros(0, dtype=np.int64)
    hit = np.isin(account, makers)
    out["makers_liquidated"] = _nunique(account[hit]) if hit.any() else 0
    out["makers_liquidated_pre_shock"] = _nunique(account[hit & before]) if (hit & before).any() else 0
    out["liquidations_pre_shock"] = liq.cases(before) if before.any() else 0
    net, unfilled = meta.get("opening_net_notional"), meta.get("opening_unfilled_notional")
    if net is None or unfilled is None:
        out["opening_unfilled_share"] = NAN
    else:
        out["opening_unfilled_share"] = float(unfilled) / float(net) if net > 0 else 0.0
    return out


class _LiquidationRows:
    """The liquidation rows' columns (``rows["step"]``: an array), read once each."""

    def __init__(self, cols: _EventColumns, pos: np.ndarray):
        self.cols, self.pos = cols, pos
        self._col: dict[str, np.ndarray] = {}

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> "_LiquidationRows":
        return cls(_EventColumns(frame), np.arange(len(frame)))

    def __len__(self) -> int:
        return len(self.pos)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._col:
            self._col[name] = self.cols.raw(name, self.pos)
        return self._col[name]

    def cases(self, where) -> int:
        """Distinct (step, round, account) among the rows ``where`` selects."""
        if not len(self.pos):
            return 0
        return _distinct_rows(self["step"][where], self["round"][where], self["account"][where])


#: Below this share of steps with a two-sided book a run is reported as degenerate.
MIN_TWO_SIDED_SHARE = 0.95


def health_warnings(summary: Mapping) -> list[str]:
    """Why a run's market was not alive (empty when it was): a one-sided book, makers
    liquidated before the first shock, or a cut opening. The CLI prints them loudly."""
    out = []

    def val(k):
        v = summary.get(k)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    two, pre = val("two_sided_share"), val("two_sided_share_pre_shock")
    if pre is not None and pre < MIN_TWO_SIDED_SHARE:
        out.append(f"the book was two-sided on only {pre:.1%} of the steps before the first shock")
    if two is not None and two < MIN_TWO_SIDED_SHARE:
        out.append(f"the book was two-sided on only {two:.1%} of all steps "
                   f"({summary.get('steps_empty_side')} steps with an empty side)")
    if val("makers_liquidated_pre_shock"):
        out.append(f"{summary['makers_liquidated_pre_shock']} market maker(s) liquidated before the first shock")
    cut = val("opening_unfilled_share")
    if cut is not None and cut > 0.05:
        out.append(f"{cut:.1%} of the traders' net opening position found no liquidity provider to take it")
    return out


def _plain(v):
    """Plain Python scalar (JSON/Parquet friendly)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, str):
        return v
    return float(v)


def summary_frame(summaries: Iterable[Mapping]) -> pd.DataFrame:
    """Summaries of many runs as one DataFrame with the ``SUMMARY_KEYS`` columns first."""
    df = pd.DataFrame(list(summaries))
    first = [k for k in SUMMARY_KEYS if k in df.columns]
    return df[first + [c for c in df.columns if c not in first]]
