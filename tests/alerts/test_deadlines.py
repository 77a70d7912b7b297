"""Deadlines in business hours and working days; overdue cases climb two levels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.cases import acknowledge, get_case, ingest_detection
from alerts.deadlines import (
    SHANGHAI,
    DeadlinePolicy,
    SeverityDeadlines,
    add_business_hours,
    close_of_business_after,
    escalate_overdue,
    str_due,
)
from core.calendar import WorkingCalendar
from core.detection import Severity
from tests.alerts.conftest import T0, customer, detection, load_reference, manager

POLICY = DeadlinePolicy()


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (local(2024, 3, 4, 9), 4, local(2024, 3, 4, 13)),
        (local(2024, 3, 4, 7, 30), 2, local(2024, 3, 4, 11)),  # before opening
        (local(2024, 3, 8, 16), 4, local(2024, 3, 11, 12)),  # Friday into Monday
        (local(2024, 3, 9, 10), 1, local(2024, 3, 11, 10)),  # Saturday waits for Monday
        (local(2024, 3, 4, 18), 8, local(2024, 3, 5, 17)),  # after closing
        (local(2024, 4, 3, 15), 4, local(2024, 4, 7, 11)),  # Qingming, make-up Sunday
    ],
)
def test_business_hours(
    calendar: WorkingCalendar, start: datetime, hours: int, due: datetime
) -> None:
    assert add_business_hours(start, hours, calendar=calendar, policy=POLICY) == due


def test_working_day_deadlines_end_at_close_of_business(calendar: WorkingCalendar) -> None:
    friday = local(2024, 3, 8, 10)
    assert close_of_business_after(friday, 3, calendar=calendar, policy=POLICY) == local(
        2024, 3, 13, 17
    )
    # The bank day counts in Shanghai: 20:00 UTC on Sunday is already Monday there.
    sunday_utc = datetime(2024, 3, 10, 20, tzinfo=UTC)
    assert str_due(sunday_utc, calendar=calendar, policy=POLICY) == local(2024, 3, 18, 17)


@pytest.fixture
def team(session: Session, tmp_path: Path) -> None:
    load_reference(
        session,
        tmp_path,
        [
            manager("S1", grade="senior"),
            manager("M1", supervisor="S1"),
            manager("M2"),  # nobody above
        ],
        [customer("C0001", "M1"), customer("C0002", "M2")],
    )


def test_overdue_acknowledgement_goes_to_supervisor_then_compliance(
    session: Session, team: None, calendar: WorkingCalendar
) -> None:
    case_id = ingest_detection(
        session, detection("C0001", "t1", severity=Severity.HIGH), now=T0, calendar=calendar
    ).case_id
    # HIGH: acknowledge within 4 business hours of Monday 09:00, so by 13:00.
    assert (
        escalate_overdue(session, now=local(2024, 3, 4, 13), calendar=calendar, policy=POLICY) == []
    )
    first_check = local(2024, 3, 4, 13, 1)
    [first] = escalate_overdue(session, now=first_check, calendar=calendar, policy=POLICY)
    assert (first.case_id, first.level, first.stage) == (case_id, 1, "acknowledge")
    assert (first.from_assignee_id, first.to_assignee_id, first.queue) == ("M1", "S1", "manager")
    assert first.due_at == local(2024, 3, 4, 13)
    assert "acknowledge overdue" in first.reason and "escalated to supervisor" in first.reason
    # The supervisor gets a fresh four business hours: 13:01 + 4h = Tuesday 09:01.
    assert (
        escalate_overdue(session, now=local(2024, 3, 5, 9, 1), calendar=calendar, policy=POLICY)
        == []
    )
    [second] = escalate_overdue(
        session, now=local(2024, 3, 5, 9, 2), calendar=calendar, policy=POLICY
    )
    assert (second.level, second.from_assignee_id, second.to_assignee_id) == (2, "S1", None)
    assert second.queue == "compliance"
    case = get_case(session, case_id=case_id or 0)
    assert (case.escalation_level, case.queue, case.assignee_id) == (2, "compliance", None)
    later = local(2024, 3, 20, 9)
    assert escalate_overdue(session, now=later, calendar=calendar, policy=POLICY) == []


def test_overdue_disposition_and_no_supervisor(
    session: Session, team: None, calendar: WorkingCalendar
) -> None:
    case_id = ingest_detection(
        session, detection("C0002", "t1", severity=Severity.HIGH), now=T0, calendar=calendar
    ).case_id
    acknowledge(session, case_id=case_id or 0, actor=Actor("M2", Role.MANAGER), now=T0)
    # HIGH: disposition within 3 working days of Monday 4 March: Thursday 17:00.
    assert (
        escalate_overdue(session, now=local(2024, 3, 7, 17), calendar=calendar, policy=POLICY) == []
    )
    [escalation] = escalate_overdue(
        session, now=local(2024, 3, 7, 17, 1), calendar=calendar, policy=POLICY
    )
    # M2 has no supervisor: straight to compliance, level 2.
    assert (escalation.stage, escalation.level, escalation.queue) == (
        "disposition",
        2,
        "compliance",
    )
    assert "manager M2 has no supervisor" in escalation.reason


def test_policy_is_configurable_per_severity(
    session: Session, team: None, calendar: WorkingCalendar
) -> None:
    strict = DeadlinePolicy(
        by_severity={severity: SeverityDeadlines(1, 1) for severity in Severity}
    )
    ingest_detection(
        session, detection("C0001", "t1", severity=Severity.LOW), now=T0, calendar=calendar
    )
    soon = T0 + timedelta(hours=1, minutes=1)
    assert escalate_overdue(session, now=soon, calendar=calendar, policy=POLICY) == []
    assert len(escalate_overdue(session, now=soon, calendar=calendar, policy=strict)) == 1
