"""``amlwatch rules check|list``: validate a pack, show what is active."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rules.pack import RulePackError, load_pack, packaged_pack_path
from stream.cli_settings import load_settings

rules_cli = typer.Typer(help="Rule packs: validate and list.", no_args_is_help=True)


@rules_cli.command("check")
def check(pack: Annotated[Path, typer.Argument(help="Rule pack TOML file.")]) -> None:
    """Load and validate a pack; exit 1 with file, rule and field of the first problem."""
    try:
        loaded = load_pack(pack)
    except RulePackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{pack}: pack {loaded.label} is valid, {len(loaded.rules)} rules")


@rules_cli.command("list")
def list_rules(
    pack: Annotated[
        Path | None, typer.Option(help="Pack to show (default: AMLWATCH_RULE_PACK or pboc).")
    ] = None,
) -> None:
    """Show the rules of the active pack."""
    settings = load_settings()
    path = pack or settings.rule_pack or packaged_pack_path()
    try:
        loaded = load_pack(path)
    except RulePackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    table = Table(title=f"{loaded.label} ({path})")
    for column in ("id", "v", "outcome", "severity", "title"):
        table.add_column(column)
    for rule in loaded.rules:
        table.add_row(
            rule.id, str(rule.version), rule.outcome.value, rule.severity.value, rule.title
        )
    Console().print(table)
