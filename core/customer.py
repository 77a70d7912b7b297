"""Customer and manager reference records (DESIGN.md contract) and their CSV reader."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from core.compiled import reduced_through_init
from core.errors import LocatedInputError
from core.reference import country_codes
from core.transaction import MAX_ID_LENGTH


class CustomerType(StrEnum):
    INDIVIDUAL = "individual"  # natural person (自然人)
    CORPORATE = "corporate"  # non-natural person (非自然人)


class RiskRating(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


CUSTOMER_COLUMNS = (
    "customer_id",
    "name",
    "type",
    "risk_rating",
    "manager_id",
    "country",
    "opened_on",
    "id_type",
    "id_number",
)
# The longest value each text field may hold: what the case store's columns keep. A
# customer id is as long as a transaction's may be.
CUSTOMER_FIELD_LENGTHS = {
    "customer_id": MAX_ID_LENGTH,
    "name": 300,
    "manager_id": 64,
    "id_type": 32,
    "id_number": 64,
}


@dataclass(frozen=True, slots=True)
class Customer:
    """A bank customer; ``name`` and ``id_number`` are confidential, never logged."""

    customer_id: str
    name: str
    type: CustomerType
    risk_rating: RiskRating
    manager_id: str
    country: str
    opened_on: date
    id_type: str
    id_number: str

    def __repr__(self) -> str:
        # Keep names and ID numbers out of tracebacks and debug output.
        return f"Customer({self.customer_id!r}, {self.type.value}, {self.risk_rating.value})"

    def __reduce__(self) -> tuple[Any, ...]:
        return reduced_through_init(self)

    @property
    def corporate(self) -> bool:
        """Whether the customer is a company (non-natural person) rather than a person."""
        return self.type is CustomerType.CORPORATE

    def to_row(self) -> dict[str, str]:
        """The CSV row of the contract, all strings."""
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "type": self.type.value,
            "risk_rating": self.risk_rating.value,
            "manager_id": self.manager_id,
            "country": self.country,
            "opened_on": self.opened_on.isoformat(),
            "id_type": self.id_type,
            "id_number": self.id_number,
        }


_E = TypeVar("_E", bound=StrEnum)


class ReferenceRowError(LocatedInputError):
    """A reference-data row that is not valid; names the file, line and field."""

    def __init__(self, source: str, line: int, field: str, problem: str) -> None:
        super().__init__(source, problem, line=line, field=field)


def within_length(
    value: str, field: str, lengths: dict[str, int], *, source: str, line: int
) -> str:
    """``value``, unless it is longer than ``lengths`` allows for ``field``."""
    longest = lengths.get(field)
    if longest is not None and len(value) > longest:
        raise ReferenceRowError(
            source, line, field, f"is {len(value)} characters long, more than {longest}"
        )
    return value


def customer_from_row(row: dict[str, str], *, source: str = "<row>", line: int = 0) -> Customer:
    """Validate one CSV row into a Customer; errors name source, line and field."""

    def required(field: str) -> str:
        value = (row.get(field) or "").strip()
        if not value:
            raise ReferenceRowError(source, line, field, "is empty")
        return within_length(value, field, CUSTOMER_FIELD_LENGTHS, source=source, line=line)

    def member(enum: type[_E], field: str) -> _E:
        value = required(field)
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(item.value for item in enum)
            raise ReferenceRowError(source, line, field, f"must be one of: {allowed}") from None

    country = required("country")
    if country not in country_codes():
        raise ReferenceRowError(source, line, "country", "is not an ISO 3166-1 alpha-2 code")
    try:
        opened_on = date.fromisoformat(required("opened_on"))
    except ValueError:
        raise ReferenceRowError(source, line, "opened_on", "is not a YYYY-MM-DD date") from None
    return Customer(
        customer_id=required("customer_id"),
        name=required("name"),
        type=member(CustomerType, "type"),
        risk_rating=member(RiskRating, "risk_rating"),
        manager_id=required("manager_id"),
        country=country,
        opened_on=opened_on,
        id_type=required("id_type"),
        id_number=required("id_number"),
    )


def read_customers_csv(path: Path) -> Iterator[Customer]:
    """Customers from a CSV file with the contract's header; errors name line and field."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in CUSTOMER_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ReferenceRowError(path.name, 1, missing[0], "column is missing from the header")
        for row in reader:
            yield customer_from_row(row, source=path.name, line=reader.line_num)
