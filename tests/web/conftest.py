"""A real uvicorn server on a free port over a real case store (SQLite, and PostgreSQL
when AMLWATCH_TEST_POSTGRES_URL is set), with one user per role and a factory of cases."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from alerts.actors import SYSTEM_ACTOR, Actor, Role
from alerts.cases import ingest_detection
from alerts.database import make_engine, session_factory
from alerts.deadlines import DeadlinePolicy
from alerts.imports import import_customers, import_managers
from alerts.transactions import StoredTransaction, store_transactions
from alerts.users import add_user
from alerts.web import WebConfig, create_app
from core.calendar import WorkingCalendar
from core.customer import CUSTOMER_COLUMNS
from core.detection import Outcome, Severity
from core.manager import MANAGER_COLUMNS
from core.transaction import MAX_ID_LENGTH, Channel, Direction, Transaction
from stream.broker import free_loopback_port
from tests.alerts.conftest import customer, detection, manager, migrated_store, write_csv

PASSWORD = "correct horse battery staple"
ADMIN = Actor("A1", Role.ADMIN)
# user id -> role; managers' and supervisors' ids are their manager ids.
USERS = {
    "M1": Role.MANAGER,
    "M2": Role.MANAGER,
    "S1": Role.SUPERVISOR,
    "S2": Role.SUPERVISOR,
    "C1": Role.COMPLIANCE,
    "C2": Role.COMPLIANCE,
    "A1": Role.ADMIN,
}
# Customers pre-imported per manager so each test can open fresh cases.
CUSTOMERS_PER_MANAGER = 300


def calendar() -> WorkingCalendar:
    return WorkingCalendar(
        holidays=frozenset(),
        working_weekends=frozenset(),
        as_of=datetime(2023, 12, 1, tzinfo=UTC).date(),
        source="test",
        first_year=2024,
        last_year=2030,
    )


@dataclass
class WebWorld:
    """The running server, its database and signed-in clients per user."""

    base_url: str
    sessions: sessionmaker[Session]
    tokens: dict[str, str] = field(default_factory=dict)
    _next: dict[str, itertools.count[int]] = field(default_factory=dict)

    def client(self, user_id: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user_id]}"} if user_id else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def new_case(
        self,
        manager_id: str = "M1",
        severity: Severity = Severity.HIGH,
        history: int = 0,
        customer_id: str | None = None,
    ) -> int:
        """Open a case on a fresh customer of ``manager_id`` (routed to them; a given
        ``customer_id`` must be a seeded customer of theirs with no case yet), after
        ``history`` ordinary daily transactions and one large flagged one."""
        number = next(self._next.setdefault(manager_id, itertools.count(1)))
        customer_id = customer_id or f"{manager_id}-C{number:04d}"
        now = datetime.now(UTC)
        tx_id = f"tx-{uuid.uuid4().hex[:10]}"
        found = detection(customer_id, tx_id, severity=severity, at=now)
        with self.sessions() as session:
            if history:
                store_transactions(session, _history(customer_id, tx_id, now, history))
            result = ingest_detection(session, found, now=now, calendar=calendar())
            session.commit()
        assert result.case_id is not None and result.routed_to == manager_id
        return result.case_id

    def new_large_value(self, bank_day: date, manager_id: str = "M1") -> tuple[str, str]:
        """A large-value report record (pending) on a fresh customer of ``manager_id``: one
        60,000 CNY cash deposit on ``bank_day``. Returns (customer id, tx id)."""
        number = next(self._next.setdefault(manager_id, itertools.count(1)))
        customer_id = f"{manager_id}-C{number:04d}"
        at = datetime(bank_day.year, bank_day.month, bank_day.day, 2, tzinfo=UTC)  # 10:00 CST
        tx_id = f"lv-{uuid.uuid4().hex[:10]}"
        amount = Decimal("60000.00")
        tx = Transaction(
            tx_id=tx_id,
            timestamp=at,
            customer_id=customer_id,
            account_id=f"{customer_id}-A",
            direction=Direction.IN,
            amount=amount,
            currency="CNY",
            channel=Channel.CASH,
        )
        found = replace(
            detection(customer_id, tx_id, outcome=Outcome.REPORT, detector="LVT-CASH-CNY", at=at),
            severity=Severity.MEDIUM,
            bank_day=bank_day,
        )
        with self.sessions() as session:
            store_transactions(
                session, [StoredTransaction(tx, amount, (amount / Decimal("7.2")).quantize(CENT))]
            )
            ingest_detection(session, found, now=at, calendar=calendar())
            session.commit()
        return customer_id, tx_id


CENT = Decimal("0.01")


def _history(
    customer_id: str, flagged_tx: str, now: datetime, days: int
) -> list[StoredTransaction]:
    stored = []
    for day in range(days, -1, -1):
        amount = Decimal("49999.00") if day == 0 else Decimal(3000 + (day * 937) % 9000)
        tx = Transaction(
            tx_id=flagged_tx if day == 0 else f"{flagged_tx}-h{day}",
            timestamp=now - timedelta(days=day, hours=1),
            customer_id=customer_id,
            account_id=f"{customer_id}-A",
            direction=Direction.OUT if day % 3 else Direction.IN,
            amount=amount,
            currency="CNY",
            channel=Channel.CASH if day == 0 else Channel.TRANSFER,
        )
        stored.append(
            StoredTransaction(tx, amount, (amount / Decimal("7.2")).quantize(Decimal("0.01")))
        )
    return stored


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def web_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[URL]:
    """A migrated case store for the module; PostgreSQL in its own schema when configured."""
    with migrated_store(request.param, tmp_path_factory.mktemp("web"), "web_test") as url:
        yield url


# A customer of M1 whose id is as long as the transaction contract allows.
LONGEST_CUSTOMER_ID = "M1-" + "L" * (MAX_ID_LENGTH - 3)


def seed_world(sessions: sessionmaker[Session], directory: Path) -> None:
    """Managers M1, M2 (supervised by S1, S2), R1/R2 for reassignment; their customers; users."""
    managers = [
        manager("S1"),
        manager("S2"),
        manager("M1", supervisor="S1"),
        manager("M2", supervisor="S2"),
        manager("R1"),
        manager("R2"),
    ]
    customers = [
        customer(f"{m}-C{n:04d}", m)
        for m in ("M1", "M2", "S1")
        for n in range(1, CUSTOMERS_PER_MANAGER + 1)
    ]
    customers.append(customer(LONGEST_CUSTOMER_ID, "M1"))
    now = datetime.now(UTC)
    with sessions() as session:
        path = write_csv(directory / "m.csv", MANAGER_COLUMNS, [m.to_row() for m in managers])
        import_managers(session, path, actor=ADMIN, now=now)
        path = write_csv(directory / "c.csv", CUSTOMER_COLUMNS, [c.to_row() for c in customers])
        import_customers(session, path, actor=ADMIN, now=now)
        for user_id, role in USERS.items():
            add_user(
                session, user_id=user_id, role=role, password=PASSWORD, actor=SYSTEM_ACTOR, now=now
            )
        session.commit()


@pytest.fixture(scope="module")
def web_world(web_database: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    """The app under uvicorn on a free loopback port, users signed in over the API."""
    engine = make_engine(web_database)
    sessions = session_factory(engine)
    seed_world(sessions, tmp_path_factory.mktemp("reference"))
    app = create_app(sessions, WebConfig(calendar=calendar(), policy=DeadlinePolicy()))
    port = free_loopback_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    world = WebWorld(base_url=f"http://127.0.0.1:{port}", sessions=sessions)
    with httpx.Client(base_url=world.base_url) as client:
        for user_id in USERS:
            answer = client.post("/api/token", json={"user_id": user_id, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            world.tokens[user_id] = answer.json()["access_token"]
    try:
        yield world
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
