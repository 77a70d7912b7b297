"""``amlwatch simulate``: synthetic traffic to the transactions topic or to a CSV file.

The generation itself lives in :mod:`stream.simulator` (pure, seeded); this module is
the edge that reads the settings, paces messages onto Kafka, writes files and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from core.settings import Settings
from stream.cli_settings import load_settings
from stream.simulator import (
    DEFAULT_SCENARIO_RATE,
    TOO_LARGE_PAYLOAD_BYTES,
    Customer,
    SimMessage,
    derive_rng,
    generate_reference,
    iter_messages,
    iter_transactions,
    write_customers_csv,
    write_managers_csv,
    write_transactions_csv,
)
from stream.topics import ensure_topics

DEFAULT_START = date(2024, 1, 1)
DEFAULT_DAYS = 30
DEFAULT_RATE = 50.0
CUSTOMERS_PER_MANAGER = 25
# Enough unacknowledged sends to keep a remote broker busy, few enough to bound memory.
MAX_IN_FLIGHT = 1000


@dataclass
class SimulationStats:
    """Counts of what a run produced, for the closing summary line."""

    messages: int = 0
    malformed: int = 0
    labelled: Counter[str] = field(default_factory=Counter)
    scenarios: dict[str, set[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record(self, typology: str, scenario_id: str, malformed: bool = False) -> None:
        """Count one message (or row) that was handed to the sink."""
        self.messages += 1
        if malformed:
            self.malformed += 1
        elif typology:
            self.labelled[typology] += 1
            self.scenarios.setdefault(typology, set()).add(scenario_id)

    def record_message(self, message: SimMessage) -> None:
        """Count one topic record."""
        self.record(message.typology, message.scenario_id, message.malformed is not None)

    @property
    def elapsed(self) -> float:
        """Seconds from the start of the run to its end (or to now, while running)."""
        return (self.finished or time.monotonic()) - self.started

    def typology_summary(self) -> str:
        """``name N tx in M scenarios`` per typology seen, alphabetically."""
        if not self.labelled:
            return "none"
        parts = []
        for typology in sorted(self.labelled):
            scenarios = len(self.scenarios[typology])
            plural = "scenario" if scenarios == 1 else "scenarios"
            parts.append(f"{typology} {self.labelled[typology]} tx in {scenarios} {plural}")
        return ", ".join(parts)


def kafka_bootstrap(settings: Settings, broker: str | None) -> str:
    """The aiokafka bootstrap string: --broker, else the settings' broker, else embedded."""
    if broker is not None:
        return _checked_bootstrap(broker)
    if settings.broker_url is not None:
        hosts = settings.broker_url.replace(";", ",").split(",")
        return ",".join(host.strip().removeprefix("kafka://").rstrip("/") for host in hosts)
    if settings.embedded_broker_port == 0:
        raise typer.BadParameter(
            "the embedded broker port is chosen at start (AMLWATCH_EMBEDDED_BROKER_PORT=0); "
            "pass the running broker as --broker 127.0.0.1:PORT",
            param_hint="'--broker'",
        )
    return f"127.0.0.1:{settings.embedded_broker_port}"


def _checked_bootstrap(value: str) -> str:
    hosts = [host.strip().removeprefix("kafka://") for host in value.split(",")]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise typer.BadParameter(
                f"expected HOST:PORT (comma-separated for several), got {host!r}",
                param_hint="'--broker'",
            )
    return ",".join(hosts)


async def produce_messages(
    messages: Iterable[SimMessage],
    *,
    bootstrap: str,
    topic: str,
    rate: float,
    count: int | None,
    partitions: int,
    replication: int,
    one_record_batches: bool,
    stats: SimulationStats,
    on_sent: Callable[[], None] | None = None,
) -> None:
    """Create ``topic`` if missing, then send ``messages`` at ``rate`` per second."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    await ensure_topics(bootstrap, [topic], partitions, replication)
    # Room for the simulator's oversized malformed messages, which the worker must see.
    options: dict[str, Any] = {"max_request_size": 4 * TOO_LARGE_PAYLOAD_BYTES}
    if one_record_batches:
        # The embedded broker reports end offsets per batch, not per record.
        options["max_batch_size"] = 1
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, **options)
    await producer.start()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        in_flight: deque[asyncio.Future[Any]] = deque()
        source: Iterator[SimMessage] = iter(messages)
        for index in itertools.count() if count is None else range(count):
            # Pace against the schedule, not the previous send, so delays do not add up;
            # pull the message only then, so that live timestamps are the sending time.
            delay = began + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            message = next(source, None)
            if message is None:
                break
            in_flight.append(
                await producer.send(
                    topic, message.value, key=message.key, timestamp_ms=message.timestamp_ms
                )
            )
            stats.record_message(message)
            if on_sent is not None:
                on_sent()
            # Awaiting finished sends surfaces delivery errors early.
            while in_flight and (len(in_flight) > MAX_IN_FLIGHT or in_flight[0].done()):
                await in_flight.popleft()
        while in_flight:
            await in_flight.popleft()
    finally:
        await producer.stop()
        stats.finished = time.monotonic()


async def _until_terminated(work: Awaitable[None]) -> None:
    """Run ``work``; SIGTERM (how ``amlwatch up`` stops its children) cancels it cleanly."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    # Not on this platform or not the main thread: the default handling stays then.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await work
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _write_reference(
    out_dir: Path, seed: int, n_customers: int, n_managers: int, as_of: date
) -> list[Customer]:
    customers, managers = generate_reference(
        derive_rng(seed, "reference"), n_customers, n_managers, as_of=as_of
    )
    write_customers_csv(out_dir / "customers.csv", customers)
    write_managers_csv(out_dir / "managers.csv", managers)
    return customers


def _counting_days(
    rows: Iterable[Mapping[str, Any]], advance: Callable[[], None]
) -> Iterator[Mapping[str, Any]]:
    """Pass rows through, calling ``advance`` each time event time enters a new day."""
    current = None
    for row in rows:
        day = str(row["timestamp"])[:10]
        if day != current:
            if current is not None:
                advance()
            current = day
        yield row


def _run_file(
    *,
    path: Path,
    customers: list[Customer],
    seed: int,
    start: date,
    days: int,
    tz: tzinfo,
    scenario_rate: float,
    stats: SimulationStats,
) -> None:
    transactions = iter_transactions(
        derive_rng(seed, "transactions"),
        customers,
        start=start,
        days=days,
        tz=tz,
        scenario_rate=scenario_rate,
    )

    def counted(rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for row in rows:
            stats.record(row["sim_typology"], row["sim_scenario_id"])
            yield row

    # Write beside the target and rename, so an interrupted run leaves no half file.
    partial = path.with_name(path.name + ".partial")
    with _progress() as progress:
        task = progress.add_task("Simulating days", total=days)
        write_transactions_csv(
            partial,
            counted(_counting_days(transactions, lambda: progress.advance(task))),
        )
        progress.update(task, completed=days)
    partial.replace(path)
    stats.finished = time.monotonic()


def simulate(
    customers: Annotated[
        int, typer.Option("--customers", min=1, max=1_000_000, help="Customers to simulate.")
    ] = 200,
    managers: Annotated[
        int | None,
        typer.Option(
            "--managers",
            min=1,
            help=f"Account managers. Default: customers/{CUSTOMERS_PER_MANAGER}, at least 1.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed for reproducible output. Default: random, printed at the end.",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            file_okay=False,
            help="Where customers.csv and managers.csv go. Default: <data dir>/sim.",
            show_default=False,
        ),
    ] = None,
    to_file: Annotated[
        Path | None,
        typer.Option(
            "--to-file",
            dir_okay=False,
            metavar="PATH.csv",
            help="Write a CSV history here instead of producing to Kafka.",
        ),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            "--start",
            formats=["%Y-%m-%d"],
            metavar="YYYY-MM-DD",
            help=f"File mode: first day of the history. Default: {DEFAULT_START}.",
            show_default=False,
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            max=36_500,
            help=f"File mode: days of history. Default: {DEFAULT_DAYS}.",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            metavar="MSG_PER_S",
            help=f"Kafka mode: messages per second. Default: {DEFAULT_RATE:g}.",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            min=1,
            help="Kafka mode: stop after this many messages. Default: run until Ctrl-C.",
            show_default=False,
        ),
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            metavar="HOST:PORT",
            help="Kafka mode: bootstrap server. Default: from AMLWATCH_BROKER_URL, "
            "else the embedded broker's port.",
            show_default=False,
        ),
    ] = None,
    malformed_rate: Annotated[
        float,
        typer.Option(
            "--malformed-rate",
            min=0.0,
            max=1.0,
            help="Kafka mode: fraction of messages that are malformed (dead-letter demos).",
        ),
    ] = 0.0,
    scenario_rate: Annotated[
        float,
        typer.Option(
            "--scenario-rate",
            min=0.0,
            help="Laundering scenarios started per 1,000 customer-days.",
        ),
    ] = DEFAULT_SCENARIO_RATE,
) -> None:
    """Generate customers, managers and transactions with labelled laundering scenarios."""
    file_mode = to_file is not None
    kafka_only = {"--rate": rate, "--count": count, "--broker": broker}
    file_only = {"--start": start, "--days": days}
    for name, value in (kafka_only if file_mode else file_only).items():
        if value is not None:
            where = "when producing to Kafka, not with --to-file" if file_mode else "with --to-file"
            raise typer.BadParameter(f"applies only {where}", param_hint=f"'{name}'")
    if file_mode and malformed_rate > 0:
        raise typer.BadParameter(
            "malformed payloads are bytes for the topic; they only apply in Kafka mode",
            param_hint="'--malformed-rate'",
        )
    if rate is not None and rate <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint="'--rate'")
    if to_file is not None and to_file.suffix.lower() != ".csv":
        raise typer.BadParameter("must end in .csv", param_hint="'--to-file'")
    n_managers = managers if managers is not None else max(1, customers // CUSTOMERS_PER_MANAGER)
    if n_managers > customers:
        raise typer.BadParameter(
            f"more managers than customers ({customers}) leaves managers without customers",
            param_hint="'--managers'",
        )

    settings = load_settings()
    tz = ZoneInfo(settings.bank_timezone)
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    reference_dir = out_dir if out_dir is not None else settings.data_dir / "sim"
    stats = SimulationStats()

    if to_file is not None:
        first_day = start.date() if start is not None else DEFAULT_START
        population = _write_reference(reference_dir, seed, customers, n_managers, first_day)
        _run_file(
            path=to_file,
            customers=population,
            seed=seed,
            start=first_day,
            days=days or DEFAULT_DAYS,
            tz=tz,
            scenario_rate=scenario_rate,
            stats=stats,
        )
        typer.echo(
            f"Wrote {stats.messages:,} transactions to {to_file} and the reference data to "
            f"{reference_dir} in {stats.elapsed:.1f} s "
            f"({stats.messages / max(stats.elapsed, 1e-9):,.0f} rows/s); "
            f"labelled: {stats.typology_summary()}; seed {seed}"
        )
        return

    bootstrap = kafka_bootstrap(settings, broker)
    topic = settings.transactions_topic
    # Live traffic: the simulated population starts today, events are stamped on sending.
    today = datetime.now(tz).date()
    population = _write_reference(reference_dir, seed, customers, n_managers, today)
    transactions = iter_transactions(
        derive_rng(seed, "transactions"),
        population,
        start=today,
        tz=tz,
        scenario_rate=scenario_rate,
    )
    messages = iter_messages(
        transactions,
        derive_rng(seed, "malformed"),
        malformed_rate=malformed_rate,
        clock=lambda: datetime.now(tz),
    )
    pace = rate if rate is not None else DEFAULT_RATE
    if count is None:
        typer.echo(f"Producing to topic {topic!r} on {bootstrap} at {pace:g}/s; Ctrl-C stops.")
    # A progress bar only makes sense with an end in sight.
    progress = _progress() if count is not None else None
    stopped = ""
    try:
        with progress or contextlib.nullcontext():
            advance = None
            if progress is not None:
                task = progress.add_task("Sending", total=count)
                advance = functools.partial(progress.advance, task)
            work = produce_messages(
                messages,
                bootstrap=bootstrap,
                topic=topic,
                rate=pace,
                count=count,
                partitions=settings.topic_partitions,
                replication=settings.topic_replication,
                one_record_batches=settings.use_dev_broker_profile,
                stats=stats,
                on_sent=advance,
            )
            asyncio.run(_until_terminated(work))
    except (KeyboardInterrupt, asyncio.CancelledError):
        stopped = " (stopped)"
    except (KafkaError, OSError, TimeoutError) as exc:
        typer.echo(f"error: cannot produce to {bootstrap}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Sent {stats.messages:,} messages to topic {topic!r} on {bootstrap}{stopped} in "
        f"{stats.elapsed:.1f} s ({stats.messages / max(stats.elapsed, 1e-9):,.1f} msg/s); "
        f"malformed {stats.malformed:,}; labelled: {stats.typology_summary()}; seed {seed}"
    )


__all__ = ["SimulationStats", "kafka_bootstrap", "produce_messages", "simulate"]
