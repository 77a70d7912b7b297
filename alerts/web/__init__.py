"""The web app: JSON API (bearer tokens, OpenAPI at /docs) and server-rendered pages.

``create_app(session_factory, WebConfig(calendar=..., policy=...))`` builds it; the
entry points pass values in, nothing here reads settings. Authorisation lives in
``alerts.web.access``; errors become HTTP statuses in ``alerts.web.errors.http_status``.
"""

from alerts.web.app import WebConfig, create_app

__all__ = ["WebConfig", "create_app"]
