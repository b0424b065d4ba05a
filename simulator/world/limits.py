"""Checks a scenario must pass beyond its field types: what the integer ledger can hold, and
settings that would run but give nonsense (a market where nothing can trade, a maintenance
rate above the initial margin rate, an index path driven to zero).

``check_scenario`` returns ``(field path, message)`` pairs; ``scenario.validate`` turns each
into ``FILE: FIELD: MESSAGE`` and raises before anything runs.

Money is int64 micro-USD in the ledger (``CASH_UNIT``): the sum of every wallet must stay below
2**63 micro-USD (~9.2e12 USD), so any single amount is capped at ``MAX_MONEY`` and the money a
scenario deposits at ``MAX_TOTAL_MONEY``.
"""

from __future__ import annotations

import math
import re
from typing import Any, get_args, get_origin

CASH_UNIT = 1e-6  # quote currency per ledger cash unit (world.model.CASH_UNIT)
INVERSE_CASH_UNIT = 1e-8  # settlement coin per ledger cash unit of an inverse run (a satoshi)
MAX_MONEY = 1e12  # one amount, quote currency
MAX_TOTAL_MONEY = 4e12  # everything deposited at the start, quote currency
MAX_STEP_SECONDS = 365 * 24 * 3600.0
YEAR_SECONDS = 365 * 24 * 3600
MIN_TICKS_PER_PRICE = 100  # the start price must be at least this many ticks
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,-]{0,99}$")


# ---------------------------------------------------------------- strict numbers
def _allows_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if annotation is Any:
        return True
    args = get_args(annotation)
    if get_origin(annotation) is not None and args:
        return any(_allows_bool(a) for a in args if a is not type(None))
    return False


def _is_number(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and any(a in (int, float) for a in args)


FIELD_SEP = "] "  # "[field] message": scenario._format puts the field into the path


def reject_bool_for_number(model_cls, data):
    """``count: true`` is not 1: refuse a YAML boolean where a number is expected."""
    if isinstance(data, dict):
        for name, value in data.items():
            if not isinstance(value, bool):
                continue
            field = model_cls.model_fields.get(name)
            if field is not None and not _allows_bool(field.annotation) and _is_number(field.annotation):
                raise ValueError(f"[{name}{FIELD_SEP}expected a number, got the boolean {str(value).lower()}")
    return data


# ---------------------------------------------------------------- scenario checks
def _money(problems, path: str, value) -> None:
    if value is not None and value > MAX_MONEY:
        problems.append((path, f"{value:g} is more than the ledger can hold in one amount (at most {MAX_MONEY:g})"))


def _lognormal_max(dist) -> float:
    top = dist.median * math.exp(min(5.5 * dist.sigma, 700))
    return min(top, dist.cap) if dist.cap is not None else top


def _lognormal_mean(dist) -> float:
    mean = dist.median * math.exp(min(dist.sigma**2 / 2, 700))
    return min(mean, dist.cap) if dist.cap is not None else mean


def _start_price(model) -> float | None:
    price = getattr(model, "start_price", None)
    if price is None:
        price = getattr(model, "rescale_to", None)
    return price


def check_design(design, prefix: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    _money(problems, f"{prefix}insurance_fund", design.insurance_fund)
    _money(problems, f"{prefix}backstop_capital", design.backstop_capital)
    for i, st in enumerate(design.waterfall):
        _money(problems, f"{prefix}waterfall.{i}.cap_per_event", getattr(st, "cap_per_event", None))
        _money(problems, f"{prefix}waterfall.{i}.slice_above", getattr(st, "slice_above", None))
    return problems


def _with_contract(sc, design):
    """``sc`` with its markets settled as ``design.contract`` says (no designs, no recursion)."""
    patch = {k: v for k, v in design.contract.model_dump().items() if v is not None}
    return sc.model_copy(update={"designs": [], "markets": [m.model_copy(update=patch) for m in sc.markets]})


def check_scenario(sc) -> list[tuple[str, str]]:
    """Problems of a validated ``Scenario`` as ``(field path, message)``; empty when fine."""
    p: list[tuple[str, str]] = []
    if not NAME_RE.match(sc.name) or ".." in sc.name:
        p.append(("name", f"{sc.name!r}: use letters, digits and . _ - + = , only (it names the results folder)"))
    if sc.step_seconds > MAX_STEP_SECONDS:
        p.append(("step_seconds", f"{sc.step_seconds:g} s is more than a year per step"))

    v, a = sc.venue, sc.agents
    _money(p, "venue.insurance_fund", v.insurance_fund)
    _money(p, "venue.backstop_capital", v.backstop_capital)
    for i, st in enumerate(v.waterfall):
        _money(p, f"venue.waterfall.{i}.cap_per_event", getattr(st, "cap_per_event", None))
        _money(p, f"venue.waterfall.{i}.slice_above", getattr(st, "slice_above", None))
    for i, d in enumerate(sc.designs):
        p += check_design(d, f"designs.{i}.")
        if d.contract is not None:  # the markets as this design settles them must work too
            patched = _with_contract(sc, d)
            p += [(f"designs.{i}.contract", f"{field}: {msg}") for field, msg in check_scenario(patched)
                  if field.startswith("markets")]
    t, mm, arb = a.traders, a.market_makers, a.arbitrageurs
    _money(p, "agents.traders.capital.median", t.capital.median)
    _money(p, "agents.traders.capital.cap", t.capital.cap)
    if t.count and t.capital.cap is None and _lognormal_max(t.capital) > MAX_MONEY:
        p.append(("agents.traders.capital", f"median {t.capital.median:g} with sigma {t.capital.sigma:g} draws "
                  f"capitals beyond {MAX_MONEY:g}; lower sigma or set capital.cap"))
    _money(p, "agents.market_makers.capital", mm.capital)
    _money(p, "agents.market_makers.level_notional", mm.level_notional)
    _money(p, "agents.arbitrageurs.capital", arb.capital)
    _money(p, "agents.arbitrageurs.max_trade_notional", arb.max_trade_notional)
    _money(p, "agents.arbitrageurs.quote_notional", arb.quote_notional)
    for i, s in enumerate(sc.shocks):
        if getattr(s, "kind", None) == "whale":
            _money(p, f"shocks.{i}.notional", s.notional)
    for i, m in enumerate(sc.markets):
        for j, tier in enumerate(m.maintenance_tiers):
            _money(p, f"markets.{i}.maintenance_tiers.{j}.floor", tier.floor)
    if not p:
        total = (v.insurance_fund + v.backstop_capital + mm.count * mm.capital + arb.count * arb.capital
                 + t.count * _lognormal_mean(t.capital)
                 + sum(s.notional / s.leverage for s in sc.shocks if getattr(s, "kind", None) == "whale"))
        if total > MAX_TOTAL_MONEY:
            p.append(("agents", f"the scenario deposits about {total:.3g} in total; the ledger holds at most "
                      f"{MAX_TOTAL_MONEY:g} (fewer or poorer agents, a smaller fund)"))

    max_lev = max(m.max_leverage for m in sc.markets)
    if t.count and t.leverage.median > max_lev:
        p.append(("agents.traders.leverage.median", f"{t.leverage.median:g} is above every market's max_leverage "
                  f"({max_lev:g}); traders would all be capped"))

    n = len(sc.markets)
    lo = -1.0 / (n - 1) if n > 1 else -1.0
    if sc.index.correlation < lo:
        p.append(("index.correlation", f"{sc.index.correlation:g}: with {n} markets it must be in [{lo:g}, 1]"))

    horizon_years = sc.steps * sc.step_seconds / YEAR_SECONDS
    for i, m in enumerate(sc.markets):
        if m.settlement != sc.markets[0].settlement:
            p.append((f"markets.{i}.settlement", f"{m.settlement!r}, but markets.0 is {sc.markets[0].settlement!r}: a "
                      "run has one settlement asset (the ledger has one cash unit); make every market linear "
                      "or every market inverse (inverse markets all settle in market 0's coin)"))
    for i, (m, model) in enumerate(zip(sc.markets, sc.index.models)):
        if m.settlement == "inverse":
            k = m.lot_size / (m.tick_size * INVERSE_CASH_UNIT)
            if k < 1 or abs(k - round(k)) > 1e-6 + 1e-13 * k:
                p.append((f"markets.{i}", f"inverse: lot_size / tick_size = {m.lot_size / m.tick_size:g} contracts' "
                          f"worth must be a whole number of satoshis ({INVERSE_CASH_UNIT:g} coin) per tick: "
                          f"lot_size / (tick_size x {INVERSE_CASH_UNIT:g}) = {k:.6g} is not whole"))
        else:
            cv = m.lot_size * m.tick_size / CASH_UNIT
            if cv < 1 or abs(cv - round(cv)) > 1e-9 * cv:
                p.append((f"markets.{i}", f"lot_size x tick_size = {m.lot_size * m.tick_size:g} must be a whole multiple "
                          f"of the ledger's cash unit ({CASH_UNIT:g}) and at least one"))
        first = m.maintenance_tiers[0].rate
        if first >= 1 / m.max_leverage:
            p.append((f"markets.{i}.maintenance_tiers.0.rate", f"{first:g} is not below the initial margin rate "
                      f"1/max_leverage = {1 / m.max_leverage:g}: positions would open already liquidatable"))
        price = _start_price(model)
        if price is None:
            continue
        if price > MAX_MONEY:
            p.append((f"index.models.{i}.start_price", f"{price:g} is beyond what the ledger can price"))
            continue
        if m.tick_size * MIN_TICKS_PER_PRICE > price:
            p.append((f"markets.{i}.tick_size", f"{m.tick_size:g} is more than 1/{MIN_TICKS_PER_PRICE} of the "
                      f"start price {price:g}: prices cannot move"))
            continue
        lot_value = m.lot_size if m.settlement == "inverse" else m.lot_size * price  # quote currency
        if i == 0 and m.settlement == "inverse" and not p:
            # the scenario's quote money becomes satoshis at the opening price: it must fit int64
            total = (v.insurance_fund + v.backstop_capital + mm.count * mm.capital + arb.count * arb.capital
                     + t.count * _lognormal_mean(t.capital))
            if total / price / INVERSE_CASH_UNIT > 2**62:
                p.append(("index.models.0.start_price", f"{price:g}: the scenario's {total:.3g} of quote money is "
                          f"{total / price:.3g} coin at that price, more satoshis than the ledger holds"))
        if m.settlement == "inverse" and (price / m.tick_size) * 1e3 * (m.lot_size / (m.tick_size * INVERSE_CASH_UNIT)) >= 2**63:
            p.append((f"markets.{i}.tick_size", f"inverse: {m.tick_size:g} is too fine for a start price of {price:g}: "
                      "price x contract constant would overflow the exact int64 division"))
        if mm.count and lot_value > mm.level_notional:
            p.append((f"markets.{i}.lot_size", f"one lot is worth {lot_value:g}, more than a market maker's "
                      f"level_notional ({mm.level_notional:g}): the book would be empty"))
        if lot_value > MAX_MONEY:
            p.append((f"markets.{i}.lot_size", f"one lot is worth {lot_value:g}; at most {MAX_MONEY:g}"))
        drift = getattr(model, "drift", None)
        if drift is not None:
            log_end = drift * horizon_years
            if log_end < math.log(max(MIN_TICKS_PER_PRICE * m.tick_size, 1e-300) / price):
                p.append((f"index.models.{i}.drift", f"{drift:g} a year drives the index from {price:g} to about "
                          f"{price * math.exp(max(log_end, -700)):.3g} over {sc.steps} steps: a price of nothing"))
            elif log_end > math.log(1e6):
                p.append((f"index.models.{i}.drift", f"{drift:g} a year multiplies the index by more than a million "
                          f"over {sc.steps} steps"))
        vol = getattr(model, "volatility", None)
        if vol is not None and vol * math.sqrt(max(sc.step_seconds / YEAR_SECONDS, 0)) > 1:
            p.append((f"index.models.{i}.volatility", f"{vol:g} a year is more than 100 % per step"))
        for k, s in enumerate(sc.shocks):
            move = getattr(s, "move", None)
            markets = getattr(s, "markets", None)
            if move is None or (markets is not None and i not in markets):
                continue
            if price * (1 + move) < MIN_TICKS_PER_PRICE * m.tick_size:
                p.append((f"shocks.{k}.move", f"{move:g} takes market {i}'s index from {price:g} to "
                          f"{price * (1 + move):.3g}, under {MIN_TICKS_PER_PRICE} ticks"))
    return p
