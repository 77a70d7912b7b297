"""Manager performance figures over a period."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.cases import (
    Disposition,
    acknowledge,
    close_case,
    escalate,
    ingest_detection,
    start_investigation,
)
from alerts.deadlines import DeadlinePolicy, escalate_overdue
from alerts.performance import manager_performance
from core.calendar import WorkingCalendar
from tests.alerts.conftest import T0, customer, detection, load_reference, manager

M1 = Actor("M1", Role.MANAGER)


def test_figures_per_manager(session: Session, tmp_path: Path, calendar: WorkingCalendar) -> None:
    load_reference(
        session,
        tmp_path,
        [manager("S1", grade="senior"), manager("M1", supervisor="S1"), manager("M2")],
        [customer(f"C000{n}", "M1") for n in range(1, 5)],
    )
    cases = [
        ingest_detection(session, detection(f"C000{n}", "t1"), now=T0, calendar=calendar).case_id
        or 0
        for n in range(1, 5)
    ]
    ingest_detection(session, detection("C0001", "t2"), now=T0, calendar=calendar)  # joins
    for case_id, minutes in zip(cases[:3], (10, 30, 60), strict=True):
        acknowledge(session, case_id=case_id, actor=M1, now=T0 + timedelta(minutes=minutes))
        start_investigation(session, case_id=case_id, actor=M1, now=T0 + timedelta(hours=1))
    later = T0 + timedelta(hours=2)
    close_case(
        session,
        case_id=cases[0],
        actor=M1,
        disposition=Disposition.FALSE_POSITIVE,
        reason="payroll",
        now=later,
    )
    close_case(
        session,
        case_id=cases[1],
        actor=M1,
        disposition=Disposition.FALSE_POSITIVE,
        reason="payroll",
        now=later,
    )
    escalate(session, case_id=cases[2], actor=M1, assessment="layering", now=later)
    # The fourth case was never acknowledged: it goes to S1 once overdue.
    escalate_overdue(
        session, now=T0 + timedelta(hours=5), calendar=calendar, policy=DeadlinePolicy()
    )
    session.commit()

    figures = {
        row.manager_id: row
        for row in manager_performance(session, start=T0, end=T0 + timedelta(days=1))
    }
    m1 = figures["M1"]
    assert m1.alerts_received == 5
    assert m1.median_time_to_acknowledge == timedelta(minutes=30)
    assert m1.overdue == 1
    assert m1.dispositions == {"false_positive": 2, "escalated": 1}
    assert figures["M2"].alerts_received == 0 and figures["M2"].median_time_to_acknowledge is None
    assert figures["S1"].overdue == 0
    # Outside the period nothing counts.
    before = manager_performance(session, start=T0 - timedelta(days=2), end=T0)
    assert all(row.alerts_received == 0 and not row.dispositions for row in before)
