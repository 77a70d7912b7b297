"""Case-store fixtures: every test runs on a fresh SQLite file and, when configured, on
PostgreSQL in its own schema (other runs share that database at the same time)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.database import make_engine, new_sqlite_store, session_factory, temporary_schema_store
from alerts.imports import import_customers, import_managers
from core.calendar import WorkingCalendar
from core.customer import CUSTOMER_COLUMNS, Customer, CustomerType, RiskRating
from core.detection import Detection, Outcome, Severity, detection_id
from core.manager import MANAGER_COLUMNS, Manager, ManagerGrade

POSTGRES_ENV = "AMLWATCH_TEST_POSTGRES_URL"
ADMIN = Actor("ops1", Role.ADMIN)
T0 = datetime(2024, 3, 4, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai


@contextmanager
def migrated_store(kind: str, directory: Path, schema_prefix: str) -> Iterator[URL]:
    """A migrated, empty case store of ``kind`` (sqlite or postgresql), removed afterwards.

    PostgreSQL runs in a schema of its own, since other test runs share the database; it
    is skipped unless AMLWATCH_TEST_POSTGRES_URL is set.
    """
    if kind == "sqlite":
        yield new_sqlite_store(directory)
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL cases need {POSTGRES_ENV} (a SQLAlchemy URL)")
    with temporary_schema_store(base, schema_prefix=schema_prefix) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """A migrated, empty case store; PostgreSQL only when AMLWATCH_TEST_POSTGRES_URL is set."""
    with migrated_store(request.param, tmp_path, "alerts_test") as url:
        yield url


@pytest.fixture
def engine(database_url: URL) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session


def manager(
    manager_id: str, *, supervisor: str | None = None, active: bool = True, grade: str = "junior"
) -> Manager:
    """A manager record with made-up contact details."""
    return Manager(
        manager_id=manager_id,
        name=f"经理{manager_id}",
        email=f"{manager_id.lower()}@bank.example",
        grade=ManagerGrade(grade),
        supervisor_id=supervisor,
        branch="Shanghai",
        active=active,
    )


def customer(customer_id: str, manager_id: str, *, risk: str = "medium") -> Customer:
    """A customer record with made-up confidential fields."""
    return Customer(
        customer_id=customer_id,
        name=f"客户{customer_id}",
        type=CustomerType.INDIVIDUAL,
        risk_rating=RiskRating(risk),
        manager_id=manager_id,
        country="CN",
        opened_on=date(2020, 1, 1),
        id_type="resident_id",
        id_number=f"11010519491231{customer_id[-4:]:0>4}",
    )


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def load_reference(
    session: Session, directory: Path, managers: list[Manager], customers: list[Customer]
) -> None:
    """Import managers and customers through the public import functions, then commit."""
    if managers:
        path = write_csv(
            directory / "managers.csv", MANAGER_COLUMNS, [m.to_row() for m in managers]
        )
        import_managers(session, path, actor=ADMIN, now=T0)
    if customers:
        path = write_csv(
            directory / "customers.csv", CUSTOMER_COLUMNS, [c.to_row() for c in customers]
        )
        import_customers(session, path, actor=ADMIN, now=T0)
    session.commit()


def detection(
    customer_id: str,
    tx: str,
    *,
    severity: Severity = Severity.HIGH,
    outcome: Outcome = Outcome.ALERT,
    detector: str = "structuring",
    at: datetime = T0,
) -> Detection:
    """A detection on one transaction, keyed like the rule engine keys them."""
    return Detection(
        detection_id=detection_id(detector, "1", customer_id, tx),
        detector=detector,
        detector_version="1",
        outcome=outcome,
        severity=severity,
        customer_id=customer_id,
        trigger_tx_id=tx,
        tx_ids=(tx,),
        reasons=(f"{detector} on {tx}",),
        created_at=at,
        bank_day=date(2024, 3, 4),
        score=0.75,
        values={"amount": "49999.00"},
    )


@pytest.fixture
def calendar() -> WorkingCalendar:
    """2024 with the Qingming holiday (4-6 April) and its make-up Sunday (7 April)."""
    return WorkingCalendar(
        holidays=frozenset({date(2024, 4, 4), date(2024, 4, 5)}),
        working_weekends=frozenset({date(2024, 4, 7)}),
        as_of=date(2023, 12, 1),
        source="test",
        first_year=2024,
        last_year=2024,
    )
