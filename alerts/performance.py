"""Manager performance (考核) over a period: load, responsiveness, deadlines, outcomes."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.database import AlertRow, CaseRow, ManagerRow, RoutingDecisionRow

ESCALATED = "escalated"  # a disposition kind beside the closing dispositions


@dataclass(frozen=True, slots=True)
class ManagerPerformance:
    """One manager's figures for ``start <= t < end``."""

    manager_id: str
    alerts_received: int
    median_time_to_acknowledge: timedelta | None  # None when nothing was acknowledged
    overdue: int  # cases taken away because a deadline passed
    dispositions: Mapping[str, int]  # false_positive / not_suspicious / escalated -> count


def manager_performance(
    session: Session, *, start: datetime, end: datetime
) -> list[ManagerPerformance]:
    """Figures for every manager in the reference data, by manager id."""
    managers = list(session.scalars(select(ManagerRow.manager_id).order_by(ManagerRow.manager_id)))
    received = dict(
        session.execute(
            select(AlertRow.assignee_id, func.count())
            .where(AlertRow.received_at >= start, AlertRow.received_at < end)
            .group_by(AlertRow.assignee_id)
        ).all()
    )
    overdue = dict(
        session.execute(
            select(RoutingDecisionRow.from_assignee_id, func.count())
            .where(
                RoutingDecisionRow.kind == "overdue",
                RoutingDecisionRow.decided_at >= start,
                RoutingDecisionRow.decided_at < end,
            )
            .group_by(RoutingDecisionRow.from_assignee_id)
        ).all()
    )
    waits: dict[str, list[timedelta]] = defaultdict(list)
    for who, opened, acknowledged in session.execute(
        select(CaseRow.acknowledged_by, CaseRow.opened_at, CaseRow.acknowledged_at).where(
            CaseRow.acknowledged_at >= start, CaseRow.acknowledged_at < end
        )
    ):
        if who is not None and acknowledged is not None:
            waits[who].append(acknowledged - opened)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for who, disposition in session.execute(
        select(CaseRow.closed_by, CaseRow.disposition).where(
            CaseRow.closed_at >= start, CaseRow.closed_at < end
        )
    ):
        if who is not None and disposition is not None:
            outcomes[who][disposition] += 1
    for who in session.scalars(
        select(CaseRow.escalated_by).where(
            CaseRow.escalated_at >= start, CaseRow.escalated_at < end
        )
    ):
        if who is not None:
            outcomes[who][ESCALATED] += 1
    return [
        ManagerPerformance(
            manager_id=manager_id,
            alerts_received=received.get(manager_id, 0),
            median_time_to_acknowledge=_median(waits.get(manager_id, [])),
            overdue=overdue.get(manager_id, 0),
            dispositions=dict(outcomes.get(manager_id, Counter())),
        )
        for manager_id in managers
    ]


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


__all__ = ["ESCALATED", "ManagerPerformance", "manager_performance"]
