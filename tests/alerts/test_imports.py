"""Reference imports: all errors located, nothing half-written, re-import updates in place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.database import AuditEventRow, CustomerRow, ManagerRow
from alerts.imports import ImportRejected, import_customers, import_managers
from core.customer import CUSTOMER_COLUMNS
from core.errors import Forbidden, InvalidInput
from core.manager import MANAGER_COLUMNS
from tests.alerts.conftest import ADMIN, T0, customer, manager, write_csv


def managers_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    return write_csv(path / "managers.csv", MANAGER_COLUMNS, rows)


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_import_then_reimport_counts_and_updates(session: Session, tmp_path: Path) -> None:
    rows = [manager("M1", grade="senior").to_row(), manager("M2", supervisor="M1").to_row()]
    first = import_managers(session, managers_csv(tmp_path, rows), actor=ADMIN, now=T0)
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    rows[1] = replace(manager("M2", supervisor="M1"), active=False).to_row()
    rows.append(manager("M3", supervisor="M1").to_row())
    second = import_managers(session, managers_csv(tmp_path, rows), actor=ADMIN, now=T0)
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 1)
    session.commit()
    row = session.get(ManagerRow, "M2")
    assert row is not None and row.active is False
    actions = list(session.scalars(select(AuditEventRow.action)))
    assert actions == ["reference.import_managers"] * 2

    path = write_csv(
        tmp_path / "customers.csv",
        CUSTOMER_COLUMNS,
        [customer("C0001", "M1").to_row(), customer("C0002", "M2").to_row()],
    )
    result = import_customers(session, path, actor=ADMIN, now=T0)
    assert (result.inserted, result.updated, result.unchanged) == (2, 0, 0)
    again = import_customers(session, path, actor=ADMIN, now=T0)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    # Names and ID numbers stay out of the audit log.
    session.commit()
    for before, after in session.execute(select(AuditEventRow.before, AuditEventRow.after)):
        assert "客户" not in f"{before}{after}"


def test_every_bad_row_is_reported_and_nothing_written(session: Session, tmp_path: Path) -> None:
    good = manager("M1", grade="senior").to_row()
    rows = [
        good,
        {**manager("M2").to_row(), "grade": "boss"},  # line 3
        manager("M3", supervisor="M404").to_row(),  # line 4
        {**manager("M4").to_row(), "email": "nobody"},  # line 5
        manager("M1").to_row(),  # line 6: duplicate id
    ]
    with pytest.raises(ImportRejected) as raised:
        import_managers(session, managers_csv(tmp_path, rows), actor=ADMIN, now=T0)
    located = [(error.line, error.field) for error in raised.value.errors]
    assert located == [(3, "grade"), (4, "supervisor_id"), (5, "email"), (6, "manager_id")]
    assert isinstance(raised.value, InvalidInput)
    session.rollback()
    assert count(session, ManagerRow) == 0 and count(session, AuditEventRow) == 0


def test_customer_with_unknown_manager_is_located(session: Session, tmp_path: Path) -> None:
    import_managers(session, managers_csv(tmp_path, [manager("M1").to_row()]), actor=ADMIN, now=T0)
    path = write_csv(
        tmp_path / "customers.csv",
        CUSTOMER_COLUMNS,
        [
            customer("C0001", "M1").to_row(),
            customer("C0002", "M9").to_row(),
            {**customer("C0003", "M1").to_row(), "country": "XX"},
        ],
    )
    with pytest.raises(ImportRejected) as raised:
        import_customers(session, path, actor=ADMIN, now=T0)
    assert [(e.line, e.field) for e in raised.value.errors] == [(3, "manager_id"), (4, "country")]
    assert "unknown manager M9" in str(raised.value.errors[0])
    assert count(session, CustomerRow) == 0


def test_missing_column_and_role(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "managers.csv"
    path.write_text("manager_id,name\nM1,x\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as raised:
        import_managers(session, path, actor=ADMIN, now=T0)
    assert {error.field for error in raised.value.errors} >= {"email", "active"}
    assert all(error.line == 1 for error in raised.value.errors)
    with pytest.raises(Forbidden):
        import_managers(session, path, actor=Actor("M1", Role.MANAGER), now=T0)


def test_fields_longer_than_the_store_keeps_are_located_and_the_longest_fit(
    session: Session, tmp_path: Path
) -> None:
    import_managers(session, managers_csv(tmp_path, [manager("M1").to_row()]), actor=ADMIN, now=T0)
    longest_id = "C" * 128  # as long as a transaction's customer_id may be
    rows = [
        {**customer("C0001", "M1").to_row(), "name": "名" * 301},
        {**customer("C0002", "M1").to_row(), "id_number": "1" * 65},
        {**customer("C0003", "M1").to_row(), "customer_id": "C" * 129},
    ]
    path = write_csv(tmp_path / "customers.csv", CUSTOMER_COLUMNS, rows)
    with pytest.raises(ImportRejected) as raised:
        import_customers(session, path, actor=ADMIN, now=T0)
    assert [(e.line, e.field) for e in raised.value.errors] == [
        (2, "name"),
        (3, "id_number"),
        (4, "customer_id"),
    ]
    assert "301 characters long, more than 300" in str(raised.value.errors[0])

    fitting = {**customer("C0001", "M1").to_row(), "customer_id": longest_id, "name": "名" * 300}
    path = write_csv(tmp_path / "customers.csv", CUSTOMER_COLUMNS, [fitting])
    import_customers(session, path, actor=ADMIN, now=T0)
    session.commit()
    stored = session.get(CustomerRow, longest_id)
    assert stored is not None and len(stored.name) == 300
