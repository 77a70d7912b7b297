"""The condition language of rule packs: a small AST as nested arrays, one evaluator per function.

A node is ``["function", arg, ...]``; integers are numbers (Decimal), strings are
strings, ``true``/``false`` are booleans. Floats are refused: write decimals as strings
in ``params`` (``threshold = "49999.99"``). Some arguments must be literals, checked
when the pack loads: a unit (``"CNY"``, ``"USD"``), a number of hours, a filter table
(``{ direction = "same", channels = ["cash"], currencies = "foreign" }``), a name.

Every function is registered once in :data:`FUNCTIONS` with its argument kinds and
result kind, so a pack is type-checked at load time and fails with the path of the
offending node. A registered function is a *builder*: given its node's compiled
arguments, once, when the pack loads, it returns the closure that evaluates the node.
Evaluating a rule is then a chain of plain calls, with no per-evaluation dispatch,
argument packing or cache-key building.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from core.customer import Customer
from core.errors import InvalidInput
from core.transaction import Channel, Direction, Transaction
from rules.reference_data import Reference
from rules.state import CustomerState, TxEvent


class Kind(StrEnum):
    """What an expression yields, or what literal an argument must be."""

    NUMBER = "number"
    BOOL = "bool"
    STRING = "string"
    ANY = "any"
    # Literal-only argument kinds:
    UNIT = "unit"
    HOURS = "hours"
    FILTER = "filter"
    STRINGS = "list of strings"
    NAME = "name"
    DIRECTION = "direction"


LITERAL_KINDS = frozenset(
    {Kind.UNIT, Kind.HOURS, Kind.FILTER, Kind.STRINGS, Kind.NAME, Kind.DIRECTION}
)
UNITS = ("CNY", "USD")
TX_FIELDS = (
    "direction",
    "channel",
    "currency",
    "counterparty_id",
    "counterparty_country",
)
CUSTOMER_FIELDS = ("type", "risk_rating", "country")


_E = TypeVar("_E", bound=StrEnum)


class ExpressionError(InvalidInput):
    """A condition that does not compile; ``path`` locates the node (e.g. ``when[2][1]``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(slots=True)
class EvalContext:
    """What one rule evaluation can see: the transaction, its customer and their state.

    ``__init__`` is written out, as ``TxEvent``'s is: one is made per transaction.
    """

    tx: Transaction
    event: TxEvent
    customer: Customer | None
    state: CustomerState
    reference: Reference
    previous_event_at: float | None
    local_time: datetime
    # Set empty by __init__, filled per rule:
    params: Mapping[str, Any]
    values: dict[str, Any]
    pending_values: Mapping[str, Callable[[EvalContext], Any]]
    # The event selections a rule's aggregates looked at: its evidence.
    touched: list[list[TxEvent]]
    notes: dict[str, str]
    # Shared by every rule evaluated for the same transaction: the events of each span,
    # the events each (span, filter) selects, and each reduction over them.
    spans: dict[str | int, list[TxEvent]]
    selections: dict[tuple[Any, ...], list[TxEvent]]
    cache: dict[tuple[Any, ...], Any]

    def __init__(
        self,
        tx: Transaction,
        event: TxEvent,
        customer: Customer | None,
        state: CustomerState,
        reference: Reference,
        previous_event_at: float | None,
        local_time: datetime,
    ) -> None:
        self.tx = tx
        self.event = event
        self.customer = customer
        self.state = state
        self.reference = reference
        self.previous_event_at = previous_event_at
        self.local_time = local_time
        self.params = {}
        self.values = {}
        self.pending_values = {}
        self.touched = []
        self.notes = {}
        self.spans = {}
        self.selections = {}
        self.cache = {}


Compiled = Callable[[EvalContext], Any]


class ParamRead:
    """The compiled ``["param", name]``: the rule's parameter, read from the context.

    A comparison with a parameter reads it itself (see ``compare``): one call fewer per
    comparison, and most guards compare something with a parameter.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, ctx: EvalContext) -> Any:
        return ctx.params[self.name]


def compare(left: Compiled, right: Compiled, operator: str) -> Compiled:
    """``bool(left(ctx) <operator> right(ctx))``, reading a parameter on the right directly.

    Written out per operator: a call to an operator function would cost what is saved.
    """
    if isinstance(right, ParamRead):
        name = right.name
        match operator:
            case ">=":
                return lambda ctx: bool(left(ctx) >= ctx.params[name])
            case ">":
                return lambda ctx: bool(left(ctx) > ctx.params[name])
            case "<=":
                return lambda ctx: bool(left(ctx) <= ctx.params[name])
            case "<":
                return lambda ctx: bool(left(ctx) < ctx.params[name])
            case "==":
                return lambda ctx: bool(left(ctx) == ctx.params[name])
    match operator:
        case ">=":
            return lambda ctx: bool(left(ctx) >= right(ctx))
        case ">":
            return lambda ctx: bool(left(ctx) > right(ctx))
        case "<=":
            return lambda ctx: bool(left(ctx) <= right(ctx))
        case "<":
            return lambda ctx: bool(left(ctx) < right(ctx))
        case "==":
            return lambda ctx: bool(left(ctx) == right(ctx))
    raise ValueError(f"unknown comparison {operator!r}")


# A filter's direction, given the transaction's: a lookup, as it is asked per aggregate.
_COUNTED_DIRECTION: dict[tuple[str, Direction], Direction | None] = {
    (relative, direction): counted
    for direction, other in ((Direction.IN, Direction.OUT), (Direction.OUT, Direction.IN))
    for relative, counted in (
        ("same", direction),
        ("opposite", other),
        ("in", Direction.IN),
        ("out", Direction.OUT),
        ("any", None),
    )
}


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which of the customer's events an aggregate counts."""

    direction: str = "same"  # same | opposite | in | out | any
    channels: frozenset[Channel] | None = None
    currencies: frozenset[str] | str | None = None  # codes, or "domestic" / "foreign"
    cross_border: bool | None = None
    min_cny: Decimal | None = None
    below_cny: Decimal | None = None
    multiple_of: Decimal | None = None  # round amounts, in CNY

    def direction_for(self, tx_direction: Direction) -> Direction | None:
        """The direction counted for a transaction in ``tx_direction`` (None: both)."""
        return _COUNTED_DIRECTION[self.direction, tx_direction]

    def select(
        self, events: list[TxEvent], tx_direction: Direction, home_currency: str
    ) -> list[TxEvent]:
        """The events that pass, in their order, for a transaction in ``tx_direction``
        (``events`` itself when the filter has no condition).

        One pass per condition the filter has, each a plain comprehension: cheaper than
        calling a predicate per event, and every pass leaves fewer events to the next.
        """
        selected = events
        direction = self.direction_for(tx_direction)
        if direction is not None:
            selected = [event for event in selected if event.direction is direction]
        channels = self.channels
        if channels is not None:
            selected = [event for event in selected if event.channel in channels]
        currencies = self.currencies
        if currencies == "domestic":
            selected = [event for event in selected if event.currency == home_currency]
        elif currencies == "foreign":
            selected = [event for event in selected if event.currency != home_currency]
        elif currencies is not None:
            selected = [event for event in selected if event.currency in currencies]
        cross_border = self.cross_border
        if cross_border is not None:
            selected = [event for event in selected if event.cross_border is cross_border]
        low, below, step = self.min_cny, self.below_cny, self.multiple_of
        if low is not None:
            selected = [event for event in selected if event.amount_cny >= low]
        if below is not None:
            selected = [event for event in selected if event.amount_cny < below]
        if step is not None:
            selected = [event for event in selected if event.amount_cny % step == 0]
        return selected


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    params: tuple[Kind, ...]
    returns: Kind
    # Called once per node with the node's compiled arguments; returns its closure.
    build: Callable[..., Compiled]
    doc: str
    variadic: bool = False  # the last param kind repeats (at least once)


FUNCTIONS: dict[str, FunctionSpec] = {}


def register(
    name: str, params: tuple[Kind, ...], returns: Kind, *, variadic: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add a function's builder to the vocabulary; a second registration is refused."""

    def decorate(build: Callable[..., Compiled]) -> Callable[..., Compiled]:
        if name in FUNCTIONS:
            raise ValueError(f"function {name!r} is registered twice")
        FUNCTIONS[name] = FunctionSpec(
            name, params, returns, build, (build.__doc__ or "").strip(), variadic
        )
        return build

    return decorate


# Cheap upper bounds of aggregates: for a function name, a builder taking the same
# (literal) arguments and returning a closure whose result the aggregate never exceeds,
# or None when it has no cheap bound for those arguments. See :func:`compile_guards`.
UPPER_BOUNDS: dict[str, Callable[..., Compiled | None]] = {}


def upper_bound(
    name: str,
) -> Callable[[Callable[..., Compiled | None]], Callable[..., Compiled | None]]:
    """Register the upper bound of a registered aggregate; a second one is refused."""

    def decorate(build: Callable[..., Compiled | None]) -> Callable[..., Compiled | None]:
        if name not in FUNCTIONS or name in UPPER_BOUNDS:
            raise ValueError(f"function {name!r} is unknown or has an upper bound already")
        UPPER_BOUNDS[name] = build
        return build

    return decorate


# --------------------------------------------------------------------------- compiling


@dataclass(frozen=True)
class Scope:
    """Names a rule's expressions may refer to, with their kinds."""

    params: Mapping[str, Kind]
    values: Mapping[str, Kind]


def literal_kind(value: Any) -> Kind:
    """The kind of a TOML literal used as a constant or parameter."""
    if isinstance(value, bool):
        return Kind.BOOL
    if isinstance(value, (int, Decimal)):
        return Kind.NUMBER
    if isinstance(value, str):
        return Kind.STRING
    raise TypeError(type(value).__name__)


def compile_expression(raw: Any, scope: Scope, path: str = "when") -> tuple[Compiled, Kind]:
    """Type-check ``raw`` against the vocabulary and return its closure and result kind."""
    if isinstance(raw, bool):
        return (lambda ctx, constant=raw: constant), Kind.BOOL
    if isinstance(raw, int):
        number = Decimal(raw)
        return (lambda ctx: number), Kind.NUMBER
    if isinstance(raw, float):
        raise ExpressionError(path, f'floats are not allowed; write "{raw}" as a string param')
    if isinstance(raw, str):
        return (lambda ctx, constant=raw: constant), Kind.STRING
    if not isinstance(raw, list) or not raw:
        raise ExpressionError(path, f"expected [function, args...], got {_describe(raw)}")
    name, *args = raw
    if not isinstance(name, str):
        raise ExpressionError(path, "a node must start with a function name")
    spec = FUNCTIONS.get(name)
    if spec is None:
        raise ExpressionError(f"{path}[0]", f"unknown function {name!r}")
    kinds = _expected_kinds(spec, len(args), path)
    compiled_args = [
        _compile_argument(arg, kind, scope, f"{path}[{index + 1}]", spec)
        for index, (arg, kind) in enumerate(zip(args, kinds, strict=True))
    ]
    returns = spec.returns
    if name == "param":
        returns = scope.params[args[0]]
    elif name == "value":
        returns = scope.values[args[0]]
    return spec.build(*compiled_args), returns


# Functions that read only the transaction or the customer, and those that read a state
# scalar: a condition made of these alone costs less than any selection of events.
TRANSACTION_FUNCTIONS = frozenset(
    {
        "all", "any", "not", "gte", "gt", "lte", "lt", "eq", "between", "in", "add", "sub",
        "mul", "ratio", "min", "max", "param", "value", "tx_amount", "tx_field",
        "tx_cross_border", "tx_hour", "tx_is_round", "customer_field", "country_risk",
    }
)  # fmt: skip
CHEAP_FUNCTIONS = TRANSACTION_FUNCTIONS | {"days_since_previous", "history_days"}
# Screening a name is remembered per name: cheap once the name was seen, costly the
# first time. Such a condition is a guard, after the bounds.
SCREENING_FUNCTIONS = CHEAP_FUNCTIONS | {"watchlist_score"}


def compile_guards(
    raw_when: Any, raw_values: Mapping[str, Any], scope: Scope
) -> tuple[Compiled, ...]:
    """Necessary conditions of an already validated ``when``, cheapest first, reading
    none of the rule's values: the engine asks them before it prepares the context for
    the rule, and most rules stop there for most transactions.

    The conditions that must all hold for the rule to fire are ``when`` itself or the
    items of a top-level ``all``. A value in one is replaced by its expression (a value
    is a function of the context: the same there as in ``when``), so a guard reads the
    transaction, the customer, the state and the transaction's shared caches, never the
    rule's values. Each condition that is cheap is a guard as it is; each comparing an
    aggregate with ``gte``/``gt`` is a guard with the aggregate's cheap upper bound in
    its place; then those screening the counterparty's name; the others are left to
    ``when``. Guards reading only the transaction come first, then those reading state
    scalars, the bounds, the screenings. A rule whose guard fails cannot fire.
    """
    conditions = raw_when[1:] if raw_when[0] == "all" else [raw_when]
    ranked: list[tuple[int, int, Compiled]] = []
    for position, written in enumerate(conditions):
        condition = _inlined(written, raw_values)
        if _made_of(condition, TRANSACTION_FUNCTIONS):
            ranked.append((0, position, compile_expression(condition, scope)[0]))
        elif _made_of(condition, CHEAP_FUNCTIONS):
            ranked.append((1, position, compile_expression(condition, scope)[0]))
        elif (bound := _bound_of(condition, scope)) is not None:
            ranked.append((2, position, bound))
        elif _made_of(condition, SCREENING_FUNCTIONS):
            ranked.append((3, position, compile_expression(condition, scope)[0]))
    ranked.sort(key=lambda item: item[:2])
    return tuple(guard for _, _, guard in ranked)


def _inlined(raw: Any, raw_values: Mapping[str, Any]) -> Any:
    """``raw`` with every value replaced by its expression (values may use earlier ones)."""
    if not isinstance(raw, list) or not raw:
        return raw
    if raw[0] == "value" and len(raw) == 2 and raw[1] in raw_values:
        return _inlined(raw_values[raw[1]], raw_values)
    return [raw[0], *(_inlined(arg, raw_values) for arg in raw[1:])]


def _made_of(raw: Any, functions: frozenset[str]) -> bool:
    if not isinstance(raw, list):
        return True
    return raw[0] in functions and all(_made_of(arg, functions) for arg in raw[1:])


def _bound_of(condition: Any, scope: Scope) -> Compiled | None:
    """``bound(aggregate) >= right`` for a ``gte``/``gt`` of an aggregate with a bound."""
    if not isinstance(condition, list) or condition[0] not in ("gte", "gt"):
        return None
    left = condition[1]
    if not isinstance(left, list) or left[0] not in UPPER_BOUNDS:
        return None
    spec = FUNCTIONS[left[0]]
    literals = [
        _literal_argument(arg, kind, scope, "when", spec)
        for arg, kind in zip(left[1:], spec.params, strict=True)
    ]
    bound = UPPER_BOUNDS[left[0]](*literals)
    if bound is None:
        return None
    right, _ = compile_expression(condition[2], scope)
    return compare(bound, right, ">" if condition[0] == "gt" else ">=")


def _expected_kinds(spec: FunctionSpec, count: int, path: str) -> tuple[Kind, ...]:
    if spec.variadic:
        fixed = len(spec.params) - 1
        if count < len(spec.params):
            raise ExpressionError(
                path, f"{spec.name} takes at least {len(spec.params)} argument(s), got {count}"
            )
        return spec.params[:fixed] + (spec.params[-1],) * (count - fixed)
    if count != len(spec.params):
        raise ExpressionError(
            path, f"{spec.name} takes {len(spec.params)} argument(s), got {count}"
        )
    return spec.params


def _compile_argument(raw: Any, kind: Kind, scope: Scope, path: str, spec: FunctionSpec) -> Any:
    if kind in LITERAL_KINDS:
        return _literal_argument(raw, kind, scope, path, spec)
    compiled, actual = compile_expression(raw, scope, path)
    if kind is not Kind.ANY and actual is not Kind.ANY and actual is not kind:
        raise ExpressionError(path, f"{spec.name} needs a {kind} here, got a {actual}")
    return compiled


def _literal_argument(raw: Any, kind: Kind, scope: Scope, path: str, spec: FunctionSpec) -> Any:
    match kind:
        case Kind.UNIT:
            if raw not in UNITS:
                raise ExpressionError(path, f"unit must be one of {', '.join(UNITS)}")
            return raw
        case Kind.HOURS:
            if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= 24 * 400:
                raise ExpressionError(path, "hours must be a whole number from 1 to 9600")
            return raw
        case Kind.STRINGS:
            if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
                raise ExpressionError(path, "expected a list of strings")
            return frozenset(raw)
        case Kind.FILTER:
            return compile_filter(raw, path)
        case Kind.NAME:
            return _check_name(raw, scope, path, spec)
        case Kind.DIRECTION:
            if raw not in ("in", "out"):
                raise ExpressionError(path, 'direction must be "in" or "out"')
            return raw
    raise AssertionError(kind)


def _check_name(raw: Any, scope: Scope, path: str, spec: FunctionSpec) -> str:
    allowed: Mapping[str, Any] | tuple[str, ...]
    if spec.name == "param":
        allowed, what = scope.params, "parameter"
    elif spec.name == "value":
        allowed, what = scope.values, "value"
    elif spec.name == "tx_field":
        allowed, what = TX_FIELDS, "transaction field"
    elif spec.name == "customer_field":
        allowed, what = CUSTOMER_FIELDS, "customer field"
    else:
        raise AssertionError(spec.name)
    if not isinstance(raw, str) or raw not in allowed:
        known = ", ".join(sorted(allowed)) or "none"
        raise ExpressionError(path, f"unknown {what} {raw!r} (known: {known})")
    return raw


FILTER_KEYS = (
    "direction",
    "channels",
    "currencies",
    "cross_border",
    "min_cny",
    "below_cny",
    "multiple_of",
)


def parse_members(enum: type[_E], raw: Any, path: str) -> frozenset[_E] | None:
    """A list of enum values (None when absent); shared by filters and ``applies_to``."""
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            raise TypeError(raw)
        return frozenset(enum(item) for item in raw)
    except (ValueError, TypeError):
        allowed = ", ".join(member.value for member in enum)
        raise ExpressionError(path, f"values must be among: {allowed}") from None


def parse_currencies(raw: Any, path: str) -> frozenset[str] | str | None:
    """A list of currency codes, "domestic" or "foreign" (None when absent)."""
    if isinstance(raw, list):
        return frozenset(str(item) for item in raw)
    if raw not in (None, "domestic", "foreign"):
        raise ExpressionError(path, 'a list of codes, "domestic" or "foreign"')
    return raw


def parse_flag(raw: Any, path: str) -> bool | None:
    """true, false, or None when absent."""
    if raw is not None and not isinstance(raw, bool):
        raise ExpressionError(path, "must be true or false")
    return raw


def compile_filter(raw: Any, path: str) -> EventFilter:
    """Validate a filter table into an :class:`EventFilter`."""
    if not isinstance(raw, dict):
        raise ExpressionError(path, 'expected a filter table like { channels = ["cash"] }')
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise ExpressionError(
            f"{path}.{unknown[0]}", f"unknown filter key (known: {', '.join(FILTER_KEYS)})"
        )
    direction = raw.get("direction", "same")
    if direction not in ("same", "opposite", "in", "out", "any"):
        raise ExpressionError(f"{path}.direction", "must be same, opposite, in, out or any")
    channels = parse_members(Channel, raw.get("channels"), f"{path}.channels")
    currencies = parse_currencies(raw.get("currencies"), f"{path}.currencies")
    cross_border = parse_flag(raw.get("cross_border"), f"{path}.cross_border")
    bounds: dict[str, Decimal | None] = {}
    for key in ("min_cny", "below_cny", "multiple_of"):
        value = raw.get(key)
        if value is None:
            bounds[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ExpressionError(f"{path}.{key}", "must be an integer or a decimal string")
        try:
            bounds[key] = Decimal(value)
        except ArithmeticError:
            raise ExpressionError(f"{path}.{key}", "is not a decimal number") from None
    compiled = EventFilter(
        direction=direction,
        channels=channels,
        currencies=currencies,
        cross_border=cross_border,
        min_cny=bounds["min_cny"],
        below_cny=bounds["below_cny"],
        multiple_of=bounds["multiple_of"] or None,
    )
    # One instance per distinct filter, so per-transaction caches can key on identity
    # (hashing the frozensets of a filter on every lookup was a measurable cost).
    return _FILTERS.setdefault(compiled, compiled)


_FILTERS: dict[EventFilter, EventFilter] = {}


def _describe(raw: Any) -> str:
    return "an empty list" if raw == [] else type(raw).__name__
