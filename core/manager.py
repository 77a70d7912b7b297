"""Account manager reference records (DESIGN.md contract) and their CSV reader."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from core.customer import ReferenceRowError, within_length


class ManagerGrade(StrEnum):
    JUNIOR = "junior"
    INTERMEDIATE = "intermediate"
    SENIOR = "senior"


MANAGER_COLUMNS = ("manager_id", "name", "email", "grade", "supervisor_id", "branch", "active")
# The longest value each text field may hold: what the case store's columns keep.
MANAGER_FIELD_LENGTHS = {
    "manager_id": 64,
    "name": 200,
    "email": 320,
    "supervisor_id": 64,
    "branch": 200,
}

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


@dataclass(frozen=True, slots=True, init=False)
class Manager:
    """An account manager (客户经理); ``supervisor_id`` is who takes over when they cannot."""

    manager_id: str
    name: str
    email: str
    grade: ManagerGrade
    supervisor_id: str | None
    branch: str
    active: bool

    def __init__(
        self,
        manager_id: str,
        name: str,
        email: str,
        grade: ManagerGrade | str,
        supervisor_id: str | None,
        branch: str,
        active: bool,
    ) -> None:
        # The grade may come as its CSV value: it is checked and held as the enum.
        object.__setattr__(self, "manager_id", manager_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "email", email)
        object.__setattr__(self, "grade", ManagerGrade(grade))
        object.__setattr__(self, "supervisor_id", supervisor_id)
        object.__setattr__(self, "branch", branch)
        object.__setattr__(self, "active", active)

    def __repr__(self) -> str:
        # Staff names and e-mail addresses stay out of tracebacks and debug output.
        state = "active" if self.active else "inactive"
        return f"Manager({self.manager_id!r}, {self.grade.value}, {state})"

    def to_row(self) -> dict[str, str]:
        """The CSV row: MANAGER_COLUMNS as strings, no supervisor as an empty cell."""
        return {
            "manager_id": self.manager_id,
            "name": self.name,
            "email": self.email,
            "grade": self.grade.value,
            "supervisor_id": self.supervisor_id or "",
            "branch": self.branch,
            "active": "true" if self.active else "false",
        }


def manager_from_row(row: dict[str, str], *, source: str = "<row>", line: int = 0) -> Manager:
    """Validate one CSV row into a Manager; errors name source, line and field."""

    def required(field: str) -> str:
        value = (row.get(field) or "").strip()
        if not value:
            raise ReferenceRowError(source, line, field, "is empty")
        return within_length(value, field, MANAGER_FIELD_LENGTHS, source=source, line=line)

    manager_id = required("manager_id")
    email = required("email")
    if email.count("@") != 1 or not all(email.split("@")):
        raise ReferenceRowError(source, line, "email", "is not an e-mail address")
    try:
        grade = ManagerGrade(required("grade"))
    except ValueError:
        allowed = ", ".join(item.value for item in ManagerGrade)
        raise ReferenceRowError(source, line, "grade", f"must be one of: {allowed}") from None
    supervisor_id = (row.get("supervisor_id") or "").strip() or None
    if supervisor_id is not None:
        within_length(
            supervisor_id, "supervisor_id", MANAGER_FIELD_LENGTHS, source=source, line=line
        )
    if supervisor_id == manager_id:
        raise ReferenceRowError(source, line, "supervisor_id", "is the manager's own id")
    active = required("active").lower()
    if active not in _TRUE | _FALSE:
        raise ReferenceRowError(source, line, "active", "must be true or false")
    return Manager(
        manager_id=manager_id,
        name=required("name"),
        email=email,
        grade=grade,
        supervisor_id=supervisor_id,
        branch=required("branch"),
        active=active in _TRUE,
    )


def read_managers_csv(path: Path) -> Iterator[Manager]:
    """Managers from a CSV file with the contract's header; errors name line and field."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in MANAGER_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ReferenceRowError(path.name, 1, missing[0], "column is missing from the header")
        for row in reader:
            yield manager_from_row(row, source=path.name, line=reader.line_num)


__all__ = ["MANAGER_COLUMNS", "Manager", "ManagerGrade", "manager_from_row", "read_managers_csv"]
