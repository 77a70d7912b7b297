"""The case store built from settings: URL, migrations, calendar, deadlines, transactions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import URL, make_url

from alerts.audit import record_event
from alerts.database import AuditEventRow, make_engine
from alerts.deadlines import DEFAULT_DEADLINES
from core.detection import Severity
from core.settings import Settings
from rules.reference_data import ReferenceDataError
from stream import case_store
from stream.case_store import CaseStore, deadline_policy, printable_url
from tests.alerts.conftest import database_url as database_url  # fixture: SQLite, PostgreSQL

AT = datetime(2025, 6, 3, 2, 0, tzinfo=UTC)


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    """Settings independent of the caller's environment for what these tests look at."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", database_url=None, **values)


def audit_count(url: URL) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(AuditEventRow)) or 0
    finally:
        engine.dispose()


def test_url_defaults_to_sqlite_in_the_data_dir_and_can_be_overridden(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert case_store.database_url(settings).database == str(tmp_path / "data/cases.sqlite3")
    configured = settings.model_copy(update={"database_url": "sqlite:////srv/a.sqlite3"})
    assert case_store.database_url(configured).database == "/srv/a.sqlite3"
    override = case_store.database_url(configured, "postgresql+psycopg://u:pw@db/aml")
    assert override.get_backend_name() == "postgresql"
    assert "pw" not in printable_url(override)


def test_open_creates_the_data_dir_migrates_and_commits(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with CaseStore.open(settings) as store:
        assert (tmp_path / "data/cases.sqlite3").is_file()
        assert "audit_events" in inspect(store.engine).get_table_names()
        with store.session_scope() as session:
            record_event(
                session,
                actor="ops1",
                role="admin",
                action="test.event",
                target="t",
                before=None,
                after=None,
                at=AT,
            )
    assert audit_count(case_store.database_url(settings)) == 1


def test_session_scope_rolls_back_on_error(database_url: URL, tmp_path: Path) -> None:
    with CaseStore.open(settings_for(tmp_path), url=database_url) as store:
        with pytest.raises(RuntimeError), store.session_scope() as session:
            record_event(
                session,
                actor="ops1",
                role="admin",
                action="test.event",
                target="t",
                before=None,
                after=None,
                at=AT,
            )
            raise RuntimeError("boom")
        with store.session_scope() as session:
            assert session.scalar(select(func.count()).select_from(AuditEventRow)) == 0


def test_deadline_overrides_merge_with_the_defaults(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        ack_business_hours={"critical": 1},
        disposition_working_days={"low": 7},
        str_working_days=3,
        bank_timezone="Asia/Hong_Kong",
    )
    policy = deadline_policy(settings)
    assert policy.for_severity(Severity.CRITICAL).acknowledge_business_hours == 1
    assert policy.for_severity(Severity.CRITICAL).disposition_working_days == 1
    assert policy.for_severity(Severity.LOW).disposition_working_days == 7
    assert policy.for_severity(Severity.HIGH) == DEFAULT_DEADLINES[Severity.HIGH]
    assert policy.str_working_days == 3
    assert policy.timezone == ZoneInfo("Asia/Hong_Kong")
    with pytest.raises(ValidationError):
        settings_for(tmp_path, ack_business_hours={"critical": 0})
    with pytest.raises(ValidationError):
        settings_for(tmp_path, ack_business_hours={"urgent": 2})


def test_packaged_or_configured_holiday_calendar(tmp_path: Path) -> None:
    with CaseStore.open(settings_for(tmp_path)) as store:
        assert not store.calendar.is_working_day(date(2025, 10, 1))  # National Day
    holidays = tmp_path / "holidays.csv"
    holidays.write_text(
        "# as_of: 2024-11-12; source: test; years: 2025-2025\n"
        "date,kind,name\n2025-06-03,holiday,Bank day off\n",
        encoding="utf-8",
    )
    with CaseStore.open(settings_for(tmp_path, holidays_file=holidays)) as store:
        assert not store.calendar.is_working_day(date(2025, 6, 3))
        assert store.calendar.is_working_day(date(2025, 10, 1))
        # Past the data, deadlines are the earliest possible, not refused.
        assert store.calendar.add_working_days(date(2025, 12, 30), 3) == date(2026, 1, 2)
    holidays.write_text("date,kind,name\n", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="as_of"):
        CaseStore.open(settings_for(tmp_path, holidays_file=holidays))


def test_business_hours_follow_the_bank_timezone(tmp_path: Path) -> None:
    policy = deadline_policy(settings_for(tmp_path))
    assert policy.timezone == ZoneInfo("Asia/Shanghai")
    assert (policy.opens, policy.closes) == (time(9), time(17))


def test_webhook_needs_a_real_secret_outside_dev_mode(tmp_path: Path) -> None:
    url = "https://hooks.bank.example/aml"
    with pytest.raises(ValidationError, match="required when AMLWATCH_WEBHOOK_URL"):
        settings_for(tmp_path, webhook_url=url)
    with pytest.raises(ValidationError, match="placeholder"):
        settings_for(tmp_path, webhook_url=url, webhook_secret="Change-Me")
    with pytest.raises(ValidationError, match="at least 16"):
        settings_for(tmp_path, webhook_url=url, webhook_secret="short1")
    with pytest.raises(ValidationError, match="http"):
        settings_for(tmp_path, webhook_url="ftp://x", webhook_secret="k" * 32)
    dev = settings_for(tmp_path, webhook_url=url, webhook_secret="changeme", dev_mode=True)
    assert dev.webhook_secret is not None and "changeme" not in repr(dev)
    real = settings_for(tmp_path, webhook_url=url, webhook_secret="q8V1-kz3W-p0xL-77aa")
    assert real.webhook_secret is not None
    assert real.webhook_secret.get_secret_value() == "q8V1-kz3W-p0xL-77aa"


def test_smtp_host_needs_a_sender(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="required when AMLWATCH_SMTP_HOST"):
        settings_for(tmp_path, smtp_host="mail.bank.example")
    settings = settings_for(tmp_path, smtp_host="mail.bank.example", smtp_sender="aml@bank.example")
    assert (settings.smtp_port, settings.smtp_starttls) == (587, True)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMLWATCH_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    monkeypatch.setenv("AMLWATCH_DISPOSITION_WORKING_DAYS", '{"medium": 4}')
    monkeypatch.setenv("AMLWATCH_ESCALATION_CHECK_SECONDS", "15")
    settings = Settings(_env_file=None)
    assert make_url(str(settings.database_url)).database == str(tmp_path / "env.sqlite3")
    assert settings.disposition_working_days == {Severity.MEDIUM: 4}
    assert settings.escalation_check_seconds == 15
