"""``amlwatch model train|list|activate``: fit, list and activate anomaly models."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from core.customer import read_customers_csv
from core.errors import AmlwatchError
from core.transaction import CsvRowError, read_transactions_csv
from models.features import country_risk_from_lists
from models.registry import activate, library_versions, list_versions, read_metadata
from models.training import (
    DEFAULT_TARGET_ALERT_RATE,
    DEFAULT_WARMUP_DAYS,
    save_result,
    train_detector,
)
from stream.cli_settings import load_settings
from stream.detection_engine import build_rule_engine

model_cli = typer.Typer(
    help="Anomaly models: train one, list saved versions, activate one.", no_args_is_help=True
)

ModelsOption = Annotated[
    Path | None,
    typer.Option(
        "--models",
        help="Model registry directory (default: AMLWATCH_MODELS_DIR or DATA_DIR/models).",
    ),
]


def _registry(models: Path | None) -> Path:
    return models if models is not None else load_settings().model_registry


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
    """Mark VERSION as the active model; running workers switch to it within seconds."""
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


@model_cli.command("train")
def train_model(
    transactions: Annotated[
        Path, typer.Option(help="Transactions CSV (contract columns).", exists=True, dir_okay=False)
    ],
    customers: Annotated[
        Path, typer.Option(help="Customers CSV (DESIGN.md columns).", exists=True, dir_okay=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Model registry directory (default: AMLWATCH_MODELS_DIR or DATA_DIR/models)."
        ),
    ] = None,
    target_alert_rate: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Share of training rows that would alert.")
    ] = DEFAULT_TARGET_ALERT_RATE,
    warmup_days: Annotated[
        int, typer.Option(min=0, help="First days of the file only build profiles.")
    ] = DEFAULT_WARMUP_DAYS,
    until: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            metavar="YYYY-MM-DD",
            help="Train on the bank-local days up to this one only (later rows are ignored).",
        ),
    ] = None,
) -> None:
    """Fit the anomaly model on a history file and save it as a new registry version."""
    settings = load_settings()
    directory = out if out is not None else settings.model_registry
    console = Console(stderr=True)
    try:
        reference = build_rule_engine(settings).reference
        directory_of = {c.customer_id: c for c in read_customers_csv(customers)}
    except AmlwatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows: list[dict[str, object]] = []
    errors: list[CsvRowError] = []
    with console.status("reading transactions"):
        for _line, row in read_transactions_csv(transactions):
            if isinstance(row, CsvRowError):
                errors.append(row)
                continue
            try:
                amount_cny = reference.rates.to_cny(row.amount, row.currency)
            except AmlwatchError as exc:
                typer.echo(f"error: {transactions.name} tx {row.tx_id}: {exc}", err=True)
                raise typer.Exit(2) from None
            rows.append({**row.to_dict(), "amount_cny": amount_cny})
    for error in errors[:10]:
        typer.echo(f"skipped {error}", err=True)
    frame = pd.DataFrame(rows)
    missing = sorted(set(frame["customer_id"]) - set(directory_of)) if rows else []
    if missing:
        typer.echo(
            f"error: {len(missing)} customers of {transactions.name} are not in "
            f"{customers.name}, e.g. {missing[0]}",
            err=True,
        )
        raise typer.Exit(2)
    lists = reference.country_lists
    with console.status(f"building features and fitting on {len(frame):,} transactions"):
        try:
            result = train_detector(
                frame,
                directory_of,
                country_risk_from_lists(grey=lists.grey, black=lists.black),
                ZoneInfo(settings.bank_timezone),
                warmup_days=warmup_days,
                target_alert_rate=target_alert_rate,
                until=until.date() if until is not None else None,
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    artefact = save_result(result, directory)
    typer.echo(
        f"model {artefact.version}: {result.rows:,} transactions from {result.period[0]} to "
        f"{result.period[1]} ({len(errors)} invalid rows skipped), threshold "
        f"{result.detector.threshold_:.4f} -> {directory}"
    )
    if result.metrics:
        recalls = ", ".join(
            f"{name} {share:.0%}" for name, share in result.metrics["recall_by_typology"].items()
        )
        typer.echo(
            f"on its training data: alert rate {result.metrics['alert_rate']:.2%}, precision "
            f"{result.metrics['precision']:.0%}; recall by typology: {recalls}"
        )
    typer.echo(f"activate it with: amlwatch model activate {artefact.version}")
