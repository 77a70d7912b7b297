"""Report backlog gauges (worker and web /metrics) and lone messages inside a zip."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from alerts.reports import ReportGauges, record_decided_reports
from core.calendar import WorkingCalendar
from tests.alerts.test_reports import NOW, TZ, _export, _populate


def _value(registry: CollectorRegistry, name: str, kind: str) -> float | None:
    return registry.get_sample_value(name, {"kind": kind})


def test_gauges_count_pending_and_overdue_records_per_kind(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    registry = CollectorRegistry()
    gauges = ReportGauges.create(registry)
    assert _value(registry, "amlwatch_reports_overdue", "large_value") == 0  # before any refresh
    _populate(session, tmp_path, calendar)
    assert gauges.refresh(session, today=date(2024, 3, 4)) == {"large_value": 0, "suspicious": 0}
    assert _value(registry, "amlwatch_reports_pending", "large_value") == 2
    assert _value(registry, "amlwatch_reports_pending", "suspicious") == 0
    record_decided_reports(session, now=NOW, calendar=calendar, tz=TZ, working_days=5)
    later = gauges.refresh(session, today=date(2024, 12, 2))
    assert later == {"large_value": 2, "suspicious": 1}
    assert _value(registry, "amlwatch_reports_overdue", "large_value") == 2
    assert _value(registry, "amlwatch_reports_overdue", "suspicious") == 1
    assert _value(registry, "amlwatch_reports_pending", "suspicious") == 1


def test_an_empty_filing_asked_for_as_a_zip_holds_an_xml_message(
    session: Session, tmp_path: Path, calendar: WorkingCalendar
) -> None:
    _populate(session, tmp_path, calendar)
    out = tmp_path / "str-empty.zip"
    for fmt in ("pboc-xml", "goaml-xml"):
        _export(
            session,
            calendar,
            out,
            kind="suspicious",
            fmt=fmt,
            first="2024-02-01",
            last="2024-02-02",
        )
        names = zipfile.ZipFile(io.BytesIO(out.read_bytes())).namelist()
        assert names == ["str-empty.xml"], fmt
