"""Report backlog gauges, shared by the worker's /metrics and the web app's.

Labels are the report kind only (``large_value``, ``suspicious``): low-cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.orm import Session

from alerts.reports.records import ReportKind, ReportStatus, report_backlog

OVERDUE_METRIC = "amlwatch_reports_overdue"
PENDING_METRIC = "amlwatch_reports_pending"


@dataclass(frozen=True)
class ReportGauges:
    overdue: Gauge
    pending: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ReportGauges:
        """Register the gauges in ``registry``, every kind at 0 until the first refresh."""
        gauges = cls(
            overdue=Gauge(
                OVERDUE_METRIC,
                "Report records past their deadline and not yet submitted, by kind.",
                ["kind"],
                registry=registry,
            ),
            pending=Gauge(
                PENDING_METRIC,
                "Report records not yet exported (status pending), by kind.",
                ["kind"],
                registry=registry,
            ),
        )
        for kind in ReportKind:
            gauges.overdue.labels(kind=kind.value).set(0)
            gauges.pending.labels(kind=kind.value).set(0)
        return gauges

    def refresh(self, session: Session, *, today: date) -> dict[str, int]:
        """Set both gauges from the case store; the overdue counts per kind."""
        overdue = {kind.value: 0 for kind in ReportKind}
        pending = {kind.value: 0 for kind in ReportKind}
        for item in report_backlog(session, today=today):
            if item.overdue:
                overdue[item.kind.value] += item.count
            if item.status is ReportStatus.PENDING:
                pending[item.kind.value] += item.count
        for kind, count in overdue.items():
            self.overdue.labels(kind=kind).set(count)
        for kind, count in pending.items():
            self.pending.labels(kind=kind).set(count)
        return overdue


__all__ = ["OVERDUE_METRIC", "PENDING_METRIC", "ReportGauges"]
