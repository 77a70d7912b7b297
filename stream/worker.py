"""Run the long-lived Faust worker for the built app."""

from __future__ import annotations

import faust

from core.settings import Settings
from stream.app import build_app


def run_worker(settings: Settings, *, broker_url: str | None = None) -> None:
    """Start the worker and block until it is stopped (SIGINT/SIGTERM)."""
    built = build_app(settings, broker_url=broker_url)
    worker = faust.Worker(
        built.faust_app,
        loglevel=settings.log_level,
    )
    worker.execute_from_commandline()
