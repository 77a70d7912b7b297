"""The vocabulary of rule conditions: one evaluator per function, registered once.

Arguments that are expressions arrive as compiled closures (call them with ``ctx``);
literal arguments (units, hours, filters, names, string lists) arrive as values.
Aggregates record the tx_ids they looked at in ``ctx.touched``: that is the evidence
listed in a detection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.transaction import Direction
from rules.expressions import Compiled, EvalContext, EventFilter, Kind, register
from rules.state import TxEvent

N, B, S, A = Kind.NUMBER, Kind.BOOL, Kind.STRING, Kind.ANY
ZERO = Decimal(0)
INFINITY = Decimal("Infinity")
# Names scoring below this are unrelated; screening them further is wasted work.
WATCHLIST_FLOOR = 0.5
HOUR = 3600.0


# --------------------------------------------------------------------------- logic


@register("all", (B,), B, variadic=True)
def all_(ctx: EvalContext, *conditions: Compiled) -> bool:
    """True when every condition is true (stops at the first false)."""
    return all(condition(ctx) for condition in conditions)


@register("any", (B,), B, variadic=True)
def any_(ctx: EvalContext, *conditions: Compiled) -> bool:
    """True when at least one condition is true."""
    return any(condition(ctx) for condition in conditions)


@register("not", (B,), B)
def not_(ctx: EvalContext, condition: Compiled) -> bool:
    """Negation."""
    return not condition(ctx)


# --------------------------------------------------------------------------- comparison


@register("gte", (N, N), B)
def gte(ctx: EvalContext, left: Compiled, right: Compiled) -> bool:
    """left >= right (thresholds are inclusive: 含本数)."""
    return bool(left(ctx) >= right(ctx))


@register("gt", (N, N), B)
def gt(ctx: EvalContext, left: Compiled, right: Compiled) -> bool:
    """left > right."""
    return bool(left(ctx) > right(ctx))


@register("lte", (N, N), B)
def lte(ctx: EvalContext, left: Compiled, right: Compiled) -> bool:
    """left <= right."""
    return bool(left(ctx) <= right(ctx))


@register("lt", (N, N), B)
def lt(ctx: EvalContext, left: Compiled, right: Compiled) -> bool:
    """left < right."""
    return bool(left(ctx) < right(ctx))


@register("eq", (A, A), B)
def eq(ctx: EvalContext, left: Compiled, right: Compiled) -> bool:
    """left == right (numbers, strings or booleans)."""
    return bool(left(ctx) == right(ctx))


@register("between", (N, N, N), B)
def between(ctx: EvalContext, value: Compiled, low: Compiled, below: Compiled) -> bool:
    """low <= value < below: "just under a threshold" is between(x, 45000, 50000)."""
    return bool(low(ctx) <= value(ctx) < below(ctx))


@register("in", (S, Kind.STRINGS), B)
def in_(ctx: EvalContext, value: Compiled, options: frozenset[str]) -> bool:
    """The string is one of the listed options."""
    return value(ctx) in options


# --------------------------------------------------------------------------- arithmetic


@register("add", (N, N), N)
def add(ctx: EvalContext, left: Compiled, right: Compiled) -> Decimal:
    """left + right."""
    return Decimal(left(ctx) + right(ctx))


@register("sub", (N, N), N)
def sub(ctx: EvalContext, left: Compiled, right: Compiled) -> Decimal:
    """left - right."""
    return Decimal(left(ctx) - right(ctx))


@register("mul", (N, N), N)
def mul(ctx: EvalContext, left: Compiled, right: Compiled) -> Decimal:
    """left * right."""
    return Decimal(left(ctx) * right(ctx))


@register("ratio", (N, N), N)
def ratio(ctx: EvalContext, numerator: Compiled, denominator: Compiled) -> Decimal:
    """numerator / denominator, exact; x / 0 is infinite for x > 0 and 0 for x = 0.

    Something where there was nothing (first outflows after months of inflows only)
    is the largest change there is, not none.
    """
    bottom = Decimal(denominator(ctx))
    top = Decimal(numerator(ctx))
    if not bottom:
        return INFINITY if top > 0 else ZERO
    return top / bottom


@register("min", (N, N), N)
def min_(ctx: EvalContext, left: Compiled, right: Compiled) -> Decimal:
    """The smaller of two numbers."""
    return Decimal(min(left(ctx), right(ctx)))


@register("max", (N, N), N)
def max_(ctx: EvalContext, left: Compiled, right: Compiled) -> Decimal:
    """The larger of two numbers."""
    return Decimal(max(left(ctx), right(ctx)))


# --------------------------------------------------------------------------- names


@register("param", (Kind.NAME,), A)
def param(ctx: EvalContext, name: str) -> Any:
    """A parameter of the rule (its ``[rule.params]`` table)."""
    return ctx.params[name]


@register("value", (Kind.NAME,), A)
def value(ctx: EvalContext, name: str) -> Any:
    """A named value of the rule (its ``[rule.values]`` table), computed once, when needed."""
    if name not in ctx.values:
        ctx.values[name] = ctx.pending_values[name](ctx)
    return ctx.values[name]


# --------------------------------------------------------------------------- the transaction


@register("tx_amount", (Kind.UNIT,), N)
def tx_amount(ctx: EvalContext, unit: str) -> Decimal:
    """The transaction's amount converted to CNY or USD."""
    return ctx.event.amount_cny if unit == "CNY" else ctx.event.amount_usd


@register("tx_field", (Kind.NAME,), S)
def tx_field(ctx: EvalContext, name: str) -> str:
    """A text field of the transaction ("" when absent)."""
    found = getattr(ctx.tx, name)
    return "" if found is None else str(found)


@register("tx_cross_border", (), B)
def tx_cross_border(ctx: EvalContext) -> bool:
    """The counterparty is in another country than the bank."""
    return ctx.event.cross_border


@register("tx_hour", (), N)
def tx_hour(ctx: EvalContext) -> Decimal:
    """Hour of day (0-23) in the bank's time zone."""
    return Decimal(ctx.local_time.hour)


@register("tx_is_round", (N,), B)
def tx_is_round(ctx: EvalContext, step: Compiled) -> bool:
    """The original amount is a whole multiple of ``step`` (e.g. 10000)."""
    unit = Decimal(step(ctx))
    return bool(unit) and ctx.tx.amount % unit == 0


@register("customer_field", (Kind.NAME,), S)
def customer_field(ctx: EvalContext, name: str) -> str:
    """A field of the customer's reference record ("" for an unknown customer)."""
    if ctx.customer is None:
        return ""
    found = getattr(ctx.customer, name)
    return str(getattr(found, "value", found))


@register("country_risk", (), S)
def country_risk(ctx: EvalContext) -> str:
    """FATF list of the counterparty's country: "black", "grey" or ""."""
    risk = ctx.reference.country_lists.risk_of(ctx.tx.counterparty_country)
    if risk:
        ctx.notes["country"] = ctx.tx.counterparty_country or ""
        ctx.notes["fatf_list"] = risk
        ctx.notes["fatf_as_of"] = ctx.reference.country_lists.as_of.isoformat()
    return risk or ""


@register("watchlist_score", (), N)
def watchlist_score(ctx: EvalContext) -> Decimal:
    """Best fuzzy match score (0-1) of the counterparty name against the watch list."""
    # Any score, so a pack may set its own cut-off below the screener's default.
    match = ctx.reference.watch_list.best_match(ctx.tx.counterparty_name, threshold=WATCHLIST_FLOOR)
    if match is None:
        return ZERO
    ctx.notes["watchlist_entry"] = match.entry.entry_id
    ctx.notes["watchlist_list"] = match.entry.list_name
    ctx.notes["watchlist_score"] = f"{match.score:.2f}"
    return Decimal(str(round(match.score, 4)))


# --------------------------------------------------------------------------- history


@register("days_since_previous", (), N)
def days_since_previous(ctx: EvalContext) -> Decimal:
    """Days between this transaction and the customer's previous activity (0 if none)."""
    if ctx.previous_event_at is None:
        return ZERO
    # Exact: 89 days 23 hours of silence must not round up to 90.
    gap = max(0.0, ctx.event.at - ctx.previous_event_at)
    return Decimal(gap) / 86_400


@register("history_days", (), N)
def history_days(ctx: EvalContext) -> Decimal:
    """Days of history the customer has before this transaction."""
    first = ctx.state.first_event_at
    if first is None:
        return ZERO
    return Decimal(int(max(0.0, ctx.event.at - first) // 86_400))


def _aggregate(
    ctx: EvalContext,
    span: str | int,
    event_filter: EventFilter,
    reduction: tuple[str, ...],
    reduce: Callable[[list[TxEvent]], Any],
) -> Any:
    """Reduce the events of ``span`` ("day" or a number of hours) that pass the filter.

    Two caches per transaction, shared by every rule: the events a (span, filter)
    selects, and each reduction over them. The selection is recorded as evidence.
    """
    selection_key = (span, id(event_filter))
    selected = ctx.selections.get(selection_key)
    if selected is None:
        matches = event_filter.matcher(ctx.event.direction, ctx.reference.home_currency)
        selected = [event for event in _span_events(ctx, span) if matches(event)]
        ctx.selections[selection_key] = selected
    ctx.touched.append(selected)
    key = (span, id(event_filter), *reduction)
    result = ctx.cache.get(key)
    if result is None:
        result = ctx.cache[key] = reduce(selected)
    return result


def _span_events(ctx: EvalContext, span: str | int) -> list[TxEvent]:
    if span == "day":
        # The whole bank-local day, including transactions after this one (late arrivals).
        midnight = ctx.local_time.replace(hour=0, minute=0, second=0, microsecond=0)
        start = midnight.timestamp()
        return ctx.state.window(start, start + 86_400 - 1e-6)
    return ctx.state.window(ctx.event.at - int(span) * HOUR, ctx.event.at)


def _sum(unit: str) -> Callable[[list[TxEvent]], Decimal]:
    pick = _amount(unit)
    return lambda events: sum((pick(event) for event in events), ZERO)


def _amount(unit: str) -> Callable[[TxEvent], Decimal]:
    if unit == "CNY":
        return lambda event: event.amount_cny
    return lambda event: event.amount_usd


def _count(events: list[TxEvent]) -> Decimal:
    return Decimal(len(events))


@register("day_total", (Kind.UNIT, Kind.FILTER), N)
def day_total(ctx: EvalContext, unit: str, event_filter: EventFilter) -> Decimal:
    """Sum over the bank-local day of the transaction (the whole day, late arrivals too)."""
    return _aggregate(ctx, "day", event_filter, ("sum", unit), _sum(unit))


@register("day_count", (Kind.FILTER,), N)
def day_count(ctx: EvalContext, event_filter: EventFilter) -> Decimal:
    """Number of the customer's transactions on the bank-local day of the transaction."""
    return _aggregate(ctx, "day", event_filter, ("count",), _count)


@register("window_total", (Kind.HOURS, Kind.UNIT, Kind.FILTER), N)
def window_total(ctx: EvalContext, hours: int, unit: str, event_filter: EventFilter) -> Decimal:
    """Sum over the last ``hours`` hours of event time up to this transaction."""
    return _aggregate(ctx, hours, event_filter, ("sum", unit), _sum(unit))


@register("window_count", (Kind.HOURS, Kind.FILTER), N)
def window_count(ctx: EvalContext, hours: int, event_filter: EventFilter) -> Decimal:
    """Number of transactions in the last ``hours`` hours."""
    return _aggregate(ctx, hours, event_filter, ("count",), _count)


@register("window_min", (Kind.HOURS, Kind.UNIT, Kind.FILTER), N)
def window_min(ctx: EvalContext, hours: int, unit: str, event_filter: EventFilter) -> Decimal:
    """Smallest amount in the window (0 when empty)."""
    pick = _amount(unit)
    return _aggregate(
        ctx, hours, event_filter, ("min", unit),
        lambda found: min((pick(event) for event in found), default=ZERO),
    )  # fmt: skip


@register("window_max", (Kind.HOURS, Kind.UNIT, Kind.FILTER), N)
def window_max(ctx: EvalContext, hours: int, unit: str, event_filter: EventFilter) -> Decimal:
    """Largest amount in the window (0 when empty)."""
    pick = _amount(unit)
    return _aggregate(
        ctx, hours, event_filter, ("max", unit),
        lambda found: max((pick(event) for event in found), default=ZERO),
    )  # fmt: skip


@register("window_distinct_counterparties", (Kind.HOURS, Kind.FILTER), N)
def window_distinct_counterparties(
    ctx: EvalContext, hours: int, event_filter: EventFilter
) -> Decimal:
    """Distinct counterparties in the window (transactions without one are not counted)."""
    return _aggregate(
        ctx, hours, event_filter, ("counterparties",),
        lambda found: Decimal(len({e.counterparty for e in found if e.counterparty})),
    )  # fmt: skip


@register("window_new_counterparties", (Kind.HOURS, Kind.HOURS, Kind.FILTER), N)
def window_new_counterparties(
    ctx: EvalContext, hours: int, recent_hours: int, event_filter: EventFilter
) -> Decimal:
    """Distinct counterparties of the last ``recent_hours`` hours that the customer had no
    transaction with (any direction or channel) in the ``hours - recent_hours`` hours before.

    ``hours`` is the whole span looked at, so the pack keeps that much history; when
    ``recent_hours`` is not shorter there is no earlier stretch and every one is new.
    The evidence is the recent window's transactions with the new counterparties.
    """
    key = ("new_counterparties", hours, recent_hours, id(event_filter))
    cached = ctx.cache.get(key)
    if cached is not None:
        new_events, result = cached
        ctx.touched.append(new_events)
        return Decimal(result)
    split = ctx.event.at - recent_hours * HOUR
    earlier = ctx.state.window(ctx.event.at - hours * HOUR, split) if recent_hours < hours else []
    known = {event.counterparty for event in earlier if event.at < split and event.counterparty}
    matches = event_filter.matcher(ctx.event.direction, ctx.reference.home_currency)
    new_events = [
        event
        for event in ctx.state.window(split, ctx.event.at)
        if event.counterparty and event.counterparty not in known and matches(event)
    ]
    result = Decimal(len({event.counterparty for event in new_events}))
    ctx.cache[key] = (new_events, result)
    ctx.touched.append(new_events)
    return result


@register("window_distinct_days", (Kind.HOURS, Kind.FILTER), N)
def window_distinct_days(ctx: EvalContext, hours: int, event_filter: EventFilter) -> Decimal:
    """Distinct bank-local days with a matching transaction in the window."""
    return _aggregate(
        ctx, hours, event_filter, ("days",), lambda found: Decimal(len({e.day for e in found}))
    )


@register("baseline_daily_mean", (Kind.HOURS, Kind.HOURS, Kind.DIRECTION), N)
def baseline_daily_mean(ctx: EvalContext, days: int, skip_days: int, direction: str) -> Decimal:
    """Mean CNY per day over ``days`` days ending ``skip_days`` days before today.

    Only days since the customer's first activity count, so a new customer's baseline
    is not diluted by days before they existed.
    """
    key = ("baseline_daily_mean", days, skip_days, direction)
    cached = ctx.cache.get(key)
    if cached is not None:
        return cached
    wanted = Direction.IN if direction == "in" else Direction.OUT
    end = ctx.event.day - skip_days  # exclusive
    start = end - days
    first = ctx.state.first_event_at
    if first is not None:
        first_day = datetime.fromtimestamp(first, ctx.reference.timezone).date().toordinal()
        start = max(start, first_day)
    observed = end - start
    if observed <= 0:
        result = ZERO
    else:
        total = sum(
            (totals.total(wanted) for day, totals in ctx.state.daily.items() if start <= day < end),
            ZERO,
        )
        result = (total / observed).quantize(Decimal("0.01"))
    ctx.cache[key] = result
    return result
