"""``amlwatch model list|activate``: the saved anomaly models and which one is active."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from core.errors import AmlwatchError
from models.registry import activate, library_versions, list_versions, read_metadata
from stream.cli_settings import load_settings

model_cli = typer.Typer(
    help="Anomaly models: list saved versions, activate one.", no_args_is_help=True
)

ModelsOption = Annotated[
    Path | None,
    typer.Option("--models", help="Model registry directory (default: AMLWATCH_DATA_DIR/models)."),
]


def _registry(models: Path | None) -> Path:
    return models if models is not None else load_settings().data_dir / "models"


@model_cli.command("list")
def list_models(models: ModelsOption = None) -> None:
    """Show the saved model versions, oldest first, the active one marked with *."""
    directory = _registry(models)
    try:
        versions = list_versions(directory)
    except AmlwatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not versions:
        typer.echo(f"no models in {directory}")
        return
    table = Table(title=f"models in {directory}", box=box.SIMPLE_HEAD)
    table.add_column("", justify="center")  # "*" marks the active version
    table.add_column("version", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("features", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    for info in versions:
        table.add_row(
            "*" if info.active else "",
            info.version,
            f"{info.created_at:%Y-%m-%d %H:%M:%S}",
            str(len(info.feature_names)),
            f"{info.threshold:.4f}",
        )
    Console().print(table)
    running = library_versions()["scikit-learn"]
    for info in versions:
        if info.sklearn_version != running:
            typer.echo(
                _other_sklearn_warning(info.version, info.sklearn_version, running), err=True
            )


@model_cli.command("activate")
def activate_model(
    version: Annotated[str, typer.Argument(help="Version to activate, as `list` shows it.")],
    models: ModelsOption = None,
) -> None:
    """Mark VERSION as the active model (stream scoring is still to come)."""
    directory = _registry(models)
    try:
        saved_with = read_metadata(directory, version).library_versions.get("scikit-learn")
        activate(directory, version)
    except AmlwatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"active model: {version} ({directory})")
    running = library_versions()["scikit-learn"]
    if saved_with != running:
        # Activation stays the operator's call (the worker may run another install).
        typer.echo(_other_sklearn_warning(version, saved_with, running), err=True)


def _other_sklearn_warning(version: str, saved_with: str | None, running: str) -> str:
    return (
        f"warning: {version} was saved with scikit-learn {saved_with}, this install has "
        f"{running}: loading it on this install is refused"
    )
