"""Regulatory reports: large-value (大额交易报告) and suspicious (可疑交易报告) transaction reports.

Built from the case store (large-value report records, cases approved for filing,
transactions, customers) into PBoC XML (HVTR/BSTR), goAML XML, or CSV/XLSX for review.
Amounts are exact decimals throughout; XML is UTF-8 and deterministic.

- ``export_reports(session, request, *, actor, now, calendar, tz, str_working_days,
  config) -> ExportResult`` (``ExportRequest.parse`` validates text input)
- ``mark_submitted(session, *, export_id, actor, receipt, now) -> Submission``
- ``record_decided_reports(session, *, now, calendar, tz, working_days)``
- ``report_backlog(session, *, today)`` and ``overdue_report_counts(session, *, today)``
  for metrics and the console; ``ReportGauges`` sets the Prometheus gauges from them
- ``load_report_config(pboc_tags=, goaml_codes=, institution=)``: the data files
  (``pboc_tags.toml``, ``goaml_codes.toml``, ``institution.toml``)
"""

from alerts.reports.config import ReportConfig, load_report_config
from alerts.reports.entries import IncompleteReport, large_value_entries, suspicious_entries
from alerts.reports.metrics import ReportGauges
from alerts.reports.records import (
    BacklogCount,
    ReportKind,
    ReportStatus,
    Submission,
    mark_submitted,
    overdue_report_counts,
    record_decided_reports,
    report_backlog,
)
from alerts.reports.service import (
    ExportRequest,
    ExportResult,
    MessageType,
    ReportFormat,
    export_reports,
    render_reports,
)

__all__ = [
    "BacklogCount",
    "ExportRequest",
    "ExportResult",
    "IncompleteReport",
    "MessageType",
    "ReportConfig",
    "ReportFormat",
    "ReportGauges",
    "ReportKind",
    "ReportStatus",
    "Submission",
    "export_reports",
    "large_value_entries",
    "load_report_config",
    "mark_submitted",
    "overdue_report_counts",
    "record_decided_reports",
    "render_reports",
    "report_backlog",
    "suspicious_entries",
]
