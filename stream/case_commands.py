"""``amlwatch import|managers|audit|db``: reference data, reassignment, figures, the audit log.

Every command opens the case store named by ``--database-url`` or AMLWATCH_DATABASE_URL
(default: SQLite in the data directory) and migrates it first. Exit codes: 0 done,
1 the audit chain is broken or the database failed, 2 bad input (file, option, state).
Nothing here prints customer names or identity-document numbers: messages carry ids,
lines, fields and counts only.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo

import typer
from alembic.runtime.migration import MigrationContext
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.audit import case_ref, export_audit, lock_chain, record_event, verify_audit_chain
from alerts.cases import Disposition
from alerts.database import make_engine
from alerts.imports import ImportRejected, ImportResult, import_customers, import_managers
from alerts.performance import ESCALATED, ManagerPerformance, manager_performance
from alerts.routing import reassign_manager
from core.errors import AmlwatchError, LocatedInputError
from core.settings import Settings
from stream.case_store import CaseStore, database_url, prepare_database, printable_url
from stream.cli_settings import load_settings

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# The audit log's actor column holds at most this many characters.
MAX_ACTOR_LENGTH = 64
# Disposition kinds shown even when nobody used them, so columns line up between runs.
DISPOSITION_KINDS = (*(kind.value for kind in Disposition), ESCALATED)

import_cli = typer.Typer(
    help="Import reference data (managers, customers) into the case store.", no_args_is_help=True
)
managers_cli = typer.Typer(
    help="Account managers: hand customers over, performance figures.", no_args_is_help=True
)
audit_cli = typer.Typer(
    help="The hash-chained audit log: verify it, export it.", no_args_is_help=True
)
db_cli = typer.Typer(help="The case store database.", no_args_is_help=True)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the case store (default: AMLWATCH_DATABASE_URL or "
        "DATA_DIR/cases.sqlite3).",
        show_default=False,
    ),
]
ActorOption = Annotated[
    str | None,
    typer.Option(help="Who acts, as the audit log records it (default: the OS user)."),
]
FromOption = Annotated[
    str, typer.Option("--from", help="First bank-local day, YYYY-MM-DD (inclusive).")
]
ToOption = Annotated[str, typer.Option("--to", help="Last bank-local day, YYYY-MM-DD (inclusive).")]
CsvArgument = Annotated[
    Path,
    typer.Argument(help="CSV file with the DESIGN.md columns.", exists=True, dir_okay=False),
]


# --------------------------------------------------------------------------- import


@import_cli.command("managers")
def import_managers_command(
    file: CsvArgument, database_url: DatabaseUrlOption = None, actor: ActorOption = None
) -> None:
    """Validate every row of a managers CSV, then insert or update them all (or none)."""
    _import_file("managers", file, database_url, actor)


@import_cli.command("customers")
def import_customers_command(
    file: CsvArgument, database_url: DatabaseUrlOption = None, actor: ActorOption = None
) -> None:
    """Validate every row of a customers CSV, then insert or update them all (or none).

    Every manager_id must be imported already (or in the same file's managers import).
    """
    _import_file("customers", file, database_url, actor)


def _import_file(kind: str, path: Path, url: str | None, actor: str | None) -> None:
    importer = import_managers if kind == "managers" else import_customers
    who = Actor(_actor_name(actor), Role.ADMIN)
    progress = Console(stderr=True)
    rejected: ImportRejected | None = None
    result: ImportResult | None = None
    with (
        _case_store(url) as store,
        _failures_reported(),
        progress.status(f"reading {path.name}") as status,
    ):
        rows = _count_rows(path)
        counted = f"{rows:,} " if rows is not None else ""
        status.update(f"validating and writing {counted}{kind} from {path.name}")
        try:
            with store.session_scope() as session:
                result = importer(session, path, actor=who)
                status.update("committing")
        except ImportRejected as exc:
            rejected = exc
    if rejected is not None:
        for error in rejected.errors:
            typer.echo(_located(str(path), error), err=True)
        typer.echo(
            f"error: {path}: {len(rejected.errors)} problem(s); nothing was imported", err=True
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    assert result is not None
    typer.echo(
        f"{path}: {kind}: {result.inserted} inserted, {result.updated} updated, "
        f"{result.unchanged} unchanged"
    )


def _located(file: str, error: LocatedInputError) -> str:
    """``FILE:LINE: field 'x': problem``, leaving out what the error does not know."""
    where = file if error.line is None else f"{file}:{error.line}"
    field = f" field '{error.field}':" if error.field is not None else ""
    return f"{where}:{field} {error.problem}"


def _count_rows(path: Path) -> int | None:
    """Data rows of a CSV file (for progress only); None when it cannot be read as CSV."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return max(sum(1 for _ in csv.reader(handle)) - 1, 0)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # the import itself reports the problem, located


# --------------------------------------------------------------------------- managers


@managers_cli.command("reassign")
def reassign(
    from_manager: Annotated[str, typer.Argument(metavar="FROM", help="Manager id handing over.")],
    to_manager: Annotated[str, typer.Argument(metavar="TO", help="Active manager id taking over.")],
    database_url: DatabaseUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Move every customer and open case of manager FROM to manager TO; audited."""
    who = Actor(_actor_name(actor), Role.ADMIN)
    with (
        _case_store(database_url) as store,
        _failures_reported(),
        store.session_scope() as session,
    ):
        moved = reassign_manager(
            session,
            from_manager=from_manager,
            to_manager=to_manager,
            actor=who,
            now=datetime.now(UTC),
        )
    cases = ", ".join(case_ref(case_id) for case_id in moved.case_ids)
    typer.echo(
        f"moved {moved.customers_moved} customers and {len(moved.case_ids)} open cases"
        f"{f' ({cases})' if cases else ''} from {moved.from_manager} to {moved.to_manager}"
    )


@managers_cli.command("performance")
def performance(
    start: FromOption,
    end: ToOption,
    database_url: DatabaseUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Per manager: alerts received, median time to acknowledge, overdue, dispositions."""
    settings = load_settings()
    first, last, start_at, end_at = _bank_period(settings, start, end)
    with (
        _case_store(database_url, settings) as store,
        _failures_reported(),
        store.session_scope() as session,
    ):
        figures = manager_performance(session, start=start_at, end=end_at)
    if as_json:
        document = {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "timezone": settings.bank_timezone,
            "managers": [_performance_json(figure) for figure in figures],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    kinds = list(DISPOSITION_KINDS)
    kinds += sorted({kind for f in figures for kind in f.dispositions} - set(kinds))
    table = Table(
        title=f"manager performance {first} to {last} ({settings.bank_timezone})",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("manager", no_wrap=True)
    for column in ("alerts", "median to ack", "overdue", *kinds):
        # Headers may wrap at spaces; figures never do.
        table.add_column(column.replace("_", " "), justify="right")
    for figure in figures:
        table.add_row(
            figure.manager_id,
            str(figure.alerts_received),
            _duration(figure.median_time_to_acknowledge),
            str(figure.overdue),
            *(str(figure.dispositions.get(kind, 0)) for kind in kinds),
        )
    Console().print(table)
    if not figures:
        typer.echo("no managers in the case store; import them with: amlwatch import managers")


def _performance_json(figure: ManagerPerformance) -> dict[str, Any]:
    median = figure.median_time_to_acknowledge
    return {
        "manager_id": figure.manager_id,
        "alerts_received": figure.alerts_received,
        "median_time_to_acknowledge_seconds": median.total_seconds() if median else None,
        "overdue": figure.overdue,
        "dispositions": {
            **{kind: 0 for kind in DISPOSITION_KINDS},
            **dict(figure.dispositions),
        },
    }


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(round(value.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s"


# --------------------------------------------------------------------------- audit


@audit_cli.command("verify")
def verify(database_url: DatabaseUrlOption = None) -> None:
    """Walk the audit chain; exit 1 naming the first edited, missing or reordered event."""
    with (
        _case_store(database_url) as store,
        _failures_reported(),
        store.session_scope() as session,
    ):
        verdict = verify_audit_chain(session)
    if not verdict.ok:
        typer.echo(
            f"audit chain BROKEN at event {verdict.broken_seq}: {verdict.message} "
            f"(events 1-{verdict.count} are intact)",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"audit chain intact: {verdict.count} events")


@audit_cli.command("export")
def export(
    start: FromOption,
    end: ToOption,
    out: Annotated[
        Path, typer.Option(help="JSON Lines file to write.", dir_okay=False, writable=True)
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    database_url: DatabaseUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Write the audit events of a period as JSON Lines; the export is itself audited."""
    settings = load_settings()
    who = Actor(_actor_name(actor), Role.ADMIN)
    first, last, start_at, end_at = _bank_period(settings, start, end)
    if out.exists() and not overwrite:
        _fail(f"{out} exists; choose another file or pass --overwrite", EXIT_BAD_INPUT)
    partial = out.with_name(out.name + ".partial")
    try:
        with (
            _case_store(database_url, settings) as store,
            _failures_reported(),
            store.session_scope() as session,
        ):
            # Lock first: no event can land between the exported ones and our own.
            lock_chain(session)
            with partial.open("w", encoding="utf-8", newline="\n") as handle:
                written = export_audit(session, start=start_at, end=end_at, out=handle)
            _audit_export(session, who, out, first, last, written, _sha256(partial))
        partial.replace(out)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_BAD_INPUT)
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(f"{out}: {written} audit events from {first} to {last} ({settings.bank_timezone})")


def _audit_export(
    session: Session,
    actor: Actor,
    out: Path,
    first: date,
    last: date,
    written: int,
    digest: str,
) -> None:
    record_event(
        session,
        actor=actor.user_id,
        role=actor.role.value,
        action="audit.export",
        target="audit_log",
        before=None,
        after={
            "from": first.isoformat(),
            "to": last.isoformat(),
            "events": written,
            "file": out.name,
            "sha256": digest,
        },
        at=datetime.now(UTC),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- db


@db_cli.command("upgrade")
def upgrade(database_url: DatabaseUrlOption = None) -> None:
    """Apply the case store's migrations (every other command also does this on open)."""
    url = _resolved_url(load_settings(), database_url)
    with _failures_reported():
        prepare_database(url)
        revision = _schema_revision(url)
    typer.echo(f"case store {printable_url(url)}: schema at revision {revision}")


def _schema_revision(url: URL) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision() or "none"
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- shared


@contextmanager
def _case_store(url: str | None, settings: Settings | None = None) -> Iterator[CaseStore]:
    """The opened (and migrated) case store, or a readable error and the right exit code."""
    settings = settings if settings is not None else load_settings()
    resolved = _resolved_url(settings, url)
    with _failures_reported():
        store = CaseStore.open(settings, url=resolved)
    try:
        yield store
    finally:
        store.close()


def _resolved_url(settings: Settings, url: str | None) -> URL:
    try:
        return database_url(settings, url)
    except ArgumentError:
        # The message would echo the URL, password included.
        _fail("--database-url / AMLWATCH_DATABASE_URL is not a SQLAlchemy URL", EXIT_BAD_INPUT)


@contextmanager
def _failures_reported() -> Iterator[None]:
    """Our errors exit 2 (bad input or state); database failures exit 1; both one line."""
    try:
        yield
    except AmlwatchError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except SQLAlchemyError as exc:
        # The driver's message, first line only: SQLAlchemy appends statement parameters.
        original = getattr(exc, "orig", None)
        lines = str(original if original is not None else exc).strip().splitlines()
        _fail(f"database: {lines[0] if lines else type(exc).__name__}", EXIT_FAILED)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _actor_name(actor: str | None) -> str:
    if actor is None:
        try:
            actor = getpass.getuser()
        except (OSError, KeyError):
            _fail("cannot tell who you are; pass --actor", EXIT_BAD_INPUT)
    actor = actor.strip()
    if not actor or len(actor) > MAX_ACTOR_LENGTH:
        _fail(f"--actor must be 1-{MAX_ACTOR_LENGTH} characters", EXIT_BAD_INPUT)
    return actor


def _bank_period(settings: Settings, start: str, end: str) -> tuple[date, date, datetime, datetime]:
    """First and last bank-local day, and the half-open moment range they cover."""
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        _fail("--from and --to must be dates such as 2026-03-31", EXIT_BAD_INPUT)
    if last < first:
        _fail(f"--to {last} is before --from {first}", EXIT_BAD_INPUT)
    zone = ZoneInfo(settings.bank_timezone)
    start_at = datetime.combine(first, time(), tzinfo=zone)
    end_at = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone)
    return first, last, start_at, end_at


__all__ = ["audit_cli", "db_cli", "import_cli", "managers_cli"]
