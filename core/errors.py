"""One root error with a few categories; edges map categories to their own responses."""

from __future__ import annotations

from enum import StrEnum


class ErrorCategory(StrEnum):
    """What kind of failure an error is, independent of where it is reported."""

    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"


class AmlwatchError(Exception):
    """Root of every error amlwatch raises on purpose."""

    category: ErrorCategory = ErrorCategory.INVALID_INPUT


class InvalidInput(AmlwatchError):
    category = ErrorCategory.INVALID_INPUT


class NotFound(AmlwatchError):
    category = ErrorCategory.NOT_FOUND


class Conflict(AmlwatchError):
    category = ErrorCategory.CONFLICT


class Forbidden(AmlwatchError):
    category = ErrorCategory.FORBIDDEN


class Unavailable(AmlwatchError):
    category = ErrorCategory.UNAVAILABLE


class LocatedInputError(InvalidInput):
    """Bad input in a file, located: names the file and, where known, line, rule and field."""

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        line: int | None = None,
        rule_id: str | None = None,
        field: str | None = None,
    ) -> None:
        where = source
        if line is not None:
            where += f" line {line}"
        if rule_id is not None:
            where += f", rule {rule_id!r}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line
        self.rule_id = rule_id
        self.field = field
        self.problem = problem
