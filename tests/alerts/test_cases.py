"""Ingest (exactly once, one open case per customer) and the disposition workflow."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.audit import verify_audit_chain
from alerts.cases import (
    CaseStatus,
    Disposition,
    acknowledge,
    add_note,
    approve_report,
    close_case,
    escalate,
    get_case,
    ingest_detection,
    list_cases,
    propose_report,
    start_investigation,
)
from alerts.database import AlertRow, CaseRow, LargeValueReportRow, session_factory
from core.calendar import WorkingCalendar
from core.detection import Outcome, Severity
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from tests.alerts.conftest import T0, customer, detection, load_reference, manager

M1 = Actor("M1", Role.MANAGER)
M2 = Actor("M2", Role.MANAGER)
SUPERVISOR = Actor("S1", Role.SUPERVISOR)
COMPLIANCE_A = Actor("CO-A", Role.COMPLIANCE)
COMPLIANCE_B = Actor("CO-B", Role.COMPLIANCE)


@pytest.fixture
def case_id(session: Session, tmp_path: Path, calendar: WorkingCalendar) -> int:
    """A new case on customer C0001, assigned to manager M1."""
    load_reference(
        session,
        tmp_path,
        [manager("S1", grade="senior"), manager("M1", supervisor="S1"), manager("M2")],
        [customer("C0001", "M1"), customer("C0002", "M2")],
    )
    result = ingest_detection(session, detection("C0001", "t1"), now=T0, calendar=calendar)
    session.commit()
    assert result.case_id is not None
    return result.case_id


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_same_detection_twice_changes_nothing(
    session: Session, case_id: int, calendar: WorkingCalendar
) -> None:
    again = ingest_detection(session, detection("C0001", "t1"), now=T0, calendar=calendar)
    assert again.duplicate and again.case_id == case_id and not again.created
    assert (count(session, AlertRow), count(session, CaseRow)) == (1, 1)


def test_alerts_join_the_open_case_and_raise_its_severity(
    session: Session, case_id: int, calendar: WorkingCalendar
) -> None:
    low = detection("C0001", "t2", severity=Severity.LOW)
    assert ingest_detection(session, low, now=T0, calendar=calendar).joined
    assert get_case(session, case_id=case_id).severity is Severity.HIGH
    critical = detection("C0001", "t3", severity=Severity.CRITICAL)
    result = ingest_detection(session, critical, now=T0, calendar=calendar)
    assert result.joined and not result.created and result.case_id == case_id
    assert get_case(session, case_id=case_id).severity is Severity.CRITICAL
    assert count(session, CaseRow) == 1 and count(session, AlertRow) == 3


def test_a_closed_case_lets_the_next_alert_open_a_new_one(
    session: Session, case_id: int, calendar: WorkingCalendar
) -> None:
    acknowledge(session, case_id=case_id, actor=M1, now=T0)
    start_investigation(session, case_id=case_id, actor=M1, now=T0)
    close_case(
        session,
        case_id=case_id,
        actor=M1,
        disposition=Disposition.FALSE_POSITIVE,
        reason="salary batch",
        now=T0,
    )
    result = ingest_detection(session, detection("C0001", "t9"), now=T0, calendar=calendar)
    assert result.created and result.case_id != case_id


def test_the_database_refuses_a_second_open_case(session: Session, case_id: int) -> None:
    with pytest.raises(IntegrityError):
        session.execute(
            text(
                "INSERT INTO cases (customer_id, open_customer_id, status, severity, queue, "
                "compliance_copy, escalation_level, opened_at) VALUES "
                "('C0001', 'C0001', 'new', 'low', 'manager', false, 0, :at)"
            ),
            {"at": T0.replace(tzinfo=None)},
        )
    session.rollback()


def test_concurrent_redelivery_stores_once(
    engine: Engine, case_id: int, calendar: WorkingCalendar
) -> None:
    sessions = session_factory(engine)
    results = []
    errors: list[BaseException] = []

    def deliver(tx: str) -> None:
        try:
            with sessions() as session:
                results.append(
                    ingest_detection(session, detection("C0002", tx), now=T0, calendar=calendar)
                )
                session.commit()
        except BaseException as error:  # reported below, with the thread's failure
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(tx,)) for tx in ["x", "x", "x", "y", "y"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with sessions() as session:
        assert count(session, AlertRow) == 3  # t1, x, y
        open_c2 = list_cases(session, open_only=True, assignee_id="M2")
        assert len(open_c2) == 1
        assert verify_audit_chain(session).ok
    assert sum(result.created for result in results) == 1
    assert sum(result.duplicate for result in results) == 3


def test_report_outcome_becomes_a_report_record_due_in_five_working_days(
    session: Session, case_id: int, calendar: WorkingCalendar
) -> None:
    report = detection("C0001", "big", outcome=Outcome.REPORT, detector="large_cash")
    result = ingest_detection(session, report, now=T0, calendar=calendar)
    assert result.report_id is not None and result.case_id is None
    assert ingest_detection(session, report, now=T0, calendar=calendar).duplicate
    row = session.get(LargeValueReportRow, result.report_id)
    assert row is not None and row.status == "pending"
    assert row.deadline == date(2024, 3, 11)  # Monday 4 March + 5 working days
    assert count(session, CaseRow) == 1


def test_report_deadline_skips_holidays(session: Session, calendar: WorkingCalendar) -> None:
    from dataclasses import replace

    report = replace(detection("C0001", "big", outcome=Outcome.REPORT), bank_day=date(2024, 4, 3))
    result = ingest_detection(session, report, now=T0, calendar=calendar)
    row = session.get(LargeValueReportRow, result.report_id)
    # 3 April (Wed) + 5: Sun 7 (make-up), Mon 8, Tue 9, Wed 10, Thu 11; 4-6 April off.
    assert row is not None and row.deadline == date(2024, 4, 11)


def test_full_path_to_closed(session: Session, case_id: int) -> None:
    assert acknowledge(session, case_id=case_id, actor=M1, now=T0).status is CaseStatus.ACKNOWLEDGED
    later = T0 + timedelta(hours=1)
    assert (
        start_investigation(session, case_id=case_id, actor=M1, now=later).status
        is CaseStatus.INVESTIGATING
    )
    closed = close_case(
        session,
        case_id=case_id,
        actor=M1,
        disposition=Disposition.NOT_SUSPICIOUS,
        reason="known supplier",
        now=later,
    )
    assert closed.status is CaseStatus.CLOSED
    assert closed.disposition is Disposition.NOT_SUSPICIOUS
    assert closed.disposition_reason == "known supplier"
    with pytest.raises(Conflict, match=f"case C{case_id} is closed; cannot acknowledge"):
        acknowledge(session, case_id=case_id, actor=M1, now=later)
    with pytest.raises(Conflict, match="is closed; cannot add a note"):
        add_note(session, case_id=case_id, actor=M1, body="late", now=later)


def test_refused_transitions(session: Session, case_id: int) -> None:
    with pytest.raises(Conflict, match="is new; cannot start investigating"):
        start_investigation(session, case_id=case_id, actor=M1, now=T0)
    with pytest.raises(Conflict, match="is new; cannot close"):
        close_case(
            session,
            case_id=case_id,
            actor=M1,
            disposition=Disposition.FALSE_POSITIVE,
            reason="x",
            now=T0,
        )
    with pytest.raises(Conflict, match="is new; cannot escalate"):
        escalate(session, case_id=case_id, actor=M1, assessment="odd", now=T0)
    acknowledge(session, case_id=case_id, actor=M1, now=T0)
    with pytest.raises(Conflict, match="is acknowledged; cannot acknowledge"):
        acknowledge(session, case_id=case_id, actor=M1, now=T0)
    with pytest.raises(Conflict, match="is acknowledged; cannot propose a report"):
        propose_report(session, case_id=case_id, actor=COMPLIANCE_A, now=T0)
    start_investigation(session, case_id=case_id, actor=M1, now=T0)
    with pytest.raises(InvalidInput, match="closing reason"):
        close_case(
            session,
            case_id=case_id,
            actor=M1,
            disposition=Disposition.FALSE_POSITIVE,
            reason="  ",
            now=T0,
        )
    with pytest.raises(InvalidInput, match="assessment"):
        escalate(session, case_id=case_id, actor=M1, assessment="", now=T0)
    with pytest.raises(NotFound):
        acknowledge(session, case_id=9999, actor=M1, now=T0)


def test_roles_and_ownership_are_checked(session: Session, case_id: int) -> None:
    with pytest.raises(Forbidden, match="not assigned to manager M2"):
        acknowledge(session, case_id=case_id, actor=M2, now=T0)
    with pytest.raises(Forbidden):
        acknowledge(session, case_id=case_id, actor=Actor("ops", Role.ADMIN), now=T0)
    # A supervisor may act on a team member's case.
    acknowledge(session, case_id=case_id, actor=SUPERVISOR, now=T0)
    start_investigation(session, case_id=case_id, actor=M1, now=T0)
    escalate(session, case_id=case_id, actor=M1, assessment="cash in, wire out", now=T0)
    with pytest.raises(Forbidden):
        propose_report(session, case_id=case_id, actor=M1, now=T0)
    with pytest.raises(Forbidden, match="close an escalated case"):
        close_case(
            session,
            case_id=case_id,
            actor=SUPERVISOR,
            disposition=Disposition.NOT_SUSPICIOUS,
            reason="fine",
            now=T0,
        )


def test_escalation_and_four_eyes_filing(session: Session, case_id: int) -> None:
    acknowledge(session, case_id=case_id, actor=M1, now=T0)
    escalated = escalate(session, case_id=case_id, actor=M1, assessment="layering", now=T0)
    assert escalated.status is CaseStatus.ESCALATED and escalated.queue == "compliance"
    assert escalated.assessment == "layering"
    with pytest.raises(Conflict, match="no proposed STR"):
        approve_report(session, case_id=case_id, actor=COMPLIANCE_B, now=T0)
    propose_report(session, case_id=case_id, actor=COMPLIANCE_A, now=T0)
    with pytest.raises(Conflict, match="already has an STR proposed by CO-A"):
        propose_report(session, case_id=case_id, actor=COMPLIANCE_B, now=T0)
    with pytest.raises(Forbidden, match="four eyes"):
        approve_report(session, case_id=case_id, actor=COMPLIANCE_A, now=T0)
    reported = approve_report(session, case_id=case_id, actor=COMPLIANCE_B, now=T0)
    assert reported.status is CaseStatus.REPORTED
    with pytest.raises(Conflict, match="is reported; cannot close"):
        close_case(
            session,
            case_id=case_id,
            actor=COMPLIANCE_A,
            disposition=Disposition.NOT_SUSPICIOUS,
            reason="x",
            now=T0,
        )
    session.commit()
    assert verify_audit_chain(session).ok


def test_escalating_officer_cannot_approve(session: Session, case_id: int) -> None:
    # The case reached compliance, so compliance does the manager's steps too.
    acknowledge(session, case_id=case_id, actor=COMPLIANCE_A, now=T0)
    escalate(session, case_id=case_id, actor=COMPLIANCE_A, assessment="mule", now=T0)
    propose_report(session, case_id=case_id, actor=COMPLIANCE_B, now=T0)
    with pytest.raises(Forbidden, match="four eyes"):
        approve_report(session, case_id=case_id, actor=COMPLIANCE_A, now=T0)


def test_compliance_closes_an_escalated_case_with_a_reason(session: Session, case_id: int) -> None:
    acknowledge(session, case_id=case_id, actor=M1, now=T0)
    escalate(session, case_id=case_id, actor=M1, assessment="unsure", now=T0)
    note_id = add_note(session, case_id=case_id, actor=COMPLIANCE_A, body="checked KYC", now=T0)
    assert note_id > 0
    closed = close_case(
        session,
        case_id=case_id,
        actor=COMPLIANCE_A,
        disposition=Disposition.NOT_SUSPICIOUS,
        reason="documented trade",
        now=T0,
    )
    assert closed.status is CaseStatus.CLOSED and closed.closed_at == T0
