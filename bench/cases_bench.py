"""End-to-end latency from producing a transaction to its case being stored, at a steady rate.

One embedded broker, the real worker (``stream.worker.run_worker``) in a subprocess, a
fresh case store (SQLite file by default, ``--database-url`` for PostgreSQL) with the
managers and customers imported first, and the customers file handed to the worker.

The input is a simulated history with many laundering scenarios. The bench runs it once
through the in-process backtest (same rule engine as the worker) to know which alerts
must come out and which transaction triggers each. It then produces the history at a
steady rate, paced by the wall clock, and records when each transaction was sent. The
latency of an alert is its ``received_at`` in the case store (wall clock, stamped by the
worker when it stores the batch) minus the send time of its ``trigger_tx_id``.

A short warm-up stream goes first (its alerts are excluded); the bench then produces the
measured stream, waits until every expected alert is stored, and reports latency
percentiles, alerts stored per second, cases opened, the rate the worker sustained
(``amlwatch_transactions_processed_total``) and whether it kept up with the offered rate.
See bench/README.md.

Run: ``.venv/bin/python bench/cases_bench.py [--rate TX_PER_S] [--duration S] [--out PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from stream_bench import (
    BenchError,
    Counts,
    add_partitions_option,
    code_state,
    collector_pauses,
    log_tail,
    machine_busy_seconds,
    machine_facts,
    pin_to,
    pipeline_counter,
    process_cpu_seconds,
    read_metrics,
    run_main,
    running_process,
    split_cores,
)

from alerts.actors import Actor, Role
from alerts.database import (
    AlertRow,
    CaseRow,
    LargeValueReportRow,
    make_engine,
    migrate,
    session_factory,
)
from alerts.imports import import_customers, import_managers
from core.detection import Outcome
from core.settings import Settings
from core.transaction import transaction_from_mapping
from rules.backtest import in_event_order, run_backtest
from stream.broker import EmbeddedBroker, broker_binary, free_loopback_port
from stream.detection_engine import build_rule_engine
from stream.simulator import (
    derive_rng,
    generate_reference,
    iter_transactions,
    transaction_json_bytes,
    write_customers_csv,
    write_managers_csv,
)
from stream.topics import ensure_topics

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "cases.json"
WORKER_COMMAND = (
    "from core.settings import Settings; from stream.worker import run_worker; "
    "run_worker(Settings())"
)
HISTORY_START = date(2026, 1, 5)
BENCH_ACTOR = Actor("cases-bench", Role.ADMIN)
# The worker counts as keeping up when it has processed everything this soon after the
# last send: its own batching (up to 0.1 s per stage, 0.2 s for the case store) and one
# poll interval fit easily; a backlog of more than a few seconds does not.
KEPT_UP_DRAIN_SECONDS = 5.0
LATENCY_WINDOWS = 6
# How long the producer of the measured stream (the bank's upstream system) lets a record
# wait for others to share its request: 5 ms is the Java client's default since Apache
# Kafka 4.0 (it was 0). At 1,000 records/s, 0 sends nearly every record in a request of
# its own, and the embedded broker spends most of its core on those requests (see
# bench/README.md); --producer-linger-ms 0 measures that too.
PRODUCER_LINGER_MS = 5
# The topics the worker reads or writes outside its own internal ones: created up front.
TOPIC_SETTINGS = (
    "AMLWATCH_TRANSACTIONS_TOPIC",
    "AMLWATCH_DEAD_LETTER_TOPIC",
    "AMLWATCH_ALERTS_TOPIC",
    "AMLWATCH_REPORTS_TOPIC",
)

console = Console()


# --- the workload -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What to produce, and which alerts the backtest says it must turn into."""

    # (tx_id, key, value) in event order; the first ``warmup`` are the warm-up stream.
    records: list[tuple[str, bytes, bytes]]
    warmup: int
    # Alert detection id -> trigger tx_id, for alerts triggered by measured transactions.
    expected_alerts: dict[str, str]
    warmup_alerts: frozenset[str]
    expected_reports: int
    customers_csv: Path
    managers_csv: Path
    customers: int
    managers: int

    @property
    def measured(self) -> int:
        return len(self.records) - self.warmup


def build_workload(args: argparse.Namespace, work_dir: Path, settings: Settings) -> Workload:
    """Reference data and history from ``args.seed``; the expected alerts by backtest."""
    rng = derive_rng(args.seed, "cases-bench")
    customers, managers = generate_reference(
        rng, args.customers, max(1, args.customers // 25), as_of=HISTORY_START
    )
    customers_csv, managers_csv = work_dir / "customers.csv", work_dir / "managers.csv"
    write_customers_csv(customers_csv, customers)
    write_managers_csv(managers_csv, managers)

    warmup = max(1, round(args.rate * args.warmup_seconds))
    measured = max(1, round(args.rate * args.duration))
    documents = itertools.islice(
        iter_transactions(rng, customers, start=HISTORY_START, scenario_rate=args.scenario_rate),
        warmup + measured,
    )
    transactions = in_event_order(transaction_from_mapping(doc) for doc in documents)
    records = [
        (tx.tx_id, tx.customer_id.encode(), transaction_json_bytes(tx.to_dict()))
        for tx in transactions
    ]
    warmup_ids = {tx_id for tx_id, _, _ in records[:warmup]}
    directory = {c.customer_id: c for c in customers}
    expected: dict[str, str] = {}
    warmup_alerts: set[str] = set()
    reports = 0
    for detection in run_backtest(transactions, directory, build_rule_engine(settings)):
        if detection.outcome is Outcome.REPORT:
            reports += 1
        elif detection.trigger_tx_id in warmup_ids:
            warmup_alerts.add(detection.detection_id)
        else:
            expected[detection.detection_id] = detection.trigger_tx_id
    return Workload(
        records=records,
        warmup=warmup,
        expected_alerts=expected,
        warmup_alerts=frozenset(warmup_alerts),
        expected_reports=reports,
        customers_csv=customers_csv,
        managers_csv=managers_csv,
        customers=len(customers),
        managers=len(managers),
    )


def prepare_store(url: str, workload: Workload) -> None:
    """Migrate, refuse a store that already holds alerts, import managers then customers."""
    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            if session.scalar(select(func.count()).select_from(AlertRow)):
                raise BenchError(f"the case store at {make_url(url)!r} already holds alerts")
            import_managers(session, workload.managers_csv, actor=BENCH_ACTOR)
            import_customers(session, workload.customers_csv, actor=BENCH_ACTOR)
            session.commit()
    finally:
        engine.dispose()


def read_engine(url: str) -> Engine:
    """An engine for the bench's reads only.

    Not ``make_engine``: on SQLite that begins every transaction IMMEDIATE, so each poll
    would take the write lock from the worker. Plain reads take a shared lock briefly.
    """
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url)


# --- producing at a steady rate -------------------------------------------------------


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used over the measured window by the worker, the broker, the machine."""

    worker: float
    broker: float
    machine: float


@dataclass
class ProduceLog:
    """When each transaction was sent, how late against the schedule, when acknowledged."""

    sent_at: dict[str, float] = field(default_factory=dict)
    schedule_lag: list[float] = field(default_factory=list)
    ack_seconds: list[float] = field(default_factory=list)
    first_send: float = 0.0
    last_send: float = 0.0


async def produce_paced(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[str, bytes, bytes]],
    rate: float,
    log: ProduceLog,
    on_progress: Callable[[int], None],
    *,
    linger_ms: int,
) -> None:
    """Send ``records`` at ``rate`` per second on the wall clock; wait for every ack."""
    # The upstream system's producer: a record waits up to linger_ms for others to share
    # its request (see PRODUCER_LINGER_MS). The one-record-batch rule of the embedded
    # broker matters only to consumers that start from the latest offset; the worker is
    # already consuming when this starts.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    await producer.start()
    try:
        acks: list[asyncio.Future[Any]] = []
        start = time.time()
        log.first_send = start
        for index, (tx_id, key, value) in enumerate(records):
            due = start + index / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at = time.time()
            future = await producer.send(topic, value, key=key)
            log.sent_at[tx_id] = sent_at
            log.schedule_lag.append(max(0.0, sent_at - due))
            future.add_done_callback(
                lambda _done, sent_at=sent_at: log.ack_seconds.append(time.time() - sent_at)
            )
            acks.append(future)
            if index % 100 == 99:
                on_progress(100)
        log.last_send = time.time()
        on_progress(len(records) % 100)
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


# --- watching the worker and the case store ------------------------------------------


class Monitor(threading.Thread):
    """Polls the worker's processed counter and the alerts table while the bench runs.

    A thread, so that polling never delays the paced producer's event loop.
    """

    def __init__(
        self,
        read_counts: Callable[[], Counts | None],
        engine: Engine,
        interval: float,
        on_poll: Callable[[Monitor], None],
    ) -> None:
        super().__init__(name="cases-bench-monitor", daemon=True)
        self._read_counts = read_counts
        self._engine = engine
        self._interval = interval
        self._on_poll = on_poll
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._last_alert_id = 0
        # (wall time, processed) per successful /metrics read.
        self.processed: list[tuple[float, int]] = []
        # Alert detection id -> wall time of the first poll that saw it stored.
        self.seen: dict[str, float] = {}
        self.failure: BaseException | None = None

    @property
    def latest_processed(self) -> int:
        return self.processed[-1][1] if self.processed else 0

    def seen_ids(self) -> frozenset[str]:
        """The detection ids stored so far (a copy: the polling thread keeps adding)."""
        with self._lock:
            return frozenset(self.seen)

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.poll()
                self._on_poll(self)
                self._stop_event.wait(self._interval)
        except BaseException as exc:  # reported by the main thread, not lost in this one
            self.failure = exc

    def poll(self) -> None:
        """One reading of the processed counter and of newly stored alerts."""
        counts = self._read_counts()
        if counts is not None:
            self.processed.append((time.time(), counts.processed))
        query = (
            select(AlertRow.id, AlertRow.detection_id)
            .where(AlertRow.id > self._last_alert_id)
            .order_by(AlertRow.id)
        )
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(query).all()
        except SQLAlchemyError:
            return  # busy store: try again next poll
        # An upper bound on when these became visible: the query has just returned.
        seen_at = time.time()
        with self._lock:
            for alert_id, detection_id in rows:
                self.seen.setdefault(detection_id, seen_at)
                self._last_alert_id = max(self._last_alert_id, alert_id)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _processed_at(samples: list[tuple[float, int]], moment: float) -> tuple[float, int]:
    """The last sample taken at or before ``moment`` (the first one if none was)."""
    before = [sample for sample in samples if sample[0] <= moment]
    return before[-1] if before else samples[0]


def _first_reaching(samples: list[tuple[float, int]], count: int) -> float | None:
    return next((at for at, processed in samples if processed >= count), None)


def wait_for(
    condition: Callable[[], bool],
    process: Any,
    timeout: float,
    failure: str,
    monitor: Monitor | None = None,
    broker: EmbeddedBroker | None = None,
) -> bool:
    """Poll ``condition`` until true (True) or ``timeout`` (False); raise if a process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker is not None and not broker.running:
            raise BenchError(f"the embedded broker exited ({failure})")
        if process.poll() is not None:
            raise BenchError(f"worker exited with code {process.returncode} ({failure})")
        if monitor is not None and monitor.failure is not None:
            raise BenchError(f"monitoring failed: {monitor.failure!r}")
        if condition():
            return True
        time.sleep(0.2)
    return False


def broker_process() -> psutil.Process | None:
    """The embedded broker among the bench's children (for its CPU time), if found."""
    binary = broker_binary()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.cmdline()[:1] == [binary]:
                return child
    return None


def cpu_seconds(process: psutil.Process | None) -> float:
    """User + system CPU seconds of ``process`` (0 when unknown or gone)."""
    if process is None:
        return 0.0
    with contextlib.suppress(psutil.Error):
        return process_cpu_seconds(process)
    return 0.0


def worker_ready(web_port: int) -> bool:
    """The worker's /healthz answers 200: recovery done, not rebalancing."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=2.0) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


# --- figures ------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """count, mean, p50, p95, p99 and max (seconds, 4 decimals); None figures if empty."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 4),
        "p50": round(percentile(ordered, 0.50), 4),
        "p95": round(percentile(ordered, 0.95), 4),
        "p99": round(percentile(ordered, 0.99), 4),
        "max": round(ordered[-1], 4),
    }


def latency_by_send_window(
    latencies: Sequence[tuple[float, float]],
    first_send: float,
    last_send: float,
    *,
    counted: str = "alerts",
) -> list[dict[str, Any]]:
    """p50/p99 of alerts (or what ``counted`` names) grouped by when their trigger was
    sent: shows latency growing."""
    width = max((last_send - first_send) / LATENCY_WINDOWS, 1e-6)
    windows: list[list[float]] = [[] for _ in range(LATENCY_WINDOWS)]
    for sent_at, latency in latencies:
        index = min(int((sent_at - first_send) / width), LATENCY_WINDOWS - 1)
        windows[index].append(latency)
    rows = []
    for index, values in enumerate(windows):
        ordered = sorted(values)
        rows.append(
            {
                "sent_from_second": round(index * width, 1),
                "sent_to_second": round((index + 1) * width, 1),
                counted: len(ordered),
                "p50": round(percentile(ordered, 0.50), 4) if ordered else None,
                "p99": round(percentile(ordered, 0.99), 4) if ordered else None,
            }
        )
    return rows


def stored_alerts(engine: Engine) -> list[tuple[str, str, datetime]]:
    """(detection_id, trigger_tx_id, received_at) of every stored alert."""
    query = select(AlertRow.detection_id, AlertRow.trigger_tx_id, AlertRow.received_at)
    with engine.connect() as connection:
        return [(row[0], row[1], row[2]) for row in connection.execute(query)]


def count_rows(engine: Engine, table: Any) -> int:
    """Rows in ``table``."""
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# --- the run ------------------------------------------------------------------------


def _child_env(
    args: argparse.Namespace,
    broker_url: str,
    run_id: str,
    web_port: int,
    data_dir: Path,
    database_url: str,
    customers_csv: Path,
) -> dict[str, str]:
    # main() has already dropped the caller's AMLWATCH_* variables.
    env = dict(os.environ)
    env.update(
        AMLWATCH_BROKER_URL=broker_url,
        AMLWATCH_DEV_BROKER_PROFILE="true",
        AMLWATCH_WEB_PORT=str(web_port),
        AMLWATCH_APP_ID=f"bench-cases-{run_id}",
        AMLWATCH_TRANSACTIONS_TOPIC=f"bench-transactions-{run_id}",
        AMLWATCH_DEAD_LETTER_TOPIC=f"bench-dlq-{run_id}",
        AMLWATCH_ALERTS_TOPIC=f"bench-alerts-{run_id}",
        AMLWATCH_REPORTS_TOPIC=f"bench-reports-{run_id}",
        AMLWATCH_TOPIC_PARTITIONS=str(args.partitions),
        AMLWATCH_DATA_DIR=str(data_dir),
        AMLWATCH_DATABASE_URL=database_url,
        AMLWATCH_CUSTOMERS_FILE=str(customers_csv),
    )
    return env


def run_bench(args: argparse.Namespace, log_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Prepare the store, start broker and worker, warm up, produce, wait; the result."""
    began = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    facts = machine_facts()
    code = code_state()
    settings = Settings()
    database_url = args.database_url or f"sqlite:///{work_dir / 'cases.sqlite3'}"
    # The worker alone on one core; the broker, this bench's producer and poller (and
    # PostgreSQL's backends if used) on the others. Set before the broker starts, which
    # inherits it.
    worker_cpus, bench_cpus = split_cores(None)
    pin_to(bench_cpus, psutil.Process())

    with console.status("generating the history and running the backtest"):
        workload = build_workload(args, work_dir, settings)
        prepare_store(database_url, workload)
    if not workload.expected_alerts:
        raise BenchError("the measured stream triggers no alert: raise --scenario-rate")
    console.print(
        f"{len(workload.records):,} transactions ({workload.warmup:,} warm-up), "
        f"{len(workload.expected_alerts):,} alerts expected from the measured stream"
    )

    web_port = free_loopback_port()
    data_dir = work_dir / "worker"
    (data_dir / "faust").mkdir(parents=True)
    reader = read_engine(database_url)
    worker_log = log_dir / "worker.log"
    with (
        EmbeddedBroker(log_path=log_dir / "broker.log") as broker,
        Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        env = _child_env(
            args, broker.url, run_id, web_port, data_dir, database_url, workload.customers_csv
        )
        topic = env["AMLWATCH_TRANSACTIONS_TOPIC"]
        asyncio.run(
            ensure_topics(
                broker.bootstrap, [env[name] for name in TOPIC_SETTINGS], args.partitions, 1
            )
        )
        spawned = time.monotonic()
        command = [sys.executable, "-c", WORKER_COMMAND]
        with running_process(command, env, worker_log, work_dir, cpus=worker_cpus) as process:
            try:
                result = _measure(
                    args, workload, broker, process, web_port, topic, reader, progress, spawned
                )
            except BenchError as exc:
                tail = log_tail(worker_log)
                raise BenchError(f"{exc}\n--- end of the worker's log ---\n{tail}") from None
            finally:
                reader.dispose()

    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": facts,
        "code": code,
        "parameters": {
            "rate": args.rate,
            "duration_seconds": args.duration,
            "warmup_seconds": args.warmup_seconds,
            "transactions": workload.measured,
            "warmup_transactions": workload.warmup,
            "customers": workload.customers,
            "managers": workload.managers,
            "scenario_rate": args.scenario_rate,
            "producer_linger_ms": args.producer_linger_ms,
            "seed": args.seed,
            "partitions": args.partitions,
            "database": make_url(database_url).get_backend_name(),
            "poll_interval_seconds": args.poll_interval,
            "anomaly_model": None,  # the worker's registry is empty: rules only
            "worker_cpus": sorted(worker_cpus),
        },
        **result,
        "bench_seconds": round(time.monotonic() - began, 1),
    }


def _measure(
    args: argparse.Namespace,
    workload: Workload,
    broker: EmbeddedBroker,
    process: Any,
    web_port: int,
    topic: str,
    reader: Engine,
    progress: Progress,
    spawned: float,
) -> dict[str, Any]:
    """Warm up, produce the measured stream, wait for its alerts; the figures."""
    worker = psutil.Process(process.pid)
    broker_cpu = broker_process()
    warmup_records = workload.records[: workload.warmup]
    measured_records = workload.records[workload.warmup :]
    expected_ids = frozenset(workload.expected_alerts)
    total = len(workload.records)
    start_task = progress.add_task("worker: starting", total=None)
    if not wait_for(lambda: worker_ready(web_port), process, args.startup_timeout, "starting"):
        raise BenchError(f"worker not ready on /healthz within {args.startup_timeout:.0f}s")
    startup_seconds = time.monotonic() - spawned
    progress.update(start_task, description="worker: ready", total=1, completed=1)

    processed_task = progress.add_task("worker: processed", total=total)
    alerts_task = progress.add_task("alerts stored", total=len(expected_ids))

    def on_poll(monitor: Monitor) -> None:
        progress.update(processed_task, completed=min(monitor.latest_processed, total))
        progress.update(alerts_task, completed=len(expected_ids & monitor.seen_ids()))

    monitor = Monitor(pipeline_counter(web_port, topic), reader, args.poll_interval, on_poll)
    monitor.start()
    try:
        # Warm-up: the same pace, then everything processed and its alerts stored, so the
        # measured stream meets a worker with its connections, caches and case store warm.
        warm_task = progress.add_task("producing warm-up", total=len(warmup_records))
        asyncio.run(
            produce_paced(
                broker.bootstrap,
                topic,
                warmup_records,
                args.rate,
                ProduceLog(),
                lambda sent: progress.advance(warm_task, sent),
                linger_ms=args.producer_linger_ms,
            )
        )
        warm_done = wait_for(
            lambda: (
                monitor.latest_processed >= workload.warmup
                and workload.warmup_alerts <= monitor.seen_ids()
            ),
            process,
            args.drain_timeout,
            "warming up",
            monitor,
            broker,
        )
        if not warm_done:
            raise BenchError(
                f"warm-up not done in {args.drain_timeout:.0f}s: processed "
                f"{monitor.latest_processed} of {workload.warmup}"
            )
        cases_before = count_rows(reader, CaseRow)
        cpu_before = (cpu_seconds(worker), cpu_seconds(broker_cpu), machine_busy_seconds())
        metrics_before = read_metrics(web_port)
        measured_log = ProduceLog()
        produce_task = progress.add_task("producing", total=len(measured_records))
        asyncio.run(
            produce_paced(
                broker.bootstrap,
                topic,
                measured_records,
                args.rate,
                measured_log,
                lambda sent: progress.advance(produce_task, sent),
                linger_ms=args.producer_linger_ms,
            )
        )
        # Until every expected alert is stored, the worker stalls, or time runs out.
        last_change, last_state = time.monotonic(), (0, 0)

        def drained() -> bool:
            nonlocal last_change, last_state
            state = (monitor.latest_processed, len(monitor.seen_ids()))
            if state != last_state:
                last_change, last_state = time.monotonic(), state
            elif time.monotonic() - last_change > args.stall_timeout:
                raise BenchError(
                    f"nothing moved for {args.stall_timeout:.0f}s: processed "
                    f"{state[0]} of {total}, {state[1]} alerts stored"
                )
            return monitor.latest_processed >= total and expected_ids <= monitor.seen_ids()

        complete = wait_for(drained, process, args.drain_timeout, "draining", monitor, broker)
        cpu_used = CpuUse(
            worker=cpu_seconds(worker) - cpu_before[0],
            broker=cpu_seconds(broker_cpu) - cpu_before[1],
            machine=machine_busy_seconds() - cpu_before[2],
        )
        done_at = time.time()
        rss = worker.memory_info().rss
        pauses = collector_pauses(metrics_before, read_metrics(web_port))
    finally:
        monitor.stop()
        monitor.poll()  # one last reading, after the worker stopped moving (or time ran out)

    return _figures(
        args,
        workload,
        monitor,
        measured_log,
        reader,
        expected_ids,
        complete=complete,
        cases_before=cases_before,
        cpu_used=cpu_used,
        done_at=done_at,
        rss=rss,
        startup_seconds=startup_seconds,
        pauses=pauses,
    )


def _figures(
    args: argparse.Namespace,
    workload: Workload,
    monitor: Monitor,
    produced: ProduceLog,
    reader: Engine,
    expected_ids: frozenset[str],
    *,
    complete: bool,
    cases_before: int,
    cpu_used: CpuUse,
    done_at: float,
    rss: int,
    startup_seconds: float,
    pauses: dict[str, dict[str, float]] | None,
) -> dict[str, Any]:
    total = len(workload.records)
    measured = workload.measured
    busy_window = max(done_at - produced.first_send, 1e-6)
    alerts = stored_alerts(reader)
    # Latency of every stored alert whose trigger was a measured transaction.
    latencies: list[tuple[float, float]] = []
    stored_at: list[float] = []
    visible: list[float] = []
    unexpected = 0
    for detection_id, trigger_tx_id, received_at in alerts:
        sent_at = produced.sent_at.get(trigger_tx_id)
        if sent_at is None:
            continue  # a warm-up alert
        if detection_id not in expected_ids:
            unexpected += 1
        latencies.append((sent_at, received_at.timestamp() - sent_at))
        stored_at.append(received_at.timestamp())
        if detection_id in monitor.seen:
            visible.append(monitor.seen[detection_id] - sent_at)
    stored_ids = {detection_id for detection_id, _, _ in alerts}
    missing = len(expected_ids - stored_ids)
    alert_window = max(stored_at) - min(stored_at) if len(stored_at) > 1 else 0.0

    produce_seconds = produced.last_send - produced.first_send
    achieved_rate = (measured - 1) / produce_seconds if produce_seconds > 0 else None
    samples = monitor.processed
    start_at, start_count = _processed_at(samples, produced.first_send)
    end_at, end_count = _processed_at(samples, produced.last_send)
    all_processed_at = _first_reaching(samples, total)
    backlog = max(0, total - end_count)
    while_producing = (end_count - start_count) / (end_at - start_at) if end_at > start_at else None
    sustained = (
        measured / (all_processed_at - produced.first_send)
        if all_processed_at is not None
        else None
    )
    drain_seconds = (
        max(0.0, all_processed_at - produced.last_send) if all_processed_at is not None else None
    )
    kept_up = drain_seconds is not None and drain_seconds <= KEPT_UP_DRAIN_SECONDS
    if kept_up:
        verdict = (
            f"kept up: every transaction processed within {KEPT_UP_DRAIN_SECONDS:.0f}s "
            "of the last send"
        )
    elif while_producing is not None:
        verdict = (
            f"fell behind: processed about {while_producing:,.0f} tx/s of the "
            f"{achieved_rate or args.rate:,.0f} tx/s offered; latency grows with the backlog, "
            "so these percentiles measure the queue, not the pipeline"
        )
    else:
        verdict = "fell behind (too few samples to say by how much)"

    cases_after = count_rows(reader, CaseRow)
    return {
        "produce": {
            "transactions": measured,
            "seconds": round(produce_seconds, 3),
            "achieved_rate": round(achieved_rate, 1) if achieved_rate else None,
            "schedule_lag_seconds": distribution(produced.schedule_lag),
            "broker_ack_seconds": distribution(produced.ack_seconds),
        },
        "worker": {
            "kept_up": kept_up,
            "verdict": verdict,
            "tx_per_second_while_producing": round(while_producing, 1) if while_producing else None,
            "sustained_tx_per_second": round(sustained, 1) if sustained else None,
            "backlog_at_end_of_produce": backlog,
            "drain_seconds": round(drain_seconds, 2) if drain_seconds is not None else None,
            # Over the window from the first measured send to the end of the wait. The
            # worker is one Python process (its event loop plus the case store's thread):
            # near 1.0 of a core it is CPU-bound; well below, it waits on something else.
            "cpu_seconds": round(cpu_used.worker, 2),
            "cpu_share_of_one_core": round(cpu_used.worker / busy_window, 3),
            "broker_cpu_seconds": round(cpu_used.broker, 2),
            # Every process on the machine (this bench, other work), as a share of all
            # CPUs: near 1.0 the machine itself was the limit.
            "machine_cpu_share": round(cpu_used.machine / (busy_window * (os.cpu_count() or 1)), 3),
            "startup_seconds": round(startup_seconds, 2),
            "rss_bytes_at_end": rss,
            # From the first measured send to the end, by generation (2: full collections).
            "collector_pauses": pauses,
        },
        "alerts": {
            "complete": complete and missing == 0,
            "expected": len(expected_ids),
            "stored": len(latencies),
            "missing": missing,
            "unexpected": unexpected,
            "persisted_per_second": round(len(stored_at) / alert_window, 2)
            if alert_window > 0
            else None,
            "window_seconds": round(alert_window, 3),
            "cases_opened": cases_after - cases_before,
            "reports_stored": count_rows(reader, LargeValueReportRow),
            "reports_expected": workload.expected_reports,
        },
        "latency_seconds": distribution([latency for _, latency in latencies]),
        "latency_by_send_window": latency_by_send_window(
            latencies, produced.first_send, produced.last_send
        ),
        # When a poll first saw the alert stored: an upper bound (poll interval resolution)
        # that checks received_at, which the worker stamps before its insert commits.
        "visible_latency_seconds": distribution(visible),
    }


def print_summary(document: dict[str, Any]) -> None:
    """A short table: offered and sustained rates, latency percentiles, alerts and cases."""
    params, produce = document["parameters"], document["produce"]
    worker, alerts = document["worker"], document["alerts"]
    latency, visible = document["latency_seconds"], document["visible_latency_seconds"]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    table = Table(
        title=(
            f"{params['transactions']:,} tx at {params['rate']:,.0f} tx/s, "
            f"{document['machine']['cpu_count']} CPUs, {params['database']}"
        )
    )
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in (
        ("offered tx/s (achieved)", rate(produce["achieved_rate"])),
        ("worker tx/s while producing", rate(worker["tx_per_second_while_producing"])),
        ("worker tx/s sustained", rate(worker["sustained_tx_per_second"])),
        ("backlog at end of produce", f"{worker['backlog_at_end_of_produce']:,}"),
        ("kept up", "yes" if worker["kept_up"] else "NO"),
        ("latency p50 s", seconds(latency["p50"])),
        ("latency p95 s", seconds(latency["p95"])),
        ("latency p99 s", seconds(latency["p99"])),
        ("latency max s", seconds(latency["max"])),
        ("visible p50 / p99 s", f"{seconds(visible['p50'])} / {seconds(visible['p99'])}"),
        ("alerts stored / expected", f"{alerts['stored']:,} / {alerts['expected']:,}"),
        ("alerts persisted per s", rate(alerts["persisted_per_second"])),
        ("cases opened", f"{alerts['cases_opened']:,}"),
    ):
        table.add_row(name, value)
    console.print(table)
    console.print(worker["verdict"])
    if not alerts["complete"]:
        console.print(f"[yellow]{alerts['missing']} expected alerts were not stored in time[/]")


def add_producer_linger_option(parser: argparse.ArgumentParser) -> None:
    """``--producer-linger-ms``, for the benches that produce at a steady rate."""
    parser.add_argument(
        "--producer-linger-ms",
        type=int,
        default=PRODUCER_LINGER_MS,
        help=f"the producer's linger.ms (default {PRODUCER_LINGER_MS}, the Kafka 4.0 default)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="transactions per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured stream")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="seconds of warm-up")
    parser.add_argument("--customers", type=int, default=300, help="customers in the book")
    parser.add_argument(
        "--scenario-rate",
        type=float,
        default=40.0,
        help="laundering scenarios per 1,000 customer-days (many, for enough alerts)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of reference data and history")
    add_producer_linger_option(parser)
    add_partitions_option(parser)
    parser.add_argument(
        "--database-url",
        default=None,
        help="case store URL, e.g. postgresql+psycopg://... (must hold no alerts); "
        "default: a fresh SQLite file",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait after producing for every expected alert",
    )
    parser.add_argument(
        "--stall-timeout", type=float, default=60.0, help="seconds without any progress"
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep broker and worker logs here"
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup_seconds <= 0:
        parser.error("--rate, --duration and --warmup-seconds must be positive")
    if args.customers < 1:
        parser.error("--customers must be at least 1")
    if args.producer_linger_ms < 0:
        parser.error("--producer-linger-ms must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 on success, 1 when it could not measure, 130 when interrupted."""
    args = parse_args(argv)
    # The worker and the in-process backtest must run the same rules with the same
    # reference data: both see only what the bench sets, none of the caller's AMLWATCH_*.
    for name in [name for name in os.environ if name.startswith("AMLWATCH_")]:
        del os.environ[name]
    return run_main(args, run_bench, print_summary, work_prefix="bench-cases-")


if __name__ == "__main__":
    sys.exit(main())
