"""A batch of detections stored at once ends exactly as storing them one by one does."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from alerts.audit import export_audit, verify_audit_chain
from alerts.cases import IngestResult, ingest_detection, ingest_detections
from alerts.database import (
    AlertRow,
    Base,
    CaseRow,
    LargeValueReportRow,
    RoutingDecisionRow,
    make_engine,
    session_factory,
)
from core.calendar import WorkingCalendar
from core.detection import Detection, Outcome, Severity
from tests.alerts.conftest import T0, customer, detection, load_reference, manager, migrated_store

COMPARED_TABLES: tuple[type[Base], ...] = (
    CaseRow,
    AlertRow,
    RoutingDecisionRow,
    LargeValueReportRow,
)

FIRST_BATCH = [
    detection("C0001", "t1"),  # opens a case for M1
    detection("C0001", "t2", severity=Severity.LOW),  # joins it
    detection("C0001", "t3", severity=Severity.CRITICAL),  # raises it, copies compliance
    detection("C0002", "t1", severity=Severity.MEDIUM),  # M2 is inactive: supervisor S1
    detection("C9999", "t1"),  # not in the reference data: compliance queue
    detection("C0001", "t2", severity=Severity.LOW),  # the same detection again
    detection("C0003", "t5", outcome=Outcome.REPORT, detector="large_cash"),
    detection("C0003", "t5", outcome=Outcome.REPORT, detector="large_cash"),
    detection("C0003", "t6", severity=Severity.CRITICAL),  # opens with compliance copied
    detection("C0002", "t7", outcome=Outcome.REPORT, detector="large_cash"),
    detection("C0001", "t8", outcome=Outcome.REPORT, detector="large_cash"),
]
SECOND_BATCH = [
    detection("C0001", "t1"),  # stored by the first batch
    detection("C0003", "t5", outcome=Outcome.REPORT, detector="large_cash"),
    detection("C0002", "t9", severity=Severity.CRITICAL),  # joins the first batch's case
]


@pytest.fixture
def other_session(database_url: URL, tmp_path: Path) -> Iterator[Session]:
    """A second fresh store of the same kind as ``session``'s."""
    kind = database_url.get_backend_name()
    (tmp_path / "other").mkdir()
    with migrated_store(kind, tmp_path / "other", "alerts_test") as url:
        engine: Engine = make_engine(url)
        try:
            with session_factory(engine)() as session:
                yield session
        finally:
            engine.dispose()


def with_reference(session: Session, directory: Path) -> Session:
    directory.mkdir(exist_ok=True)
    load_reference(
        session,
        directory,
        [
            manager("S1", grade="senior"),
            manager("M1", supervisor="S1"),
            manager("M2", supervisor="S1", active=False),
        ],
        [customer("C0001", "M1"), customer("C0002", "M2"), customer("C0003", "M1")],
    )
    return session


def store_contents(session: Session) -> dict[str, Any]:
    """Every row the ingest writes, and the exported audit log with its hashes."""
    contents: dict[str, Any] = {}
    for model in COMPARED_TABLES:
        table = Base.metadata.tables[model.__tablename__]
        rows = session.execute(select(table).order_by(*table.primary_key.columns)).mappings()
        contents[model.__tablename__] = [dict(row) for row in rows]
    audit = io.StringIO()
    export_audit(session, start=T0.replace(year=2000), end=T0.replace(year=2100), out=audit)
    contents["audit"] = audit.getvalue().splitlines()
    return contents


def one_by_one(
    session: Session, batch: list[Detection], calendar: WorkingCalendar
) -> list[IngestResult]:
    results = [ingest_detection(session, d, now=T0, calendar=calendar) for d in batch]
    session.commit()
    return results


def as_a_batch(
    session: Session, batch: list[Detection], calendar: WorkingCalendar
) -> list[IngestResult]:
    results = ingest_detections(session, batch, now=T0, calendar=calendar)
    session.commit()
    return results


def test_a_batch_stores_what_one_by_one_stores(
    session: Session, other_session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    singly = with_reference(session, tmp_path / "singly")
    batched = with_reference(other_session, tmp_path / "batched")

    for batch in (FIRST_BATCH, SECOND_BATCH):
        assert as_a_batch(batched, batch, calendar) == one_by_one(singly, batch, calendar)

    assert store_contents(batched) == store_contents(singly)
    assert verify_audit_chain(batched).ok


def test_a_batch_reports_each_outcome_in_order(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    with_reference(session, tmp_path / "reference")
    first = as_a_batch(session, FIRST_BATCH, calendar)
    again = as_a_batch(session, SECOND_BATCH, calendar)

    assert [(r.created, r.joined, r.duplicate) for r in first] == [
        (True, False, False),
        (False, True, False),
        (False, True, False),
        (True, False, False),
        (True, False, False),
        (False, False, True),
        (False, False, False),
        (False, False, True),
        (True, False, False),
        (False, False, False),
        (False, False, False),
    ]
    assert [r.routed_to for r in first[:5]] == ["M1", "M1", "M1", "S1", None]
    assert first[6].report_id is not None and first[7].report_id == first[6].report_id
    # Each report learns its own record's id, in the order of the batch.
    triggers = [
        session.scalar(
            select(LargeValueReportRow.trigger_tx_id).where(
                LargeValueReportRow.id == first[i].report_id
            )
        )
        for i in (6, 9, 10)
    ]
    assert triggers == ["t5", "t7", "t8"]
    assert [r.duplicate for r in again] == [True, True, False]
    assert again[0].case_id == first[0].case_id and again[2].case_id == first[3].case_id
    assert again[2].joined


def test_a_batch_inserts_its_reports_and_its_audit_events_with_one_statement_each(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    with_reference(session, tmp_path / "reference")
    events_before = verify_audit_chain(session).count
    inserted_into: list[str] = []

    def note_insert(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO"):
            inserted_into.append(statement.split()[2].rpartition(".")[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", note_insert)
    try:
        as_a_batch(session, FIRST_BATCH, calendar)
    finally:
        event.remove(engine, "before_cursor_execute", note_insert)

    assert inserted_into.count("large_value_reports") == 1
    assert inserted_into.count("audit_events") == 1
    verdict = verify_audit_chain(session)
    # At least one event for each of the nine detections that are not repeats.
    assert verdict.ok and verdict.count - events_before >= 9


def test_an_empty_batch_stores_nothing(session: Session, calendar: WorkingCalendar) -> None:
    assert ingest_detections(session, [], now=T0, calendar=calendar) == []
    session.commit()
    assert verify_audit_chain(session).count == 0
