"""Memory of the per-customer state: one worker, 100,000 simulated customers.

The customers file lists every simulated customer; their first transactions of a
simulated few days (enough for nearly every customer to have one; simulated in two
processes, each customer's history from its share's seed), at most ``--per-customer``
each, is produced to the topic once the worker is ready. The bench reads the worker's
RSS when it is ready (before any transaction) and when all are processed, and the
customer table's size from the worker's gauges (``amlwatch_customer_table_entries``,
and ``amlwatch_customer_table_bytes``: the sum of the encoded values, as written to the
changelog). See bench/README.md.

No anomaly model is loaded: nobody is past the 7-day warm-up within one day, so a
model would score nothing, and the state is the same with or without it. The case
store is a fresh SQLite file without reference data (alerts route to compliance).

Run: ``.venv/bin/python bench/memory_bench.py [--customers N] [--per-customer N]``
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import multiprocessing
import sys
import threading
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from rich.table import Table
from stream_bench import (
    LIVE_START,
    WORKER_COMMAND,
    BenchError,
    add_run_options,
    add_seed_option,
    base_env,
    console,
    consumer_dir,
    find_broker_process,
    live_progress,
    log_tail,
    machine_facts,
    measure,
    output_topics,
    pin_to,
    pipeline_counter,
    pipeline_env,
    produce,
    read_metrics,
    result_header,
    run_main,
    running_process,
    simulate_population,
    split_cores,
    worker_ready,
)

from core.customer import Customer
from stream.broker import EmbeddedBroker, free_loopback_port
from stream.simulator import derive_rng, generate_history, transaction_json_bytes
from stream.topics import ensure_topics

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "memory.json"
ENTRIES_METRIC = "amlwatch_customer_table_entries"
BYTES_METRIC = "amlwatch_customer_table_bytes"
READY_POLL_SECONDS = 0.5
# In one simulated day about a quarter of the customers make no transaction; in three,
# nearly all do, so the table holds (nearly) the whole book.
DAYS_SIMULATED = 3
SIMULATING_PROCESSES = 2


def capped_records(
    documents: list[dict[str, Any]], per_customer: int
) -> tuple[list[tuple[str, bytes, bytes]], int]:
    """(timestamp, key, contract JSON) of each customer's first ``per_customer``
    transactions, in event order, and how many customers they cover."""
    seen: Counter[str] = Counter()
    records = []
    for document in documents:
        customer_id = document["customer_id"]
        if seen[customer_id] >= per_customer:
            continue
        seen[customer_id] += 1
        # The simulator's labels (sim_*) are not part of the contract.
        contract = {key: value for key, value in document.items() if not key.startswith("sim_")}
        records.append(
            (document["timestamp"], customer_id.encode(), transaction_json_bytes(contract))
        )
    return records, len(seen)


def first_transactions(
    customers: list[Customer], *, seed: int, per_customer: int
) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, contract JSON) of each customer's first transactions over ``DAYS_SIMULATED``
    days, in event order, and how many customers they cover.

    Simulating 100,000 customers takes minutes on one core, and nothing else runs yet:
    each of ``SIMULATING_PROCESSES`` processes simulates its share of the customers from
    its own seed (derived from ``seed``), and the shares are merged by event time.
    """
    shares = [
        (customers[index::SIMULATING_PROCESSES], seed, index, per_customer)
        for index in range(SIMULATING_PROCESSES)
    ]
    with multiprocessing.get_context("fork").Pool(SIMULATING_PROCESSES) as pool:
        simulated = pool.starmap(_simulate_share, shares)
        # Let the workers finish: leaving the block terminates them with SIGTERM, which
        # they would take as this bench's own Ctrl-C (they inherit its handler) and hang.
        pool.close()
        pool.join()
    # The timestamps are ISO texts at the bank's one offset: their text order is time order.
    merged = heapq.merge(*(records for records, _ in simulated), key=lambda record: record[0])
    return [(key, value) for _, key, value in merged], sum(count for _, count in simulated)


def _simulate_share(
    customers: list[Customer], seed: int, share: int, per_customer: int
) -> tuple[list[tuple[str, bytes, bytes]], int]:
    rng = derive_rng(seed, f"bench-memory-{share}")
    documents = generate_history(rng, customers, start=LIVE_START, days=DAYS_SIMULATED)
    return capped_records(documents, per_customer)


class ProducerThread(threading.Thread):
    """Produces ``records`` in its own event loop; a failure is re-raised by ``join``."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        super().__init__(name="memory-bench-producer", daemon=True)
        self._run = partial(produce, bootstrap, topic, records, lambda _sent: None)
        self._failure: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # re-raised in the main thread
            self._failure = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self._failure is not None:
            raise BenchError(f"producing failed: {self._failure!r}")


def wait_ready(process: Any, web_port: int, timeout: float) -> None:
    """Until the worker's /healthz says ready; raise if it dies or takes too long."""
    deadline = time.monotonic() + timeout
    while not worker_ready(web_port):
        if process.poll() is not None:
            raise BenchError(f"worker exited with code {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise BenchError(f"worker not ready on /healthz within {timeout:.0f}s")
        time.sleep(READY_POLL_SECONDS)


def run_bench(args: argparse.Namespace, log_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Simulate, start broker and worker, read its memory before and after the stream."""
    began = time.monotonic()
    facts = machine_facts()
    worker_cpus, bench_cpus = split_cores(None)
    # Simulated on every core, then pinned before the broker starts and while no other
    # thread runs (the status line's has stopped): the broker inherits the set.
    with console.status(f"simulating {args.customers:,} customers and their transactions"):
        population = simulate_population(work_dir, customers=args.customers, seed=args.seed)
        records, streamed_customers = first_transactions(
            population.customers, seed=args.seed, per_customer=args.per_customer
        )
    pin_to(bench_cpus, psutil.Process())
    console.print(
        f"{len(records):,} transactions of {streamed_customers:,} customers "
        f"({args.customers:,} in the customers file)"
    )
    app_id = f"bench-memory-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-transactions"
    web_port = free_loopback_port()
    directory = consumer_dir(work_dir, "worker")
    log_path = log_dir / "worker.log"
    with EmbeddedBroker(log_path=log_dir / "broker.log") as broker, live_progress() as progress:
        broker_process = find_broker_process()
        asyncio.run(
            ensure_topics(broker.bootstrap, [topic, *output_topics(app_id)], args.partitions, 1)
        )
        env = pipeline_env(
            base_env(
                broker_url=broker.url,
                topic=topic,
                partitions=args.partitions,
                app_id=app_id,
                web_port=web_port,
                data_dir=directory / "data",
            ),
            population=population,
            database_url=f"sqlite:///{work_dir / 'cases.sqlite3'}",
            registry=None,
        )
        command = [sys.executable, "-c", WORKER_COMMAND]
        with running_process(command, env, log_path, directory, cpus=worker_cpus) as process:
            try:
                worker = psutil.Process(process.pid)
                wait_ready(process, web_port, args.startup_timeout)
                rss_ready = worker.memory_info().rss
                task = progress.add_task("worker: processing", total=len(records))
                # Produced from a thread, so the bench polls the worker meanwhile.
                producer = ProducerThread(broker.bootstrap, topic, records)
                producer.start()
                window = measure(
                    "worker",
                    [process],
                    broker_process,
                    pipeline_counter(web_port, topic),
                    len(records),
                    progress,
                    task,
                    poll_interval=args.poll_interval,
                    startup_timeout=args.startup_timeout,
                    stall_timeout=args.stall_timeout,
                )
                producer.join()
                rss_end = worker.memory_info().rss
                metrics = read_metrics(web_port)
            except BenchError as exc:
                raise BenchError(
                    f"{exc}\n--- end of the worker's log ---\n{log_tail(log_path)}"
                ) from None
    if metrics is None or ENTRIES_METRIC not in metrics:
        raise BenchError(f"the worker's /metrics has no {ENTRIES_METRIC}")
    entries, table_bytes = int(metrics[ENTRIES_METRIC]), int(metrics[BYTES_METRIC])
    parameters = {
        "customers": args.customers,
        "per_customer": args.per_customer,
        "transactions": len(records),
        "streamed_customers": streamed_customers,
        "seed": args.seed,
        "partitions": args.partitions,
        "anomaly_model": None,
        "worker_cpus": sorted(worker_cpus),
    }
    return {
        **result_header(facts, parameters),
        "table": {
            "entries": entries,
            "bytes": table_bytes,
            "bytes_per_customer": round(table_bytes / entries, 1) if entries else None,
            "transactions_per_customer": round(len(records) / entries, 2) if entries else None,
        },
        "rss_bytes": {
            "ready": rss_ready,
            "after_stream": rss_end,
            "growth": rss_end - rss_ready,
            "growth_per_customer": round((rss_end - rss_ready) / entries, 1) if entries else None,
        },
        "throughput": window,
        "bench_seconds": round(time.monotonic() - began, 1),
    }


def print_summary(document: dict[str, Any]) -> None:
    """Table size and worker memory, per customer."""
    table, rss = document["table"], document["rss_bytes"]
    mib = 2**20
    summary = Table(title=f"{document['parameters']['customers']:,} customers in the file")
    summary.add_column("")
    summary.add_column("value", justify="right")
    for name, value in (
        ("transactions", f"{document['parameters']['transactions']:,}"),
        ("table entries", f"{table['entries']:,}"),
        ("table bytes (encoded)", f"{table['bytes']:,}"),
        ("bytes per customer", f"{table['bytes_per_customer']:,.0f}"),
        ("RSS ready / after, MiB", f"{rss['ready'] / mib:,.0f} / {rss['after_stream'] / mib:,.0f}"),
        ("RSS growth per customer, bytes", f"{rss['growth_per_customer']:,.0f}"),
        ("tx/s (wall)", f"{document['throughput']['messages_per_second']:,.0f}"),
    ):
        summary.add_row(name, value)
    console.print(summary)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=100_000, help="simulated customers")
    parser.add_argument(
        "--per-customer", type=int, default=1, help="at most this many transactions each"
    )
    add_seed_option(parser)
    add_run_options(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.per_customer < 1:
        parser.error("--customers and --per-customer must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the memory bench (see ``run_main`` for the exit status)."""
    return run_main(parse_args(argv), run_bench, print_summary, work_prefix="bench-memory-")


if __name__ == "__main__":
    sys.exit(main())
