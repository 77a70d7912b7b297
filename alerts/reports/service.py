"""Exporting regulatory reports: build, check, write, record (the library entry point).

:func:`export_reports` is what the CLI and the compliance console call. It works in the
caller's transaction: it builds the entries, renders and checks the file, records the
export (its SHA-256, counts and exact CNY total) and its audit event, marks the records,
and only then writes the file (atomically). Any problem raises before a record is
touched; the caller commits, or rolls back and removes the file.

Filings (``pboc-xml``, ``goaml-xml``) move records: ``normal`` takes pending records and
marks them exported, ``resend`` takes exported ones again, ``correction`` takes submitted
ones and marks them corrected. Review files (``csv``, ``xlsx``) list every record of the
period whatever its status and mark nothing: reviewing is not filing.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role, require_role
from alerts.audit import lock_chain, record_event
from alerts.database import LargeValueReportRow, ReportExportRow, SuspiciousReportRow
from alerts.reports import goaml, pboc, tables
from alerts.reports.config import ReportConfig
from alerts.reports.entries import (
    Entry,
    LargeValueEntry,
    SuspiciousEntry,
    large_value_entries,
    suspicious_entries,
)
from alerts.reports.records import ReportKind, ReportStatus, record_decided_reports
from core.calendar import WorkingCalendar
from core.errors import InvalidInput

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class ReportFormat(StrEnum):
    PBOC_XML = "pboc-xml"
    GOAML_XML = "goaml-xml"
    CSV = "csv"
    XLSX = "xlsx"


class MessageType(StrEnum):
    NORMAL = "normal"
    CORRECTION = "correction"
    RESEND = "resend"


FILINGS = (ReportFormat.PBOC_XML, ReportFormat.GOAML_XML)
_SELECTED = {
    MessageType.NORMAL: (ReportStatus.PENDING,),
    MessageType.RESEND: (ReportStatus.EXPORTED,),
    MessageType.CORRECTION: (ReportStatus.SUBMITTED, ReportStatus.CORRECTED),
}
_MARKED = {
    MessageType.NORMAL: ReportStatus.EXPORTED,
    MessageType.RESEND: ReportStatus.EXPORTED,
    MessageType.CORRECTION: ReportStatus.CORRECTED,
}


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export: kind, period of bank-local days, format, message type, where."""

    kind: ReportKind
    first: date
    last: date
    format: ReportFormat
    out: Path
    message_type: MessageType = MessageType.NORMAL
    xsd: Path | None = None

    @classmethod
    def parse(
        cls,
        *,
        kind: str,
        first: str,
        last: str,
        format: str,
        out: Path,
        message_type: str = "normal",
        xsd: Path | None = None,
    ) -> ExportRequest:
        """Validate text input (CLI, console); InvalidInput names what is wrong."""
        kinds = {"large-value": ReportKind.LARGE_VALUE, "suspicious": ReportKind.SUSPICIOUS}
        kinds |= {k.value: k for k in ReportKind}
        if kind not in kinds:
            raise InvalidInput(f"unknown report kind {kind!r}: use large-value or suspicious")
        try:
            start, end = date.fromisoformat(first), date.fromisoformat(last)
        except ValueError:
            raise InvalidInput(
                f"bad dates {first!r} / {last!r}: --from and --to are YYYY-MM-DD"
            ) from None
        if end < start:
            raise InvalidInput(f"--to {end} is before --from {start}")
        try:
            chosen_format = ReportFormat(format)
        except ValueError:
            names = ", ".join(f.value for f in ReportFormat)
            raise InvalidInput(f"unknown format {format!r}: use one of {names}") from None
        try:
            chosen_type = MessageType(message_type)
        except ValueError:
            names = ", ".join(m.value for m in MessageType)
            raise InvalidInput(f"unknown message type {message_type!r}: use {names}") from None
        if xsd is not None and chosen_format is not ReportFormat.GOAML_XML:
            raise InvalidInput("--xsd applies to goaml-xml exports only")
        return cls(kinds[kind], start, end, chosen_format, out, chosen_type, xsd)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote and recorded (counts and totals, no customer data)."""

    export_id: int
    kind: ReportKind
    format: ReportFormat
    message_type: MessageType
    first: date
    last: date
    path: Path
    sha256: str
    entries: int
    records: int
    transactions: int
    total_cny: Decimal
    files: int
    marked: int

    @property
    def empty(self) -> bool:
        """Nothing to report in the period (the file is still valid and says so)."""
        return self.entries == 0


def export_reports(
    session: Session,
    request: ExportRequest,
    *,
    actor: Actor,
    now: datetime,
    calendar: WorkingCalendar,
    tz: tzinfo,
    str_working_days: int,
    config: ReportConfig,
) -> ExportResult:
    """Build, check and write the reports of ``request``; record and audit the export."""
    require_role(actor, (Role.COMPLIANCE,), "export regulatory reports")
    lock_chain(session)
    if request.kind is ReportKind.SUSPICIOUS:
        record_decided_reports(
            session, now=now, calendar=calendar, tz=tz, working_days=str_working_days
        )
    filing = request.format in FILINGS
    statuses = [s.value for s in (_SELECTED[request.message_type] if filing else ReportStatus)]
    entries: Sequence[Entry]
    record_ids: list[int]
    if request.kind is ReportKind.LARGE_VALUE:
        entries = large_value_entries(
            session, first=request.first, last=request.last, statuses=statuses, pboc=config.pboc
        )
        record_ids = sorted(
            {i for e in entries if isinstance(e, LargeValueEntry) for i in e.record_ids}
        )
    else:
        entries = suspicious_entries(
            session, first=request.first, last=request.last, statuses=statuses
        )
        record_ids = sorted(e.record_id for e in entries if isinstance(e, SuspiciousEntry))
    files = _render(request, entries, config=config, now=now, tz=tz)
    content = _single_or_zip(request, files)
    digest = hashlib.sha256(content).hexdigest()
    transactions = sum(len(entry.transactions) for entry in entries)
    total = sum((entry.total_cny for entry in entries), Decimal(0))
    marked_status = _MARKED[request.message_type] if filing else None
    export = ReportExportRow(
        kind=request.kind.value,
        format=request.format.value,
        message_type=request.message_type.value,
        period_from=request.first,
        period_to=request.last,
        file_name=request.out.name,
        sha256=digest,
        entries=len(entries),
        transactions=transactions,
        total_cny=total,
        record_ids=record_ids,
        status=ReportStatus.EXPORTED.value,
        exported_at=now,
        exported_by=actor.user_id,
    )
    session.add(export)
    session.flush()
    marked = _mark(session, request.kind, record_ids, marked_status, export.id, now)
    record_event(
        session,
        actor=actor.user_id,
        role=actor.role.value,
        action="report.export",
        target=f"report export {export.id}",
        before=None,
        after={
            "kind": request.kind.value,
            "format": request.format.value,
            "message_type": request.message_type.value,
            "from": request.first,
            "to": request.last,
            "file": request.out.name,
            "sha256": digest,
            "entries": len(entries),
            "records": len(record_ids),
            "transactions": transactions,
            "total_cny": total,
            "marked": marked,
        },
        at=now,
    )
    _write_atomically(request.out, content)
    return ExportResult(
        export_id=export.id,
        kind=request.kind,
        format=request.format,
        message_type=request.message_type,
        first=request.first,
        last=request.last,
        path=request.out,
        sha256=digest,
        entries=len(entries),
        records=len(record_ids),
        transactions=transactions,
        total_cny=total,
        files=len(files),
        marked=marked,
    )


def render_reports(
    request: ExportRequest,
    entries: Sequence[Entry],
    *,
    config: ReportConfig,
    now: datetime,
    tz: tzinfo,
) -> bytes:
    """The file's bytes for ``entries`` (checked), without touching the case store."""
    return _single_or_zip(request, _render(request, entries, config=config, now=now, tz=tz))


def _render(
    request: ExportRequest,
    entries: Sequence[Entry],
    *,
    config: ReportConfig,
    now: datetime,
    tz: tzinfo,
) -> dict[str, bytes]:
    kind, fmt = request.kind, request.format
    if fmt is ReportFormat.CSV:
        return {request.out.name: tables.render_csv(tables.review_frame(kind.value, entries, tz))}
    if fmt is ReportFormat.XLSX:
        frames = {tables.SHEET_NAMES[kind.value]: tables.review_frame(kind.value, entries, tz)}
        return {request.out.name: tables.render_xlsx(frames, now=now)}
    message = config.pboc.message_types[kind.value][request.message_type.value]
    files: dict[str, bytes] = {}
    if fmt is ReportFormat.PBOC_XML:
        if kind is ReportKind.LARGE_VALUE:
            files[request.out.name] = pboc.render_large_value(
                [e for e in entries if isinstance(e, LargeValueEntry)],
                tags=config.pboc,
                institution=config.institution,
                tz=tz,
            )
        else:
            for entry in entries:
                assert isinstance(entry, SuspiciousEntry)
                files[f"{message}-{entry.case_ref}.xml"] = pboc.render_suspicious(
                    entry, tags=config.pboc, institution=config.institution, tz=tz
                )
            if not files:
                files[_message_name(request)] = pboc.render_no_suspicious(
                    tags=config.pboc,
                    institution=config.institution,
                    period=f"{request.first.isoformat()}..{request.last.isoformat()}",
                )
        for name, document in files.items():
            _refuse(name, pboc.check_pboc(document, tags=config.pboc, kind=kind.value))
        return files
    files = _goaml_files(request, entries, config=config, now=now, tz=tz, message=message)
    for name, document in files.items():
        problems = (
            goaml.validate_goaml(document, request.xsd)
            if request.xsd is not None
            else goaml.check_goaml(document)
        )
        _refuse(name, problems)
    return files


def _goaml_files(
    request: ExportRequest,
    entries: Sequence[Entry],
    *,
    config: ReportConfig,
    now: datetime,
    tz: tzinfo,
    message: str,
) -> dict[str, bytes]:
    codes, institution = config.goaml, config.institution
    period = f"{request.first.isoformat()}..{request.last.isoformat()}"
    if request.kind is ReportKind.LARGE_VALUE:
        pairs = [(e.customer, tx) for e in entries for tx in e.transactions]
        detectors = {d for e in entries for d in e.detectors}
        reason = (
            f"Large-value transactions of {period}: {len(entries)} customer-day criteria"
            if entries
            else f"No large-value transactions to report for {period} (empty period)."
        )
        document = goaml.render_report(
            report_code=codes.code("report_code", "large_value"),
            reference=f"{message}-{period}",
            transactions=pairs,
            indicators=[codes.code("indicators", d) for d in sorted(detectors)],
            reason=reason,
            action="Large-value transaction report (PBoC Order No. 3 Art. 5).",
            codes=codes,
            institution=institution,
            now=now,
            tz=tz,
        )
        return {request.out.name: document}
    files = {}
    for entry in entries:
        assert isinstance(entry, SuspiciousEntry)
        files[f"{message}-{entry.case_ref}.xml"] = goaml.render_report(
            report_code=codes.code("report_code", "suspicious"),
            reference=entry.case_ref,
            transactions=[(entry.customer, tx) for tx in entry.transactions],
            indicators=[codes.code("indicators", d) for d in entry.detectors],
            reason=entry.analysis,
            action=entry.fund_flows,
            codes=codes,
            institution=institution,
            now=now,
            tz=tz,
        )
    if not files:
        files[_message_name(request)] = goaml.render_report(
            report_code=codes.code("report_code", "suspicious"),
            reference=f"{message}-{period}",
            transactions=[],
            indicators=[],
            reason=f"No suspicious transaction reports for {period} (empty period).",
            action="None.",
            codes=codes,
            institution=institution,
            now=now,
            tz=tz,
        )
    return files


def _message_name(request: ExportRequest) -> str:
    """The name of a lone message: inside a requested .zip it is an .xml file, not a .zip."""
    out = request.out
    return out.with_suffix(".xml").name if out.suffix.lower() == ".zip" else out.name


def _single_or_zip(request: ExportRequest, files: dict[str, bytes]) -> bytes:
    """One file as is; several (one STR per message) as a zip with fixed entry times."""
    if len(files) == 1 and not request.out.name.lower().endswith(".zip"):
        return next(iter(files.values()))
    if not request.out.name.lower().endswith(".zip"):
        raise InvalidInput(
            f"the period holds {len(files)} suspicious reports and each is its own message: "
            "give an --out path ending in .zip"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


def _refuse(name: str, problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:10])
        raise InvalidInput(f"{name} failed its checks, nothing was exported: {shown}")


def _mark(
    session: Session,
    kind: ReportKind,
    record_ids: list[int],
    status: ReportStatus | None,
    export_id: int,
    now: datetime,
) -> int:
    if status is None or not record_ids:
        return 0
    rows: Sequence[LargeValueReportRow | SuspiciousReportRow]
    if kind is ReportKind.LARGE_VALUE:
        rows = session.scalars(
            select(LargeValueReportRow).where(LargeValueReportRow.id.in_(record_ids))
        ).all()
    else:
        rows = session.scalars(
            select(SuspiciousReportRow).where(SuspiciousReportRow.id.in_(record_ids))
        ).all()
    for row in rows:
        row.status = status.value
        row.last_export_id = export_id
        if status is ReportStatus.CORRECTED:
            row.corrected_at = now
        else:
            row.exported_at = now
    session.flush()
    return len(rows)


def _write_atomically(out: Path, content: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(out)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)


__all__ = [
    "ExportRequest",
    "ExportResult",
    "MessageType",
    "ReportFormat",
    "export_reports",
    "render_reports",
]
