"""The vocabulary of rule conditions: one builder per function, registered once.

A builder runs once per node, when the pack loads: it receives the node's arguments
(expressions as compiled closures, literals such as units, hours, filters and names as
values) and returns the closure that evaluates the node for a transaction. Everything
that depends only on the node (cache keys, unit pickers, reductions) is settled there.
Aggregates record the events they looked at in ``ctx.touched``: that is the evidence
listed in a detection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.transaction import Direction
from rules.expressions import (
    Compiled,
    EvalContext,
    EventFilter,
    Kind,
    ParamRead,
    compare,
    register,
    upper_bound,
)
from rules.state import TxEvent

N, B, S, A = Kind.NUMBER, Kind.BOOL, Kind.STRING, Kind.ANY
ZERO = Decimal(0)
INFINITY = Decimal("Infinity")
# Names scoring below this are unrelated; screening them further is wasted work.
WATCHLIST_FLOOR = 0.5
HOUR = 3600.0
DAY_SECONDS = 86_400
CENT = Decimal("0.01")
# Counts and whole days are small numbers asked for several times a transaction: a
# Decimal made once each instead of one made per answer.
_WHOLE_NUMBERS = tuple(Decimal(number) for number in range(1024))


def _whole(number: int) -> Decimal:
    """``Decimal(number)`` for a count (never negative)."""
    return _WHOLE_NUMBERS[number] if number < 1024 else Decimal(number)


# --------------------------------------------------------------------------- logic


@register("all", (B,), B, variadic=True)
def all_(*conditions: Compiled) -> Compiled:
    """True when every condition is true (stops at the first false)."""

    # A loop rather than all(generator): no generator to create on every evaluation.
    def evaluate(ctx: EvalContext) -> bool:
        for condition in conditions:  # noqa: SIM110
            if not condition(ctx):
                return False
        return True

    return evaluate


@register("any", (B,), B, variadic=True)
def any_(*conditions: Compiled) -> Compiled:
    """True when at least one condition is true."""

    def evaluate(ctx: EvalContext) -> bool:
        for condition in conditions:  # noqa: SIM110 - as in all_
            if condition(ctx):
                return True
        return False

    return evaluate


@register("not", (B,), B)
def not_(condition: Compiled) -> Compiled:
    """Negation."""
    return lambda ctx: not condition(ctx)


# --------------------------------------------------------------------------- comparison


@register("gte", (N, N), B)
def gte(left: Compiled, right: Compiled) -> Compiled:
    """left >= right (thresholds are inclusive: 含本数)."""
    return compare(left, right, ">=")


@register("gt", (N, N), B)
def gt(left: Compiled, right: Compiled) -> Compiled:
    """left > right."""
    return compare(left, right, ">")


@register("lte", (N, N), B)
def lte(left: Compiled, right: Compiled) -> Compiled:
    """left <= right."""
    return compare(left, right, "<=")


@register("lt", (N, N), B)
def lt(left: Compiled, right: Compiled) -> Compiled:
    """left < right."""
    return compare(left, right, "<")


@register("eq", (A, A), B)
def eq(left: Compiled, right: Compiled) -> Compiled:
    """left == right (numbers, strings or booleans)."""
    return compare(left, right, "==")


@register("between", (N, N, N), B)
def between(value: Compiled, low: Compiled, below: Compiled) -> Compiled:
    """low <= value < below: "just under a threshold" is between(x, 45000, 50000)."""
    return lambda ctx: bool(low(ctx) <= value(ctx) < below(ctx))


@register("in", (S, Kind.STRINGS), B)
def in_(value: Compiled, options: frozenset[str]) -> Compiled:
    """The string is one of the listed options."""
    return lambda ctx: value(ctx) in options


# --------------------------------------------------------------------------- arithmetic


@register("add", (N, N), N)
def add(left: Compiled, right: Compiled) -> Compiled:
    """left + right."""
    return lambda ctx: Decimal(left(ctx) + right(ctx))


@register("sub", (N, N), N)
def sub(left: Compiled, right: Compiled) -> Compiled:
    """left - right."""
    return lambda ctx: Decimal(left(ctx) - right(ctx))


@register("mul", (N, N), N)
def mul(left: Compiled, right: Compiled) -> Compiled:
    """left * right."""
    return lambda ctx: Decimal(left(ctx) * right(ctx))


@register("ratio", (N, N), N)
def ratio(numerator: Compiled, denominator: Compiled) -> Compiled:
    """numerator / denominator, exact; x / 0 is infinite for x > 0 and 0 for x = 0.

    Something where there was nothing (first outflows after months of inflows only)
    is the largest change there is, not none.
    """

    def evaluate(ctx: EvalContext) -> Decimal:
        bottom = Decimal(denominator(ctx))
        top = Decimal(numerator(ctx))
        if not bottom:
            return INFINITY if top > 0 else ZERO
        return top / bottom

    return evaluate


@register("min", (N, N), N)
def min_(left: Compiled, right: Compiled) -> Compiled:
    """The smaller of two numbers."""
    return lambda ctx: Decimal(min(left(ctx), right(ctx)))


@register("max", (N, N), N)
def max_(left: Compiled, right: Compiled) -> Compiled:
    """The larger of two numbers."""
    return lambda ctx: Decimal(max(left(ctx), right(ctx)))


# --------------------------------------------------------------------------- names


@register("param", (Kind.NAME,), A)
def param(name: str) -> Compiled:
    """A parameter of the rule (its ``[rule.params]`` table)."""
    return ParamRead(name)


@register("value", (Kind.NAME,), A)
def value(name: str) -> Compiled:
    """A named value of the rule (its ``[rule.values]`` table), computed once, when needed."""

    def evaluate(ctx: EvalContext) -> Any:
        values = ctx.values
        if name in values:
            return values[name]
        # Computed before it is stored: values it needs go into ctx.values first.
        found = values[name] = ctx.pending_values[name](ctx)
        return found

    return evaluate


# --------------------------------------------------------------------------- the transaction


@register("tx_amount", (Kind.UNIT,), N)
def tx_amount(unit: str) -> Compiled:
    """The transaction's amount converted to CNY or USD."""
    if unit == "CNY":
        return lambda ctx: ctx.event.amount_cny
    return lambda ctx: ctx.event.amount_usd


@register("tx_field", (Kind.NAME,), S)
def tx_field(name: str) -> Compiled:
    """A text field of the transaction ("" when absent)."""

    def evaluate(ctx: EvalContext) -> str:
        found = getattr(ctx.tx, name)
        return "" if found is None else str(found)

    return evaluate


@register("tx_cross_border", (), B)
def tx_cross_border() -> Compiled:
    """The counterparty is in another country than the bank."""
    return lambda ctx: ctx.event.cross_border


@register("tx_hour", (), N)
def tx_hour() -> Compiled:
    """Hour of day (0-23) in the bank's time zone."""
    return lambda ctx: Decimal(ctx.local_time.hour)


@register("tx_is_round", (N,), B)
def tx_is_round(step: Compiled) -> Compiled:
    """The original amount is a whole multiple of ``step`` (e.g. 10000)."""

    def evaluate(ctx: EvalContext) -> bool:
        unit = Decimal(step(ctx))
        return bool(unit) and ctx.tx.amount % unit == 0

    return evaluate


@register("customer_field", (Kind.NAME,), S)
def customer_field(name: str) -> Compiled:
    """A field of the customer's reference record ("" for an unknown customer)."""

    def evaluate(ctx: EvalContext) -> str:
        if ctx.customer is None:
            return ""
        found = getattr(ctx.customer, name)
        return str(getattr(found, "value", found))

    return evaluate


@register("country_risk", (), S)
def country_risk() -> Compiled:
    """FATF list of the counterparty's country: "black", "grey" or ""."""

    def evaluate(ctx: EvalContext) -> str:
        country = ctx.tx.counterparty_country
        if country is None:
            return ""
        risk = ctx.reference.country_lists.risk_of(country)
        if risk:
            ctx.notes["country"] = country
            ctx.notes["fatf_list"] = risk
            ctx.notes["fatf_as_of"] = ctx.reference.country_lists.as_of.isoformat()
        return risk or ""

    return evaluate


@register("watchlist_score", (), N)
def watchlist_score() -> Compiled:
    """Best fuzzy match score (0-1) of the counterparty name against the watch list."""

    def evaluate(ctx: EvalContext) -> Decimal:
        name = ctx.tx.counterparty_name
        if not name:
            return ZERO  # the common case: nothing to screen
        # Any score, so a pack may set its own cut-off below the screener's default.
        match = ctx.reference.watch_list.best_match(name, threshold=WATCHLIST_FLOOR)
        if match is None:
            return ZERO
        ctx.notes["watchlist_entry"] = match.entry.entry_id
        ctx.notes["watchlist_list"] = match.entry.list_name
        ctx.notes["watchlist_score"] = f"{match.score:.2f}"
        return Decimal(str(round(match.score, 4)))

    return evaluate


# --------------------------------------------------------------------------- history


@register("days_since_previous", (), N)
def days_since_previous() -> Compiled:
    """Days between this transaction and the customer's previous activity (0 if none)."""

    def evaluate(ctx: EvalContext) -> Decimal:
        if ctx.previous_event_at is None:
            return ZERO
        # Exact: 89 days 23 hours of silence must not round up to 90.
        gap = max(0.0, ctx.event.at - ctx.previous_event_at)
        return Decimal(gap) / DAY_SECONDS

    return evaluate


@register("history_days", (), N)
def history_days() -> Compiled:
    """Days of history the customer has before this transaction."""

    def evaluate(ctx: EvalContext) -> Decimal:
        first = ctx.state.first_event_at
        if first is None:
            return ZERO
        return _whole(int(max(0.0, ctx.event.at - first) // DAY_SECONDS))

    return evaluate


Reduction = Callable[[list[TxEvent]], Any]


def _aggregate(
    span: str | int, event_filter: EventFilter, reduction: str, reduce: Reduction
) -> Compiled:
    """The closure reducing the events of ``span`` ("day" or hours) that pass the filter.

    Per transaction, shared by every rule: the events of each span, the events each
    (span, filter) selects, and each reduction over them. The selection is recorded as
    evidence.
    """
    selection_key = (span, id(event_filter))
    result_key = (span, id(event_filter), reduction)

    def evaluate(ctx: EvalContext) -> Any:
        selected = ctx.selections.get(selection_key)
        if selected is None:
            selected = event_filter.select(
                _span_events(ctx, span), ctx.event.direction, ctx.reference.home_currency
            )
            ctx.selections[selection_key] = selected
        ctx.touched.append(selected)
        cache = ctx.cache
        if result_key in cache:
            return cache[result_key]
        result = cache[result_key] = reduce(selected)
        return result

    return evaluate


def _span_events(ctx: EvalContext, span: str | int) -> list[TxEvent]:
    events = ctx.spans.get(span)
    if events is None:
        if span == "day":
            # The whole bank-local day, including transactions after this one (late arrivals).
            midnight = ctx.local_time.replace(hour=0, minute=0, second=0, microsecond=0)
            start = midnight.timestamp()
            events = ctx.state.window(start, start + DAY_SECONDS - 1e-6)
        else:
            events = ctx.state.window(ctx.event.at - int(span) * HOUR, ctx.event.at)
        ctx.spans[span] = events
    return events


def _sum(unit: str) -> Reduction:
    if unit == "CNY":
        return lambda events: sum([event.amount_cny for event in events], ZERO)
    return lambda events: sum([event.amount_usd for event in events], ZERO)


def _smallest(unit: str) -> Reduction:
    if unit == "CNY":
        return lambda events: min([event.amount_cny for event in events], default=ZERO)
    return lambda events: min([event.amount_usd for event in events], default=ZERO)


def _largest(unit: str) -> Reduction:
    if unit == "CNY":
        return lambda events: max([event.amount_cny for event in events], default=ZERO)
    return lambda events: max([event.amount_usd for event in events], default=ZERO)


def _count(events: list[TxEvent]) -> Decimal:
    return _whole(len(events))


def _counterparties(events: list[TxEvent]) -> Decimal:
    return _whole(len({event.counterparty for event in events if event.counterparty}))


def _days(events: list[TxEvent]) -> Decimal:
    return _whole(len({event.day for event in events}))


@register("day_total", (Kind.UNIT, Kind.FILTER), N)
def day_total(unit: str, event_filter: EventFilter) -> Compiled:
    """Sum over the bank-local day of the transaction (the whole day, late arrivals too)."""
    return _aggregate("day", event_filter, f"sum {unit}", _sum(unit))


@register("day_count", (Kind.FILTER,), N)
def day_count(event_filter: EventFilter) -> Compiled:
    """Number of the customer's transactions on the bank-local day of the transaction."""
    return _aggregate("day", event_filter, "count", _count)


@register("window_total", (Kind.HOURS, Kind.UNIT, Kind.FILTER), N)
def window_total(hours: int, unit: str, event_filter: EventFilter) -> Compiled:
    """Sum over the last ``hours`` hours of event time up to this transaction."""
    return _aggregate(hours, event_filter, f"sum {unit}", _sum(unit))


@register("window_count", (Kind.HOURS, Kind.FILTER), N)
def window_count(hours: int, event_filter: EventFilter) -> Compiled:
    """Number of transactions in the last ``hours`` hours."""
    return _aggregate(hours, event_filter, "count", _count)


@register("window_min", (Kind.HOURS, Kind.UNIT, Kind.FILTER), N)
def window_min(hours: int, unit: str, event_filter: EventFilter) -> Compiled:
    """Smallest amount in the window (0 when empty)."""
    return _aggregate(hours, event_filter, f"min {unit}", _smallest(unit))


@register("window_max", (Kind.HOURS, Kind.UNIT, Kind.FILTER), N)
def window_max(hours: int, unit: str, event_filter: EventFilter) -> Compiled:
    """Largest amount in the window (0 when empty)."""
    return _aggregate(hours, event_filter, f"max {unit}", _largest(unit))


@register("window_distinct_counterparties", (Kind.HOURS, Kind.FILTER), N)
def window_distinct_counterparties(hours: int, event_filter: EventFilter) -> Compiled:
    """Distinct counterparties in the window (transactions without one are not counted)."""
    return _aggregate(hours, event_filter, "counterparties", _counterparties)


@register("window_new_counterparties", (Kind.HOURS, Kind.HOURS, Kind.FILTER), N)
def window_new_counterparties(hours: int, recent_hours: int, event_filter: EventFilter) -> Compiled:
    """Distinct counterparties of the last ``recent_hours`` hours that the customer had no
    transaction with (any direction or channel) in the ``hours - recent_hours`` hours before.

    ``hours`` is the whole span looked at, so the pack keeps that much history; when
    ``recent_hours`` is not shorter there is no earlier stretch and every one is new.
    The evidence is the recent window's transactions with the new counterparties.
    """
    key = ("new_counterparties", hours, recent_hours, id(event_filter))

    def evaluate(ctx: EvalContext) -> Decimal:
        cached = ctx.cache.get(key)
        if cached is not None:
            new_events, result = cached
            ctx.touched.append(new_events)
            return result
        at = ctx.event.at
        split = at - recent_hours * HOUR
        earlier = ctx.state.window(at - hours * HOUR, split) if recent_hours < hours else []
        known = {event.counterparty for event in earlier if event.at < split and event.counterparty}
        recent = event_filter.select(
            _span_events(ctx, recent_hours), ctx.event.direction, ctx.reference.home_currency
        )
        new_events = [
            event for event in recent if event.counterparty and event.counterparty not in known
        ]
        result = _whole(len({event.counterparty for event in new_events}))
        ctx.cache[key] = (new_events, result)
        ctx.touched.append(new_events)
        return result

    return evaluate


@register("window_distinct_days", (Kind.HOURS, Kind.FILTER), N)
def window_distinct_days(hours: int, event_filter: EventFilter) -> Compiled:
    """Distinct bank-local days with a matching transaction in the window."""
    return _aggregate(hours, event_filter, "days", _days)


@register("baseline_daily_mean", (Kind.HOURS, Kind.HOURS, Kind.DIRECTION), N)
def baseline_daily_mean(days: int, skip_days: int, direction: str) -> Compiled:
    """Mean CNY per day over ``days`` days ending ``skip_days`` days before today.

    Only days since the customer's first activity count, so a new customer's baseline
    is not diluted by days before they existed.
    """
    wanted = Direction.IN if direction == "in" else Direction.OUT

    def evaluate(ctx: EvalContext) -> Decimal:
        end = ctx.event.day - skip_days  # exclusive
        start = end - days
        first = ctx.state.first_event_at
        if first is not None:
            first_day = datetime.fromtimestamp(first, ctx.reference.timezone).date().toordinal()
            start = max(start, first_day)
        observed = end - start
        if observed <= 0:
            return ZERO
        # Exact in fen, so the mean is the one the Decimal totals would give.
        total = ctx.state.baseline_fen_total(wanted, start, end)
        return (Decimal(total).scaleb(-2) / observed).quantize(CENT)

    return evaluate


# --------------------------------------------------------------------------- upper bounds
#
# Cheap values an aggregate can never exceed, so a rule that needs more cannot fire and
# is skipped before anything is selected. Counts are at most the events of the span;
# CNY totals at most the customer's daily totals (every channel and currency, amounts
# are never negative) over the bank days the span can touch.


def _span_size(span: str | int) -> Compiled:
    return lambda ctx: len(_span_events(ctx, span))


def _daily_cny(hours: int | None, event_filter: EventFilter) -> Compiled:
    """The CNY of the days a span touches: the transaction's day and the next (a "day"
    span is 24 hours from midnight, which on a short DST day reaches into the next), or
    ``hours`` back from the transaction, with a day to spare on each side."""
    back = 0 if hours is None else hours // 24 + 2
    ahead = 1 if hours is None else 0

    def bound(ctx: EvalContext) -> Decimal:
        direction = event_filter.direction_for(ctx.event.direction)
        day = ctx.event.day
        # Rules of a pack share these day ranges: summed once per transaction.
        key = ("daily_cny", direction, day - back, day + ahead + 1)
        total = ctx.cache.get(key)
        if total is None:
            fen = ctx.state.daily_fen_total(direction, day - back, day + ahead + 1)
            total = ctx.cache[key] = Decimal(fen).scaleb(-2)
        return total

    return bound


@upper_bound("day_total")
def day_total_bound(unit: str, event_filter: EventFilter) -> Compiled | None:
    """The transaction's day's CNY totals (no bound in USD)."""
    return _daily_cny(None, event_filter) if unit == "CNY" else None


@upper_bound("window_total")
def window_total_bound(hours: int, unit: str, event_filter: EventFilter) -> Compiled | None:
    """The CNY totals of the days the window touches (no bound in USD)."""
    return _daily_cny(hours, event_filter) if unit == "CNY" else None


@upper_bound("day_count")
def day_count_bound(event_filter: EventFilter) -> Compiled:
    """The day's events."""
    return _span_size("day")


@upper_bound("window_count")
def window_count_bound(hours: int, event_filter: EventFilter) -> Compiled:
    """The window's events."""
    return _span_size(hours)


@upper_bound("window_distinct_counterparties")
def window_distinct_counterparties_bound(hours: int, event_filter: EventFilter) -> Compiled:
    """The window's events."""
    return _span_size(hours)


@upper_bound("window_distinct_days")
def window_distinct_days_bound(hours: int, event_filter: EventFilter) -> Compiled:
    """The window's events."""
    return _span_size(hours)


@upper_bound("window_new_counterparties")
def window_new_counterparties_bound(
    hours: int, recent_hours: int, event_filter: EventFilter
) -> Compiled:
    """All the recent window's counterparties, new or not: no look at the earlier stretch."""
    return window_distinct_counterparties(recent_hours, event_filter)
