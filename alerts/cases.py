"""Cases: ingesting detections exactly once, and the disposition workflow.

States: ``new -> acknowledged -> investigating -> closed`` (false positive or not
suspicious, with a reason), or from acknowledged/investigating ``-> escalated`` to
compliance with the manager's assessment, then ``-> reported`` once one compliance
officer proposes an STR and a *different* one approves it (four eyes; neither may be
the officer who escalated), or ``escalated -> closed`` by compliance with a reason.

Every service function works in the caller's transaction and writes its audit events
in it; the caller commits. Managers act only on cases assigned to them; supervisors and
compliance act on any case.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.actors import SYSTEM_ACTOR, Actor, Role, require_role
from alerts.audit import (
    AuditEvent,
    appends_in_one_insert,
    audit_case_event,
    case_ref,
    lock_chain,
    record_event,
)
from alerts.database import AlertRow, CaseRow, LargeValueReportRow, NoteRow
from alerts.routing import (
    COMPLIANCE_QUEUE,
    OPEN_STATES,
    Route,
    apply_routing,
    prefetch_routing,
    record_routing,
    route_customer,
)
from core.calendar import WorkingCalendar
from core.detection import Detection, Outcome, Severity
from core.errors import Conflict, Forbidden, InvalidInput, NotFound

# PBoC: a large-value transaction report is due within five working days.
LARGE_VALUE_REPORT_WORKING_DAYS = 5
SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)
CASE_WORKERS = (Role.MANAGER, Role.SUPERVISOR, Role.COMPLIANCE)
# Losing a race to open a customer's case is retried by joining the winner's case.
_INGEST_ATTEMPTS = 3


class CaseStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    ESCALATED = "escalated"
    REPORTED = "reported"
    CLOSED = "closed"


class Disposition(StrEnum):
    FALSE_POSITIVE = "false_positive"
    NOT_SUSPICIOUS = "not_suspicious"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingesting one detection did; a duplicate returns what the first delivery made."""

    case_id: int | None  # None for a large-value report record
    report_id: int | None  # the large-value report record, for outcome ``report``
    created: bool  # a new case was opened
    joined: bool  # the alert joined the customer's open case
    duplicate: bool  # the detection was already stored: nothing changed
    routed_to: str | None  # the assignee; None when the case sits in the compliance queue


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case as the inbox and the API show it (no customer names or ID numbers)."""

    case_id: int
    ref: str
    customer_id: str
    status: CaseStatus
    severity: Severity
    assignee_id: str | None
    queue: str
    compliance_copy: bool
    escalation_level: int
    opened_at: datetime
    acknowledged_at: datetime | None
    escalated_at: datetime | None
    assessment: str | None
    report_proposed_by: str | None
    disposition: Disposition | None
    disposition_reason: str | None
    closed_at: datetime | None


def ingest_detection(
    session: Session, detection: Detection, *, now: datetime, calendar: WorkingCalendar
) -> IngestResult:
    """Store ``detection`` exactly once: a report record, or an alert on a routed case."""
    lock_chain(session)
    for _ in range(_INGEST_ATTEMPTS):
        try:
            with session.begin_nested():
                return _ingest(session, [detection], now=now, calendar=calendar)[0]
        except IntegrityError:
            # Another writer stored this detection or opened this customer's case first.
            continue
    raise Conflict(f"detection {detection.detection_id} kept conflicting; retry later")


def ingest_detections(
    session: Session,
    detections: Sequence[Detection],
    *,
    now: datetime,
    calendar: WorkingCalendar,
) -> list[IngestResult]:
    """Store a worker's batch as :func:`ingest_detection` on each in turn would; the
    results in the same order.

    The batch shares its lookups (already stored, open cases, routing) and writes its
    rows and audit events a statement per table, not about ten statements per detection.
    """
    lock_chain(session)
    try:
        with session.begin_nested():
            return _ingest(session, detections, now=now, calendar=calendar)
    except IntegrityError:
        # A writer got in first: one by one, each with its own retries.
        return [ingest_detection(session, d, now=now, calendar=calendar) for d in detections]


def acknowledge(session: Session, *, case_id: int, actor: Actor, now: datetime) -> CaseSummary:
    """The assignee has seen the case (``new -> acknowledged``)."""
    case = _case_for(session, case_id, actor, "acknowledge", CASE_WORKERS)
    _require_status(case, (CaseStatus.NEW,), "acknowledge")
    _move(session, case, CaseStatus.ACKNOWLEDGED, actor, now, "case.acknowledge")
    case.acknowledged_at, case.acknowledged_by = now, actor.user_id
    return summarize_case(case)


def start_investigation(
    session: Session, *, case_id: int, actor: Actor, now: datetime
) -> CaseSummary:
    """Work on the case begins (``acknowledged -> investigating``)."""
    case = _case_for(session, case_id, actor, "investigate", CASE_WORKERS)
    _require_status(case, (CaseStatus.ACKNOWLEDGED,), "start investigating")
    _move(session, case, CaseStatus.INVESTIGATING, actor, now, "case.investigate")
    case.investigating_at = now
    return summarize_case(case)


def close_case(
    session: Session,
    *,
    case_id: int,
    actor: Actor,
    disposition: Disposition,
    reason: str,
    now: datetime,
) -> CaseSummary:
    """Close as not suspicious or false positive, with a reason; escalated cases: compliance."""
    case = _case_for(session, case_id, actor, "close a case", CASE_WORKERS)
    _require_status(case, (CaseStatus.INVESTIGATING, CaseStatus.ESCALATED), "close")
    if case.status == CaseStatus.ESCALATED:
        require_role(actor, (Role.COMPLIANCE,), "close an escalated case")
    reason = _required_text(reason, "a closing reason")
    _move(
        session,
        case,
        CaseStatus.CLOSED,
        actor,
        now,
        "case.close",
        disposition=Disposition(disposition).value,
        reason=reason,
    )
    case.disposition, case.disposition_reason = Disposition(disposition).value, reason
    case.closed_at, case.closed_by = now, actor.user_id
    case.open_customer_id = None
    return summarize_case(case)


def escalate(
    session: Session, *, case_id: int, actor: Actor, assessment: str, now: datetime
) -> CaseSummary:
    """Hand a suspicious case to compliance with the assessment (``-> escalated``)."""
    case = _case_for(session, case_id, actor, "escalate", CASE_WORKERS)
    _require_status(case, (CaseStatus.ACKNOWLEDGED, CaseStatus.INVESTIGATING), "escalate")
    assessment = _required_text(assessment, "an assessment")
    _move(session, case, CaseStatus.ESCALATED, actor, now, "case.escalate", assessment=assessment)
    case.escalated_at, case.escalated_by, case.assessment = now, actor.user_id, assessment
    reason = f"escalated as suspicious by {actor.role.value} {actor.user_id}"
    route = Route(case.assignee_id, COMPLIANCE_QUEUE, case.compliance_copy, reason)
    record_routing(session, case, route, kind="escalation", actor=actor, now=now)
    return summarize_case(case)


def propose_report(session: Session, *, case_id: int, actor: Actor, now: datetime) -> CaseSummary:
    """A compliance officer proposes filing an STR; another one must approve it."""
    case = _case_for(session, case_id, actor, "propose an STR", (Role.COMPLIANCE,))
    _require_status(case, (CaseStatus.ESCALATED,), "propose a report")
    if case.report_proposed_by is not None:
        raise Conflict(
            f"{case_ref(case.id)} already has an STR proposed by {case.report_proposed_by}"
        )
    audit_case_event(
        session,
        case,
        actor=actor,
        action="case.propose_report",
        before=None,
        after={"report_proposed_by": actor.user_id},
        now=now,
    )
    case.report_proposed_at, case.report_proposed_by = now, actor.user_id
    return summarize_case(case)


def approve_report(session: Session, *, case_id: int, actor: Actor, now: datetime) -> CaseSummary:
    """A second compliance officer approves the proposed STR (``escalated -> reported``)."""
    case = _case_for(session, case_id, actor, "approve an STR", (Role.COMPLIANCE,))
    _require_status(case, (CaseStatus.ESCALATED,), "approve a report")
    if case.report_proposed_by is None:
        raise Conflict(f"{case_ref(case.id)} has no proposed STR to approve")
    if actor.user_id in (case.report_proposed_by, case.escalated_by):
        raise Forbidden(
            f"four eyes: {actor.user_id} escalated or proposed {case_ref(case.id)}'s STR "
            "and cannot approve it"
        )
    _move(
        session,
        case,
        CaseStatus.REPORTED,
        actor,
        now,
        "case.approve_report",
        proposed_by=case.report_proposed_by,
    )
    case.reported_at, case.report_approved_by = now, actor.user_id
    case.open_customer_id = None
    return summarize_case(case)


def add_note(session: Session, *, case_id: int, actor: Actor, body: str, now: datetime) -> int:
    """Add a note to an open case; the note's id."""
    case = _case_for(session, case_id, actor, "add a note", CASE_WORKERS)
    _require_status(case, tuple(CaseStatus(state) for state in OPEN_STATES), "add a note")
    note = NoteRow(
        case_id=case.id,
        author=actor.user_id,
        role=actor.role.value,
        body=_required_text(body, "a note"),
        created_at=now,
    )
    session.add(note)
    session.flush()
    # The note text may name the customer: the audit log keeps its id, not its words.
    audit_case_event(
        session,
        case,
        actor=actor,
        action="case.note",
        before=None,
        after={"note_id": note.id},
        now=now,
    )
    return note.id


def get_case(session: Session, *, case_id: int) -> CaseSummary:
    """One case, or NotFound."""
    case = session.get(CaseRow, case_id, populate_existing=True)
    if case is None:
        raise NotFound(f"case {case_ref(case_id)} not found")
    return summarize_case(case)


def list_cases(
    session: Session,
    *,
    assignee_id: str | None = None,
    queue: str | None = None,
    open_only: bool = True,
) -> list[CaseSummary]:
    """Cases filtered by assignee and queue, oldest first."""
    query = select(CaseRow).order_by(CaseRow.id)
    if assignee_id is not None:
        query = query.where(CaseRow.assignee_id == assignee_id)
    if queue is not None:
        query = query.where(CaseRow.queue == queue)
    if open_only:
        query = query.where(CaseRow.status.in_(OPEN_STATES))
    return [summarize_case(case) for case in session.scalars(query)]


def _ingest(
    session: Session, detections: Sequence[Detection], *, now: datetime, calendar: WorkingCalendar
) -> list[IngestResult]:
    # Cases and alerts are added in order and flushed together (new cases first, the
    # ORM fills in their ids); report records, most of a worker's detections, go in with
    # one insert statement; the audit events are then appended in the order of the
    # changes, once the rows they name have ids, and written with one more.
    stored = _stored_before(session, detections)
    alert_customers = {d.customer_id for d in detections if d.outcome is not Outcome.REPORT}
    open_cases = _open_cases(session, alert_customers)
    routing_rows = prefetch_routing(session, customer_ids=alert_customers - open_cases.keys())
    new_reports: list[_NewReport] = []
    audit: list[Callable[[], AuditEvent]] = []
    outcomes: list[Callable[[], IngestResult]] = []
    for detection in detections:
        earlier = stored.get(detection.detection_id)
        if earlier is not None:
            outcomes.append(earlier)
            continue
        if detection.outcome is Outcome.REPORT:
            report = _new_report(detection, now=now, calendar=calendar)
            new_reports.append(report)
            audit.append(partial(_audit_report, session, report, detection, now=now))
            outcomes.append(partial(_report_result, report, duplicate=False))
            stored[detection.detection_id] = partial(_report_result, report, duplicate=True)
        else:
            alert, joined = _add_alert(
                session, detection, now=now, open_cases=open_cases, audit=audit
            )
            outcomes.append(partial(_alert_result, alert, joined=joined, duplicate=False))
            stored[detection.detection_id] = partial(
                _alert_result, alert, joined=False, duplicate=True
            )
    # Held until routing is done: the session keeps unchanged rows only while referenced.
    del routing_rows
    session.flush()
    _insert_reports(session, new_reports)
    with appends_in_one_insert(session):
        for append in audit:
            append()
    return [outcome() for outcome in outcomes]


# The ingest's lookups, built once: building a select with its IN clause took about as
# long as running it (about 0.1 ms each here), and the worker ingests a small batch of
# detections dozens of times a second. Only what a duplicate's result needs is read.
_REPORTS_STORED = select(LargeValueReportRow.detection_id, LargeValueReportRow.id).where(
    LargeValueReportRow.detection_id.in_(bindparam("detection_ids", expanding=True))
)
_ALERTS_STORED = select(AlertRow.detection_id, AlertRow.case_id, AlertRow.assignee_id).where(
    AlertRow.detection_id.in_(bindparam("detection_ids", expanding=True))
)
_REPORTS_TABLE = LargeValueReportRow.metadata.tables[LargeValueReportRow.__tablename__]
# RETURNING in the order of the rows would cost a statement a row on SQLite; the rows
# come back in any order, with the detection id to match them by.
_INSERT_REPORTS = insert(_REPORTS_TABLE).returning(
    _REPORTS_TABLE.c.detection_id, _REPORTS_TABLE.c.id
)
_OPEN_CASES = (
    select(CaseRow)
    .where(CaseRow.open_customer_id.in_(bindparam("customer_ids", expanding=True)))
    .execution_options(populate_existing=True)
)


def _stored_before(
    session: Session, detections: Sequence[Detection]
) -> dict[str, Callable[[], IngestResult]]:
    """The detections of the batch stored by an earlier delivery, by detection id."""
    report_ids = [d.detection_id for d in detections if d.outcome is Outcome.REPORT]
    alert_ids = [d.detection_id for d in detections if d.outcome is not Outcome.REPORT]
    found: dict[str, Callable[[], IngestResult]] = {}
    if not (report_ids or alert_ids):
        return found
    # On the connection (plain rows, no ORM execution: about half the time); the flush
    # first, as the session's own autoflush would, so nothing pending is missed.
    session.flush()
    connection = session.connection()
    if report_ids:
        for detection_id, report_id in connection.execute(
            _REPORTS_STORED, {"detection_ids": report_ids}
        ):
            found[detection_id] = partial(_duplicate, case_id=None, report_id=report_id)
    if alert_ids:
        for detection_id, case_id, assignee_id in connection.execute(
            _ALERTS_STORED, {"detection_ids": alert_ids}
        ):
            found[detection_id] = partial(
                _duplicate, case_id=case_id, report_id=None, routed_to=assignee_id
            )
    return found


def _duplicate(
    *, case_id: int | None, report_id: int | None, routed_to: str | None = None
) -> IngestResult:
    return IngestResult(
        case_id, report_id, created=False, joined=False, duplicate=True, routed_to=routed_to
    )


def _open_cases(session: Session, customer_ids: Collection[str]) -> dict[str, CaseRow]:
    """The open case of each of these customers that has one."""
    if not customer_ids:
        return {}
    cases = session.scalars(_OPEN_CASES, {"customer_ids": list(customer_ids)})
    return {case.customer_id: case for case in cases}


def _report_result(report: _NewReport, *, duplicate: bool) -> IngestResult:
    return IngestResult(None, report.id, False, False, duplicate, None)


def _alert_result(alert: AlertRow, *, joined: bool, duplicate: bool) -> IngestResult:
    created = not joined and not duplicate
    return IngestResult(alert.case_id, None, created, joined, duplicate, alert.assignee_id)


@dataclass(slots=True)
class _NewReport:
    """A large-value report record of the batch: its column values, and its id once inserted."""

    values: dict[str, Any]
    id: int = 0


def _new_report(detection: Detection, *, now: datetime, calendar: WorkingCalendar) -> _NewReport:
    return _NewReport(
        {
            "detection_id": detection.detection_id,
            "customer_id": detection.customer_id,
            "detector": detection.detector,
            "detector_version": detection.detector_version,
            "trigger_tx_id": detection.trigger_tx_id,
            "tx_ids": list(detection.tx_ids),
            "values": dict(detection.values),
            "bank_day": detection.bank_day,
            "deadline": calendar.add_working_days(
                detection.bank_day, LARGE_VALUE_REPORT_WORKING_DAYS
            ),
            "status": "pending",
            "created_at": detection.created_at,
            "received_at": now,
        }
    )


def _insert_reports(session: Session, reports: Sequence[_NewReport]) -> None:
    """Insert the batch's report records with one statement; each learns its id."""
    if not reports:
        return
    inserted = session.connection().execute(_INSERT_REPORTS, [r.values for r in reports])
    ids = {detection_id: report_id for detection_id, report_id in inserted}
    for report in reports:
        report.id = ids[report.values["detection_id"]]


def _audit_report(
    session: Session, report: _NewReport, detection: Detection, *, now: datetime
) -> AuditEvent:
    return record_event(
        session,
        actor=SYSTEM_ACTOR.user_id,
        role=SYSTEM_ACTOR.role.value,
        action="report.large_value.record",
        target=f"large-value report {report.id}",
        before=None,
        after={
            "detection_id": detection.detection_id,
            "customer_id": detection.customer_id,
            "deadline": report.values["deadline"],
        },
        at=now,
    )


def _add_alert(
    session: Session,
    detection: Detection,
    *,
    now: datetime,
    open_cases: dict[str, CaseRow],
    audit: list[Callable[[], AuditEvent]],
) -> tuple[AlertRow, bool]:
    """The alert row, and whether it joined an open case (else it opened one)."""
    case = open_cases.get(detection.customer_id)
    joined = case is not None
    if case is None:
        case = _open_case(session, detection, now=now, audit=audit)
        open_cases[detection.customer_id] = case
    else:
        _raise_severity(session, case, detection, now=now, audit=audit)
    alert = AlertRow(
        detection_id=detection.detection_id,
        case=case,
        customer_id=detection.customer_id,
        assignee_id=case.assignee_id,
        detector=detection.detector,
        detector_version=detection.detector_version,
        severity=detection.severity.value,
        score=detection.score,
        reasons=list(detection.reasons),
        tx_ids=list(detection.tx_ids),
        values=dict(detection.values),
        trigger_tx_id=detection.trigger_tx_id,
        bank_day=detection.bank_day,
        created_at=detection.created_at,
        received_at=now,
    )
    session.add(alert)
    audit.append(partial(_audit_alert, session, alert, detection, joined=joined, now=now))
    return alert, joined


def _audit_alert(
    session: Session, alert: AlertRow, detection: Detection, *, joined: bool, now: datetime
) -> AuditEvent:
    return audit_case_event(
        session,
        alert.case,
        actor=SYSTEM_ACTOR,
        action="alert.ingest",
        before=None,
        after={
            "alert_id": alert.id,
            "detection_id": detection.detection_id,
            "detector": detection.detector,
            "severity": detection.severity.value,
            "joined": joined,
        },
        now=now,
    )


def _open_case(
    session: Session,
    detection: Detection,
    *,
    now: datetime,
    audit: list[Callable[[], AuditEvent]],
) -> CaseRow:
    route = route_customer(session, customer_id=detection.customer_id, severity=detection.severity)
    case = CaseRow(
        customer_id=detection.customer_id,
        open_customer_id=detection.customer_id,
        status=CaseStatus.NEW.value,
        severity=detection.severity.value,
        queue=route.queue,
        compliance_copy=False,
        escalation_level=0,
        opened_at=now,
    )
    session.add(case)
    audit.append(
        partial(
            audit_case_event,
            session,
            case,
            actor=SYSTEM_ACTOR,
            action="case.open",
            before=None,
            after={"customer_id": case.customer_id, "severity": case.severity, "status": "new"},
            now=now,
        )
    )
    audit.append(apply_routing(session, case, route, kind="new_case", actor=SYSTEM_ACTOR, now=now))
    return case


def _raise_severity(
    session: Session,
    case: CaseRow,
    detection: Detection,
    *,
    now: datetime,
    audit: list[Callable[[], AuditEvent]],
) -> None:
    current = Severity(case.severity)
    if SEVERITY_ORDER.index(detection.severity) > SEVERITY_ORDER.index(current):
        audit.append(
            partial(
                audit_case_event,
                session,
                case,
                actor=SYSTEM_ACTOR,
                action="case.severity",
                before={"severity": current.value},
                after={
                    "severity": detection.severity.value,
                    "detection_id": detection.detection_id,
                },
                now=now,
            )
        )
        case.severity = detection.severity.value
    if detection.severity is Severity.CRITICAL and not case.compliance_copy:
        reason = f"critical alert {detection.detection_id} joined; compliance copied"
        route = Route(case.assignee_id, case.queue, True, reason)
        audit.append(
            apply_routing(session, case, route, kind="critical_copy", actor=SYSTEM_ACTOR, now=now)
        )


def _case_for(
    session: Session, case_id: int, actor: Actor, action: str, roles: Collection[Role]
) -> CaseRow:
    require_role(actor, roles, action)
    lock_chain(session)
    case = session.scalars(
        select(CaseRow)
        .where(CaseRow.id == case_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if case is None:
        raise NotFound(f"case {case_ref(case_id)} not found")
    if actor.role is Role.MANAGER and case.assignee_id != actor.user_id:
        raise Forbidden(f"case {case_ref(case_id)} is not assigned to manager {actor.user_id}")
    return case


def _require_status(case: CaseRow, allowed: tuple[CaseStatus, ...], verb: str) -> None:
    if case.status not in allowed:
        raise Conflict(f"case {case_ref(case.id)} is {case.status}; cannot {verb}")


def _move(
    session: Session,
    case: CaseRow,
    status: CaseStatus,
    actor: Actor,
    now: datetime,
    action: str,
    **details: str,
) -> None:
    audit_case_event(
        session,
        case,
        actor=actor,
        action=action,
        before={"status": case.status},
        after={"status": status.value, **details},
        now=now,
    )
    case.status = status.value


def _required_text(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidInput(f"{what} is required and must not be empty")
    return text


def summarize_case(case: CaseRow) -> CaseSummary:
    """The summary the inbox and the API show, from a loaded case row."""
    return CaseSummary(
        case_id=case.id,
        ref=case_ref(case.id),
        customer_id=case.customer_id,
        status=CaseStatus(case.status),
        severity=Severity(case.severity),
        assignee_id=case.assignee_id,
        queue=case.queue,
        compliance_copy=case.compliance_copy,
        escalation_level=case.escalation_level,
        opened_at=case.opened_at,
        acknowledged_at=case.acknowledged_at,
        escalated_at=case.escalated_at,
        assessment=case.assessment,
        report_proposed_by=case.report_proposed_by,
        disposition=Disposition(case.disposition) if case.disposition else None,
        disposition_reason=case.disposition_reason,
        closed_at=case.closed_at,
    )


__all__ = [
    "LARGE_VALUE_REPORT_WORKING_DAYS",
    "CaseStatus",
    "CaseSummary",
    "Disposition",
    "IngestResult",
    "acknowledge",
    "add_note",
    "approve_report",
    "close_case",
    "escalate",
    "get_case",
    "ingest_detection",
    "ingest_detections",
    "list_cases",
    "propose_report",
    "start_investigation",
    "summarize_case",
]
