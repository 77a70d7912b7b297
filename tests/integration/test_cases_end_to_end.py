"""Transactions in, cases out: the real worker routes every expected alert to its manager."""

from __future__ import annotations

import dataclasses
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from alerts.actors import Actor, Role
from alerts.audit import verify_audit_chain
from alerts.cases import acknowledge, approve_report, escalate, propose_report
from alerts.database import make_engine, migrate, session_factory
from alerts.imports import import_customers, import_managers
from alerts.reports import load_report_config
from alerts.reports.pboc import check_pboc
from core.customer import Customer, read_customers_csv
from core.detection import Outcome
from core.manager import Manager
from core.settings import Settings
from core.transaction import transaction_from_mapping
from rules.backtest import in_event_order, run_backtest
from stream.cli import cli
from stream.detection_engine import build_rule_engine
from stream.simulator import (
    derive_rng,
    generate_history,
    generate_reference,
    transaction_json_bytes,
    write_customers_csv,
    write_managers_csv,
)
from tests.conftest import StreamNames, produce

pytestmark = pytest.mark.integration

ADMIN = Actor("test-admin", Role.ADMIN)


def expected_assignee(manager_id: str, managers: dict[str, Manager]) -> str | None:
    """The first active manager up the chain from the customer's manager (None: compliance)."""
    seen: set[str] = set()
    current: str | None = manager_id
    while current is not None and current not in seen:
        seen.add(current)
        manager = managers.get(current)
        if manager is None:
            return None
        if manager.active:
            return current
        current = manager.supervisor_id
    return None


def case_store_with_book(
    tmp_path: Path, customers: Sequence[Customer], managers: Sequence[Manager]
) -> tuple[str, Path]:
    """A migrated SQLite case store holding ``managers`` and ``customers``, imported from
    CSV files as an administrator imports them: its URL and the customers file."""
    customers_csv, managers_csv = tmp_path / "customers.csv", tmp_path / "managers.csv"
    write_customers_csv(customers_csv, customers)
    write_managers_csv(managers_csv, managers)
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            import_managers(session, managers_csv, actor=ADMIN)
            import_customers(session, customers_csv, actor=ADMIN)
            session.commit()
    finally:
        engine.dispose()
    return url, customers_csv


def stored_detection_ids(url: str) -> tuple[Counter[str], Counter[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            alerts = Counter(
                r[0] for r in connection.execute(text("SELECT detection_id FROM alerts"))
            )
            reports = Counter(
                r[0]
                for r in connection.execute(text("SELECT detection_id FROM large_value_reports"))
            )
    finally:
        engine.dispose()
    return alerts, reports


def test_every_expected_alert_becomes_one_case_routed_to_the_right_manager_across_a_crash(
    broker, names: StreamNames, start_worker, tmp_path: Path
) -> None:
    rng = derive_rng(33, "cases")
    customers, managers = generate_reference(rng, 60, 6, as_of=date(2026, 6, 1))
    # Two managers with customers have left (离岗) and nobody reassigned their customers
    # yet: their alerts must go up the supervisor chain.
    owners = Counter(c.manager_id for c in customers)
    leaving = {
        m.manager_id for m in managers if m.supervisor_id is not None and owners[m.manager_id]
    }
    leaving = set(sorted(leaving)[:2])
    assert len(leaving) == 2
    managers = [
        dataclasses.replace(m, active=False) if m.manager_id in leaving else m for m in managers
    ]
    url, customers_csv = case_store_with_book(tmp_path, customers, managers)
    engine = make_engine(url)

    history = generate_history(rng, customers, start=date(2026, 6, 1), days=40, scenario_rate=15.0)
    transactions = in_event_order(transaction_from_mapping(doc) for doc in history)
    directory = {c.customer_id: c for c in read_customers_csv(customers_csv)}
    detections = list(run_backtest(transactions, directory, build_rule_engine(Settings())))
    expected_alerts = {d.detection_id: d for d in detections if d.outcome is Outcome.ALERT}
    expected_reports = {d.detection_id for d in detections if d.outcome is Outcome.REPORT}
    assert len(expected_alerts) >= 10 and expected_reports
    routed_up = {d.customer_id for d in expected_alerts.values()} & {
        c.customer_id for c in customers if c.manager_id in leaving
    }
    assert routed_up, "some alerts must belong to customers of a manager who left"

    records = [
        (tx.customer_id.encode(), transaction_json_bytes(tx.to_dict())) for tx in transactions
    ]
    half = len(records) // 2
    produce(broker, names.transactions, records[:half])
    env = {"AMLWATCH_CUSTOMERS_FILE": str(customers_csv), "AMLWATCH_DATABASE_URL": url}
    worker = start_worker(**env)
    worker.wait_until(
        lambda: sum(stored_detection_ids(url)[0].values()) >= len(expected_alerts) // 4,
        180,
        "no cases were stored",
    )
    worker.kill()  # mid-stream: batches stored but not committed come again
    produce(broker, names.transactions, records[half:])
    restarted = start_worker(**env)

    def all_stored() -> bool:
        alerts, reports = stored_detection_ids(url)
        return len(alerts) >= len(expected_alerts) and len(reports) >= len(expected_reports)

    restarted.wait_until(all_stored, 240, "not every expected detection was stored")
    time.sleep(3)  # let redeliveries land before judging
    alerts, reports = stored_detection_ids(url)
    assert set(alerts) == set(expected_alerts), "no alert lost, none made up"
    assert set(reports) == expected_reports
    assert max(alerts.values()) == 1 and max(reports.values()) == 1, "none stored twice"

    manager_of = {c.customer_id: c.manager_id for c in customers}
    by_id = {m.manager_id: m for m in managers}
    with engine.connect() as connection:
        cases = connection.execute(
            text("SELECT id, customer_id, assignee_id, queue, status FROM cases")
        ).all()
        case_of_alert = dict(
            connection.execute(text("SELECT detection_id, case_id FROM alerts")).all()
        )
    by_case = {row.id: row for row in cases}
    assert (
        Counter(row.customer_id for row in cases if row.status != "closed").most_common(1)[0][1]
        == 1
    ), "one open case per customer"
    for detection_id, detection in expected_alerts.items():
        case = by_case[case_of_alert[detection_id]]
        assert case.customer_id == detection.customer_id
        assignee = expected_assignee(manager_of[detection.customer_id], by_id)
        assert case.assignee_id == assignee, f"{detection.customer_id} routed to {case.assignee_id}"
        assert case.queue == ("manager" if assignee else "compliance")
    assert {by_case[case_of_alert[d]].assignee_id for d in expected_alerts} & leaving == set()

    with engine.connect() as connection:
        stored_tx = dict(connection.execute(text("SELECT tx_id, amount FROM transactions")).all())
    assert stored_tx == {tx.tx_id: str(tx.amount) for tx in transactions}, (
        "every transaction is kept once, with its exact amount, for cases and reports"
    )

    # Compliance files one of the stream's cases as suspicious (four eyes), then both
    # regulatory reports are exported from what the live worker stored.
    compliance = [Actor(f"co{i}", Role.COMPLIANCE) for i in range(3)]
    now = datetime.now(UTC)
    with session_factory(engine)() as session:
        case_id = next(row.id for row in cases if row.status == "new")
        acknowledge(session, case_id=case_id, actor=compliance[0], now=now)
        escalate(session, case_id=case_id, actor=compliance[0], assessment="split", now=now)
        propose_report(session, case_id=case_id, actor=compliance[1], now=now)
        approve_report(session, case_id=case_id, actor=compliance[2], now=now)
        session.commit()
    runner = CliRunner(env={"AMLWATCH_DATABASE_URL": url, "AMLWATCH_DATA_DIR": str(tmp_path)})
    period = ["--from", "2026-06-01", "--to", datetime.now(UTC).date().isoformat()]
    tags = load_report_config().pboc
    for kind, root in (("large-value", "large_value"), ("suspicious", "suspicious")):
        out = tmp_path / f"{kind}.xml"
        result = runner.invoke(
            cli,
            ["report", "export", "--kind", kind, *period, "--format", "pboc-xml",
             "--out", str(out), "--actor", "co1"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert check_pboc(out.read_bytes(), tags=tags, kind=root) == []
    exported = ET.parse(tmp_path / "large-value.xml")
    lv_total = sum(Decimal(element.text or "") for element in exported.iter("CRMB"))
    with engine.connect() as connection:
        recorded = connection.execute(
            text("SELECT total_cny FROM report_exports WHERE kind = 'large_value'")
        ).scalar_one()
    assert lv_total == Decimal(recorded) > 0, "the file's amounts reconcile with the store"

    with session_factory(engine)() as session:
        assert verify_audit_chain(session).ok
    engine.dispose()
