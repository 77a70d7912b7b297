"""``amlwatch web``: the API and pages under uvicorn; demo logins for ``amlwatch up``.

The worker's own /healthz and /metrics stay on AMLWATCH_WEB_PORT; the web app listens on
``--port`` (default 8000). Demo logins (random passwords, printed once) are created only
by ``amlwatch up`` or with ``--demo-logins`` in dev mode (AMLWATCH_DEV_MODE=true).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import func, select

from alerts.actors import SYSTEM_ACTOR, Role
from alerts.database import CaseRow, ManagerRow, UserRow
from alerts.reports import load_report_config
from alerts.routing import OPEN_STATES
from alerts.users import add_user, reset_password
from alerts.web import WebConfig, create_app
from core.settings import Settings
from stream.case_commands import (
    EXIT_BAD_INPUT,
    DatabaseUrlOption,
    _case_store,
    _fail,
    _failures_reported,
)
from stream.cli_settings import load_settings

DEFAULT_WEB_PORT = 8000
# Two compliance officers: approving an STR needs a second pair of eyes.
DEMO_STAFF = (
    ("compliance1", Role.COMPLIANCE),
    ("compliance2", Role.COMPLIANCE),
    ("admin1", Role.ADMIN),
)


def web(
    host: Annotated[str | None, typer.Option(help="Address (default: AMLWATCH_WEB_HOST).")] = None,
    port: Annotated[int, typer.Option(help="Port of the web app.")] = DEFAULT_WEB_PORT,
    database_url: DatabaseUrlOption = None,
    secure_cookies: Annotated[
        bool, typer.Option(help="Mark session cookies Secure (serve behind HTTPS).")
    ] = False,
    demo_logins: Annotated[
        bool, typer.Option(help="Create demo users and print their passwords (dev mode only).")
    ] = False,
    institution: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="institution.toml for report exports."),
    ] = None,
    pboc_tags: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="PBoC tags and codes.")
    ] = None,
    goaml_codes: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="The FIU's goAML codes.")
    ] = None,
) -> None:
    """Serve the API (OpenAPI at /docs) and the inbox, case and console pages."""
    import uvicorn

    settings = load_settings()
    if demo_logins and not settings.dev_mode:
        _fail("--demo-logins needs AMLWATCH_DEV_MODE=true", EXIT_BAD_INPUT)
    with _failures_reported():
        # The same data files as `amlwatch report export`: checked before serving.
        reports = load_report_config(
            pboc_tags=pboc_tags, goaml_codes=goaml_codes, institution=institution
        )
    with _case_store(database_url, settings) as store:
        if demo_logins:
            print_demo_logins(seed_demo_logins(settings, database_url))
        app = create_app(
            store.session_factory,
            WebConfig(
                calendar=store.calendar,
                policy=store.policy,
                reports=reports,
                secure_cookies=secure_cookies,
            ),
        )
        chosen_host = host or settings.web_host
        typer.echo(f"web app on http://{chosen_host}:{port}/ (API docs: /docs)")
        uvicorn.run(app, host=chosen_host, port=port, log_level=settings.log_level.lower())


def seed_demo_logins(settings: Settings, url: str | None = None) -> list[tuple[str, str, str]]:
    """Create or reset demo users with fresh random passwords: (user id, role, password).

    Besides compliance and admin staff, the manager with the most open cases (and their
    supervisor) get a login, so the inbox has something in it.
    """
    now = datetime.now(UTC)
    logins: list[tuple[str, str, str]] = []
    with _case_store(url, settings) as store, store.session_scope() as session:
        people = list(DEMO_STAFF)
        busiest = session.scalar(
            select(CaseRow.assignee_id)
            .where(CaseRow.status.in_(OPEN_STATES), CaseRow.assignee_id.is_not(None))
            .group_by(CaseRow.assignee_id)
            .order_by(func.count().desc(), CaseRow.assignee_id)
            .limit(1)
        ) or session.scalar(select(ManagerRow.manager_id).order_by(ManagerRow.manager_id).limit(1))
        if busiest is not None:
            people.append((busiest, Role.MANAGER))
            supervisor = session.scalar(
                select(ManagerRow.supervisor_id).where(ManagerRow.manager_id == busiest)
            )
            if supervisor:
                people.append((supervisor, Role.SUPERVISOR))
        for user_id, role in people:
            password = secrets.token_urlsafe(12)
            if session.get(UserRow, user_id) is None:
                add_user(
                    session,
                    user_id=user_id,
                    role=role,
                    password=password,
                    actor=SYSTEM_ACTOR,
                    now=now,
                    display_name=f"demo {role.value}",
                )
            else:
                reset_password(
                    session, user_id=user_id, password=password, actor=SYSTEM_ACTOR, now=now
                )
            logins.append((user_id, role.value, password))
    return logins


def announce_demo_logins(settings: Settings) -> bool:
    """Seed and print the demo logins; False (try again later) if the store is not ready."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.errors import AmlwatchError

    try:
        print_demo_logins(seed_demo_logins(settings))
    except (AmlwatchError, SQLAlchemyError, typer.Exit):
        return False
    return True


def print_demo_logins(logins: list[tuple[str, str, str]]) -> None:
    """Print the demo logins, one a line."""
    for user_id, role, password in logins:
        typer.echo(f"login     {role:<10} user {user_id:<12} password {password}")


__all__ = [
    "DEFAULT_WEB_PORT",
    "announce_demo_logins",
    "print_demo_logins",
    "seed_demo_logins",
    "web",
]
