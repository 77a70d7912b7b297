"""Regulatory report routes: export (the file comes back in the response), receipt, backlog.

An export goes through ``alerts.reports.export_reports`` exactly as ``amlwatch report
export`` does: same checks, same export record and audit event. The file is written in
a private temporary directory, read back once the transaction has committed and
returned; if anything fails the transaction rolls back and nothing is marked exported.
The console's export form calls :func:`export_file` too.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from alerts.actors import Actor
from alerts.reports import (
    ExportRequest,
    ExportResult,
    MessageType,
    ReportFormat,
    ReportKind,
    ReportStatus,
    export_reports,
    mark_submitted,
    record_decided_reports,
    report_backlog,
)
from alerts.web.access import Permission
from alerts.web.app import Context, WebContext, require_api
from core.errors import InvalidInput

router = APIRouter(prefix="/api/reports", tags=["reports"])

FILINGS = (ReportFormat.PBOC_XML, ReportFormat.GOAML_XML)
MEDIA_TYPES = {
    "xml": "application/xml",
    "zip": "application/zip",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
ExportId = Annotated[
    int, PathParam(ge=1, le=2_147_483_647, description="The export's id (X-Export-Id).")
]
Receipt = Annotated[
    str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00]*\S[^\x00]*$")
]


class ExportKind(StrEnum):
    LARGE_VALUE = "large-value"
    SUSPICIOUS = "suspicious"


KINDS = {
    ExportKind.LARGE_VALUE: ReportKind.LARGE_VALUE,
    ExportKind.SUSPICIOUS: ReportKind.SUSPICIOUS,
}


class ExportIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    kind: ExportKind
    first: date = Field(alias="from", description="First bank-local day, inclusive.")
    last: date = Field(alias="to", description="Last bank-local day, inclusive.")
    format: ReportFormat
    message_type: MessageType = Field(
        MessageType.NORMAL,
        description="normal takes pending records, resend exported ones, correction "
        "submitted ones; review files (csv, xlsx) take normal only and mark nothing.",
    )


class ReceiptIn(BaseModel):
    receipt: Receipt = Field(description="The regulator's receipt reference.")


class SubmissionOut(BaseModel):
    export_id: int
    kind: ReportKind
    records: int


class BacklogItem(BaseModel):
    kind: ReportKind
    status: ReportStatus
    overdue: bool
    count: int


class BacklogOut(BaseModel):
    today: date = Field(description="The bank-local day overdue is judged against.")
    items: list[BacklogItem]
    overdue: dict[str, int] = Field(description="Overdue records per kind, zeros included.")


@dataclass(frozen=True, slots=True)
class ExportedFile:
    """An export's file and what ``export_reports`` recorded about it."""

    name: str
    media_type: str
    content: bytes
    result: ExportResult

    def response(self) -> Response:
        """The file as a download, with the export's id, digest and counts in headers."""
        return Response(
            self.content,
            media_type=self.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{self.name}"',
                "X-Export-Id": str(self.result.export_id),
                "X-Export-Sha256": self.result.sha256,
                "X-Export-Entries": str(self.result.entries),
                "X-Export-Marked": str(self.result.marked),
            },
        )


def export_file(web: WebContext, actor: Actor, wanted: ExportIn) -> ExportedFile:
    """Run the export in one transaction and return its file (nothing kept on disk)."""
    if wanted.last < wanted.first:
        raise InvalidInput(f"'to' {wanted.last} is before 'from' {wanted.first}")
    if wanted.format not in FILINGS and wanted.message_type is not MessageType.NORMAL:
        raise InvalidInput(
            f"message type {wanted.message_type.value} applies to filings "
            f"(pboc-xml, goaml-xml) only; {wanted.format.value} review files take normal"
        )
    name = export_file_name(wanted)
    with tempfile.TemporaryDirectory(prefix="amlwatch-export-") as directory:
        request = ExportRequest(
            kind=KINDS[wanted.kind],
            first=wanted.first,
            last=wanted.last,
            format=wanted.format,
            out=Path(directory) / name,
            message_type=wanted.message_type,
        )
        policy = web.config.policy
        with web.transaction() as session:
            result = export_reports(
                session,
                request,
                actor=actor,
                now=web.now(),
                calendar=web.config.calendar,
                tz=policy.timezone,
                str_working_days=policy.str_working_days,
                config=web.config.reports,
            )
        content = request.out.read_bytes()
    return ExportedFile(name, MEDIA_TYPES[name.rpartition(".")[2]], content, result)


def export_file_name(wanted: ExportIn) -> str:
    """``large-value-2024-03-01-2024-03-31.xml``; suspicious filings are a zip (one
    message per STR); a resend or correction says so in the name."""
    if wanted.format in FILINGS:
        suffix = "zip" if wanted.kind is ExportKind.SUSPICIOUS else "xml"
    else:
        suffix = wanted.format.value
    parts = [wanted.kind.value, wanted.format.value.removesuffix("-xml")]
    parts += [wanted.first.isoformat(), wanted.last.isoformat()]
    if wanted.message_type is not MessageType.NORMAL:
        parts.append(wanted.message_type.value)
    return "-".join(parts) + "." + suffix


def backlog(web: WebContext) -> BacklogOut:
    """Counts per kind, status and overdue, after recording newly decided STRs."""
    now: datetime = web.now()
    policy = web.config.policy
    today = now.astimezone(policy.timezone).date()
    with web.transaction() as session:
        # As `amlwatch report status` does: a case approved for filing is an STR record
        # from then on, so it counts (and can be overdue) before anyone exports it.
        record_decided_reports(
            session,
            now=now,
            calendar=web.config.calendar,
            tz=policy.timezone,
            working_days=policy.str_working_days,
        )
        counts = report_backlog(session, today=today)
    overdue = {kind.value: 0 for kind in ReportKind}
    for item in counts:
        if item.overdue:
            overdue[item.kind.value] += item.count
    items = [
        BacklogItem(kind=i.kind, status=i.status, overdue=i.overdue, count=i.count) for i in counts
    ]
    return BacklogOut(today=today, items=items, overdue=overdue)


Exporter = Annotated[Actor, Depends(require_api(Permission.EXPORT_REPORTS))]


@router.post(
    "/exports",
    response_class=Response,
    responses={
        200: {
            "description": "The file (XML, a zip of STR messages, CSV or XLSX); headers "
            "X-Export-Id, X-Export-Sha256, X-Export-Entries, X-Export-Marked.",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        }
    },
)
def reports_export(body: ExportIn, web: Context, actor: Exporter) -> Response:
    """Export a period's reports (compliance; audited as the CLI's export)."""
    return export_file(web, actor, body).response()


@router.post("/{export_id}/submitted", response_model=SubmissionOut)
def reports_submitted(
    export_id: ExportId, body: ReceiptIn, web: Context, actor: Exporter
) -> SubmissionOut:
    """Record the regulator's receipt of a filed export: its records become submitted."""
    with web.transaction() as session:
        done = mark_submitted(
            session, export_id=export_id, actor=actor, receipt=body.receipt, now=web.now()
        )
    return SubmissionOut(export_id=done.export_id, kind=done.kind, records=done.records)


@router.get("/backlog", response_model=BacklogOut)
def reports_backlog(
    web: Context,
    actor: Annotated[Actor, Depends(require_api(Permission.READ_REPORT_BACKLOG))],
) -> BacklogOut:
    """Report records per kind and status, and how many are overdue."""
    return backlog(web)


__all__ = ["BacklogOut", "ExportIn", "ExportKind", "backlog", "export_file", "router"]
