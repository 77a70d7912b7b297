"""Settings for CLI commands: read once from the environment, errors shown as env names."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from core.settings import Settings


def load_settings() -> Settings:
    """Settings from the environment, or a readable error and exit code 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "AMLWATCH_" + "_".join(str(part) for part in error["loc"]).upper()
            typer.echo(f"error: {name}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
