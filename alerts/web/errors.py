"""Errors to HTTP: the categories of ``core.errors`` mapped to status codes in one place."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError, OperationalError

from alerts.users import AuthenticationFailed, LoginThrottled
from core.errors import AmlwatchError, ErrorCategory

STATUS_BY_CATEGORY = {
    ErrorCategory.INVALID_INPUT: 400,
    ErrorCategory.NOT_FOUND: 404,
    ErrorCategory.CONFLICT: 409,
    ErrorCategory.FORBIDDEN: 403,
    ErrorCategory.UNAVAILABLE: 503,
}


class LoginRequired(AuthenticationFailed):
    """No valid session cookie or bearer token came with the request."""


def http_status(error: AmlwatchError) -> int:
    """The HTTP status of one of our errors: the only place that decides it."""
    if isinstance(error, LoginThrottled):
        return 429
    if isinstance(error, AuthenticationFailed):
        return 401
    return STATUS_BY_CATEGORY[error.category]


def is_page(request: Request) -> bool:
    """Whether the request is for a page (HTML) rather than the JSON API."""
    path = request.url.path
    return not (path.startswith("/api/") or path in ("/healthz", "/metrics", "/openapi.json"))


async def amlwatch_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AmlwatchError)
    status = http_status(exc)
    if status == 401 and is_page(request):
        return RedirectResponse("/login", status_code=303)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, LoginThrottled):
        headers = {"Retry-After": "900"}
    if is_page(request):
        from alerts.web.pages import error_page

        return error_page(request, status, str(exc))
    error = {401: "unauthenticated", 429: "throttled"}.get(status, exc.category.value)
    body: dict[str, Any] = {"error": error, "detail": str(exc)}
    return JSONResponse(body, status_code=status, headers=headers)


SECRET_FIELDS = frozenset({"password"})


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    # FastAPI's own 422 body, except that a password is never echoed back (a too long
    # or malformed password would otherwise come back in "input").
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        shown = dict(error)
        if SECRET_FIELDS & {str(part) for part in error.get("loc", ())}:
            shown.pop("input", None)
            shown.pop("ctx", None)
        errors.append(shown)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def database_error_handler(request: Request, exc: Exception) -> Response:
    # A value the database cannot hold (an id beyond its integer range, say) is the
    # request's fault; a lost connection is ours and temporary. Neither echoes the SQL.
    if isinstance(exc, DataError):
        return JSONResponse(
            {"error": "invalid_input", "detail": "a value is out of range for the case store"},
            status_code=400,
        )
    assert isinstance(exc, OperationalError)
    return JSONResponse(
        {"error": "unavailable", "detail": "the case store is unavailable; retry later"},
        status_code=503,
    )


__all__ = [
    "LoginRequired",
    "amlwatch_error_handler",
    "database_error_handler",
    "http_status",
    "validation_error_handler",
]
