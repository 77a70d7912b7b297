"""Rule packs: versioned TOML files of rules whose conditions are data, validated on load.

A pack file has a ``[pack]`` table (name, version, description) and one ``[[rule]]``
table per rule::

    [[rule]]
    id = "LVT-CASH-CNY"
    version = 1
    title = "Large-value cash in CNY"
    severity = "medium"
    outcome = "report"            # report (large-value record) | alert (suspicious)
    criterion = "cash"            # optional label carried into the detection
    cooldown_hours = 72           # alerts: at most one per customer per cool-down
    reason = "{direction} cash of {total:,} CNY on {day}"
    when = ["gte", ["value", "total"], ["param", "threshold"]]

    [rule.applies_to]             # all optional; a rule is skipped when one fails
    channels = ["cash"]
    currencies = ["CNY"]          # or "domestic" / "foreign"
    directions = ["in", "out"]
    customer_types = ["individual"]
    cross_border = true

    [rule.params]                 # integers or decimal strings (never floats)
    threshold = "50000"

    [rule.values]                 # named expressions, computed once, usable in
    total = ["day_total", "CNY", { channels = ["cash"], currencies = ["CNY"] }]

Every problem is reported with the file, the rule id and the field at fault.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

import rules.functions  # noqa: F401  - registers the vocabulary
from core.customer import Customer, CustomerType
from core.detection import Outcome, Severity
from core.errors import LocatedInputError
from core.transaction import Channel, Direction, Transaction
from rules.expressions import (
    Compiled,
    ExpressionError,
    Kind,
    Scope,
    compile_expression,
    compile_guards,
    parse_currencies,
    parse_flag,
    parse_members,
)

RULE_KEYS = frozenset(
    {
        "id", "version", "title", "description", "severity", "outcome", "criterion",
        "cooldown_hours", "reason", "when", "applies_to", "params", "values",
    }
)  # fmt: skip
APPLIES_TO_KEYS = frozenset(
    {"channels", "currencies", "directions", "customer_types", "cross_border"}
)
# Names every reason template may use besides the rule's params and values.
REASON_BUILTINS = frozenset(
    {
        "direction", "channel", "currency", "amount", "amount_cny", "day", "tx_count",
        "country", "fatf_list", "fatf_as_of", "watchlist_entry", "watchlist_list",
        "watchlist_score",
    }
)  # fmt: skip
DEFAULT_PACK = "pboc"
# A rule id names its detections' detector in the case store, which keeps 64 characters.
MAX_RULE_ID_LENGTH = 64


class RulePackError(LocatedInputError):
    """A pack that cannot be loaded; names the file, the rule and the field."""

    def __init__(self, source: str, rule_id: str | None, field: str | None, problem: str) -> None:
        super().__init__(source, problem, rule_id=rule_id, field=field)


@dataclass(frozen=True, slots=True)
class AppliesTo:
    """Cheap filters checked before a rule's condition is evaluated."""

    channels: frozenset[Channel] | None = None
    currencies: frozenset[str] | str | None = None
    directions: frozenset[Direction] | None = None
    customer_types: frozenset[CustomerType] | None = None
    cross_border: bool | None = None

    def admits(
        self, tx: Transaction, customer_type: CustomerType, cross_border: bool, home: str
    ) -> bool:
        if self.channels is not None and tx.channel not in self.channels:
            return False
        if self.directions is not None and tx.direction not in self.directions:
            return False
        if self.customer_types is not None and customer_type not in self.customer_types:
            return False
        if self.cross_border is not None and cross_border is not self.cross_border:
            return False
        currencies = self.currencies
        if currencies == "domestic":
            return tx.currency == home
        if currencies == "foreign":
            return tx.currency != home
        return currencies is None or tx.currency in currencies


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    version: int
    title: str
    description: str
    severity: Severity
    outcome: Outcome
    criterion: str | None
    cooldown_hours: int
    reason: str
    when: Compiled
    # Necessary conditions of ``when`` reading none of its values (see compile_guards),
    # asked before the context is prepared for the rule.
    guards: tuple[Compiled, ...]
    applies_to: AppliesTo
    params: Mapping[str, Any]
    values: Mapping[str, Compiled]
    raw_when: Any


@dataclass(frozen=True, slots=True)
class RulePack:
    name: str
    version: str
    description: str
    source: str
    rules: tuple[Rule, ...]
    longest_window_hours: int
    baseline_days: int

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def packaged_pack_path(name: str = DEFAULT_PACK) -> Path:
    """Path of a pack shipped in ``rules/packs``."""
    return Path(str(resources.files("rules.packs").joinpath(f"{name}.toml")))


def load_pack(path: Path) -> RulePack:
    """Read and validate a pack file; raise RulePackError naming file, rule and field."""
    source = path.name
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulePackError(str(path), None, None, "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulePackError(source, None, None, f"not valid TOML: {exc}") from None
    return parse_pack(document, source)


def parse_pack(document: Mapping[str, Any], source: str) -> RulePack:
    """Validate an already-parsed pack document."""
    header = document.get("pack")
    if not isinstance(header, dict):
        raise RulePackError(source, None, "pack", "missing [pack] table")
    for key in ("name", "version"):
        if not isinstance(header.get(key), str) or not header[key].strip():
            raise RulePackError(source, None, f"pack.{key}", "must be a non-empty string")
    raw_rules = document.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulePackError(source, None, "rule", "a pack needs at least one [[rule]]")
    seen: set[str] = set()
    parsed: list[Rule] = []
    hours: list[int] = []
    baseline: list[int] = []
    for index, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, source, index)
        if rule.id in seen:
            raise RulePackError(source, rule.id, "id", "duplicate rule id")
        seen.add(rule.id)
        parsed.append(rule)
        expressions = [rule.raw_when, *(raw.get("values") or {}).values()]
        for node in _nodes(expressions):
            if str(node[0]).startswith("window_"):
                hours.append(node[1])
            elif node[0] == "baseline_daily_mean":
                baseline.append(node[1] + node[2])
    return RulePack(
        name=header["name"],
        version=header["version"],
        description=str(header.get("description", "")),
        source=source,
        rules=tuple(parsed),
        longest_window_hours=max(hours, default=24),
        baseline_days=max(baseline, default=0),
    )


def _nodes(raw: Any) -> Iterator[list[Any]]:
    if isinstance(raw, list):
        if raw and isinstance(raw[0], str) and raw[0].replace("_", "").isalpha():
            yield raw
        for item in raw:
            yield from _nodes(item)


def _parse_rule(raw: Any, source: str, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise RulePackError(source, None, f"rule[{index}]", "must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise RulePackError(source, f"#{index + 1}", "id", "must be a non-empty string")
    if len(rule_id) > MAX_RULE_ID_LENGTH:
        raise RulePackError(
            source, f"#{index + 1}", "id", f"is longer than {MAX_RULE_ID_LENGTH} characters"
        )

    def fail(field: str, problem: str) -> RulePackError:
        return RulePackError(source, rule_id, field, problem)

    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise fail(unknown[0], "unknown field")
    for field in ("version", "title", "severity", "outcome", "reason", "when"):
        if field not in raw:
            raise fail(field, "missing")
    version = raw["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail("version", "must be a positive integer")
    if not isinstance(raw["title"], str):
        raise fail("title", "must be a string")
    try:
        severity = Severity(raw["severity"])
    except ValueError:
        raise fail("severity", f"must be one of {', '.join(s.value for s in Severity)}") from None
    try:
        outcome = Outcome(raw["outcome"])
    except ValueError:
        raise fail("outcome", "must be report or alert") from None
    cooldown = raw.get("cooldown_hours", 24)
    if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
        raise fail("cooldown_hours", "must be a whole number of hours")
    params = _parse_params(raw.get("params", {}), fail)
    param_kinds = {name: _kind_of(value) for name, value in params.items()}
    value_kinds: dict[str, Kind] = {}
    values: list[tuple[str, Compiled]] = []
    raw_values = raw.get("values", {})
    if not isinstance(raw_values, dict):
        raise fail("values", "must be a table of named expressions")
    for name, expression in raw_values.items():
        try:
            compiled, kind = compile_expression(
                expression, Scope(param_kinds, dict(value_kinds)), f"values.{name}"
            )
        except ExpressionError as exc:
            raise fail(exc.path, exc.problem) from None
        value_kinds[name] = kind
        values.append((name, compiled))
    try:
        when, kind = compile_expression(raw["when"], Scope(param_kinds, value_kinds), "when")
    except ExpressionError as exc:
        raise fail(exc.path, exc.problem) from None
    if kind is not Kind.BOOL:
        raise fail("when", f"must yield a bool, yields a {kind}")
    guards = compile_guards(raw["when"], raw_values, Scope(param_kinds, value_kinds))
    reason = raw["reason"]
    if not isinstance(reason, str):
        raise fail("reason", "must be a string")
    _check_reason(reason, params, value_kinds, fail)
    return Rule(
        id=rule_id,
        version=version,
        title=raw["title"],
        description=str(raw.get("description", "")),
        severity=severity,
        outcome=outcome,
        criterion=raw.get("criterion"),
        cooldown_hours=cooldown,
        reason=reason,
        when=when,
        guards=guards,
        applies_to=_parse_applies_to(raw.get("applies_to", {}), fail),
        params=params,
        values=dict(values),
        raw_when=raw["when"],
    )


def _kind_of(value: Any) -> Kind:
    return Kind.NUMBER if isinstance(value, Decimal) else Kind.STRING


def _parse_params(raw: Any, fail: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise fail("params", "must be a table")
    params: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, (bool, float)):
            raise fail(f"params.{name}", 'write decimals as strings, e.g. "0.9"')
        if isinstance(value, int):
            params[name] = Decimal(value)
        elif isinstance(value, str):
            try:
                params[name] = Decimal(value)
            except InvalidOperation:
                params[name] = value
        else:
            raise fail(f"params.{name}", "must be an integer or a string")
    return params


def _parse_applies_to(raw: Any, fail: Any) -> AppliesTo:
    if not isinstance(raw, dict):
        raise fail("applies_to", "must be a table")
    unknown = sorted(set(raw) - APPLIES_TO_KEYS)
    if unknown:
        raise fail(f"applies_to.{unknown[0]}", "unknown filter")

    try:
        return AppliesTo(
            channels=parse_members(Channel, raw.get("channels"), "applies_to.channels"),
            currencies=parse_currencies(raw.get("currencies"), "applies_to.currencies"),
            directions=parse_members(Direction, raw.get("directions"), "applies_to.directions"),
            customer_types=parse_members(
                CustomerType, raw.get("customer_types"), "applies_to.customer_types"
            ),
            cross_border=parse_flag(raw.get("cross_border"), "applies_to.cross_border"),
        )
    except ExpressionError as exc:
        raise fail(exc.path, exc.problem) from None


NUMERIC_BUILTINS = frozenset({"amount", "amount_cny", "tx_count"})


def _check_reason(
    template: str, params: Mapping[str, Any], value_kinds: Mapping[str, Kind], fail: Any
) -> None:
    """Refuse unknown placeholders and format specs that do not fit their value's kind."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise fail("reason", f"not a valid template: {exc}") from None
    for name in fields:
        if name not in params and name not in value_kinds and name not in REASON_BUILTINS:
            raise fail("reason", f"unknown placeholder {{{name}}}")
    sample: dict[str, Any] = {
        name: Decimal(1) if name in NUMERIC_BUILTINS else "x" for name in REASON_BUILTINS
    }
    sample.update(params)
    sample.update(
        {name: Decimal(1) if kind is Kind.NUMBER else "x" for name, kind in value_kinds.items()}
    )
    try:
        template.format(**sample)
    except (ValueError, TypeError) as exc:
        raise fail("reason", f"format does not fit the value: {exc}") from None


def customer_type_of(customer: Customer | None) -> CustomerType:
    """Unknown customers are treated as natural persons: their thresholds are the lower."""
    return customer.type if customer is not None else CustomerType.INDIVIDUAL
