"""Deadlines per severity, and escalating cases whose deadline has passed.

Business hours are 09:00-17:00 on working days of the bank's calendar, in the bank's
time zone (default Asia/Shanghai, where regulatory days are counted; it has no daylight
saving). An acknowledgement deadline counts business hours from when the case opened:
a case opened at 16:00 with four hours to go is due at 12:00 on the next working day.
Disposition and STR deadlines end at close of business (17:00) on the n-th working day
after the bank day the clock started.

The clock is always the caller's ``now``: nothing here reads the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from types import MappingProxyType
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.actors import SYSTEM_ACTOR
from alerts.audit import case_ref, lock_chain
from alerts.database import CaseRow
from alerts.routing import COMPLIANCE_QUEUE, Route, record_routing, supervisor_route
from core.calendar import WorkingCalendar
from core.detection import Severity

SHANGHAI = ZoneInfo("Asia/Shanghai")
SUPERVISOR_LEVEL = 1
COMPLIANCE_LEVEL = 2
_MANAGER_STAGES = ("new", "acknowledged", "investigating")


@dataclass(frozen=True, slots=True)
class SeverityDeadlines:
    """How long the assignee has for a case of one severity."""

    acknowledge_business_hours: int
    disposition_working_days: int


DEFAULT_DEADLINES: Mapping[Severity, SeverityDeadlines] = MappingProxyType(
    {
        Severity.CRITICAL: SeverityDeadlines(2, 1),
        Severity.HIGH: SeverityDeadlines(4, 3),
        Severity.MEDIUM: SeverityDeadlines(8, 5),
        Severity.LOW: SeverityDeadlines(16, 10),
    }
)


@dataclass(frozen=True)
class DeadlinePolicy:
    """Deadlines per severity, the STR filing deadline and the bank's business hours."""

    by_severity: Mapping[Severity, SeverityDeadlines] = field(
        default_factory=lambda: DEFAULT_DEADLINES
    )
    # PBoC: an STR is filed within five working days of deciding the case is suspicious.
    str_working_days: int = 5
    timezone: tzinfo = SHANGHAI
    opens: time = time(9)
    closes: time = time(17)

    def for_severity(self, severity: Severity) -> SeverityDeadlines:
        """The deadlines of ``severity``."""
        return self.by_severity[severity]


@dataclass(frozen=True, slots=True)
class OverdueEscalation:
    """One case moved because a deadline passed; enough for the caller to notify."""

    case_id: int
    ref: str
    customer_id: str
    severity: Severity
    level: int  # 1: to the manager's supervisor, 2: to compliance
    stage: str  # "acknowledge" or "disposition": the deadline that was missed
    due_at: datetime
    from_assignee_id: str | None
    to_assignee_id: str | None
    queue: str
    reason: str


def add_business_hours(
    start: datetime, hours: float, *, calendar: WorkingCalendar, policy: DeadlinePolicy
) -> datetime:
    """The moment ``hours`` business hours after ``start`` (an aware datetime)."""
    left = timedelta(hours=hours)
    moment = start.astimezone(policy.timezone)
    while True:
        day = moment.date()
        opens = datetime.combine(day, policy.opens, tzinfo=policy.timezone)
        closes = datetime.combine(day, policy.closes, tzinfo=policy.timezone)
        if not calendar.is_working_day(day) or moment >= closes:
            following = calendar.add_working_days(day, 1)
            moment = datetime.combine(following, policy.opens, tzinfo=policy.timezone)
            continue
        moment = max(moment, opens)
        if moment + left <= closes:
            return moment + left
        left -= closes - moment
        moment = closes


def close_of_business_after(
    start: datetime, working_days: int, *, calendar: WorkingCalendar, policy: DeadlinePolicy
) -> datetime:
    """Close of business on the ``working_days``-th working day after ``start``'s bank day."""
    day = calendar.add_working_days(start.astimezone(policy.timezone).date(), working_days)
    return datetime.combine(day, policy.closes, tzinfo=policy.timezone)


def str_due(decided_at: datetime, *, calendar: WorkingCalendar, policy: DeadlinePolicy) -> datetime:
    """When the STR of a case judged suspicious at ``decided_at`` must be filed."""
    return close_of_business_after(
        decided_at, policy.str_working_days, calendar=calendar, policy=policy
    )


def escalate_overdue(
    session: Session, *, now: datetime, calendar: WorkingCalendar, policy: DeadlinePolicy
) -> list[OverdueEscalation]:
    """Move overdue cases up: to the supervisor first, to compliance if overdue again."""
    lock_chain(session)
    cases = session.scalars(
        select(CaseRow)
        .where(
            CaseRow.status.in_(_MANAGER_STAGES),
            CaseRow.assignee_id.is_not(None),
            CaseRow.escalation_level < COMPLIANCE_LEVEL,
        )
        .order_by(CaseRow.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    escalations = []
    for case in cases:
        stage, due_at = _deadline(case, calendar, policy)
        if now <= due_at:
            continue
        escalations.append(_escalate(session, case, stage, due_at, now))
    return escalations


def work_deadline(
    *,
    status: str,
    severity: Severity,
    started: datetime,
    calendar: WorkingCalendar,
    policy: DeadlinePolicy,
) -> tuple[str, datetime]:
    """The stage (acknowledge or disposition) an open case runs against, and when it is due.

    ``started`` is when the case opened, or when an overdue escalation last moved it:
    the new assignee gets a fresh deadline of the same length.
    """
    deadlines = policy.for_severity(severity)
    if status == "new":
        hours = deadlines.acknowledge_business_hours
        return "acknowledge", add_business_hours(started, hours, calendar=calendar, policy=policy)
    days = deadlines.disposition_working_days
    return "disposition", close_of_business_after(started, days, calendar=calendar, policy=policy)


def _deadline(
    case: CaseRow, calendar: WorkingCalendar, policy: DeadlinePolicy
) -> tuple[str, datetime]:
    return work_deadline(
        status=case.status,
        severity=Severity(case.severity),
        started=case.overdue_escalated_at or case.opened_at,
        calendar=calendar,
        policy=policy,
    )


def _escalate(
    session: Session, case: CaseRow, stage: str, due_at: datetime, now: datetime
) -> OverdueEscalation:
    overdue = f"{stage} overdue since {due_at.isoformat()}"
    previous = case.assignee_id
    if case.escalation_level == 0:
        route = supervisor_route(session, manager_id=previous)
    else:
        route = Route(None, COMPLIANCE_QUEUE, False, "still overdue at the supervisor")
    level = SUPERVISOR_LEVEL if route.assignee_id is not None else COMPLIANCE_LEVEL
    destination = "supervisor" if level == SUPERVISOR_LEVEL else "compliance"
    reason = f"{overdue}; escalated to {destination}: {route.reason}"
    route = Route(route.assignee_id, route.queue, route.compliance_copy, reason)
    record_routing(
        session, case, route, kind="overdue", actor=SYSTEM_ACTOR, now=now, escalation_level=level
    )
    case.overdue_escalated_at = now
    return OverdueEscalation(
        case_id=case.id,
        ref=case_ref(case.id),
        customer_id=case.customer_id,
        severity=Severity(case.severity),
        level=level,
        stage=stage,
        due_at=due_at,
        from_assignee_id=previous,
        to_assignee_id=route.assignee_id,
        queue=route.queue,
        reason=reason,
    )


__all__ = [
    "DEFAULT_DEADLINES",
    "SHANGHAI",
    "DeadlinePolicy",
    "OverdueEscalation",
    "SeverityDeadlines",
    "add_business_hours",
    "close_of_business_after",
    "escalate_overdue",
    "str_due",
    "work_deadline",
]
