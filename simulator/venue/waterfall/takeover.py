"""Taking a case's positions and margin over: the backstop vault, the fund, the engine.

The taker trades the case's positions at mark (whole ticks), then the case's whole remaining
equity (either sign) moves to the taker in cash: the same as taking the positions at the
bankruptcy price, exactly, in integers. The taker covers the case's deficit (negative equity)
and receives its surplus (positive equity) as margin.
"""

from __future__ import annotations

import numpy as np

from simulator.venue.fixedpoint import PPM, muldiv, muldiv_ceil
from simulator.venue.margin import bankruptcy_prices
from simulator.venue.settlement import fill_notional


def take_over(venue, cases, taker: int, eligible, stage: str, room_needed: str = "maintenance",
              max_leverage: float | None = None, move_margin: bool = True) -> None:
    """``taker`` takes the eligible cases (worst first) while its capacity allows.

    Args:
        taker: ledger row taking the positions.
        eligible: mask over the cases.
        stage: name recorded on the events and used for attribution.
        room_needed: what the taker's equity must still cover after each case:
            ``maintenance`` (of everything it then holds; a vault), ``loss`` (only the
            case's loss to bankruptcy, i.e. its equity after stays >= 0; a fund), or
            ``none`` (the venue's liquidation engine: no capacity limit).
        max_leverage: optional extra cap: gross notional after / ``max_leverage``.
        move_margin: move the case's remaining equity to the taker (False: the taker trades at
            mark and the case keeps its wallet, negative or not; the engine).
    """
    led = venue.ledger
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return
    acc = cases.accounts[idx]
    if room_needed != "none":
        eq_taker = int(venue.equity(np.array([taker]))[0])
        eq_cases = venue.equity(acc)
        need_taker = 0
        need_cases = np.zeros(len(acc), dtype=np.int64)
        if room_needed == "maintenance":
            need_taker = int(venue.maintenance(np.array([taker])).sum())
            need_cases = venue.maintenance(acc).sum(axis=1)
        if max_leverage is not None:  # the taker's and the cases' rows only
            need_taker = max(need_taker, led.notional(led.qty[[taker]], venue.marks)[0].sum() / max_leverage)
            need_cases = np.maximum(need_cases, led.notional(led.qty[acc], venue.marks).sum(axis=1) / max_leverage)
        room = eq_taker - need_taker + np.cumsum(eq_cases - need_cases)
        fits = room >= 0
        n = len(fits) if fits.all() else int(np.argmin(fits))  # serve the prefix that fits
        cases.takeover_refused[idx[n:]] = True
        if n == 0:
            return
        acc, idx = acc[:n], idx[:n]
    taken = np.zeros(len(cases.accounts), dtype=bool)
    taken[idx] = True
    cases.track(venue, taken, stage)
    _trade_to_taker(venue, cases, taker, idx, acc, led.qty[acc], stage, venue.equity(acc))
    cases.record_flat(venue, stage)
    if move_margin:
        margin = led.wallet[acc].copy()  # flat now: the wallet is the remaining equity
        led.transfer(acc, taker, margin)
        venue.events.add("takeover", stage=stage, account=acc, counterparty=taker, amount=margin)
    cases.update(venue, stage, covering=move_margin)


def take_share(venue, cases, taker: int, eligible, stage: str, share_step_ppm: int, target_ratio_ppm: int,
               penalty_ppm: int) -> np.ndarray:
    """Paradex's partial liquidation: ``taker`` takes the same share of every position of each
    eligible solvent case, the smallest multiple of ``share_step_ppm`` after which the margin
    ratio (maintenance / equity) is below ``target_ratio_ppm``, at mark, and the case pays a
    penalty of ``share x penalty_ppm x maintenance`` to ``taker``; the rest stays with the trader.

    The new maintenance is predicted as ``(1 - share) x maintenance`` (Paradex's own table).
    A case for which no share leaves equity above the penalty is left to the caller (a full
    takeover). Returns the mask of cases handled here.
    """
    led = venue.ledger
    handled = np.zeros(len(cases.accounts), dtype=bool)
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return handled
    acc = cases.accounts[idx]
    eq = venue.equity(acc)
    mm = venue.maintenance(acc).sum(axis=1)
    share = np.zeros(len(acc), dtype=np.int64)
    penalty = np.zeros(len(acc), dtype=np.int64)
    for s in range(share_step_ppm, PPM + 1, share_step_ppm):
        pen = muldiv(muldiv(mm, s, PPM), penalty_ppm, PPM)
        left_mm = mm - muldiv(mm, s, PPM)
        left_eq = eq - pen
        # ratio below target, exactly: left_mm < target x left_eq  <=>  left_mm < ceil(target x left_eq)
        ok = (share == 0) & (left_eq > 0) & (left_mm < muldiv_ceil(left_eq, target_ratio_ppm, PPM))
        share[ok] = s
        penalty[ok] = pen[ok]
    go = share > 0
    if not go.any():
        return handled
    idx, acc, share, penalty = idx[go], acc[go], share[go], penalty[go]
    handled[idx] = True
    q = led.qty[acc]
    lots = np.sign(q) * np.minimum(muldiv_ceil(np.abs(q), share[:, None], PPM), np.abs(q))  # at least the share
    _trade_to_taker(venue, cases, taker, idx, acc, lots, stage, eq[go])
    paid = penalty > 0
    if paid.any():
        led.transfer(acc[paid], taker, penalty[paid])
        venue.events.add("fund_surplus", stage=stage, account=acc[paid], amount=penalty[paid])
    back = venue.equity(acc) >= venue.maintenance(acc).sum(axis=1)
    cases.restored[idx] |= back & (led.qty[acc] != 0).any(axis=1)
    cases.record_flat(venue, stage)
    return handled


def _trade_to_taker(venue, cases, taker: int, idx, acc, lots, stage: str, equity) -> None:
    """``taker`` takes ``lots[k, m]`` (signed, the case's side) of each case ``idx[k]`` at mark,
    market by market, logging a liquidation per case and market."""
    led = venue.ledger
    for m in range(venue.n_markets):
        held = lots[:, m] != 0
        if not held.any():
            continue
        a, qh = acc[held], lots[held, m]
        p_b = bankruptcy_prices(led, venue.marks, a, m)
        mark = int(venue.marks[m])
        cases.liquidated_notional[idx[held]] += fill_notional(
            np.abs(qh), np.full(len(qh), mark), int(venue.contract_values[m]), bool(venue.inverse[m]))
        led.trade(m, np.where(qh > 0, taker, a), np.where(qh > 0, a, taker), np.abs(qh), venue.marks[m])
        venue.events.add("liquidation", amount=0, stage=stage, account=a, counterparty=taker, market=m,
                         qty=-qh, price=float(mark), bankruptcy_price=p_b, equity=equity[held])
