"""``amlwatch backtest``: the worker's rule path over a transactions file, with a summary."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.calendar import DateOutsideCalendar
from core.customer import Customer, ReferenceRowError, read_customers_csv
from core.detection import Detection, Outcome
from core.errors import AmlwatchError, InvalidInput
from core.settings import Settings
from core.transaction import CsvRowError, Transaction, read_transactions_csv
from models.features import FEATURE_NAMES, build_feature_matrix, country_risk_from_lists
from models.registry import active_version, load
from models.scoring import (
    ANOMALY_DETECTOR,
    AnomalyCooldowns,
    anomaly_detection,
    explain,
    score_batch,
    warmed_up,
)
from rules.backtest import (
    alert_record,
    evaluate,
    in_event_order,
    run_backtest,
    scenarios_beginning_from,
)
from rules.engine import RuleEngine
from rules.reference_data import RateTable, load_calendar
from stream.cli_settings import load_settings
from stream.collector import freeze_long_lived, tune_collector
from stream.detection_engine import build_rule_engine

REPORT_DEADLINE_WORKING_DAYS = 5  # PBoC Order No. 3, Art. 10
ERRORS_SHOWN = 10
PROGRESS_STEP = 2000
EPOCH_DAY = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
PERSIST_TRANSACTIONS_BATCH = 500


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
    models: Annotated[
        Path | None,
        typer.Option(help="Model registry to score with (default: AMLWATCH_MODELS_DIR)."),
    ] = None,
    no_model: Annotated[
        bool, typer.Option("--no-model", help="Rules alone, even if a model is active.")
    ] = False,
    evaluate_from: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            metavar="YYYY-MM-DD",
            help="Replay the whole file, but write, count and evaluate only the detections "
            "of this bank-local day and later.",
        ),
    ] = None,
    persist: Annotated[
        bool,
        typer.Option(
            "--persist",
            help="Also store the transactions, large-value report records and alerts in the "
            "case store (AMLWATCH_DATABASE_URL), as the live worker does: back-fill a period "
            "to report on. Idempotent: a second run stores nothing twice.",
        ),
    ] = False,
) -> None:
    """Run the rule pack (and the active anomaly model) over a file, as the worker would.

    With ``--evaluate-from`` the days before only build state and behaviour profiles, as
    they would have in a long-running worker: the evaluation window is that day onwards.
    """
    console = Console(stderr=True)
    settings: Settings = load_settings()
    tz = ZoneInfo(settings.bank_timezone)
    window_start = evaluate_from.date() if evaluate_from is not None else None
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
        # The file's transactions stay until the end: out of the collector's walks.
        tune_collector()
        freeze_long_lived()
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
    model_version = None
    if not no_model:
        registry = models if models is not None else settings.model_registry
        try:
            scored = score_with_active_model(registry, ordered, customer_records, engine, settings)
        except AmlwatchError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        if scored is None:
            console.print(f"no active model in {registry}: rules only")
        else:
            model_version, anomalies = scored
            detections.extend(anomalies)
    elapsed = time.perf_counter() - started
    in_window = ordered
    if window_start is not None:
        detections = [d for d in detections if d.bank_day >= window_start]
        in_window = [tx for tx in ordered if tx.timestamp.astimezone(tz).date() >= window_start]

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

    persisted = _persist(settings, engine, ordered, detections, console) if persist else None

    out_console = Console()
    _print_rule_counts(out_console, detections)
    if any(tx.extra.get("sim_typology") for tx in loaded):
        counted = (
            scenarios_beginning_from(loaded, window_start, tz) if window_start is not None else None
        )
        _print_evaluation(
            out_console, loaded, len(in_window), detections, model_version, counted, window_start
        )
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
    window = (
        f"; from {window_start}: {len(in_window):,} transactions"
        if window_start is not None
        else ""
    )
    out_console.print(
        f"{len(ordered):,} transactions ({len(errors):,} invalid rows skipped) in {elapsed:.1f}s "
        f"({rate:,.0f}/s){window}: {alerts_written:,} alerts -> {out}"
        + (f", {reports_written:,} large-value report records -> {reports}" if reports else "")
        + (f"; case store: {persisted}" if persisted else "")
    )


def _persist(
    settings: Settings,
    engine: RuleEngine,
    ordered: list[Transaction],
    detections: list[Detection],
    console: Console,
) -> str:
    """Store transactions and detections through the worker's own code; what was new."""
    from alerts.transactions import StoredTransaction
    from stream.case_agent import BATCH_SIZE, store_batch
    from stream.case_store import CaseStore

    rates = engine.reference.rates
    converted: list[StoredTransaction] = []
    for tx in ordered:
        try:
            cny, usd = rates.to_cny(tx.amount, tx.currency), rates.to_usd(tx.amount, tx.currency)
        except InvalidInput:
            continue  # the worker dead-letters what it cannot convert
        converted.append(StoredTransaction(tx, cny, usd))
    new_tx = opened = joined = records = duplicates = 0
    try:
        store = CaseStore.open(settings)
    except AmlwatchError as exc:
        console.print(f"[red]error:[/red] case store: {exc}")
        raise typer.Exit(2) from None
    with store, _progress(console) as progress:
        task = progress.add_task("storing tx", total=len(converted))
        for start in range(0, len(converted), PERSIST_TRANSACTIONS_BATCH):
            batch = converted[start : start + PERSIST_TRANSACTIONS_BATCH]
            new_tx += store_batch(store, batch, ()).new_transactions
            progress.update(task, advance=len(batch))
        task = progress.add_task("storing det", total=len(detections))
        for start in range(0, len(detections), BATCH_SIZE):
            chunk = detections[start : start + BATCH_SIZE]
            for item in store_batch(store, (), chunk).detections:
                result = item.result
                duplicates += result.duplicate
                opened += result.created
                joined += result.joined
                records += result.report_id is not None and not result.duplicate
            progress.update(task, advance=len(chunk))
    return (
        f"{new_tx:,} new transactions, {records:,} large-value report records, "
        f"{opened:,} cases opened, {joined:,} alerts joined open cases, "
        f"{duplicates:,} detections already stored"
    )


def _print_rule_counts(console: Console, detections: list[Detection]) -> None:
    counts = Counter((d.detector, d.outcome.value, d.severity.value) for d in detections)
    table = Table(title="Detections by rule")
    for column in ("rule", "outcome", "severity", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for (rule_id, outcome, severity), count in sorted(counts.items()):
        table.add_row(rule_id, outcome, severity, f"{count:,}")
    console.print(table)


class PhaseTimes:
    """CPU and wall seconds spent per named phase, summed over its measured stretches."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[phase] += time.process_time() - cpu
            self.wall[phase] += time.perf_counter() - wall


def scoring_frame(transactions: list[Transaction], rates: RateTable) -> pd.DataFrame:
    """The columns the feature pipeline reads, built column by column.

    The same values as a frame of ``tx.to_dict()`` rows (enums as their values, None
    where a field is absent), without a dict per row. The timestamp is a UTC datetime
    column rather than RFC 3339 text: the same instants, not formatted here only for
    the feature pipeline to parse them back.
    """
    return pd.DataFrame(
        {
            "tx_id": [tx.tx_id for tx in transactions],
            # Whole microseconds since the epoch, exact, read as one array: a datetime
            # column built from the datetime objects took pandas twice as long.
            "timestamp": pd.to_datetime(
                np.array([(tx.timestamp - _EPOCH) // _MICROSECOND for tx in transactions]),
                unit="us",
                utc=True,
            ),
            "customer_id": [tx.customer_id for tx in transactions],
            "direction": [tx.direction.value for tx in transactions],
            "channel": [tx.channel.value for tx in transactions],
            "counterparty_id": [tx.counterparty_id for tx in transactions],
            "counterparty_country": [tx.counterparty_country for tx in transactions],
            "amount_cny": [rates.to_cny(tx.amount, tx.currency) for tx in transactions],
        }
    )


def score_with_active_model(
    registry: Path,
    ordered: list[Transaction],
    customers: dict[str, Customer],
    engine: RuleEngine,
    settings: Settings,
    phases: PhaseTimes | None = None,
) -> tuple[str, list[Detection]] | None:
    """Anomaly alerts of the active model over the file, scored in one batch; None if none.

    As the worker does: transactions of customers missing from the customers file are
    not scored (type and risk rating are features), nor those of a customer's first
    week (``models.scoring.warmed_up``). ``phases``, when given, receives the time spent
    in "features" (frame and feature matrix), "scoring" and "anomalies".
    """
    version = active_version(registry) if registry.exists() else None
    if version is None:
        return None
    detector, _metadata = load(registry, version, expected_features=FEATURE_NAMES)
    phases = phases if phases is not None else PhaseTimes()
    reference = engine.reference
    known = [tx for tx in ordered if tx.customer_id in customers]
    if not known:
        return version, []
    tz = ZoneInfo(settings.bank_timezone)
    with phases.measure("features"):
        frame = scoring_frame(known, reference.rates)
        lists = reference.country_lists
        features = build_feature_matrix(
            frame, customers, country_risk_from_lists(grey=lists.grey, black=lists.black), tz
        )
    with phases.measure("anomalies"):
        local_midnights = frame["timestamp"].dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
        local_days = (local_midnights - pd.Timestamp(EPOCH_DAY)).dt.days + EPOCH_DAY.toordinal()
        # In event order a customer's first day is the smallest: what the worker's profile saw.
        first_days = local_days.groupby(frame["customer_id"]).transform("min")
        due = np.flatnonzero(warmed_up(first_days.to_numpy(), local_days.to_numpy()))
    with phases.measure("scoring"):
        # Only the rows past their customer's warm-up, as the worker scores: the others
        # could never alert, and the forest's cost is per row.
        scored = score_batch(detector, features.to_numpy(dtype=np.float64)[due])
    with phases.measure("anomalies"):
        anomalies = []
        cooldowns = AnomalyCooldowns()
        for position in np.flatnonzero(scored.alert):
            row = due[position]
            tx = known[row]
            if not cooldowns.take(tx.customer_id, tx.event_epoch):
                continue
            values = features.iloc[row]
            anomalies.append(
                anomaly_detection(
                    known[row],
                    risk=float(scored.risk[position]),
                    reasons=explain(values.to_numpy()),
                    values=values.to_dict(),
                    model_version=version,
                    tz=tz,
                )
            )
    return version, anomalies


def _print_evaluation(
    console: Console,
    transactions: list[Transaction],
    transactions_in_window: int,
    detections: list[Detection],
    model_version: str | None,
    counted_scenarios: set[str] | None,
    window_start: date | None,
) -> None:
    by_rules = [d for d in detections if d.detector != ANOMALY_DETECTOR]
    by_model = [d for d in detections if d.detector == ANOMALY_DETECTOR]
    views = {"rules": evaluate(transactions, by_rules, counted_scenarios=counted_scenarios)}
    if model_version is not None:
        views["model"] = evaluate(transactions, by_model, counted_scenarios=counted_scenarios)
        views["both"] = evaluate(transactions, detections, counted_scenarios=counted_scenarios)
    title = "Labelled scenarios found by alerts (simulator labels)"
    if window_start is not None:
        title += f", scenarios beginning from {window_start}"
    if model_version is not None:
        title += f", model {model_version}"
    table = Table(title=title)
    table.add_column("typology")
    table.add_column("scenarios", justify="right")
    for name in views:
        table.add_column(name, justify="right")
    for typology, score in sorted(views["rules"].by_typology.items()):
        cells = [
            f"{view.by_typology[typology].detected} ({view.by_typology[typology].recall:.0%})"
            for view in views.values()
        ]
        table.add_row(typology, str(score.scenarios), *cells)
    per_thousand = [
        f"{1000 * view.alerts / transactions_in_window:.2f}" if transactions_in_window else "-"
        for view in views.values()
    ]
    table.add_row("alerts per 1,000 tx", "", *per_thousand)
    table.add_row("alert precision", "", *(f"{view.precision:.1%}" for view in views.values()))
    console.print(table)
