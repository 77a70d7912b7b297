"""The case store's tables (SQLAlchemy 2 ORM), engines, sessions and migrations.

ORM rows stay inside ``alerts``: service modules convert them to core records or small
result dataclasses before anything leaves the package.

SQLite (a file, the default) and PostgreSQL (by URL) are both first-class. SQLite gets
foreign keys on and ``BEGIN IMMEDIATE`` transactions, so concurrent writers queue for the
write lock up front instead of failing when a read transaction tries to upgrade.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DATABASE_FILE = "cases.sqlite3"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (no time zones) as well."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("the case store keeps aware datetimes only")
        value = value.astimezone(UTC)
        # SQLite would store the offset text and compare strings; keep it naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """Exact decimals kept as text: SQLite has no decimal type and would round through
    floats, and reports must reconcile to the last digit on either database."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class ManagerRow(Base):
    __tablename__ = "managers"

    manager_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    grade: Mapped[str] = mapped_column(String(16))
    # Not a foreign key: a supervisor may leave the reference data, and routing must
    # then say so (and move on) rather than the import failing.
    supervisor_id: Mapped[str | None] = mapped_column(String(64))
    branch: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime]


class CustomerRow(Base):
    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    type: Mapped[str] = mapped_column(String(16))
    risk_rating: Mapped[str] = mapped_column(String(16))
    manager_id: Mapped[str] = mapped_column(ForeignKey("managers.manager_id"), index=True)
    country: Mapped[str] = mapped_column(String(2))
    opened_on: Mapped[date] = mapped_column(Date)
    id_type: Mapped[str] = mapped_column(String(32))
    id_number: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class CaseRow(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Not a foreign key: detections on customers missing from the reference data still
    # open cases (routed to compliance), they are not dropped.
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    # The customer id while the case is open, NULL once closed or reported: a plain unique
    # constraint on it means one open case per customer on SQLite and PostgreSQL alike.
    open_customer_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("managers.manager_id"), index=True)
    queue: Mapped[str] = mapped_column(String(16))
    compliance_copy: Mapped[bool] = mapped_column(Boolean)
    escalation_level: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime]
    overdue_escalated_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    investigating_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    escalated_by: Mapped[str | None] = mapped_column(String(64))
    assessment: Mapped[str | None] = mapped_column(Text)
    report_proposed_at: Mapped[datetime | None]
    report_proposed_by: Mapped[str | None] = mapped_column(String(64))
    reported_at: Mapped[datetime | None]
    report_approved_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(64))
    disposition: Mapped[str | None] = mapped_column(String(32))
    disposition_reason: Mapped[str | None] = mapped_column(Text)


class AlertRow(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    detection_id: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    # Set instead of case_id when the case is new: one flush then inserts a batch's new
    # cases first and fills in their ids (no flush per new case).
    case: Mapped[CaseRow] = relationship()
    customer_id: Mapped[str] = mapped_column(String(128))
    # Who the alert reached when it arrived, for performance figures: cases move later.
    assignee_id: Mapped[str | None] = mapped_column(String(64), index=True)
    detector: Mapped[str] = mapped_column(String(64))
    detector_version: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[str]]
    tx_ids: Mapped[list[str]]
    values: Mapped[dict[str, Any]]
    trigger_tx_id: Mapped[str] = mapped_column(String(128))
    bank_day: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]
    received_at: Mapped[datetime]


class RoutingDecisionRow(Base):
    __tablename__ = "routing_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    case: Mapped[CaseRow] = relationship()  # as AlertRow.case
    kind: Mapped[str] = mapped_column(String(16))
    from_assignee_id: Mapped[str | None] = mapped_column(String(64))
    assignee_id: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(16))
    compliance_copy: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime]


class TransactionRow(Base):
    """A customer's transaction as the stream validated it, with its converted amounts."""

    __tablename__ = "transactions"
    __table_args__ = (Index("ix_transactions_customer_at", "customer_id", "at"),)

    tx_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    direction: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(DecimalText())
    currency: Mapped[str] = mapped_column(String(3))
    amount_cny: Mapped[Decimal] = mapped_column(DecimalText())
    amount_usd: Mapped[Decimal] = mapped_column(DecimalText())
    counterparty_id: Mapped[str | None] = mapped_column(String(128))
    counterparty_name: Mapped[str | None] = mapped_column(String(2000))
    counterparty_country: Mapped[str | None] = mapped_column(String(2))
    description: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any]]


class LargeValueReportRow(Base):
    __tablename__ = "large_value_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    detection_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    detector: Mapped[str] = mapped_column(String(64))
    detector_version: Mapped[str] = mapped_column(String(32))
    trigger_tx_id: Mapped[str] = mapped_column(String(128))
    tx_ids: Mapped[list[str]]
    values: Mapped[dict[str, Any]]
    bank_day: Mapped[date] = mapped_column(Date)
    deadline: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime]
    received_at: Mapped[datetime]
    exported_at: Mapped[datetime | None]
    # Regulatory filing (alerts.reports): the last export that carried the record, and
    # when the regulator's receipt or a correction was recorded.
    last_export_id: Mapped[int | None] = mapped_column(Integer, index=True)
    submitted_at: Mapped[datetime | None]
    corrected_at: Mapped[datetime | None]


class SuspiciousReportRow(Base):
    """An STR to file: one per case compliance approved for filing (four eyes)."""

    __tablename__ = "suspicious_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    decided_at: Mapped[datetime]
    bank_day: Mapped[date] = mapped_column(Date)
    deadline: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime]
    exported_at: Mapped[datetime | None]
    last_export_id: Mapped[int | None] = mapped_column(Integer, index=True)
    submitted_at: Mapped[datetime | None]
    corrected_at: Mapped[datetime | None]


class ReportExportRow(Base):
    """One export of regulatory reports: its file's digest and what it carried."""

    __tablename__ = "report_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))
    message_type: Mapped[str] = mapped_column(String(16))
    period_from: Mapped[date] = mapped_column(Date)
    period_to: Mapped[date] = mapped_column(Date)
    file_name: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(Integer)
    transactions: Mapped[int] = mapped_column(Integer)
    total_cny: Mapped[Decimal] = mapped_column(DecimalText())
    record_ids: Mapped[list[int]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    exported_at: Mapped[datetime]
    exported_by: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime | None]
    submitted_by: Mapped[str | None] = mapped_column(String(64))
    receipt: Mapped[str | None] = mapped_column(Text)


class NoteRow(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    author: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHeadRow(Base):
    """The one row every audit append locks: the chain's last sequence number and hash."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def default_url(data_dir: Path) -> str:
    """The SQLite file URL of the case store in ``data_dir``."""
    return f"sqlite:///{data_dir / DATABASE_FILE}"


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``: SQLite with foreign keys and immediate transactions, or other."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    engine = create_engine(parsed, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits when the block ends, or rolls back on error."""
    with sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def migrate(url: str | URL) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic upgrade head)."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
    finally:
        engine.dispose()


def new_sqlite_store(directory: Path) -> URL:
    """A migrated, empty SQLite case store in ``directory``; its URL."""
    url = make_url(default_url(directory))
    migrate(url)
    return url


@contextmanager
def temporary_schema_store(base_url: str | URL, *, schema_prefix: str) -> Iterator[URL]:
    """A migrated, empty case store in a new PostgreSQL schema on ``base_url``, dropped
    when the block ends.

    For tests and benches: the database may be shared with other runs at the same time,
    so each gets a schema of its own (``schema_prefix`` and a random suffix).
    """
    schema = f"{schema_prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        migrate(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def alembic_config(connection: Any = None) -> Config:
    """Alembic's configuration built in code (no alembic.ini), bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # Write-ahead log: a commit is one fsync of the log instead of the rollback journal's
    # several (about 3 ms instead of 13 ms for a worker batch here), still durable at
    # the default synchronous=FULL, and the web app's reads no longer wait on the
    # worker's writes. It is a property of the file; in-memory databases keep "memory".
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


__all__ = [
    "AlertRow",
    "AuditChainHeadRow",
    "AuditEventRow",
    "Base",
    "CaseRow",
    "CustomerRow",
    "LargeValueReportRow",
    "ManagerRow",
    "NoteRow",
    "ReportExportRow",
    "RoutingDecisionRow",
    "SuspiciousReportRow",
    "default_url",
    "make_engine",
    "migrate",
    "new_sqlite_store",
    "session_factory",
    "temporary_schema_store",
]


class UserRow(Base):
    """A person who signs in to the web app; managers' and supervisors' ids are manager ids."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean)
    failed_logins: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class UserTokenRow(Base):
    """A session cookie or API bearer token, kept only as its SHA-256."""

    __tablename__ = "user_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


__all__ += ["UserRow", "UserTokenRow"]
