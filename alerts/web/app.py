"""The web app's composition root: ``create_app`` builds FastAPI from values it is given.

Nothing here reads the environment: the entry point (``amlwatch web`` / ``up``) opens the
case store and passes its session factory, calendar and deadline policy in.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from alerts.actors import Actor
from alerts.database import session_scope
from alerts.deadlines import DeadlinePolicy
from alerts.reports import ReportConfig, ReportGauges, load_report_config
from alerts.users import API_KIND, SESSION_KIND, actor_for_token, token_digest
from alerts.web.access import Permission, check
from alerts.web.errors import (
    LoginRequired,
    amlwatch_error_handler,
    database_error_handler,
    validation_error_handler,
)
from core.calendar import WorkingCalendar
from core.errors import AmlwatchError

log = logging.getLogger(__name__)
SESSION_COOKIE = "amlwatch_session"
LANG_COOKIE = "amlwatch_lang"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebConfig:
    """What the web app needs besides the database.

    ``policy`` carries the bank's time zone and the STR filing deadline; ``reports`` the
    report files' data (PBoC tags, goAML codes, institution), packaged ones by default.
    """

    calendar: WorkingCalendar
    policy: DeadlinePolicy
    reports: ReportConfig = field(default_factory=load_report_config)
    currency: str = "CNY"
    session_lifetime: timedelta = timedelta(hours=8)
    token_lifetime: timedelta = timedelta(hours=12)
    secure_cookies: bool = False  # True behind HTTPS
    clock: Callable[[], datetime] = field(default=_utc_now)


class WebContext:
    """The session factory and configuration every route reaches through ``request``."""

    def __init__(self, sessions: sessionmaker[Session], config: WebConfig) -> None:
        self.sessions = sessions
        self.config = config

    def now(self) -> datetime:
        return self.config.clock()

    def transaction(self) -> AbstractContextManager[Session]:
        """A session that commits when the block ends and rolls back on error."""
        return session_scope(self.sessions)

    @contextmanager
    def committing_anyway(self) -> Iterator[Session]:
        """A session that commits even when the block raises one of our errors (audit of
        failed logins must survive the failure it records)."""
        with self.sessions() as session:
            try:
                yield session
            except AmlwatchError:
                session.commit()
                raise
            except BaseException:
                session.rollback()
                raise
            session.commit()


def context(request: Request) -> WebContext:
    """The app's context (a FastAPI dependency)."""
    web: WebContext = request.app.state.web
    return web


Context = Annotated[WebContext, Depends(context)]
_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/token.")


def api_actor(
    web: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The user behind the request's bearer token; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise LoginRequired("authentication required: send Authorization: Bearer <token>")
    with web.transaction() as session:
        actor = actor_for_token(
            session, token=credentials.credentials, kind=API_KIND, now=web.now()
        )
    if actor is None:
        raise LoginRequired("the bearer token is unknown, expired or revoked")
    return actor


def page_actor(request: Request, web: Context) -> Actor:
    """The user behind the session cookie; pages redirect to /login without one."""
    token = request.cookies.get(SESSION_COOKIE, "")
    with web.transaction() as session:
        actor = actor_for_token(session, token=token, kind=SESSION_KIND, now=web.now())
    if actor is None:
        raise LoginRequired("please sign in")
    return actor


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session: derived from the secret session token."""
    token = request.cookies.get(SESSION_COOKIE, "")
    return token_digest("csrf:" + token)


def check_csrf(request: Request, submitted: str) -> None:
    """Refuse a form post whose CSRF token does not match the session's."""
    if not submitted or not secrets.compare_digest(submitted, csrf_token(request)):
        from core.errors import Forbidden

        raise Forbidden("the form's CSRF token is missing or stale; reload the page")


def require_api(permission: Permission) -> Callable[..., Actor]:
    """A dependency: the API caller, if their role carries ``permission`` (else 403)."""

    def dependency(actor: Annotated[Actor, Depends(api_actor)]) -> Actor:
        return check(actor, permission)

    return dependency


def create_app(sessions: sessionmaker[Session], config: WebConfig) -> FastAPI:
    """The FastAPI app: JSON API under /api (OpenAPI at /docs), pages, /healthz, /metrics."""
    from prometheus_client import CollectorRegistry

    from alerts.web.api import router as api_router
    from alerts.web.pages import router as pages_router
    from alerts.web.report_api import router as report_router
    from alerts.web.user_api import router as user_router

    app = FastAPI(
        title="amlwatch",
        summary="Anti-money-laundering case management: alerts, dispositions, audit.",
        version="0.1.0",
    )
    app.state.web = WebContext(sessions, config)
    app.add_exception_handler(AmlwatchError, amlwatch_error_handler)
    app.add_exception_handler(DataError, database_error_handler)
    app.add_exception_handler(OperationalError, database_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.include_router(api_router)
    app.include_router(report_router)
    app.include_router(user_router)
    app.include_router(pages_router)

    @app.get("/healthz", response_class=PlainTextResponse, tags=["ops"])
    def healthz(web: Context) -> str:
        """Liveness and database reachability; no authentication."""
        with web.transaction() as session:
            session.execute(text("SELECT 1"))
        return "ok\n"

    # The app's own registry: several apps in one process (tests) must not collide.
    reports_registry = CollectorRegistry()
    report_gauges = ReportGauges.create(reports_registry)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    def metrics(web: Context) -> PlainTextResponse:
        """Prometheus metrics of this process and the report backlog; no authentication."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        today = web.now().astimezone(web.config.policy.timezone).date()
        try:
            with web.transaction() as session:
                report_gauges.refresh(session, today=today)
        except SQLAlchemyError:
            # The process metrics still matter when the store is down; the gauges keep
            # their last values and /healthz tells the outage.
            log.warning("refreshing the report gauges failed", exc_info=True)
        body = generate_latest() + generate_latest(reports_registry)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return app


__all__ = [
    "LANG_COOKIE",
    "SESSION_COOKIE",
    "WebConfig",
    "WebContext",
    "api_actor",
    "check_csrf",
    "create_app",
    "csrf_token",
    "page_actor",
    "require_api",
]
