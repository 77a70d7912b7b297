"""Routing: the customer's manager, else up the supervisor chain, else compliance."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.cases import get_case, ingest_detection
from alerts.database import ManagerRow, RoutingDecisionRow
from alerts.routing import reassign_manager, route_customer
from core.calendar import WorkingCalendar
from core.detection import Severity
from core.errors import Conflict, Forbidden, NotFound
from tests.alerts.conftest import ADMIN, T0, customer, detection, load_reference, manager


def reasons(session: Session, case_id: int) -> list[str]:
    query = select(RoutingDecisionRow.reason).where(RoutingDecisionRow.case_id == case_id)
    return list(session.scalars(query.order_by(RoutingDecisionRow.id)))


def test_active_manager_gets_the_case(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    load_reference(session, tmp_path, [manager("M1")], [customer("C0001", "M1")])
    result = ingest_detection(session, detection("C0001", "t1"), now=T0, calendar=calendar)
    assert result.routed_to == "M1" and result.created
    case = get_case(session, case_id=result.case_id or 0)
    assert (case.assignee_id, case.queue, case.compliance_copy) == ("M1", "manager", False)
    assert reasons(session, case.case_id) == ["customer C0001 has manager M1"]


def test_inactive_manager_routes_to_supervisor_up_the_chain(
    session: Session, tmp_path: Path
) -> None:
    managers = [
        manager("M0001", grade="senior"),
        manager("M0002", supervisor="M0001", active=False, grade="intermediate"),
        manager("M0007", supervisor="M0002", active=False),
    ]
    load_reference(session, tmp_path, managers, [customer("C0001", "M0007")])
    route = route_customer(session, customer_id="C0001", severity=Severity.HIGH)
    assert route.assignee_id == "M0001" and route.queue == "manager"
    assert route.reason == (
        "customer C0001 has manager M0007; "
        "manager M0007 inactive; routed to supervisor M0002; "
        "manager M0002 inactive; routed to supervisor M0001"
    )


def test_nobody_active_goes_to_compliance(session: Session, tmp_path: Path) -> None:
    managers = [manager("M1", active=False), manager("M2", supervisor="M1", active=False)]
    load_reference(session, tmp_path, managers, [customer("C0001", "M2")])
    route = route_customer(session, customer_id="C0001", severity=Severity.LOW)
    assert (route.assignee_id, route.queue) == (None, "compliance")
    assert route.reason.endswith(
        "manager M1 inactive with no supervisor; routed to the compliance queue"
    )


def test_missing_supervisor_and_unknown_customer_go_to_compliance(
    session: Session, tmp_path: Path
) -> None:
    load_reference(session, tmp_path, [manager("M1", active=False)], [customer("C0001", "M1")])
    # A supervisor who left the reference data: imports refuse it, so edit the row.
    row = session.get(ManagerRow, "M1")
    assert row is not None
    row.supervisor_id = "M9"
    session.commit()
    route = route_customer(session, customer_id="C0001", severity=Severity.LOW)
    assert route.queue == "compliance" and "manager M9 missing" in route.reason
    route = route_customer(session, customer_id="C9999", severity=Severity.LOW)
    assert route.queue == "compliance"
    assert route.reason.startswith("customer C9999 not in the reference data")


def test_supervisor_cycle_is_detected(session: Session, tmp_path: Path) -> None:
    managers = [
        manager("M1", supervisor="M2", active=False),
        manager("M2", supervisor="M1", active=False),
    ]
    load_reference(session, tmp_path, managers, [customer("C0001", "M1")])
    route = route_customer(session, customer_id="C0001", severity=Severity.HIGH)
    assert route.queue == "compliance"
    assert "supervisor chain loops back to M1" in route.reason


def test_critical_alert_goes_to_manager_and_compliance(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    load_reference(session, tmp_path, [manager("M1")], [customer("C0001", "M1")])
    critical = detection("C0001", "t1", severity=Severity.CRITICAL, detector="watch_list")
    result = ingest_detection(session, critical, now=T0, calendar=calendar)
    case = get_case(session, case_id=result.case_id or 0)
    assert case.assignee_id == "M1" and case.compliance_copy
    assert reasons(session, case.case_id)[0].endswith("critical: compliance copied")


def test_critical_alert_joining_a_case_copies_compliance(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    load_reference(session, tmp_path, [manager("M1")], [customer("C0001", "M1")])
    first = ingest_detection(session, detection("C0001", "t1"), now=T0, calendar=calendar)
    critical = detection("C0001", "t2", severity=Severity.CRITICAL, detector="fatf_black_list")
    second = ingest_detection(session, critical, now=T0, calendar=calendar)
    assert second.joined and second.case_id == first.case_id
    case = get_case(session, case_id=first.case_id or 0)
    assert case.severity is Severity.CRITICAL and case.compliance_copy


def test_reassignment_moves_customers_and_open_cases(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    managers = [manager("M1"), manager("M2"), manager("M3", active=False)]
    customers = [customer("C0001", "M1"), customer("C0002", "M1"), customer("C0003", "M2")]
    load_reference(session, tmp_path, managers, customers)
    moved = ingest_detection(session, detection("C0001", "t1"), now=T0, calendar=calendar)
    kept = ingest_detection(session, detection("C0003", "t2"), now=T0, calendar=calendar)
    result = reassign_manager(session, from_manager="M1", to_manager="M2", actor=ADMIN, now=T0)
    session.commit()
    assert result.customers_moved == 2 and result.case_ids == (moved.case_id,)
    assert get_case(session, case_id=moved.case_id or 0).assignee_id == "M2"
    assert get_case(session, case_id=kept.case_id or 0).assignee_id == "M2"
    assert route_customer(session, customer_id="C0002", severity=Severity.LOW).assignee_id == "M2"
    assert reasons(session, moved.case_id or 0)[-1] == "manager M1 reassigned to M2 by ops1"

    with pytest.raises(Conflict, match="inactive"):
        reassign_manager(session, from_manager="M2", to_manager="M3", actor=ADMIN, now=T0)
    with pytest.raises(NotFound):
        reassign_manager(session, from_manager="M2", to_manager="M404", actor=ADMIN, now=T0)
    with pytest.raises(Forbidden):
        reassign_manager(
            session, from_manager="M2", to_manager="M1", actor=Actor("M2", Role.MANAGER), now=T0
        )
