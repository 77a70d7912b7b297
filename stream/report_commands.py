"""``amlwatch report export|mark-submitted|status``: regulatory reports from the case store.

Exit codes as the other case-store commands: 0 done, 1 the database failed, 2 bad input
(kind, dates, format, missing customer identity data, a file failing its checks). On any
failure nothing is marked exported and no file is left behind. Output carries counts,
totals, ids and digests, never customer names or ID numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from alerts.actors import Actor, Role
from alerts.reports import (
    ExportRequest,
    ExportResult,
    export_reports,
    load_report_config,
    mark_submitted,
    record_decided_reports,
    report_backlog,
)
from stream.case_commands import (
    EXIT_BAD_INPUT,
    ActorOption,
    DatabaseUrlOption,
    _actor_name,
    _case_store,
    _fail,
    _failures_reported,
)
from stream.cli_settings import load_settings

report_cli = typer.Typer(
    help="Regulatory reports: large-value and suspicious transaction reports.",
    no_args_is_help=True,
)

DataFileOption = Annotated[Path | None, typer.Option(exists=True, dir_okay=False)]


@report_cli.command("export")
def export(
    kind: Annotated[str, typer.Option(help="large-value or suspicious.")],
    start: Annotated[str, typer.Option("--from", help="First bank-local day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last bank-local day, YYYY-MM-DD.")],
    report_format: Annotated[
        str, typer.Option("--format", help="pboc-xml, goaml-xml, csv or xlsx.")
    ],
    out: Annotated[Path, typer.Option(help="File to write (.zip for several STR messages).")],
    message_type: Annotated[
        str, typer.Option(help="normal, correction or resend (filings only).")
    ] = "normal",
    xsd: Annotated[
        Path | None,
        typer.Option(help="The FIU's goAML XSD to validate against (XSD 1.1).", exists=True),
    ] = None,
    institution: DataFileOption = None,
    pboc_tags: DataFileOption = None,
    goaml_codes: DataFileOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    database_url: DatabaseUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Export the period's reports; filings mark their records exported; audited."""
    settings = load_settings()
    who = Actor(_actor_name(actor), Role.COMPLIANCE)
    console = Console(stderr=True)
    with _failures_reported():
        request = ExportRequest.parse(
            kind=kind,
            first=start,
            last=end,
            format=report_format,
            out=out,
            message_type=message_type,
            xsd=xsd,
        )
        config = load_report_config(
            pboc_tags=pboc_tags, goaml_codes=goaml_codes, institution=institution
        )
    if out.exists() and not overwrite:
        _fail(f"{out} exists; choose another file or pass --overwrite", EXIT_BAD_INPUT)
    written = False
    try:
        with (
            _case_store(database_url, settings) as store,
            _failures_reported(),
            console.status(f"building {request.kind.value} reports") as status,
            store.session_scope() as session,
        ):
            result = export_reports(
                session,
                request,
                actor=who,
                now=datetime.now(UTC),
                calendar=store.calendar,
                tz=ZoneInfo(settings.bank_timezone),
                str_working_days=settings.str_working_days,
                config=config,
            )
            written = True
            status.update("committing")
    except BaseException:
        if written:
            out.unlink(missing_ok=True)  # the export was not recorded: no orphan file
        raise
    _summary(result)


@report_cli.command("mark-submitted")
def submitted(
    export_id: Annotated[int, typer.Argument(help="The export's id (from report export).")],
    receipt: Annotated[str, typer.Option(help="The regulator's receipt reference.")],
    database_url: DatabaseUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Record the regulator's receipt of a filed export; its records become submitted."""
    who = Actor(_actor_name(actor), Role.COMPLIANCE)
    with (
        _case_store(database_url) as store,
        _failures_reported(),
        store.session_scope() as session,
    ):
        done = mark_submitted(
            session, export_id=export_id, actor=who, receipt=receipt, now=datetime.now(UTC)
        )
    typer.echo(f"export {done.export_id}: {done.records} {done.kind.value} records submitted")


@report_cli.command("status")
def status(database_url: DatabaseUrlOption = None) -> None:
    """Report records per kind and status, with how many are overdue."""
    settings = load_settings()
    zone = ZoneInfo(settings.bank_timezone)
    now = datetime.now(UTC)
    with (
        _case_store(database_url, settings) as store,
        _failures_reported(),
        store.session_scope() as session,
    ):
        record_decided_reports(
            session,
            now=now,
            calendar=store.calendar,
            tz=zone,
            working_days=settings.str_working_days,
        )
        backlog = report_backlog(session, today=now.astimezone(zone).date())
    table = Table(title="regulatory report records", box=box.SIMPLE_HEAD)
    for column in ("kind", "status", "records", "overdue"):
        table.add_column(column, justify="right" if column in ("records", "overdue") else "left")
    totals: dict[tuple[str, str], list[int]] = {}
    for item in backlog:
        counts = totals.setdefault((item.kind.value, item.status.value), [0, 0])
        counts[0] += item.count
        counts[1] += item.count if item.overdue else 0
    for (kind, state), (records, overdue) in sorted(totals.items()):
        marker = f"[red]{overdue}[/red]" if overdue else "0"
        table.add_row(kind, state, str(records), marker)
    Console().print(table)
    if not totals:
        typer.echo("no report records yet")


def _summary(result: ExportResult) -> None:
    table = Table(
        title=f"{result.kind.value} reports {result.first} to {result.last}",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("export id", str(result.export_id)),
        ("format", f"{result.format.value} ({result.message_type.value})"),
        ("report entries", str(result.entries)),
        ("records", str(result.records)),
        ("transactions", str(result.transactions)),
        ("total CNY", format(result.total_cny, ",f")),
        ("records marked", str(result.marked)),
        ("sha256", result.sha256),
    ]
    for label, value in rows:
        table.add_row(label, value)
    Console().print(table)
    if result.empty:
        typer.echo(f"{result.path}: empty period, nothing to report (the file says so)")
    else:
        typer.echo(f"{result.path}: {result.entries} {result.kind.value} report entries written")


__all__ = ["report_cli"]
