"""The embedded broker's own latency at a steady rate: no worker, one plain consumer.

The case latency bench measures a transaction from its send to its case in the store,
across the broker twice (transactions in, alerts out). This bench measures the floor
the broker sets under that: one producer sends at a steady rate, paced by the wall
clock and sent as the cases bench sends (``--producer-linger-ms``, keyed by customer, the
worker's partition count), and one consumer (aiokafka, the dev profile's 20 ms fetch
wait) reads the topic back. The latency of a message is its receive time minus its
send time, by sixth of the produce window as in ``cases.json``; the broker's CPU share
is read per window too.

The broker runs on the bench's other core(s), this process (producer and consumer) on
the last CPU, where the cases bench runs the worker. Not part of ``make bench``: it
would take the run past its 10 minutes. See bench/README.md.

Run: ``.venv/bin/python bench/broker_latency_bench.py [--rate MSG_PER_S] [--duration S]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cases_bench import (
    LATENCY_WINDOWS,
    add_producer_linger_option,
    distribution,
    latency_by_send_window,
)
from rich.table import Table
from stream_bench import (
    BenchError,
    add_partitions_option,
    console,
    find_broker_process,
    live_progress,
    machine_facts,
    pin_to,
    process_cpu_seconds,
    result_header,
    run_main,
    split_cores,
)

from stream.broker import EmbeddedBroker
from stream.dev_broker import FETCH_MAX_WAIT_MS

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "broker_latency.json"
TOPIC = "broker-latency"
# About the size of a transaction's JSON in the cases bench.
PADDING = "x" * 300


async def produce_and_consume(
    bootstrap: str, args: argparse.Namespace, broker: psutil.Process
) -> dict[str, Any]:
    """Send ``rate`` messages a second for ``duration`` seconds and read them back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, args.partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=args.producer_linger_ms)
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await producer.start()
    await consumer.start()
    total = max(1, round(args.rate * args.duration))
    received: list[tuple[float, float]] = []  # (sent at, latency)
    reading = asyncio.ensure_future(_read(consumer, total, received))
    try:
        with live_progress() as progress:
            task = progress.add_task("producing", total=total)
            sent_at, broker_cpu = await _send(producer, args, total, broker, progress, task)
            progress.update(task, description="reading back")
            try:
                await asyncio.wait_for(reading, timeout=args.drain_timeout)
            except TimeoutError:
                raise BenchError(
                    f"{total - len(received)} of {total} messages not read back within "
                    f"{args.drain_timeout:.0f}s"
                ) from None
    finally:
        reading.cancel()
        await producer.stop()
        await consumer.stop()
    first, last = sent_at[0], sent_at[-1]
    return {
        "produce": {
            "messages": total,
            "seconds": round(last - first, 3),
            "achieved_rate": round((total - 1) / max(last - first, 1e-9), 1),
        },
        "latency_seconds": distribution([latency for _, latency in received]),
        "latency_by_send_window": latency_by_send_window(received, first, last, counted="messages"),
        "broker_cpu_share_by_window": broker_cpu,
    }


async def _send(
    producer: AIOKafkaProducer,
    args: argparse.Namespace,
    total: int,
    broker: psutil.Process,
    progress: Any,
    task: Any,
) -> tuple[list[float], list[float]]:
    """Paced sends; the send times, and the broker's CPU share per sixth of the window."""
    sent_at: list[float] = []
    window = args.duration / LATENCY_WINDOWS
    cpu_marks = [process_cpu_seconds(broker)]
    start = time.time()
    for index in range(total):
        due = start + index / args.rate
        now = time.time()
        if due > now:
            await asyncio.sleep(due - now)
        now = time.time()
        if now - start >= window * len(cpu_marks) and len(cpu_marks) < LATENCY_WINDOWS:
            cpu_marks.append(process_cpu_seconds(broker))
        value = json.dumps({"sent": now, "padding": PADDING}).encode()
        await producer.send(TOPIC, value, key=str(index % args.customers).encode())
        sent_at.append(now)
        if index % 500 == 0:
            progress.update(task, completed=index)
    progress.update(task, completed=total)
    cpu_marks.append(process_cpu_seconds(broker))
    # Every window is ``window`` long but the last, which ends with the last send.
    full = len(cpu_marks) - 2
    spans = [window] * full + [max(time.time() - start - window * full, 1e-6)]
    shares = [
        round((after - before) / span, 3)
        for before, after, span in zip(cpu_marks[:-1], cpu_marks[1:], spans, strict=True)
    ]
    return sent_at, shares


async def _read(
    consumer: AIOKafkaConsumer, total: int, received: list[tuple[float, float]]
) -> None:
    while len(received) < total:
        batches = await consumer.getmany(timeout_ms=100)
        now = time.time()
        for messages in batches.values():
            for message in messages:
                sent = json.loads(message.value)["sent"]
                received.append((sent, now - sent))


def run_bench(args: argparse.Namespace, log_dir: Path, work_dir: Path) -> dict[str, Any]:
    began = time.monotonic()
    machine = machine_facts()
    consumer_cpus, broker_cpus = split_cores(args.core)
    with EmbeddedBroker(log_path=log_dir / "broker.log") as broker:
        broker_process = find_broker_process()
        pin_to(broker_cpus, broker_process)
        pin_to(consumer_cpus, psutil.Process())
        measured = asyncio.run(produce_and_consume(broker.bootstrap, args, broker_process))
    parameters = {
        "rate": args.rate,
        "duration_seconds": args.duration,
        "partitions": args.partitions,
        "keys": args.customers,
        "message_bytes": len(json.dumps({"sent": time.time(), "padding": PADDING})),
        "linger_ms": args.producer_linger_ms,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "cpu_affinity": {"bench": sorted(consumer_cpus), "broker": sorted(broker_cpus)},
    }
    return {
        **result_header(machine, parameters),
        **measured,
        "bench_seconds": round(time.monotonic() - began, 1),
    }


def print_summary(document: dict[str, Any]) -> None:
    params = document["parameters"]
    table = Table(
        title=(
            f"embedded broker alone: {params['rate']:,.0f} msg/s for "
            f"{params['duration_seconds']:.0f} s, {params['partitions']} partitions"
        )
    )
    for column in ("sent from s", "p50 ms", "p99 ms", "broker CPU"):
        table.add_column(column, justify="right")
    shares = document["broker_cpu_share_by_window"]
    for row, share in zip(document["latency_by_send_window"], shares, strict=False):
        table.add_row(
            f"{row['sent_from_second']:.0f}-{row['sent_to_second']:.0f}",
            _ms(row["p50"]),
            _ms(row["p99"]),
            f"{share:.2f}",
        )
    console.print(table)
    latency = document["latency_seconds"]
    console.print(
        f"all {latency['count']:,} messages: p50 {_ms(latency['p50'])} ms, "
        f"p99 {_ms(latency['p99'])} ms, max {_ms(latency['max'])} ms"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of producing")
    parser.add_argument("--customers", type=int, default=300, help="distinct message keys")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds to read back after the last send",
    )
    parser.add_argument("--core", type=int, default=None, help="CPU of producer and consumer")
    add_producer_linger_option(parser)
    add_partitions_option(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the broker's log here")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    if args.customers < 1:
        parser.error("--customers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), run_bench, print_summary, work_prefix="broker-latency-")


if __name__ == "__main__":
    sys.exit(main())
