"""Read models for the API and pages: case lists with deadlines, case detail, console.

Every case query is narrowed by :func:`alerts.web.access.case_scope`; nothing here
returns ORM rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.actors import Actor
from alerts.audit import AuditEvent, audit_event, case_ref
from alerts.cases import CaseSummary, get_case, summarize_case
from alerts.database import AlertRow, AuditEventRow, CaseRow, NoteRow
from alerts.deadlines import DeadlinePolicy, str_due, work_deadline
from alerts.routing import OPEN_STATES
from alerts.transactions import StoredTransaction, customer_transactions, transactions_by_id
from alerts.web.access import case_scope, visible_case
from core.calendar import WorkingCalendar
from core.detection import Severity

SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}
# How much of the customer's history the case page shows around its alerts.
HISTORY_BEFORE = timedelta(days=30)
HISTORY_AFTER = timedelta(days=2)
HISTORY_LIMIT = 500


@dataclass(frozen=True, slots=True)
class CaseFilters:
    """What the case list may be narrowed by; None means no filter."""

    states: tuple[str, ...] | None = None
    severity: Severity | None = None
    overdue: bool | None = None
    customer_id: str | None = None
    opened_from: date | None = None  # bank-local days, inclusive
    opened_to: date | None = None


@dataclass(frozen=True, slots=True)
class CaseItem:
    """A case in a list: its summary, the deadline it runs against and whether it passed."""

    case: CaseSummary
    due_at: datetime | None
    due_stage: str | None
    overdue: bool


@dataclass(frozen=True, slots=True)
class AlertView:
    alert_id: int
    detector: str
    detector_version: str
    severity: str
    score: float
    reasons: list[str]
    values: dict[str, Any]
    tx_ids: list[str]
    trigger_tx_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NoteView:
    note_id: int
    author: str
    role: str
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CaseDetail:
    item: CaseItem
    alerts: list[AlertView]
    notes: list[NoteView]
    flagged: list[StoredTransaction]
    history: list[StoredTransaction]
    audit: list[AuditEvent]
    flagged_ids: frozenset[str] = field(default_factory=frozenset)


def case_deadline(
    case: CaseSummary | CaseRow,
    *,
    overdue_escalated_at: datetime | None,
    calendar: WorkingCalendar,
    policy: DeadlinePolicy,
) -> tuple[str | None, datetime | None]:
    """The deadline a case currently runs against, as ``alerts.deadlines`` counts it."""
    status = str(case.status)
    if status in ("closed", "reported"):
        return None, None
    if status == "escalated":
        if case.escalated_at is None:
            return None, None
        return "report", str_due(case.escalated_at, calendar=calendar, policy=policy)
    return work_deadline(
        status=status,
        severity=Severity(case.severity),
        started=overdue_escalated_at or case.opened_at,
        calendar=calendar,
        policy=policy,
    )


def list_case_items(
    session: Session,
    *,
    actor: Actor,
    filters: CaseFilters,
    now: datetime,
    calendar: WorkingCalendar,
    policy: DeadlinePolicy,
) -> list[CaseItem]:
    """The actor's cases matching ``filters``, by deadline (soonest first), then severity."""
    query = select(CaseRow).where(case_scope(session, actor))
    if filters.states is not None:
        query = query.where(CaseRow.status.in_(filters.states))
    if filters.severity is not None:
        query = query.where(CaseRow.severity == filters.severity.value)
    if filters.customer_id is not None:
        query = query.where(CaseRow.customer_id == filters.customer_id)
    zone = policy.timezone
    if filters.opened_from is not None:
        query = query.where(
            CaseRow.opened_at >= datetime.combine(filters.opened_from, time(), tzinfo=zone)
        )
    if filters.opened_to is not None:
        end = filters.opened_to + timedelta(days=1)
        query = query.where(CaseRow.opened_at < datetime.combine(end, time(), tzinfo=zone))
    items = []
    for row in session.scalars(query.order_by(CaseRow.id)):
        summary = get_summary(row)
        stage, due_at = case_deadline(
            row, overdue_escalated_at=row.overdue_escalated_at, calendar=calendar, policy=policy
        )
        overdue = due_at is not None and now > due_at
        if filters.overdue is not None and overdue != filters.overdue:
            continue
        items.append(CaseItem(summary, due_at, stage, overdue))
    far = datetime.max.replace(tzinfo=now.tzinfo)
    items.sort(
        key=lambda item: (item.due_at or far, SEVERITY_RANK[item.case.severity], item.case.case_id)
    )
    return items


def get_summary(row: CaseRow) -> CaseSummary:
    """The service layer's summary of an already loaded row."""
    return summarize_case(row)


def case_detail(
    session: Session,
    *,
    actor: Actor,
    case_id: int,
    now: datetime,
    calendar: WorkingCalendar,
    policy: DeadlinePolicy,
) -> CaseDetail:
    """Everything the case page shows, or NotFound outside the actor's scope."""
    visible_case(session, actor, case_id)
    summary = get_case(session, case_id=case_id)
    row = session.get(CaseRow, case_id)
    stage, due_at = case_deadline(
        summary,
        overdue_escalated_at=row.overdue_escalated_at if row is not None else None,
        calendar=calendar,
        policy=policy,
    )
    item = CaseItem(summary, due_at, stage, due_at is not None and now > due_at)
    alerts = [
        AlertView(
            alert_id=a.id,
            detector=a.detector,
            detector_version=a.detector_version,
            severity=a.severity,
            score=a.score,
            reasons=list(a.reasons or []),
            values=dict(a.values or {}),
            tx_ids=list(a.tx_ids or []),
            trigger_tx_id=a.trigger_tx_id,
            created_at=a.created_at,
        )
        for a in session.scalars(
            select(AlertRow).where(AlertRow.case_id == case_id).order_by(AlertRow.id)
        )
    ]
    notes = [
        NoteView(n.id, n.author, n.role, n.body, n.created_at)
        for n in session.scalars(
            select(NoteRow).where(NoteRow.case_id == case_id).order_by(NoteRow.id)
        )
    ]
    flagged_ids = frozenset(tx for alert in alerts for tx in alert.tx_ids)
    flagged = sorted(
        transactions_by_id(session, flagged_ids).values(), key=lambda s: s.transaction.timestamp
    )
    times = [alert.created_at for alert in alerts] or [summary.opened_at]
    history = customer_transactions(
        session,
        customer_id=summary.customer_id,
        start=min(times) - HISTORY_BEFORE,
        end=max(times) + HISTORY_AFTER,
        limit=HISTORY_LIMIT,
    )
    return CaseDetail(
        item=item,
        alerts=alerts,
        notes=notes,
        flagged=flagged,
        history=history,
        audit=case_audit(session, case_id=case_id),
        flagged_ids=flagged_ids,
    )


def case_audit(session: Session, *, case_id: int) -> list[AuditEvent]:
    """The audit trail of one case, oldest first."""
    rows = session.scalars(
        select(AuditEventRow)
        .where(AuditEventRow.target == case_ref(case_id))
        .order_by(AuditEventRow.seq)
    )
    return [audit_event(row) for row in rows]


def audit_page(session: Session, *, offset: int, limit: int) -> tuple[int, list[AuditEvent]]:
    """The audit log newest first, one page, and the total count."""
    total = session.scalar(select(func.count()).select_from(AuditEventRow)) or 0
    rows = session.scalars(
        select(AuditEventRow).order_by(AuditEventRow.seq.desc()).offset(offset).limit(limit)
    )
    return total, [audit_event(row) for row in rows]


def status_counts(items: list[CaseItem]) -> dict[str, int]:
    """Counts for the top of the inbox: open, new, overdue, critical."""
    counts: Counter[str] = Counter()
    for item in items:
        counts["open"] += item.case.status.value in OPEN_STATES
        counts["new"] += item.case.status.value == "new"
        counts["overdue"] += item.overdue
        counts["critical"] += item.case.severity is Severity.CRITICAL
    return {key: counts[key] for key in ("open", "new", "overdue", "critical")}


def overdue_by_manager(items: list[CaseItem]) -> list[tuple[str, int]]:
    """Overdue open cases per assignee (``compliance`` for the queue), most first."""
    counts = Counter(item.case.assignee_id or "compliance" for item in items if item.overdue)
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


__all__ = [
    "CaseDetail",
    "CaseFilters",
    "CaseItem",
    "audit_page",
    "case_audit",
    "case_deadline",
    "case_detail",
    "list_case_items",
    "overdue_by_manager",
    "status_counts",
]
