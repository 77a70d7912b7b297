"""``amlwatch backtest``: the worker's rule path over a transactions file, with a summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.calendar import DateOutsideCalendar
from core.customer import ReferenceRowError, read_customers_csv
from core.detection import Detection, Outcome
from core.errors import InvalidInput
from core.settings import Settings
from core.transaction import CsvRowError, Transaction, read_transactions_csv
from rules.backtest import Evaluation, alert_record, evaluate, in_event_order, run_backtest
from rules.reference_data import load_calendar
from stream.cli_settings import load_settings
from stream.detection_engine import build_rule_engine

REPORT_DEADLINE_WORKING_DAYS = 5  # PBoC Order No. 3, Art. 10
ERRORS_SHOWN = 10
PROGRESS_STEP = 2000


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def backtest(
    transactions: Annotated[
        Path, typer.Option(help="Transactions CSV (contract columns).", exists=True, dir_okay=False)
    ],
    customers: Annotated[
        Path, typer.Option(help="Customers CSV (DESIGN.md columns).", exists=True, dir_okay=False)
    ],
    out: Annotated[Path, typer.Option(help="Alerts as JSON Lines.")],
    reports: Annotated[
        Path | None, typer.Option(help="Large-value report records as JSON Lines.")
    ] = None,
    pack: Annotated[
        Path | None, typer.Option(help="Rule pack TOML (default: the packaged pboc pack).")
    ] = None,
    managers: Annotated[
        Path | None,
        typer.Option(help="Managers CSV; accepted for symmetry, routing is the case store's."),
    ] = None,
) -> None:
    """Run the rule pack over a transactions file in event-time order, as the worker would."""
    console = Console(stderr=True)
    settings: Settings = load_settings()
    if pack is not None:
        settings = settings.model_copy(update={"rule_pack": pack})
    try:
        engine = build_rule_engine(settings)
        calendar = load_calendar()
        customer_records = {c.customer_id: c for c in read_customers_csv(customers)}
    except (InvalidInput, ReferenceRowError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    del managers  # routing to managers happens in the case store (alerts issue)

    started = time.perf_counter()
    loaded: list[Transaction] = []
    errors: list[CsvRowError] = []
    with _progress(console) as progress:
        task = progress.add_task("reading", total=None)
        for line, row in read_transactions_csv(transactions):
            if isinstance(row, CsvRowError):
                errors.append(row)
            else:
                loaded.append(row)
            if line % PROGRESS_STEP == 0:
                progress.update(task, completed=line - 1)
        ordered = in_event_order(loaded)
        task = progress.add_task("applying", total=len(ordered))
        detections: list[Detection] = []
        applied = 0

        def advance() -> None:
            # Redrawing per transaction would cost more than the rules themselves.
            nonlocal applied
            applied += 1
            if applied % PROGRESS_STEP == 0 or applied == len(ordered):
                progress.update(task, completed=applied)

        try:
            for detection in run_backtest(ordered, customer_records, engine, on_processed=advance):
                detections.append(detection)
        except InvalidInput as exc:
            console.print(f"[red]error:[/red] {transactions.name}: {exc}")
            raise typer.Exit(2) from None
    elapsed = time.perf_counter() - started

    alerts_written = reports_written = undated = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as alerts_file:
        for detection in detections:
            if detection.outcome is Outcome.ALERT:
                customer = customer_records.get(detection.customer_id)
                record = alert_record(detection, customer.manager_id if customer else None)
                alerts_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                alerts_written += 1
    if reports is not None:
        reports.parent.mkdir(parents=True, exist_ok=True)
        with reports.open("w", encoding="utf-8") as reports_file:
            for detection in detections:
                if detection.outcome is Outcome.REPORT:
                    record = detection.to_dict()
                    try:
                        due = calendar.add_working_days(
                            detection.bank_day, REPORT_DEADLINE_WORKING_DAYS
                        ).isoformat()
                    except DateOutsideCalendar:
                        due = None  # holiday data for that year is not loaded yet
                        undated += 1
                    record["report_due"] = due
                    reports_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                    reports_written += 1

    out_console = Console()
    _print_rule_counts(out_console, detections)
    if any(tx.extra.get("sim_typology") for tx in loaded):
        _print_evaluation(out_console, evaluate(loaded, detections))
    for error in errors[:ERRORS_SHOWN]:
        out_console.print(f"[yellow]skipped[/yellow] {error}")
    if len(errors) > ERRORS_SHOWN:
        out_console.print(f"... and {len(errors) - ERRORS_SHOWN} more invalid rows")
    if undated:
        out_console.print(
            f"[yellow]warning[/yellow] {undated} report records have no due date: the holiday "
            "calendar does not cover their year (add it to rules/reference/holidays-cn.csv)"
        )
    rate = len(ordered) / elapsed if elapsed else 0.0
    out_console.print(
        f"{len(ordered):,} transactions ({len(errors):,} invalid rows skipped) in {elapsed:.1f}s "
        f"({rate:,.0f}/s): {alerts_written:,} alerts -> {out}"
        + (f", {reports_written:,} large-value report records -> {reports}" if reports else "")
    )


def _print_rule_counts(console: Console, detections: list[Detection]) -> None:
    counts = Counter((d.detector, d.outcome.value, d.severity.value) for d in detections)
    table = Table(title="Detections by rule")
    for column in ("rule", "outcome", "severity", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for (rule_id, outcome, severity), count in sorted(counts.items()):
        table.add_row(rule_id, outcome, severity, f"{count:,}")
    console.print(table)


def _print_evaluation(console: Console, evaluation: Evaluation) -> None:
    table = Table(title="Labelled scenarios found by alerts (simulator labels)")
    for column in ("typology", "scenarios", "found", "recall", "main detectors"):
        table.add_column(column)
    for typology, score in sorted(evaluation.by_typology.items()):
        detectors = evaluation.detectors_by_typology.get(typology, Counter())
        top = ", ".join(name for name, _ in detectors.most_common(2)) or "-"
        table.add_row(
            typology, str(score.scenarios), str(score.detected), f"{score.recall:.0%}", top
        )
    console.print(table)
    console.print(
        f"alert precision: {evaluation.alerts_on_labelled:,} of {evaluation.alerts:,} alerts "
        f"touch a labelled transaction ({evaluation.precision:.1%})"
    )
