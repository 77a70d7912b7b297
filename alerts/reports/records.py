"""Report records and their statuses: pending -> exported -> submitted (-> corrected).

Large-value records are written by ``alerts.cases.ingest_detection``. STR records are
written here, one per case compliance approved for filing (``reported``), due a number
of working days after the decision's bank day. Overdue means not yet submitted and past
the deadline; :func:`report_backlog` gives low-cardinality counts for metrics and the
console.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.actors import SYSTEM_ACTOR, Actor, Role, require_role
from alerts.audit import audit_case_event, lock_chain, record_event
from alerts.database import (
    CaseRow,
    LargeValueReportRow,
    ReportExportRow,
    SuspiciousReportRow,
)
from core.calendar import WorkingCalendar, bank_day
from core.errors import Conflict, InvalidInput, NotFound


class ReportKind(StrEnum):
    LARGE_VALUE = "large_value"
    SUSPICIOUS = "suspicious"


class ReportStatus(StrEnum):
    PENDING = "pending"
    EXPORTED = "exported"
    SUBMITTED = "submitted"
    CORRECTED = "corrected"


NOT_SUBMITTED = (ReportStatus.PENDING.value, ReportStatus.EXPORTED.value)


@dataclass(frozen=True, slots=True)
class BacklogCount:
    """How many records of a kind are in a status, and whether they are overdue."""

    kind: ReportKind
    status: ReportStatus
    overdue: bool
    count: int


@dataclass(frozen=True, slots=True)
class Submission:
    """What recording the regulator's receipt did."""

    export_id: int
    kind: ReportKind
    records: int


def record_decided_reports(
    session: Session,
    *,
    now: datetime,
    calendar: WorkingCalendar,
    tz: tzinfo,
    working_days: int,
) -> list[int]:
    """Write an STR record for every reported case without one; their case ids."""
    lock_chain(session)
    known = select(SuspiciousReportRow.case_id)
    cases = session.scalars(
        select(CaseRow)
        .where(CaseRow.status == "reported", CaseRow.id.not_in(known))
        .order_by(CaseRow.id)
    ).all()
    created = []
    for case in cases:
        if case.reported_at is None:
            continue
        day = bank_day(case.reported_at, tz)
        record = SuspiciousReportRow(
            case_id=case.id,
            decided_at=case.reported_at,
            bank_day=day,
            deadline=calendar.add_working_days(day, working_days),
            status=ReportStatus.PENDING.value,
            created_at=now,
        )
        session.add(record)
        session.flush()
        audit_case_event(
            session,
            case,
            actor=SYSTEM_ACTOR,
            action="report.suspicious.record",
            before=None,
            after={"report_id": record.id, "deadline": record.deadline},
            now=now,
        )
        created.append(case.id)
    return created


def report_backlog(session: Session, *, today: date) -> list[BacklogCount]:
    """Counts per kind, status and overdue (not submitted, deadline before ``today``).

    Labels stay low-cardinality (kind, status, overdue): ready for a Prometheus gauge.
    """
    counts: Counter[tuple[ReportKind, ReportStatus, bool]] = Counter()
    queries = (
        (ReportKind.LARGE_VALUE, select(LargeValueReportRow.status, LargeValueReportRow.deadline)),
        (ReportKind.SUSPICIOUS, select(SuspiciousReportRow.status, SuspiciousReportRow.deadline)),
    )
    for kind, query in queries:
        for status, deadline in session.execute(query):
            overdue = status in NOT_SUBMITTED and deadline < today
            counts[(kind, ReportStatus(status), overdue)] += 1
    return [
        BacklogCount(kind, status, overdue, count)
        for (kind, status, overdue), count in sorted(counts.items())
    ]


def overdue_report_counts(session: Session, *, today: date) -> dict[str, int]:
    """Overdue records per kind (``large_value``, ``suspicious``), zeros included."""
    totals = {kind.value: 0 for kind in ReportKind}
    for item in report_backlog(session, today=today):
        if item.overdue:
            totals[item.kind.value] += item.count
    return totals


def mark_submitted(
    session: Session,
    *,
    export_id: int,
    actor: Actor,
    receipt: str,
    now: datetime,
) -> Submission:
    """Record the regulator's receipt of an export: its records become ``submitted``."""
    require_role(actor, (Role.COMPLIANCE,), "record a regulator's receipt")
    lock_chain(session)
    receipt = receipt.strip()
    if not receipt:
        raise InvalidInput("the regulator's receipt reference is required")
    export = session.get(ReportExportRow, export_id, with_for_update=True)
    if export is None:
        raise NotFound(f"report export {export_id} not found")
    if export.format not in ("pboc-xml", "goaml-xml"):
        raise Conflict(f"report export {export_id} is a {export.format} review file, not a filing")
    if export.status == ReportStatus.SUBMITTED.value:
        raise Conflict(f"report export {export_id} was already submitted ({export.receipt})")
    rows: Sequence[LargeValueReportRow | SuspiciousReportRow]
    if export.kind == ReportKind.LARGE_VALUE:
        rows = session.scalars(
            select(LargeValueReportRow).where(LargeValueReportRow.id.in_(export.record_ids))
        ).all()
    else:
        rows = session.scalars(
            select(SuspiciousReportRow).where(SuspiciousReportRow.id.in_(export.record_ids))
        ).all()
    for row in rows:
        # A correction stays visible as such; its submission time is still recorded.
        if row.status != ReportStatus.CORRECTED.value:
            row.status = ReportStatus.SUBMITTED.value
        row.submitted_at = now
    export.status = ReportStatus.SUBMITTED.value
    export.submitted_at, export.submitted_by, export.receipt = now, actor.user_id, receipt
    record_event(
        session,
        actor=actor.user_id,
        role=actor.role.value,
        action="report.submitted",
        target=f"report export {export_id}",
        before={"status": ReportStatus.EXPORTED.value},
        after={"status": "submitted", "receipt": receipt, "records": len(rows)},
        at=now,
    )
    return Submission(export_id, ReportKind(export.kind), len(rows))


__all__ = [
    "BacklogCount",
    "ReportKind",
    "ReportStatus",
    "Submission",
    "mark_submitted",
    "overdue_report_counts",
    "record_decided_reports",
    "report_backlog",
]
