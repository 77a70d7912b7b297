"""The case store as the entry points open it: database, migrations, calendar and deadlines.

Built from :class:`core.settings.Settings` in one place so that the CLI and the worker
agree on which database, which holiday calendar and which deadlines they use::

    with CaseStore.open(settings) as store:
        with store.session_scope() as session:
            ingest_detection(session, detection, now=now, calendar=store.calendar)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from alerts.database import default_url, make_engine, migrate, session_factory, session_scope
from alerts.deadlines import DEFAULT_DEADLINES, DeadlinePolicy, SeverityDeadlines
from core.calendar import WorkingCalendar
from core.settings import Settings
from rules.reference_data import load_calendar

_Result = TypeVar("_Result")


def database_url(settings: Settings, override: str | URL | None = None) -> URL:
    """The case store's URL: ``override``, else AMLWATCH_DATABASE_URL, else SQLite in data_dir."""
    chosen = override or settings.database_url
    return make_url(chosen if chosen else default_url(settings.data_dir))


def printable_url(url: URL) -> str:
    """``url`` as it may appear in messages and logs: the password masked."""
    return url.render_as_string(hide_password=True)


def prepare_database(url: URL) -> None:
    """Create the SQLite file's directory if needed and migrate to the newest schema."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    migrate(url)


def deadline_policy(settings: Settings) -> DeadlinePolicy:
    """Deadlines per severity with the settings' overrides, in the bank's time zone."""
    by_severity = {
        severity: SeverityDeadlines(
            acknowledge_business_hours=settings.ack_business_hours.get(
                severity, default.acknowledge_business_hours
            ),
            disposition_working_days=settings.disposition_working_days.get(
                severity, default.disposition_working_days
            ),
        )
        for severity, default in DEFAULT_DEADLINES.items()
    }
    return DeadlinePolicy(
        by_severity=by_severity,
        str_working_days=settings.str_working_days,
        timezone=ZoneInfo(settings.bank_timezone),
    )


def working_calendar(settings: Settings) -> WorkingCalendar:
    """The holiday calendar of AMLWATCH_HOLIDAYS_FILE, or the packaged one.

    Past its last year every day counts as a working day: a detection whose deadline
    runs past the holiday data still becomes a case or report record, due at the
    earliest the real schedule could make it (and the log says so), instead of being
    refused and dead-lettered.
    """
    return load_calendar(settings.holidays_file, earliest_beyond=True)


class CaseStore:
    """An open case store: engine, session factory, working calendar and deadline policy.

    Open it with :meth:`open`; close it (or use it as a context manager) to release the
    engine's connections.

    The worker's writes go through :meth:`run`, one at a time on one thread. SQLite lets
    one writer in at a time and makes the others poll with growing sleeps (up to 100 ms
    each): three agents writing from a thread pool spent much of a second per second
    waiting on each other at 1,000 tx/s, with the worker's core two-thirds idle.
    """

    def __init__(
        self,
        *,
        url: URL,
        engine: Engine,
        calendar: WorkingCalendar,
        policy: DeadlinePolicy,
    ) -> None:
        self.url = url
        self.engine = engine
        self.session_factory: sessionmaker[Session] = session_factory(engine)
        self.calendar = calendar
        self.policy = policy
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="case-store")

    async def run(self, work: Callable[..., _Result], *args: Any) -> _Result:
        """``work(*args)`` on the store's one writer thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, partial(work, *args))

    @classmethod
    def open(
        cls, settings: Settings, *, url: str | URL | None = None, migrate_schema: bool = True
    ) -> CaseStore:
        """Load calendar and deadlines, migrate the database (unless told not to), connect.

        ``url`` overrides AMLWATCH_DATABASE_URL. A bad holiday file raises
        ``ReferenceDataError`` before the database is touched.
        """
        calendar = working_calendar(settings)
        policy = deadline_policy(settings)
        resolved = database_url(settings, url)
        if migrate_schema:
            prepare_database(resolved)
        return cls(url=resolved, engine=make_engine(resolved), calendar=calendar, policy=policy)

    def session_scope(self) -> AbstractContextManager[Session]:
        """A session whose transaction commits when the block ends, or rolls back on error."""
        return session_scope(self.session_factory)

    def close(self) -> None:
        """Finish the writes handed to :meth:`run`, then release the engine's connections."""
        self._writer.shutdown(wait=True)
        self.engine.dispose()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CaseStore({printable_url(self.url)!r})"


__all__ = [
    "CaseStore",
    "database_url",
    "deadline_policy",
    "prepare_database",
    "printable_url",
    "working_calendar",
]
