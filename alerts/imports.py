"""Reference-data imports: managers and customers from the contract's CSV files.

An import validates every row before it writes anything: a file with any bad row is
refused whole, with every problem located by line and field. A good file is upserted
(re-importing updates rows in place) and audited in the same transaction.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role, require_role
from alerts.audit import lock_chain, record_event
from alerts.database import CustomerRow, ManagerRow
from core.customer import CUSTOMER_COLUMNS, Customer, ReferenceRowError, customer_from_row
from core.errors import InvalidInput, LocatedInputError
from core.manager import MANAGER_COLUMNS, Manager, manager_from_row

IMPORT_ROLES = (Role.ADMIN, Role.COMPLIANCE)
# Bound parameters per IN (...) query: far below SQLite's and PostgreSQL's limits.
_CHUNK = 500

_Record = TypeVar("_Record", Manager, Customer)


class ImportRejected(InvalidInput):
    """A reference file with bad rows; ``errors`` locates every one. Nothing was written."""

    def __init__(self, source: str, errors: Sequence[LocatedInputError]) -> None:
        super().__init__(
            f"{source}: {len(errors)} problem(s), nothing imported; first: {errors[0]}"
        )
        self.source = source
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """How many rows an import inserted, updated and found unchanged."""

    inserted: int
    updated: int
    unchanged: int


def import_managers(
    session: Session, path: Path, *, actor: Actor, now: datetime | None = None
) -> ImportResult:
    """Validate then upsert the managers CSV at ``path``; audited; the caller commits."""
    require_role(actor, IMPORT_ROLES, "import managers")
    lock_chain(session)
    managers, errors = _read(path, MANAGER_COLUMNS, manager_from_row, "manager_id")
    listed = managers.values()
    known = {m.manager_id for m in listed} | _existing_ids(
        session, ManagerRow.manager_id, {m.supervisor_id for m in listed if m.supervisor_id}
    )
    errors += [
        ReferenceRowError(path.name, line, "supervisor_id", f"unknown manager {m.supervisor_id}")
        for line, m in managers.items()
        if m.supervisor_id is not None and m.supervisor_id not in known
    ]
    if errors:
        raise ImportRejected(path.name, sorted(errors, key=lambda error: error.line or 0))
    fields = {
        m.manager_id: {
            "name": m.name,
            "email": m.email,
            "grade": m.grade.value,
            "supervisor_id": m.supervisor_id,
            "branch": m.branch,
            "active": m.active,
        }
        for m in managers.values()
    }
    at = now or datetime.now(UTC)
    result = _upsert(session, ManagerRow, ManagerRow.manager_id, fields, at)
    _audit(session, actor, "reference.import_managers", path, result, at)
    return result


def import_customers(
    session: Session, path: Path, *, actor: Actor, now: datetime | None = None
) -> ImportResult:
    """Validate then upsert the customers CSV at ``path``; audited; the caller commits."""
    require_role(actor, IMPORT_ROLES, "import customers")
    lock_chain(session)
    customers, errors = _read(path, CUSTOMER_COLUMNS, customer_from_row, "customer_id")
    known = _existing_ids(
        session, ManagerRow.manager_id, {c.manager_id for c in customers.values()}
    )
    errors += [
        ReferenceRowError(path.name, line, "manager_id", f"unknown manager {c.manager_id}")
        for line, c in customers.items()
        if c.manager_id not in known
    ]
    if errors:
        raise ImportRejected(path.name, sorted(errors, key=lambda error: error.line or 0))
    fields = {
        c.customer_id: {
            "name": c.name,
            "type": c.type.value,
            "risk_rating": c.risk_rating.value,
            "manager_id": c.manager_id,
            "country": c.country,
            "opened_on": c.opened_on,
            "id_type": c.id_type,
            "id_number": c.id_number,
        }
        for c in customers.values()
    }
    at = now or datetime.now(UTC)
    result = _upsert(session, CustomerRow, CustomerRow.customer_id, fields, at)
    _audit(session, actor, "reference.import_customers", path, result, at)
    return result


def _read(
    path: Path,
    columns: Sequence[str],
    parse: Callable[..., _Record],
    key: str,
) -> tuple[dict[int, _Record], list[LocatedInputError]]:
    """Every valid record by line, and every problem: the whole file, not up to the first."""
    records: dict[int, _Record] = {}
    errors: list[LocatedInputError] = []
    first_line: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in columns if column not in (reader.fieldnames or ())]
            if missing:
                problem = "column is missing from the header"
                return {}, [ReferenceRowError(path.name, 1, name, problem) for name in missing]
            for row in reader:
                line = reader.line_num
                try:
                    record = parse(row, source=path.name, line=line)
                except ReferenceRowError as error:
                    errors.append(error)
                    continue
                ident = getattr(record, key)
                if ident in first_line:
                    problem = f"duplicates line {first_line[ident]}"
                    errors.append(ReferenceRowError(path.name, line, key, problem))
                    continue
                first_line[ident] = line
                records[line] = record
    except (OSError, UnicodeDecodeError) as error:
        return {}, [LocatedInputError(path.name, f"cannot be read as UTF-8 CSV: {error}")]
    return records, errors


def _existing_ids(session: Session, column: Any, wanted: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(wanted)):
        found.update(session.scalars(select(column).where(column.in_(chunk))))
    return found


def _upsert(
    session: Session,
    model: type[ManagerRow] | type[CustomerRow],
    key: Any,
    fields: dict[str, dict[str, Any]],
    now: datetime,
) -> ImportResult:
    inserted = updated = unchanged = 0
    for chunk in _chunks(sorted(fields)):
        existing: dict[str, Any] = {
            getattr(row, key.key): row
            for row in session.scalars(select(model).where(key.in_(chunk)))
        }
        for ident in chunk:
            values = fields[ident]
            row = existing.get(ident)
            if row is None:
                session.add(model(**{key.key: ident, **values, "updated_at": now}))
                inserted += 1
            elif all(getattr(row, name) == value for name, value in values.items()):
                unchanged += 1
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated_at = now
                updated += 1
    session.flush()
    return ImportResult(inserted=inserted, updated=updated, unchanged=unchanged)


def _audit(
    session: Session, actor: Actor, action: str, path: Path, result: ImportResult, at: datetime
) -> None:
    # Counts only: customer names and ID numbers never enter the audit log.
    record_event(
        session,
        actor=actor.user_id,
        role=actor.role.value,
        action=action,
        target=path.name,
        before=None,
        after={
            "inserted": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
        },
        at=at,
    )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


__all__ = ["ImportRejected", "ImportResult", "import_customers", "import_managers"]
