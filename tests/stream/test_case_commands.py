"""``amlwatch import|managers|audit|db`` against a real case store (SQLite, and PostgreSQL)."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import typer
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from alerts.actors import Actor, Role
from alerts.audit import record_event
from alerts.cases import (
    Disposition,
    acknowledge,
    close_case,
    escalate,
    ingest_detection,
    start_investigation,
)
from alerts.database import (
    AuditEventRow,
    CaseRow,
    CustomerRow,
    ManagerRow,
    alembic_config,
    make_engine,
)
from alerts.deadlines import DeadlinePolicy, escalate_overdue
from core.customer import Customer
from core.manager import Manager
from rules.reference_data import load_calendar
from stream.case_commands import audit_cli, db_cli, import_cli, managers_cli
from stream.simulator import generate_reference, write_customers_csv, write_managers_csv
from tests.alerts.conftest import T0, customer, detection, load_reference, manager

# Fixtures: the case store on SQLite and PostgreSQL, an engine and a session on it.
from tests.alerts.conftest import database_url as database_url
from tests.alerts.conftest import engine as engine
from tests.alerts.conftest import session as session

app = typer.Typer()
app.add_typer(import_cli, name="import")
app.add_typer(managers_cli, name="managers")
app.add_typer(audit_cli, name="audit")
app.add_typer(db_cli, name="db")
runner = CliRunner(env={"COLUMNS": "200"})
CALENDAR = load_calendar()


def amlwatch(url: URL, *arguments: str, data_dir: Path | None = None) -> Result:
    """Run one command on the test's case store."""
    env = {"AMLWATCH_DATA_DIR": str(data_dir)} if data_dir else {}
    url_text = url.render_as_string(hide_password=False)
    return runner.invoke(app, [*arguments, "--database-url", url_text], env=env)


def simulated_reference(
    directory: Path, *, customers: int = 60, managers: int = 6
) -> tuple[Path, Path, list[Customer], list[Manager]]:
    """managers.csv and customers.csv as the simulator writes them."""
    people, staff = generate_reference(
        random.Random(11), customers, managers, as_of=date(2026, 1, 1)
    )
    managers_path, customers_path = directory / "managers.csv", directory / "customers.csv"
    write_managers_csv(managers_path, staff)
    write_customers_csv(customers_path, people)
    return managers_path, customers_path, people, staff


def count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model)) or 0


def confidential(people: list[Customer]) -> list[str]:
    return [c.name for c in people] + [c.id_number for c in people]


def rewrite_rows(path: Path, change: dict[int, dict[str, str]]) -> None:
    """Change cells of data rows (1 = first data row) of a CSV file in place."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
        columns = list(rows[0])
    for index, cells in change.items():
        rows[index - 1].update(cells)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- import


def test_import_good_files_reports_counts(
    database_url: URL, engine: Engine, tmp_path: Path
) -> None:
    managers_path, customers_path, people, staff = simulated_reference(tmp_path)
    result = amlwatch(database_url, "import", "managers", str(managers_path), "--actor", "ops1")
    assert result.exit_code == 0, result.output
    assert f"{len(staff)} inserted, 0 updated, 0 unchanged" in result.stdout
    result = amlwatch(database_url, "import", "customers", str(customers_path), "--actor", "ops1")
    assert result.exit_code == 0, result.output
    assert f"{len(people)} inserted, 0 updated, 0 unchanged" in result.stdout
    assert (count(engine, ManagerRow), count(engine, CustomerRow)) == (len(staff), len(people))
    with engine.connect() as connection:
        events = connection.execute(select(AuditEventRow.actor, AuditEventRow.role)).all()
    assert events == [("ops1", "admin"), ("ops1", "admin")]
    assert not any(secret in result.output for secret in confidential(people))


def test_bad_file_lists_every_error_and_imports_nothing(
    database_url: URL, engine: Engine, tmp_path: Path
) -> None:
    managers_path, customers_path, people, _staff = simulated_reference(tmp_path)
    assert amlwatch(database_url, "import", "managers", str(managers_path)).exit_code == 0
    # Data row n is on file line n + 1 (the header is line 1).
    rewrite_rows(
        customers_path,
        {
            2: {"type": "person"},
            4: {"country": "XX", "opened_on": "2020-13-01"},
            9: {"manager_id": "M9999"},
            20: {"customer_id": people[0].customer_id},
        },
    )
    events_before = count(engine, AuditEventRow)
    result = amlwatch(database_url, "import", "customers", str(customers_path))
    assert result.exit_code == 2, result.output
    problems = [line for line in result.stderr.splitlines() if not line.startswith("error:")]
    assert problems == [
        f"{customers_path}:3: field 'type': must be one of: individual, corporate",
        f"{customers_path}:5: field 'country': is not an ISO 3166-1 alpha-2 code",
        f"{customers_path}:10: field 'manager_id': unknown manager M9999",
        f"{customers_path}:21: field 'customer_id': duplicates line 2",
    ]
    assert "4 problem(s); nothing was imported" in result.stderr
    assert count(engine, CustomerRow) == 0
    assert count(engine, AuditEventRow) == events_before
    assert not any(secret in result.output for secret in confidential(people))


def test_reimport_updates_in_place(database_url: URL, engine: Engine, tmp_path: Path) -> None:
    managers_path, customers_path, people, _staff = simulated_reference(tmp_path)
    assert amlwatch(database_url, "import", "managers", str(managers_path)).exit_code == 0
    assert amlwatch(database_url, "import", "customers", str(customers_path)).exit_code == 0
    first, second = people[0], people[1]
    new_rating = {"low": "high", "medium": "high", "high": "low"}
    rewrite_rows(
        customers_path,
        {
            1: {"risk_rating": new_rating[first.risk_rating.value]},
            2: {"risk_rating": new_rating[second.risk_rating.value]},
        },
    )
    result = amlwatch(database_url, "import", "customers", str(customers_path))
    assert result.exit_code == 0, result.output
    assert f"0 inserted, 2 updated, {len(people) - 2} unchanged" in result.stdout
    assert count(engine, CustomerRow) == len(people)
    with engine.connect() as connection:
        ratings = dict(
            connection.execute(
                select(CustomerRow.customer_id, CustomerRow.risk_rating).where(
                    CustomerRow.customer_id.in_([first.customer_id, second.customer_id])
                )
            ).all()
        )
    assert ratings == {
        first.customer_id: new_rating[first.risk_rating.value],
        second.customer_id: new_rating[second.risk_rating.value],
    }


# --------------------------------------------------------------------------- managers


def test_reassign_moves_customers_and_open_cases(
    database_url: URL, engine: Engine, session: Session, tmp_path: Path
) -> None:
    managers_path, customers_path, people, staff = simulated_reference(tmp_path)
    assert amlwatch(database_url, "import", "managers", str(managers_path)).exit_code == 0
    assert amlwatch(database_url, "import", "customers", str(customers_path)).exit_code == 0
    active = {m.manager_id for m in staff if m.active}
    by_manager: dict[str, list[str]] = {}
    for person in people:
        by_manager.setdefault(person.manager_id, []).append(person.customer_id)
    leaving = max(sorted(active), key=lambda m: len(by_manager.get(m, [])))
    taking_over = next(m for m in sorted(active) if m != leaving)
    theirs = by_manager[leaving]
    assert len(theirs) >= 3
    others = len(by_manager.get(taking_over, []))
    cases = [
        ingest_detection(session, detection(cid, "t1"), now=T0, calendar=CALENDAR).case_id or 0
        for cid in theirs[:3]
    ]
    owner = Actor(leaving, Role.MANAGER)
    acknowledge(session, case_id=cases[2], actor=owner, now=T0 + timedelta(minutes=5))
    start_investigation(session, case_id=cases[2], actor=owner, now=T0 + timedelta(minutes=6))
    close_case(
        session,
        case_id=cases[2],
        actor=owner,
        disposition=Disposition.NOT_SUSPICIOUS,
        reason="salary",
        now=T0 + timedelta(minutes=7),
    )
    session.commit()

    result = amlwatch(database_url, "managers", "reassign", leaving, taking_over, "--actor", "ops1")
    assert result.exit_code == 0, result.output
    assert (
        f"moved {len(theirs)} customers and 2 open cases (C{cases[0]}, C{cases[1]}) "
        f"from {leaving} to {taking_over}"
    ) in result.stdout
    with engine.connect() as connection:
        managers = dict(
            connection.execute(
                select(CustomerRow.manager_id, func.count()).group_by(CustomerRow.manager_id)
            ).all()
        )
        assignees = dict(connection.execute(select(CaseRow.id, CaseRow.assignee_id)).all())
        last = connection.execute(
            select(AuditEventRow.action, AuditEventRow.actor).order_by(AuditEventRow.seq.desc())
        ).first()
    assert leaving not in managers
    assert managers[taking_over] == others + len(theirs)
    assert assignees == {cases[0]: taking_over, cases[1]: taking_over, cases[2]: leaving}
    assert last is not None and tuple(last) == ("manager.reassign", "ops1")


def test_reassign_refuses_an_unknown_manager(database_url: URL, tmp_path: Path) -> None:
    managers_path, _customers, _people, staff = simulated_reference(tmp_path)
    assert amlwatch(database_url, "import", "managers", str(managers_path)).exit_code == 0
    result = amlwatch(database_url, "managers", "reassign", staff[0].manager_id, "M9999")
    assert result.exit_code == 2
    assert "manager M9999 not found" in result.stderr


def test_performance_figures_match_the_case_store(
    database_url: URL, session: Session, tmp_path: Path
) -> None:
    load_reference(
        session,
        tmp_path,
        [manager("S1", grade="senior"), manager("M1", supervisor="S1"), manager("M2")],
        [customer(f"C000{n}", "M1") for n in range(1, 5)],
    )
    cases = [
        ingest_detection(session, detection(f"C000{n}", "t1"), now=T0, calendar=CALENDAR).case_id
        or 0
        for n in range(1, 5)
    ]
    m1 = Actor("M1", Role.MANAGER)
    for case_id, minutes in zip(cases[:3], (10, 30, 50), strict=True):
        acknowledge(session, case_id=case_id, actor=m1, now=T0 + timedelta(minutes=minutes))
        start_investigation(session, case_id=case_id, actor=m1, now=T0 + timedelta(hours=1))
    later = T0 + timedelta(hours=2)
    close_case(
        session,
        case_id=cases[0],
        actor=m1,
        disposition=Disposition.FALSE_POSITIVE,
        reason="payroll",
        now=later,
    )
    escalate(session, case_id=cases[1], actor=m1, assessment="layering", now=later)
    # The fourth case is never acknowledged: four business hours later it goes to S1.
    moved = escalate_overdue(
        session, now=T0 + timedelta(hours=6), calendar=CALENDAR, policy=DeadlinePolicy()
    )
    assert [m.case_id for m in moved] == [cases[3]]
    session.commit()

    result = amlwatch(
        database_url, "managers", "performance", "--from", "2024-03-01", "--to", "2024-03-31",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = {row["manager_id"]: row for row in json.loads(result.stdout)["managers"]}
    assert figures["M1"] == {
        "manager_id": "M1",
        "alerts_received": 4,
        "median_time_to_acknowledge_seconds": 30 * 60.0,
        "overdue": 1,
        "dispositions": {"false_positive": 1, "not_suspicious": 0, "escalated": 1},
    }
    assert figures["M2"]["alerts_received"] == 0
    assert set(figures) == {"M1", "M2", "S1"}

    table = amlwatch(
        database_url, "managers", "performance", "--from", "2024-03-01", "--to", "2024-03-31"
    )
    assert table.exit_code == 0, table.output
    m1_row = next(line.split() for line in table.stdout.splitlines() if " M1 " in line)
    assert m1_row == ["M1", "4", "30m", "00s", "1", "1", "0", "1"]
    # A period before anything happened shows nothing for M1.
    empty = amlwatch(
        database_url, "managers", "performance", "--from", "2024-02-01", "--to", "2024-02-29",
        "--json",
    )  # fmt: skip
    before = {row["manager_id"]: row for row in json.loads(empty.stdout)["managers"]}
    assert before["M1"]["alerts_received"] == 0


def test_performance_refuses_a_reversed_period(database_url: URL) -> None:
    result = amlwatch(
        database_url, "managers", "performance", "--from", "2024-03-02", "--to", "2024-03-01"
    )
    assert result.exit_code == 2
    assert "before --from" in result.stderr
    result = amlwatch(database_url, "managers", "performance", "--from", "march", "--to", "x")
    assert result.exit_code == 2


# --------------------------------------------------------------------------- audit


def test_audit_verify_intact_then_tampered(
    database_url: URL, engine: Engine, tmp_path: Path
) -> None:
    managers_path, customers_path, _people, _staff = simulated_reference(tmp_path)
    assert amlwatch(database_url, "import", "managers", str(managers_path)).exit_code == 0
    assert amlwatch(database_url, "import", "customers", str(customers_path)).exit_code == 0
    rewrite_rows(managers_path, {1: {"branch": "总行"}})
    assert amlwatch(database_url, "import", "managers", str(managers_path)).exit_code == 0

    result = amlwatch(database_url, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "audit chain intact: 3 events"

    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET target = 'other.csv' WHERE seq = 2"))
    result = amlwatch(database_url, "audit", "verify")
    assert result.exit_code == 1
    assert "audit chain BROKEN at event 2: event 2 was altered" in result.stderr
    assert "events 1-1 are intact" in result.stderr


def test_audit_export_writes_the_period_and_is_audited(
    database_url: URL, engine: Engine, session: Session, tmp_path: Path
) -> None:
    # Bank days in Shanghai (UTC+8): 16:30 UTC on 1 March is already 2 March there.
    moments = [
        datetime(2026, 3, 1, 3, 0, tzinfo=UTC),  # 1 March
        datetime(2026, 3, 1, 16, 30, tzinfo=UTC),  # 2 March
        datetime(2026, 3, 2, 9, 0, tzinfo=UTC),  # 2 March
        datetime(2026, 3, 2, 15, 59, tzinfo=UTC),  # 2 March, 23:59
        datetime(2026, 3, 2, 16, 0, tzinfo=UTC),  # 3 March
    ]
    for n, at in enumerate(moments, start=1):
        record_event(
            session,
            actor="ops1",
            role="admin",
            action="test.event",
            target=f"T{n}",
            before=None,
            after={"n": n},
            at=at,
        )
    session.commit()
    out = tmp_path / "exports" / "audit-0302.jsonl"
    out.parent.mkdir()
    result = amlwatch(
        database_url, "audit", "export", "--from", "2026-03-02", "--to", "2026-03-02",
        "--out", str(out), "--actor", "cco1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 audit events from 2026-03-02 to 2026-03-02" in result.stdout
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["target"] for line in lines] == ["T2", "T3", "T4"]
    assert not out.with_name(out.name + ".partial").exists()

    with engine.connect() as connection:
        last = connection.execute(select(AuditEventRow).order_by(AuditEventRow.seq.desc())).first()
    assert last is not None
    assert (last.seq, last.action, last.actor, last.role) == (6, "audit.export", "cco1", "admin")
    assert last.after["events"] == 3
    assert last.after["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (
        amlwatch(database_url, "audit", "verify").stdout.strip() == "audit chain intact: 6 events"
    )

    again = amlwatch(
        database_url, "audit", "export", "--from", "2026-03-01", "--to", "2026-03-03",
        "--out", str(out),
    )  # fmt: skip
    assert again.exit_code == 2
    assert "exists" in again.stderr
    assert count(engine, AuditEventRow) == 6
    again = amlwatch(
        database_url, "audit", "export", "--from", "2026-03-01", "--to", "2026-03-03",
        "--out", str(out), "--overwrite",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    # The first export's own event is dated today, outside March 2026.
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["target"] for line in lines] == ["T1", "T2", "T3", "T4", "T5"]
    assert count(engine, AuditEventRow) == 7


# --------------------------------------------------------------------------- db


def test_db_upgrade_creates_and_migrates_a_new_store(tmp_path: Path) -> None:
    url = make_url(f"sqlite:///{tmp_path / 'new' / 'dir' / 'cases.sqlite3'}")
    result = amlwatch(url, "db", "upgrade")
    assert result.exit_code == 0, result.output
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"schema at revision {head}" in result.stdout
    engine = make_engine(url)
    try:
        assert count(engine, AuditEventRow) == 0
    finally:
        engine.dispose()


def test_default_store_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    env = {"AMLWATCH_DATA_DIR": str(tmp_path / "data"), "AMLWATCH_DATABASE_URL": None}
    result = runner.invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "cases.sqlite3").is_file()


def test_unreachable_database_is_a_clear_error() -> None:
    url = make_url("postgresql+psycopg://nobody:hunter2@127.0.0.1:9/none")
    result = amlwatch(url, "audit", "verify")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database: ")
    assert "hunter2" not in result.output


def test_the_amlwatch_cli_has_the_case_commands() -> None:
    from stream.cli import cli

    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("import", "managers", "audit", "db"):
        assert f" {command} " in result.stdout
