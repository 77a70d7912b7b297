"""How fast the case store keeps transactions and ingests alerts, without broker or worker.

The worker's two case-store writes, called the way ``stream/case_agent.py`` calls them,
each batch in its own committed transaction: ``store_transactions`` for every validated
transaction (batches of 500), and the detection ingest for alerts (batches of 200) and
for large-value reports (batches of 8, about what one of the worker's batches of 500
transactions carries on the stream bench's workload: 448 report and 123 alert
detections over 80 batches; there the ingest's fixed cost a batch dominates). The
store is a fresh migrated SQLite file and, with ``--database-url``, PostgreSQL in a
throwaway schema that is dropped afterwards (the database is shared).

Input comes from the simulator (fixed seed): customers and managers imported first, a
transaction history, and alerts on those customers with mixed severities, so that some
open a case and most join one. Each phase reports wall and CPU seconds (this process:
Python, and SQLite, which runs in-process; PostgreSQL's server CPU is counted only in
``machine_busy_seconds``) and rows per wall second.

Run: ``.venv/bin/python bench/case_store_bench.py [--transactions N] [--alerts M]
[--reports R] [--database-url URL] [--out PATH]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from stream_bench import BenchError, console, machine_busy_seconds, measure_and_write

from alerts.actors import Actor, Role
from alerts.audit import verify_audit_chain
from alerts.cases import ingest_detections
from alerts.database import (
    AlertRow,
    LargeValueReportRow,
    TransactionRow,
    make_engine,
    new_sqlite_store,
    session_factory,
    session_scope,
    temporary_schema_store,
)
from alerts.imports import import_customers, import_managers
from alerts.transactions import StoredTransaction, store_transactions
from core.detection import Detection, Outcome, Severity
from core.transaction import Transaction, transaction_from_mapping
from rules.reference_data import load_calendar
from stream.simulator import (
    derive_rng,
    generate_reference,
    iter_transactions,
    write_customers_csv,
    write_managers_csv,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "case_store.json"
HISTORY_START = date(2026, 1, 5)
BENCH_ACTOR = Actor("case-store-bench", Role.ADMIN)
# Fixed conversion rates: the bench measures storing, not the rate table.
CNY_PER_UNIT = Decimal("7.1234")
USD_PER_UNIT = Decimal("1")
# Mostly high and medium, as the rule pack emits them; critical ones copy compliance.
SEVERITY_WEIGHTS = {Severity.LOW: 2, Severity.MEDIUM: 4, Severity.HIGH: 3, Severity.CRITICAL: 1}
PHASES = ("transactions", "transactions_redelivered", "alerts", "reports")
REPORT_DETECTOR = "LVT-CASH-CNY"

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class Workload:
    """What to store: reference data files, transactions, alert and report detections."""

    customers_csv: Path
    managers_csv: Path
    transactions: list[StoredTransaction]
    alerts: list[Detection]
    reports: list[Detection]


@dataclass(frozen=True)
class PhaseFigures:
    """One phase on one database: how many rows, each batch's wall time, CPU time."""

    rows: int
    batch_seconds: list[float]
    cpu_seconds: float
    machine_busy_seconds: float

    @property
    def wall_seconds(self) -> float:
        return sum(self.batch_seconds)

    def to_dict(self, offered: int | None = None) -> dict[str, Any]:
        """JSON-ready form; rates per ``offered`` rows when given (default: rows written)."""
        rate_rows = self.rows if offered is None else offered
        ordered = sorted(self.batch_seconds)
        return {
            "rows": self.rows,
            "batches": len(ordered),
            "wall_seconds": round(self.wall_seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "machine_busy_seconds": round(self.machine_busy_seconds, 4),
            "rows_per_second": round(rate_rows / self.wall_seconds, 1),
            "rows_per_cpu_second": round(rate_rows / max(self.cpu_seconds, 1e-9), 1),
            # A batch commits as a whole: its time is what the batch adds to latency.
            "batch_seconds_p50": round(ordered[len(ordered) // 2], 4),
            "batch_seconds_p99": round(ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)], 4),
            "batch_seconds_max": round(ordered[-1], 4),
        }


def build_workload(args: argparse.Namespace, work_dir: Path) -> Workload:
    """Reference data, transactions and alerts from ``args.seed``."""
    rng = derive_rng(args.seed, "case-store-bench")
    customers, managers = generate_reference(
        rng, args.customers, max(1, args.customers // 25), as_of=HISTORY_START
    )
    customers_csv, managers_csv = work_dir / "customers.csv", work_dir / "managers.csv"
    write_customers_csv(customers_csv, customers)
    write_managers_csv(managers_csv, managers)
    documents = itertools.islice(
        iter_transactions(rng, customers, start=HISTORY_START), args.transactions
    )
    transactions = []
    for document in documents:
        tx = transaction_from_mapping(document)
        transactions.append(
            StoredTransaction(tx, tx.amount * CNY_PER_UNIT, tx.amount * USD_PER_UNIT)
        )
    alert_rng = random.Random(f"{args.seed}/alerts")
    severities, weights = zip(*SEVERITY_WEIGHTS.items(), strict=True)
    alerts = []
    for index, tx in _picked(alert_rng, transactions, args.alerts):
        severity = alert_rng.choices(severities, weights)[0]
        score = round(alert_rng.random(), 4)
        alerts.append(_detection_on(tx, f"bench-{index}-{tx.tx_id}", severity, score=score))
    report_rng = random.Random(f"{args.seed}/reports")
    reports = [
        _detection_on(tx, f"bench-report-{index}-{tx.tx_id}", Severity.MEDIUM, report=True)
        for index, tx in _picked(report_rng, transactions, args.reports)
    ]
    return Workload(customers_csv, managers_csv, transactions, alerts, reports)


def _picked(
    rng: random.Random, transactions: Sequence[StoredTransaction], count: int
) -> Iterator[tuple[int, Transaction]]:
    """``count`` transactions drawn from ``transactions``, numbered."""
    for index in range(count):
        yield index, transactions[rng.randrange(len(transactions))].transaction


def _detection_on(
    tx: Transaction,
    detection_id: str,
    severity: Severity,
    *,
    score: float = 1.0,
    report: bool = False,
) -> Detection:
    """A detection triggered by ``tx`` alone: a structuring alert, or a large-value cash
    report."""
    return Detection(
        detection_id=detection_id,
        detector=REPORT_DETECTOR if report else "structuring",
        detector_version="1",
        outcome=Outcome.REPORT if report else Outcome.ALERT,
        severity=severity,
        customer_id=tx.customer_id,
        trigger_tx_id=tx.tx_id,
        tx_ids=(tx.tx_id,),
        reasons=(
            f"cash at or above the threshold on {tx.tx_id}"
            if report
            else f"structuring below the threshold on {tx.tx_id}",
        ),
        created_at=tx.timestamp,
        bank_day=tx.timestamp.astimezone(UTC).date(),
        score=score,
        values={"total" if report else "amount": str(tx.amount)},
    )


def batches(items: Sequence[_Item], size: int) -> Iterator[Sequence[_Item]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def timed_phase(
    label: str,
    items: Sequence[_Item],
    size: int,
    write: Callable[[Sequence[_Item]], int],
    progress: Progress,
) -> PhaseFigures:
    """Write ``items`` batch by batch; figures over the writes only; rows written."""
    task = progress.add_task(label, total=len(items))
    written = 0
    batch_seconds: list[float] = []
    cpu = busy = 0.0
    for batch in batches(items, size):
        started, cpu_started, busy_started = (
            time.perf_counter(),
            time.process_time(),
            machine_busy_seconds(),
        )
        written += write(batch)
        batch_seconds.append(time.perf_counter() - started)
        cpu += time.process_time() - cpu_started
        busy += machine_busy_seconds() - busy_started
        progress.advance(task, len(batch))
    return PhaseFigures(written, batch_seconds, cpu, busy)


def run_database(
    url: URL, workload: Workload, args: argparse.Namespace, progress: Progress
) -> dict[str, Any]:
    """Every phase on the migrated, empty store at ``url``; its figures and checks."""
    calendar = load_calendar()
    engine = make_engine(url)
    sessions = session_factory(engine)
    try:
        with session_scope(sessions) as session:
            import_managers(session, workload.managers_csv, actor=BENCH_ACTOR)
            import_customers(session, workload.customers_csv, actor=BENCH_ACTOR)

        def store(batch: Sequence[StoredTransaction]) -> int:
            with session_scope(sessions) as session:
                return store_transactions(session, batch)

        def ingest(batch: Sequence[Detection]) -> int:
            with session_scope(sessions) as session:
                outcomes = ingest_detections(
                    session, batch, now=datetime.now(UTC), calendar=calendar
                )
            return sum(not outcome.duplicate for outcome in outcomes)

        name = url.get_backend_name()
        transactions = timed_phase(
            f"{name}: transactions", workload.transactions, args.transaction_batch, store, progress
        )
        redelivered_count = max(1, len(workload.transactions) // 10)
        redelivered = timed_phase(
            f"{name}: redelivered",
            workload.transactions[:redelivered_count],
            args.transaction_batch,
            store,
            progress,
        )
        alerts = timed_phase(f"{name}: alerts", workload.alerts, args.alert_batch, ingest, progress)
        reports = timed_phase(
            f"{name}: reports", workload.reports, args.report_batch, ingest, progress
        )
        with sessions() as session:
            check_store(session, workload, transactions, redelivered, alerts, reports)
            cases = session.scalar(select(func.count(func.distinct(AlertRow.case_id)))) or 0
    finally:
        engine.dispose()
    return {
        "database": name,
        "transactions": transactions.to_dict(),
        # Inserts nothing by design: its rate is of the rows offered again.
        "transactions_redelivered": {
            **redelivered.to_dict(offered=redelivered_count),
            "offered": redelivered_count,
        },
        "alerts": {**alerts.to_dict(), "cases_opened": cases},
        "reports": reports.to_dict(),
    }


def check_store(
    session: Session,
    workload: Workload,
    transactions: PhaseFigures,
    redelivered: PhaseFigures,
    alerts: PhaseFigures,
    reports: PhaseFigures,
) -> None:
    """Refuse figures from a run whose writes did not store what they must."""
    stored = session.scalar(select(func.count()).select_from(TransactionRow)) or 0
    if transactions.rows != len(workload.transactions) or stored != len(workload.transactions):
        raise BenchError(
            f"stored {stored} transactions (reported {transactions.rows}) "
            f"of {len(workload.transactions)}"
        )
    if redelivered.rows:
        raise BenchError(f"a redelivered batch inserted {redelivered.rows} transactions")
    stored_alerts = session.scalar(select(func.count()).select_from(AlertRow)) or 0
    if alerts.rows != len(workload.alerts) or stored_alerts != len(workload.alerts):
        raise BenchError(f"stored {stored_alerts} alerts of {len(workload.alerts)}")
    stored_reports = session.scalar(select(func.count()).select_from(LargeValueReportRow)) or 0
    if reports.rows != len(workload.reports) or stored_reports != len(workload.reports):
        raise BenchError(f"stored {stored_reports} reports of {len(workload.reports)}")
    verdict = verify_audit_chain(session)
    if not verdict.ok:
        raise BenchError(f"the audit chain is broken: {verdict.message}")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: CPUs and their load, Python and the database libraries."""
    return {
        "cpu_count": len(os.sched_getaffinity(0)),
        # Other work on the machine moves the wall-clock figures more than the CPU ones.
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "python": platform.python_version(),
        "sqlalchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "sqlite": sqlite3.sqlite_version,
    }


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Build the workload, run every phase on each database; the result document."""
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-case-store-") as work:
        work_dir = Path(work)
        with console.status("generating transactions and alerts"):
            workload = build_workload(args, work_dir)
        runs = []
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            runs.append(run_database(new_sqlite_store(work_dir), workload, args, progress))
            if args.database_url:
                with temporary_schema_store(
                    args.database_url, schema_prefix="case_store_bench"
                ) as url:
                    runs.append(run_database(url, workload, args, progress))
    return {
        "timestamp": started.isoformat(),
        "machine": machine_facts(),
        "parameters": {
            "transactions": len(workload.transactions),
            "transaction_batch": args.transaction_batch,
            "alerts": len(workload.alerts),
            "alert_batch": args.alert_batch,
            "reports": len(workload.reports),
            "report_batch": args.report_batch,
            "customers": args.customers,
            "seed": args.seed,
        },
        "runs": runs,
        "bench_seconds": round((datetime.now(UTC) - started) / timedelta(seconds=1), 1),
    }


def print_summary(document: dict[str, Any]) -> None:
    """One row per database and phase."""
    parameters = document["parameters"]
    table = Table(
        title=(
            f"{parameters['transactions']:,} transactions, {parameters['alerts']:,} alerts, "
            f"{parameters['reports']:,} reports"
        )
    )
    for column in ("database", "phase", "rows", "wall s", "CPU s", "rows/s", "rows/CPU-s"):
        table.add_column(column, justify="left" if column in ("database", "phase") else "right")
    for run in document["runs"]:
        for phase in PHASES:
            figures = run[phase]
            table.add_row(
                run["database"],
                phase,
                f"{figures.get('offered', figures['rows']):,}",
                f"{figures['wall_seconds']:.2f}",
                f"{figures['cpu_seconds']:.2f}",
                f"{figures['rows_per_second']:,.0f}",
                f"{figures['rows_per_cpu_second']:,.0f}",
            )
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--transaction-batch", type=int, default=500, help="as the worker")
    parser.add_argument("--alerts", type=int, default=2_000)
    parser.add_argument("--alert-batch", type=int, default=200, help="as the worker")
    parser.add_argument("--reports", type=int, default=2_000)
    parser.add_argument(
        "--report-batch", type=int, default=8, help="as the worker's batch of 500 carries"
    )
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default=None,
        help="also run on this PostgreSQL (in a throwaway schema), "
        "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    for name in (
        "transactions",
        "transaction_batch",
        "alerts",
        "alert_batch",
        "reports",
        "report_batch",
        "customers",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench and write its result; 0 on success, 1 when it could not measure."""
    args = parse_args(argv)
    return measure_and_write(lambda: run_bench(args), args.out, print_summary)


if __name__ == "__main__":
    sys.exit(main())
