"""The condition vocabulary: one test per registered function, then filters and the registry.

Each expression is compiled with ``compile_expression`` and evaluated against an
``EvalContext`` built the way the engine builds one: the customer's earlier transactions
go into a ``CustomerState``, then the current transaction is added and evaluated. The
last test checks that every function in ``FUNCTIONS`` has a test here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

import rules.functions  # noqa: F401  - registers the vocabulary
from core.customer import Customer
from core.transaction import Channel, Direction, Transaction, transaction_from_mapping
from rules.engine import RuleEngine
from rules.expressions import (
    FUNCTIONS,
    UPPER_BOUNDS,
    EvalContext,
    EventFilter,
    ExpressionError,
    Kind,
    Scope,
    compile_expression,
    compile_filter,
    compile_guards,
    register,
)
from rules.state import CustomerState, TxEvent
from tests.rules.conftest import SHANGHAI, customer

COVERED: set[str] = set()
TestFunction = TypeVar("TestFunction", bound=Callable[..., Any])

START = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)  # 09:00 bank time, a Monday
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
NO_NAMES = Scope(params={}, values={})
INDIVIDUAL = customer()
_tx_ids = itertools.count(1)


def covers(*names: str) -> Callable[[TestFunction], TestFunction]:
    """Record that the decorated test exercises the vocabulary functions ``names``."""

    def record(test: TestFunction) -> TestFunction:
        COVERED.update(names)
        return test

    return record


def tx(
    amount: str | int = "100",
    *,
    at: timedelta | datetime = timedelta(0),
    direction: str = "in",
    channel: str = "transfer",
    currency: str = "CNY",
    **fields: Any,
) -> Transaction:
    """A transaction of customer C1, ``at`` after 09:00 on 2 March 2026 (or at a moment)."""
    moment = START + at if isinstance(at, timedelta) else at
    return transaction_from_mapping(
        {
            "tx_id": f"F{next(_tx_ids):05d}",
            "timestamp": moment.isoformat(),
            "customer_id": "C1",
            "account_id": "A1",
            "direction": direction,
            "amount": str(amount),
            "currency": currency,
            "channel": channel,
            **fields,
        }
    )


@dataclass
class Probe:
    """An evaluation context and the names in scope: call it with an expression."""

    ctx: EvalContext
    scope: Scope

    def __call__(self, raw: Any) -> Any:
        compiled, _ = compile_expression(raw, self.scope)
        return compiled(self.ctx)

    def kind(self, raw: Any) -> Kind:
        return compile_expression(raw, self.scope)[1]


def probe(
    engine: RuleEngine,
    current: Transaction | None = None,
    *,
    history: Iterable[Transaction] = (),
    who: Customer | None = INDIVIDUAL,
    params: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> Probe:
    """The context the engine would build for ``current`` after ``history``."""
    state = CustomerState()
    for past in history:
        state.add(engine.to_event(past))
    previous = state.last_event_at
    current = current or tx()
    event = engine.to_event(current)
    state.add(event)
    params = params or {}
    param_kinds = {
        n: Kind.NUMBER if isinstance(v, Decimal) else Kind.STRING for n, v in params.items()
    }
    value_kinds: dict[str, Kind] = {}
    pending = {}
    for name, raw in (values or {}).items():
        compiled, value_kinds[name] = compile_expression(raw, Scope(param_kinds, dict(value_kinds)))
        pending[name] = compiled
    ctx = EvalContext(
        tx=current,
        event=event,
        customer=who,
        state=state,
        reference=engine.reference,
        previous_event_at=previous,
        local_time=current.timestamp.astimezone(engine.reference.timezone),
    )
    ctx.params, ctx.pending_values = params, pending
    return Probe(ctx, Scope(param_kinds, value_kinds))


def refused(raw: Any, scope: Scope = NO_NAMES) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(raw, scope)
    return caught.value


def touched_ids(ctx: EvalContext) -> list[list[str]]:
    return [[event.tx_id for event in selection] for selection in ctx.touched]


# --------------------------------------------------------------------------- logic


@covers("all")
def test_all_is_true_when_every_condition_is_and_stops_at_the_first_false(
    pboc_engine: RuleEngine,
) -> None:
    p = probe(pboc_engine, values={"total": ["day_total", "CNY", {}]})
    assert p(["all", True, True, True]) is True
    assert p(["all", True, False, ["gte", ["value", "total"], 0]]) is False
    assert "total" not in p.ctx.values  # never computed
    assert "at least 1 argument" in refused(["all"]).problem


@covers("any")
def test_any_is_true_when_one_condition_is_and_stops_at_the_first_true(
    pboc_engine: RuleEngine,
) -> None:
    p = probe(pboc_engine, values={"total": ["day_total", "CNY", {}]})
    assert p(["any", False, False]) is False
    assert p(["any", False, True, ["gte", ["value", "total"], 0]]) is True
    assert "total" not in p.ctx.values


@covers("not")
def test_not_negates_a_condition(pboc_engine: RuleEngine) -> None:
    p = probe(pboc_engine)
    assert (p(["not", True]), p(["not", False])) == (False, True)
    assert "not needs a bool here, got a number" in refused(["not", 1]).problem


# --------------------------------------------------------------------------- comparison


@covers("gte", "gt", "lte", "lt")
@pytest.mark.parametrize(
    ("function", "left", "right", "expected"),
    [
        ("gte", "50000.00", "50000", True),
        ("gte", "49999.99", "50000", False),
        ("gt", "50000.00", "50000", False),
        ("gt", "50000.01", "50000", True),
        ("lte", "50000.00", "50000", True),
        ("lte", "50000.01", "50000", False),
        ("lt", "50000.00", "50000", False),
        ("lt", "49999.99", "50000", True),
    ],
)
def test_number_comparisons(
    pboc_engine: RuleEngine, function: str, left: str, right: str, expected: bool
) -> None:
    p = probe(pboc_engine, params={"left": Decimal(left), "right": Decimal(right)})
    assert p([function, ["param", "left"], ["param", "right"]]) is expected
    # A parameter on the right is read by the comparison itself; any other side is called.
    assert p([function, ["param", "left"], 50000]) is expected
    assert p([function, ["add", ["param", "left"], 0], ["param", "right"]]) is expected
    assert f"{function} needs a number here, got a string" in refused([function, 1, "x"]).problem


@covers("eq")
@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (["param", "amount"], 50000, True),  # 50000.00 == 50000
        (["tx_field", "channel"], "transfer", True),
        (["tx_field", "channel"], "cash", False),
        (True, ["tx_cross_border"], False),
        ("1", 1, False),  # a string is never a number
    ],
)
def test_eq_compares_numbers_strings_and_booleans(
    pboc_engine: RuleEngine, left: Any, right: Any, expected: bool
) -> None:
    p = probe(pboc_engine, params={"amount": Decimal("50000.00")})
    assert p(["eq", left, right]) is expected


@covers("between")
@pytest.mark.parametrize(
    ("value", "expected"),
    [("44999.99", False), ("45000", True), ("49999.99", True), ("50000", False)],
)
def test_between_includes_the_low_end_and_excludes_the_high_end(
    pboc_engine: RuleEngine, value: str, expected: bool
) -> None:
    p = probe(pboc_engine, params={"x": Decimal(value)})
    assert p(["between", ["param", "x"], 45000, 50000]) is expected


@covers("in")
def test_in_checks_a_string_against_a_literal_list(pboc_engine: RuleEngine) -> None:
    wire = probe(pboc_engine, tx(channel="wire"))
    assert wire(["in", ["tx_field", "channel"], ["cash", "wire"]]) is True
    assert wire(["in", ["tx_field", "channel"], ["cash", "card"]]) is False
    assert "expected a list of strings" in refused(["in", "wire", "wire"]).problem


# --------------------------------------------------------------------------- arithmetic


@covers("add", "sub", "mul")
@pytest.mark.parametrize(
    ("function", "expected"), [("add", Decimal("3.5")), ("sub", Decimal("-0.5")), ("mul", 3)]
)
def test_arithmetic_on_decimals(pboc_engine: RuleEngine, function: str, expected: Decimal) -> None:
    p = probe(pboc_engine, params={"a": Decimal("1.5")})
    result = p([function, ["param", "a"], 2])
    assert (result, type(result)) == (expected, Decimal)


@covers("ratio")
def test_ratio_is_exact_and_infinite_over_nothing(pboc_engine: RuleEngine) -> None:
    p = probe(pboc_engine, params={"zero": Decimal(0)})
    assert p(["ratio", 1, 3]) == Decimal(1) / Decimal(3)
    assert p(["ratio", 150000, 100000]) == Decimal("1.5")
    assert p(["ratio", 5, ["param", "zero"]]) == Decimal("Infinity")
    assert p(["ratio", 0, ["param", "zero"]]) == 0


@covers("min", "max")
@pytest.mark.parametrize(("function", "expected"), [("min", Decimal("-2")), ("max", 7)])
def test_min_and_max_of_two_numbers(
    pboc_engine: RuleEngine, function: str, expected: Decimal
) -> None:
    p = probe(pboc_engine, params={"low": Decimal("-2")})
    assert p([function, 7, ["param", "low"]]) == expected


# --------------------------------------------------------------------------- names


@covers("param")
def test_param_reads_the_rule_params_with_their_kind(pboc_engine: RuleEngine) -> None:
    p = probe(pboc_engine, params={"threshold": Decimal("49999.99"), "label": "cash"})
    assert p(["param", "threshold"]) == Decimal("49999.99")
    assert (p.kind(["param", "threshold"]), p.kind(["param", "label"])) == (
        Kind.NUMBER,
        Kind.STRING,
    )
    assert p(["eq", ["param", "label"], ["tx_field", "channel"]]) is False
    error = refused(["gte", 1, ["param", "limit"]], p.scope)
    assert (error.path, error.problem) == (
        "when[2][1]",
        "unknown parameter 'limit' (known: label, threshold)",
    )


@covers("value")
def test_value_is_computed_once_when_first_needed(pboc_engine: RuleEngine) -> None:
    p = probe(pboc_engine, values={"total": ["day_total", "CNY", {}]})
    calls: list[str] = []

    def total(ctx: EvalContext) -> Decimal:
        calls.append("total")
        return Decimal(7)

    p.ctx.pending_values = {"total": total}
    assert p(["add", ["value", "total"], ["value", "total"]]) == 14
    assert calls == ["total"]
    assert p.kind(["value", "total"]) is Kind.NUMBER
    assert "unknown value 'sum'" in refused(["value", "sum"], p.scope).problem


# --------------------------------------------------------------------------- the transaction


@covers("tx_amount")
def test_tx_amount_converts_at_the_reference_rates(pboc_engine: RuleEngine) -> None:
    p = probe(pboc_engine, tx("1000", currency="EUR"))
    assert p(["tx_amount", "CNY"]) == Decimal("8200.00")
    assert p(["tx_amount", "USD"]) == Decimal("1154.93")
    assert "unit must be one of CNY, USD" in refused(["tx_amount", "EUR"]).problem


@covers("tx_field")
@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("direction", "out"),
        ("channel", "wire"),
        ("currency", "USD"),
        ("counterparty_id", "P1"),
        ("counterparty_country", "SG"),
    ],
)
def test_tx_field_reads_a_text_field(pboc_engine: RuleEngine, field: str, expected: str) -> None:
    full = tx(
        direction="out",
        channel="wire",
        currency="USD",
        counterparty_id="P1",
        counterparty_country="SG",
    )
    assert probe(pboc_engine, full)(["tx_field", field]) == expected
    assert probe(pboc_engine, tx())(["tx_field", "counterparty_id"]) == ""


def test_tx_field_refuses_fields_outside_its_list() -> None:
    assert "unknown transaction field 'amount'" in refused(["tx_field", "amount"]).problem


@covers("tx_cross_border")
@pytest.mark.parametrize(("country", "expected"), [(None, False), ("CN", False), ("SG", True)])
def test_tx_cross_border_means_a_counterparty_outside_china(
    pboc_engine: RuleEngine, country: str | None, expected: bool
) -> None:
    assert probe(pboc_engine, tx(counterparty_country=country))(["tx_cross_border"]) is expected


@covers("tx_hour")
def test_tx_hour_is_the_hour_in_the_bank_time_zone(pboc_engine: RuleEngine) -> None:
    late_utc = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 07:30 on 2 March in Shanghai
    assert probe(pboc_engine, tx(at=late_utc))(["tx_hour"]) == 7
    assert probe(pboc_engine, tx())(["tx_hour"]) == 9


@covers("tx_is_round")
@pytest.mark.parametrize(
    ("amount", "currency", "step", "expected"),
    [
        ("10000", "USD", 10000, True),  # the original amount counts, not its 71,000 CNY
        ("30000.00", "CNY", 10000, True),
        ("10000.50", "CNY", 10000, False),
        ("10000", "CNY", 0, False),
    ],
)
def test_tx_is_round_looks_at_the_original_amount(
    pboc_engine: RuleEngine, amount: str, currency: str, step: int, expected: bool
) -> None:
    p = probe(pboc_engine, tx(amount, currency=currency))
    assert p(["tx_is_round", step]) is expected


@covers("customer_field")
def test_customer_field_reads_the_customer_record(pboc_engine: RuleEngine) -> None:
    company = probe(pboc_engine, who=customer("corporate"))
    fields = ("type", "risk_rating", "country")
    assert [company(["customer_field", f]) for f in fields] == ["corporate", "low", "CN"]
    unknown = probe(pboc_engine, who=None)
    assert unknown(["customer_field", "type"]) == ""
    assert "unknown customer field 'name'" in refused(["customer_field", "name"]).problem


@covers("country_risk")
@pytest.mark.parametrize(
    ("country", "expected"), [("KP", "black"), ("VN", "grey"), ("SG", ""), (None, "")]
)
def test_country_risk_names_the_fatf_list_and_notes_it(
    pboc_engine: RuleEngine, country: str | None, expected: str
) -> None:
    p = probe(pboc_engine, tx(counterparty_country=country))
    assert p(["country_risk"]) == expected
    if expected:
        assert p.ctx.notes == {
            "country": country,
            "fatf_list": expected,
            "fatf_as_of": "2026-06-19",
        }
    else:
        assert p.ctx.notes == {}


@covers("watchlist_score")
@pytest.mark.parametrize(
    ("name", "expected", "entry"),
    [
        ("Blackfen Minerals Corporation", Decimal(1), "WL-E002"),
        ("Kestran Valdoro", Decimal("0.9333"), "WL-P013"),
        ("Shanghai Pudong Trading Co", Decimal(0), None),
        (None, Decimal(0), None),
    ],
)
def test_watchlist_score_is_the_best_match_and_notes_the_entry(
    pboc_engine: RuleEngine, name: str | None, expected: Decimal, entry: str | None
) -> None:
    p = probe(pboc_engine, tx(counterparty_name=name))
    assert p(["watchlist_score"]) == expected
    assert p.ctx.notes.get("watchlist_entry") == entry


def test_watchlist_score_reports_scores_below_the_screening_default(
    pboc_engine: RuleEngine,
) -> None:
    name = "Axaxa Velloquin"
    score = pboc_engine.reference.watch_list.best_match(name, threshold=0.5)
    assert score is not None and round(score.score, 4) == 0.8462
    assert probe(pboc_engine, tx(counterparty_name=name))(["watchlist_score"]) == Decimal("0.8462")


# --------------------------------------------------------------------------- history


@covers("days_since_previous")
def test_days_since_previous_is_the_gap_to_the_latest_earlier_activity(
    pboc_engine: RuleEngine,
) -> None:
    assert probe(pboc_engine, tx())(["days_since_previous"]) == 0  # no activity before
    after_36_hours = probe(pboc_engine, tx(at=36 * HOUR), history=[tx()])
    assert after_36_hours(["days_since_previous"]) == Decimal("1.5")
    late_arrival = probe(pboc_engine, tx(), history=[tx(at=DAY)])
    assert late_arrival(["days_since_previous"]) == 0


@covers("history_days")
def test_history_days_counts_whole_days_since_the_first_activity(
    pboc_engine: RuleEngine,
) -> None:
    assert probe(pboc_engine, tx())(["history_days"]) == 0
    p = probe(pboc_engine, tx(), history=[tx(at=-10 * DAY - 23 * HOUR), tx(at=-HOUR)])
    assert p(["history_days"]) == 10


# --------------------------------------------------------------------------- aggregates
# The current transaction is at 09:00 on 2 March (bank time).


def one_day_around(engine: RuleEngine) -> Probe:
    """History on the bank day of the current transaction, and just outside it."""
    history = [
        tx("1", at=-9 * HOUR - timedelta(seconds=1), tx_id="YESTERDAY"),  # 23:59:59 on 1 March
        tx("10", at=-9 * HOUR, tx_id="MIDNIGHT"),
        tx("200", at=14 * HOUR + timedelta(minutes=59), tx_id="LATE", direction="out"),
        tx("1000", at=14 * HOUR, tx_id="LATER", currency="USD"),  # arrives before it happens
    ]
    return probe(engine, tx("3000", tx_id="NOW"), history=history)


@covers("day_total")
def test_day_total_sums_the_whole_bank_day_including_later_transactions(
    pboc_engine: RuleEngine,
) -> None:
    p = one_day_around(pboc_engine)
    assert p(["day_total", "CNY", {"direction": "any"}]) == Decimal("10310.00")
    assert p(["day_total", "CNY", {}]) == Decimal("10110.00")  # same direction: in
    assert p(["day_total", "USD", {"currencies": "foreign"}]) == Decimal("1000.00")
    assert touched_ids(p.ctx)[0] == ["MIDNIGHT", "NOW", "LATER", "LATE"]


@covers("day_count")
def test_day_count_counts_the_whole_bank_day(pboc_engine: RuleEngine) -> None:
    p = one_day_around(pboc_engine)
    assert p(["day_count", {"direction": "any"}]) == 4
    assert p(["day_count", {"direction": "out"}]) == 1


def around_a_day_window(engine: RuleEngine) -> Probe:
    """History exactly 24 hours back, a second more, and an hour after the current one."""
    history = [
        tx("1", at=-DAY - timedelta(seconds=1), counterparty_id="P1"),
        tx("20", at=-DAY, counterparty_id="P1"),
        tx("300", at=-HOUR, counterparty_name="Li Si"),
        tx("4000", at=-HOUR, direction="out", counterparty_id="P2"),
        tx("50000", at=HOUR, counterparty_id="P3"),  # later than the current one
    ]
    return probe(engine, tx("600", counterparty_id="P1"), history=history)


@covers("window_total")
def test_window_total_sums_back_to_exactly_the_start_of_the_window(
    pboc_engine: RuleEngine,
) -> None:
    p = around_a_day_window(pboc_engine)
    assert p(["window_total", 24, "CNY", {}]) == Decimal("920.00")
    assert p(["window_total", 24, "CNY", {"direction": "any"}]) == Decimal("4920.00")
    assert p(["window_total", 24, "USD", {"direction": "opposite"}]) == Decimal("563.38")
    assert "hours must be a whole number" in refused(["window_total", 0, "CNY", {}]).problem


@covers("window_count")
def test_window_count_counts_back_to_exactly_the_start_of_the_window(
    pboc_engine: RuleEngine,
) -> None:
    p = around_a_day_window(pboc_engine)
    assert p(["window_count", 24, {}]) == 3
    assert p(["window_count", 25, {}]) == 4


@covers("window_min", "window_max")
@pytest.mark.parametrize(("function", "expected"), [("window_min", 20), ("window_max", 600)])
def test_window_min_and_max_are_0_for_an_empty_window(
    pboc_engine: RuleEngine, function: str, expected: int
) -> None:
    p = around_a_day_window(pboc_engine)
    assert p([function, 24, "CNY", {}]) == expected
    assert p([function, 24, "CNY", {"channels": ["cash"]}]) == 0


@covers("window_distinct_counterparties")
def test_window_distinct_counterparties_counts_ids_or_else_names(
    pboc_engine: RuleEngine,
) -> None:
    p = around_a_day_window(pboc_engine)
    assert p(["window_distinct_counterparties", 24, {}]) == 2  # P1 and Li Si
    assert p(["window_distinct_counterparties", 24, {"direction": "any"}]) == 3
    anonymous = probe(pboc_engine, tx(), history=[tx(at=-HOUR)])
    assert anonymous(["window_distinct_counterparties", 24, {}]) == 0


@covers("window_new_counterparties")
def test_window_new_counterparties_are_those_with_nothing_in_the_hours_before(
    pboc_engine: RuleEngine,
) -> None:
    history = [
        tx("1", at=-3 * DAY, direction="out", counterparty_id="P1"),  # known, either way
        tx("1", at=-2 * DAY, counterparty_id="P2"),  # out of a 36-hour span: new again
        tx("2", at=-DAY, counterparty_id="P2"),  # exactly the start of the recent day
        tx("3", at=-HOUR, counterparty_id="P1"),
        tx("4", at=-HOUR, counterparty_name="Li Si"),
        tx("5", at=-HOUR, direction="out", counterparty_id="P3"),
        tx("6", at=-HOUR, channel="card", counterparty_id="P4"),
        tx("7", at=-HOUR),  # no counterparty: not counted
    ]
    p = probe(pboc_engine, tx("8", counterparty_id="P5"), history=history)
    # Inflows of the last 24 hours from Li Si, P4 and P5; P1 and P2 were seen before.
    assert p(["window_new_counterparties", 96, 24, {}]) == 3
    # 12 hours before the day only: P1 (3 days ago) and P2 (2 days ago) are new again.
    assert p(["window_new_counterparties", 36, 24, {}]) == 5
    assert p(["window_new_counterparties", 96, 24, {"channels": ["transfer"]}]) == 2
    assert p(["window_new_counterparties", 96, 24, {"direction": "any"}]) == 4  # and P3
    assert p(["window_new_counterparties", 24, 24, {}]) == 5  # nothing before the day
    # The evidence: the day's transactions with the new counterparties.
    assert sorted(e.amount_cny for e in p.ctx.touched[-1]) == [2, 3, 4, 6, 8]
    assert (
        "hours must be a whole number" in refused(["window_new_counterparties", 96, 0, {}]).problem
    )


@covers("window_distinct_days")
def test_window_distinct_days_counts_bank_local_days(pboc_engine: RuleEngine) -> None:
    # 23:30 and 00:30 are one UTC day (1 March) but two bank days.
    history = [tx(at=timedelta(hours=-9, minutes=-30)), tx(at=timedelta(hours=-8, minutes=-30))]
    p = probe(pboc_engine, tx(), history=history)
    assert p(["window_distinct_days", 24, {}]) == 2


def daily_inflows(days: int) -> list[Transaction]:
    """Inflows of 100, 200, ... CNY at 09:00 on each of the ``days`` days before 2 March."""
    return [tx(100 * (day + 1), at=(day - days) * DAY) for day in range(days)]


@covers("baseline_daily_mean")
@pytest.mark.parametrize(
    ("days", "skip", "direction", "expected"),
    [
        (90, 1, "in", "500.00"),  # 4,500 over the 9 days from the first activity to yesterday
        (90, 3, "in", "400.00"),  # 2,800 over the 7 days up to 3 days ago
        (2, 1, "in", "850.00"),  # the 2 days before yesterday
        (90, 1, "out", "0.00"),
    ],
)
def test_baseline_daily_mean_averages_days_since_the_first_activity(
    pboc_engine: RuleEngine, days: int, skip: int, direction: str, expected: str
) -> None:
    p = probe(pboc_engine, tx("99999"), history=daily_inflows(10))
    assert p(["baseline_daily_mean", days, skip, direction]) == Decimal(expected)


def test_a_new_customer_has_a_baseline_of_0(pboc_engine: RuleEngine) -> None:
    assert probe(pboc_engine, tx("99999"))(["baseline_daily_mean", 90, 1, "in"]) == 0
    assert "direction must be" in refused(["baseline_daily_mean", 90, 1, "any"]).problem


def test_the_baseline_includes_the_bank_day_of_the_first_activity(
    pboc_engine: RuleEngine,
) -> None:
    first = tx("1000", at=-10 * DAY + 14 * HOUR)  # 23:00 on 20 February
    today = tx("1", at=-8 * HOUR)  # 01:00 on 2 March: 9 days and 2 hours later
    p = probe(pboc_engine, today, history=[first])
    # 20-28 February, up to 2 days ago: 1,000 over 9 days.
    assert p(["baseline_daily_mean", 90, 1, "in"]) == Decimal("111.11")


# ------------------------------------------------------------------ upper bounds and guards

BUSY_HISTORY = [
    tx(amount, at=at, direction=direction, channel=channel, currency=currency, **fields)
    for amount, at, direction, channel, currency, fields in [
        ("48000", -6 * DAY, "in", "cash", "CNY", {}),
        ("47000", -5 * DAY, "in", "cash", "CNY", {}),
        ("20000", -3 * DAY, "out", "transfer", "CNY", {"counterparty_id": "P1"}),
        ("3000", -2 * DAY, "in", "wire", "USD", {"counterparty_id": "P2"}),
        ("10000", -DAY, "in", "transfer", "CNY", {"counterparty_id": "P1"}),
        ("46000", -2 * HOUR, "in", "cash", "CNY", {}),
        ("900", -HOUR, "in", "card", "CNY", {"counterparty_id": "P3"}),
        ("70000", -HOUR, "out", "transfer", "CNY", {"counterparty_name": "Wang Wu"}),
        ("5", 3 * HOUR, "in", "transfer", "CNY", {"counterparty_id": "P4"}),  # later today
    ]
]
BOUNDED = {
    "day_total": ["day_total", "CNY", {"direction": "any"}],
    "day_count": ["day_count", {"channels": ["cash"]}],
    "window_total": ["window_total", 168, "CNY", {"direction": "in"}],
    "window_count": ["window_count", 168, {"min_cny": "45000", "below_cny": "50000"}],
    "window_distinct_counterparties": ["window_distinct_counterparties", 72, {"direction": "any"}],
    "window_distinct_days": ["window_distinct_days", 168, {"channels": ["cash"]}],
    "window_new_counterparties": ["window_new_counterparties", 168, 24, {"direction": "any"}],
}


@pytest.mark.parametrize("name", sorted(BOUNDED))
@pytest.mark.parametrize("current", [tx("46500", channel="cash"), tx("1", direction="out")])
def test_an_upper_bound_is_never_below_its_aggregate(
    pboc_engine: RuleEngine, name: str, current: Transaction
) -> None:
    raw = BOUNDED[name]
    p = probe(pboc_engine, current, history=BUSY_HISTORY)
    spec = FUNCTIONS[name]
    literals = [literal(arg, kind) for arg, kind in zip(raw[1:], spec.params, strict=True)]
    bound = UPPER_BOUNDS[name](*literals)
    assert bound is not None
    assert p(raw) <= bound(p.ctx)


def literal(raw: Any, kind: Kind) -> Any:
    """A literal argument as the compiler hands it to builders."""
    if kind is Kind.FILTER:
        return compile_filter(raw, "f")
    return raw


def test_every_upper_bound_is_tested() -> None:
    assert sorted(UPPER_BOUNDS) == sorted(BOUNDED)


def test_totals_in_usd_have_no_bound() -> None:
    event_filter = compile_filter({}, "f")
    assert UPPER_BOUNDS["day_total"]("USD", event_filter) is None
    assert UPPER_BOUNDS["window_total"](24, "USD", event_filter) is None


def test_guards_are_the_cheap_and_bounded_conditions_cheapest_first(
    pboc_engine: RuleEngine,
) -> None:
    values = {"total": ["window_total", 24, "CNY", {}], "many": ["window_count", 24, {}]}
    scope = Scope(params={}, values=dict.fromkeys(values, Kind.NUMBER))
    when = [
        "all",
        ["gte", ["value", "total"], 1000],  # bounded by the daily totals
        ["lt", ["value", "many"], 3],  # an aggregate without a bound that helps here
        ["gte", ["tx_amount", "CNY"], 500],  # reads the transaction only
    ]
    guards = compile_guards(when, values, scope)
    assert len(guards) == 2
    small = probe(pboc_engine, tx("600"), history=[tx("300", at=-HOUR)])
    assert [guard(small.ctx) for guard in guards] == [True, False]
    large = probe(pboc_engine, tx("600"), history=[tx("900", at=-HOUR)])
    assert [guard(large.ctx) for guard in guards] == [True, True]
    assert large.ctx.values == {}  # a bound computes no value
    cheap = probe(pboc_engine, tx("400"), history=[tx("900", at=-HOUR)])
    assert [guard(cheap.ctx) for guard in guards] == [False, True]


def test_every_cheap_condition_is_a_guard_cheapest_first() -> None:
    scope = Scope(params={}, values={})
    when = ["all", ["gte", ["history_days"], 7], ["gte", ["tx_amount", "CNY"], 500]]
    assert len(compile_guards(when, {}, scope)) == 2
    single = ["gte", ["tx_amount", "CNY"], 500]
    assert len(compile_guards(single, {}, scope)) == 1


def test_guards_read_a_value_through_its_expression_never_the_rules_values(
    pboc_engine: RuleEngine,
) -> None:
    values = {"big": ["tx_amount", "CNY"], "total": ["window_total", 24, "CNY", {}]}
    scope = Scope(params={}, values=dict.fromkeys(values, Kind.NUMBER))
    when = ["all", ["gte", ["value", "total"], 1000], ["gte", ["value", "big"], 500]]
    guards = compile_guards(when, values, scope)
    assert len(guards) == 2  # the cheap one first, then the bound
    small = probe(pboc_engine, tx("600"), history=[tx("300", at=-HOUR)])
    # Values another rule left behind under the same names change nothing.
    small.ctx.values.update(big=Decimal(0), total=Decimal(10**9))
    assert [guard(small.ctx) for guard in guards] == [True, False]
    large = probe(pboc_engine, tx("600"), history=[tx("900", at=-HOUR)])
    assert [guard(large.ctx) for guard in guards] == [True, True]
    assert large.ctx.values == {}  # computed nothing into them either


def test_a_name_screening_is_a_guard_after_the_bounds() -> None:
    params = {"min_score": Kind.NUMBER}
    values = {"score": ["watchlist_score"], "total": ["day_total", "CNY", {}]}
    scope = Scope(params=params, values=dict.fromkeys(values, Kind.NUMBER))
    when = [
        "all",
        ["gte", ["value", "score"], ["param", "min_score"]],
        ["gte", ["value", "total"], 1000],
        ["lt", ["day_count", {}], 3],  # an aggregate without a bound here: left to when
    ]
    assert len(compile_guards(when, values, scope)) == 2


def test_every_packaged_rule_but_the_foreign_currency_reports_has_guards(
    pboc_engine: RuleEngine,
) -> None:
    # Guards are what keeps most rules at one or two calls per transaction; a day total
    # in USD has no cheap bound.
    without = [rule.id for rule in pboc_engine.pack.rules if not rule.guards]
    assert without == [
        "LVT-CASH-FX",
        "LVT-CORP-TRANSFER-FX",
        "LVT-IND-DOMESTIC-FX",
        "LVT-IND-CROSSBORDER-FX",
    ]


# --------------------------------------------------------------------------- event filters


def event(
    *,
    direction: Direction = Direction.IN,
    channel: Channel = Channel.TRANSFER,
    currency: str = "CNY",
    amount_cny: str = "100.00",
    cross_border: bool = False,
) -> TxEvent:
    return TxEvent(
        tx_id="E1",
        at=START.timestamp(),
        day=START.date().toordinal(),
        direction=direction,
        channel=channel,
        currency=currency,
        amount_cny=Decimal(amount_cny),
        amount_usd=Decimal(0),
        counterparty=None,
        country="SG" if cross_border else None,
        cross_border=cross_border,
    )


def matches(event_filter: EventFilter, candidate: TxEvent, tx_direction: str = "in") -> bool:
    return event_filter.select([candidate], Direction(tx_direction), "CNY") == [candidate]


@pytest.mark.parametrize(
    ("wanted", "tx_direction", "event_direction", "expected"),
    [
        ("same", "in", "in", True),
        ("same", "out", "in", False),
        ("opposite", "out", "in", True),
        ("opposite", "in", "in", False),
        ("in", "out", "in", True),
        ("in", "out", "out", False),
        ("out", "in", "out", True),
        ("out", "in", "in", False),
        ("any", "in", "out", True),
        ("any", "out", "in", True),
    ],
)
def test_filter_direction_is_relative_to_the_transaction_or_fixed(
    wanted: str, tx_direction: str, event_direction: str, expected: bool
) -> None:
    candidate = event(direction=Direction(event_direction))
    assert matches(compile_filter({"direction": wanted}, "f"), candidate, tx_direction) is expected


def test_filter_direction_defaults_to_same() -> None:
    assert compile_filter({}, "f") == EventFilter(direction="same")


@pytest.mark.parametrize(
    ("currencies", "currency", "expected"),
    [
        ("domestic", "CNY", True),
        ("domestic", "USD", False),
        ("foreign", "USD", True),
        ("foreign", "CNY", False),
        (["USD", "EUR"], "EUR", True),
        (["USD", "EUR"], "CNY", False),
    ],
)
def test_filter_currencies_domestic_foreign_or_a_list(
    currencies: Any, currency: str, expected: bool
) -> None:
    event_filter = compile_filter({"currencies": currencies}, "f")
    assert matches(event_filter, event(currency=currency)) is expected


@pytest.mark.parametrize(
    ("cross_border", "event_cross_border", "expected"),
    [(True, True, True), (True, False, False), (False, False, True), (False, True, False)],
)
def test_filter_cross_border(cross_border: bool, event_cross_border: bool, expected: bool) -> None:
    event_filter = compile_filter({"cross_border": cross_border}, "f")
    assert matches(event_filter, event(cross_border=event_cross_border)) is expected


def test_filter_channels() -> None:
    cash_only = compile_filter({"channels": ["cash"]}, "f")
    assert matches(cash_only, event(channel=Channel.CASH)) is True
    assert matches(cash_only, event(channel=Channel.TRANSFER)) is False


@pytest.mark.parametrize(
    ("bounds", "amount", "expected"),
    [
        ({"min_cny": "45000"}, "45000.00", True),  # inclusive
        ({"min_cny": "45000"}, "44999.99", False),
        ({"below_cny": 50000}, "49999.99", True),
        ({"below_cny": 50000}, "50000.00", False),  # exclusive
        ({"multiple_of": "10000"}, "30000.00", True),
        ({"multiple_of": "10000"}, "30000.01", False),
        ({"multiple_of": 0}, "30000.01", True),  # 0 means no step
    ],
)
def test_filter_amount_bounds_in_cny(bounds: dict[str, Any], amount: str, expected: bool) -> None:
    assert matches(compile_filter(bounds, "f"), event(amount_cny=amount)) is expected


@pytest.mark.parametrize(
    ("raw", "path", "problem"),
    [
        ({"channel": ["cash"]}, "f.channel", "unknown filter key"),
        ({"direction": "both"}, "f.direction", "must be same, opposite, in, out or any"),
        ({"channels": ["bitcoin"]}, "f.channels", "values must be among"),
        ({"channels": "cash"}, "f.channels", "values must be among"),
        ({"currencies": "local"}, "f.currencies", "a list of codes"),
        ({"cross_border": "yes"}, "f.cross_border", "true or false"),
        ({"min_cny": 45000.5}, "f.min_cny", "an integer or a decimal string"),
        ({"below_cny": "fifty"}, "f.below_cny", "not a decimal number"),
        (["cash"], "f", "expected a filter table"),
    ],
)
def test_a_malformed_filter_is_refused_with_its_path(raw: Any, path: str, problem: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_filter(raw, "f")
    assert caught.value.path == path
    assert problem in caught.value.problem


def test_an_unknown_filter_key_in_an_expression_names_the_node() -> None:
    error = refused(["day_total", "CNY", {"channels": ["cash"], "channel": ["cash"]}])
    assert error.path == "when[2].channel"


# --------------------------------------------------------------------------- compiling


def test_a_float_literal_is_refused_at_compile_time() -> None:
    error = refused(["gte", ["tx_amount", "CNY"], 49999.99])
    assert error.path == "when[2]"
    assert error.problem == 'floats are not allowed; write "49999.99" as a string param'


@pytest.mark.parametrize(
    ("raw", "path", "problem"),
    [
        (["gtee", 1, 2], "when[0]", "unknown function 'gtee'"),
        (["gte", 1], "when", "gte takes 2 argument(s), got 1"),
        ([], "when", "expected [function, args...], got an empty list"),
        ({"gte": 1}, "when", "got dict"),
        (["window_count", True, {}], "when[1]", "hours must be a whole number"),
        (["window_count", 9601, {}], "when[1]", "hours must be a whole number"),
    ],
)
def test_a_malformed_expression_is_refused_with_the_path_of_its_node(
    raw: Any, path: str, problem: str
) -> None:
    error = refused(raw)
    assert error.path == path
    assert problem in error.problem


def test_a_second_registration_of_a_name_is_refused() -> None:
    before = dict(FUNCTIONS)
    with pytest.raises(ValueError, match="'gte' is registered twice"):
        register("gte", (Kind.NUMBER, Kind.NUMBER), Kind.BOOL)(lambda ctx, left, right: True)
    after = dict(FUNCTIONS)
    assert after == before


def test_every_registered_function_has_a_test() -> None:
    assert sorted(set(FUNCTIONS) - COVERED) == []
    assert sorted(COVERED - set(FUNCTIONS)) == []
