"""Scale-out of the full pipeline: one worker, then several in one consumer group.

One embedded broker and one pre-produced live stream (the stream bench's workload with
twice its customers by default: simulated population, model trained beforehand,
customers file, a case store per run) on a topic with 4 partitions by default. Two runs
read it, one after the other, each with its own app id (its own consumer group, internal
topics and case store):

* 1 worker, pinned to the last CPU; the broker and this bench on the other(s);
* ``--workers`` workers (default 2) of one app id, each pinned to its own CPU; the
  broker and this bench may run on every CPU, so on a 2-CPU machine they share the
  workers' cores.

Each run is timed from the first message any worker received to the moment the
workers' processed counters add up to the whole stream. See bench/README.md.

Run: ``.venv/bin/python bench/scale_bench.py [--workers N] [--customers N] [--days N]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from rich.table import Table
from stream_bench import (
    WORKER_COMMAND,
    BenchError,
    Counts,
    LiveWorkload,
    add_workload_options,
    base_env,
    check_workload_options,
    console,
    consumer_dir,
    find_broker_process,
    live_progress,
    log_tail,
    machine_facts,
    measure,
    metric_total,
    output_topics,
    pin_to,
    pipeline_counter,
    pipeline_env,
    pipeline_outcome,
    prepare_case_store,
    prepare_run,
    produce,
    read_metrics,
    result_header,
    run_main,
    running_process,
    summed_counter,
    usable_cpus,
)

from stream.broker import EmbeddedBroker, free_loopback_port
from stream.topics import ensure_topics

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "scale.json"
# Twice the stream bench's population (about 79,000 transactions): its 1,000 customers
# fall 18,581 / 21,309 transactions on the two workers' partition pairs, which caps the
# ratio at 1.87, and two workers read them in about 2 s, where one worker's first fetch
# coming a poll or two after the other's moved the ratio by 0.1-0.3 (1.47 to 2.05 in
# four runs of session 26). 2,000 customers split 39,121 / 39,720, over about 4 s.
SCALE_CUSTOMERS = 2_000


class WorkerProgress:
    """One worker's counter as the bench polls it, remembering when (monotonic time, at
    the polls' resolution) the worker first received a message and when its processed
    count last grew: whether a group's run lost time to one worker starting late or
    finishing early, rather than to the workers' speed."""

    def __init__(self, read: Callable[[], Counts | None]) -> None:
        self._read = read
        self.first_received_at: float | None = None
        self.last_processed_at: float | None = None
        self._processed = 0

    def __call__(self) -> Counts | None:
        counts = self._read()
        now = time.monotonic()
        if counts is not None:
            if counts.received > 0 and self.first_received_at is None:
                self.first_received_at = now
            if counts.processed > self._processed:
                self._processed, self.last_processed_at = counts.processed, now
        return counts


def worker_timeline(progress: Sequence[WorkerProgress]) -> dict[str, list[float | None]]:
    """Each worker's first message received and last processed, in seconds after the
    first worker's first message (the window's opening, to a poll)."""
    opened = min(
        (worker.first_received_at for worker in progress if worker.first_received_at is not None),
        default=None,
    )

    def since_opening(at: float | None) -> float | None:
        return None if at is None or opened is None else round(at - opened, 3)

    return {
        "first_received_seconds": [since_opening(w.first_received_at) for w in progress],
        "last_processed_seconds": [since_opening(w.last_processed_at) for w in progress],
    }


def worker_rates(
    processed: Sequence[int], firsts: Sequence[float | None], lasts: Sequence[float | None]
) -> list[float | None]:
    """Each worker's messages over its own time from first received to last processed
    (None where that span is unknown or too short to time)."""
    rates: list[float | None] = []
    for count, first, last in zip(processed, firsts, lasts, strict=True):
        span = None if first is None or last is None else last - first
        rates.append(round(count / span, 1) if span and span > 0 else None)
    return rates


def run_group(
    args: argparse.Namespace,
    workload: LiveWorkload,
    broker: EmbeddedBroker,
    topic: str,
    workers: int,
    cpus: list[int],
    work_dir: Path,
    log_dir: Path,
) -> dict[str, Any]:
    """Start ``workers`` workers of one new app id together, on ``cpus``; measure them as
    one."""
    broker_process = find_broker_process()
    if workers == 1:
        worker_cpus = [frozenset({cpus[-1]})]
        others = frozenset(cpus[:-1]) or frozenset(cpus)
    else:
        # One CPU each (round robin if there are fewer CPUs than workers).
        worker_cpus = [frozenset({cpus[index % len(cpus)]}) for index in range(workers)]
        others = frozenset(cpus)
    pin_to(others, psutil.Process(), broker_process)
    app_id = f"bench-scale-{workers}-{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topics(broker.bootstrap, output_topics(app_id), args.partitions, 1))
    database_url = f"sqlite:///{work_dir / f'cases-{app_id}.sqlite3'}"
    prepare_case_store(database_url, workload.population)
    name = f"{workers} worker{'s' if workers > 1 else ''}"
    total = len(workload.records)
    ports: list[int] = []
    for _ in range(workers):
        ports.append(free_loopback_port(avoid=ports))
    logs = [log_dir / f"{app_id}-{index}.log" for index in range(workers)]
    with live_progress() as progress, contextlib.ExitStack() as stack:
        processes = []
        for index, (port, log_path) in enumerate(zip(ports, logs, strict=True)):
            directory = consumer_dir(work_dir, f"{app_id}-{index}")
            env = pipeline_env(
                base_env(
                    broker_url=broker.url,
                    topic=topic,
                    partitions=args.partitions,
                    app_id=app_id,
                    web_port=port,
                    data_dir=directory / "data",
                ),
                population=workload.population,
                database_url=database_url,
                registry=workload.registry,
            )
            command = [sys.executable, "-c", WORKER_COMMAND]
            processes.append(
                stack.enter_context(
                    running_process(command, env, log_path, directory, cpus=worker_cpus[index])
                )
            )
        task = progress.add_task(f"{name}: starting", total=total)
        workers_progress = [WorkerProgress(pipeline_counter(port, topic)) for port in ports]
        try:
            result = measure(
                name,
                processes,
                broker_process,
                summed_counter(workers_progress),
                total,
                progress,
                task,
                poll_interval=args.poll_interval,
                startup_timeout=args.startup_timeout,
                stall_timeout=args.stall_timeout,
            )
            result["outcome"] = pipeline_outcome(ports, database_url)
            result.update(worker_timeline(workers_progress))
            result["processed_by_worker"] = [
                int(metric_total(read_metrics(port) or {}, "amlwatch_transactions_processed_total"))
                for port in ports
            ]
            result["messages_per_second_by_worker"] = worker_rates(
                result["processed_by_worker"],
                result["first_received_seconds"],
                result["last_processed_seconds"],
            )
        except BenchError as exc:
            tails = "\n".join(f"--- end of {path.name} ---\n{log_tail(path)}" for path in logs)
            raise BenchError(f"{exc}\n{tails}") from None
        progress.update(task, description=f"{name}: done")
    result["cpu_affinity"] = {
        "workers": [sorted(assigned) for assigned in worker_cpus],
        "broker_and_bench": sorted(others),
    }
    return result


def run_bench(args: argparse.Namespace, log_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Produce the stream once, run one worker, then the group; the result document."""
    began = time.monotonic()
    facts = machine_facts()
    topic = f"bench-scale-transactions-{uuid.uuid4().hex[:8]}"
    # Taken before the first run pins this bench to fewer.
    cpus = usable_cpus()
    workload, _ = prepare_run(args, work_dir)
    runs: dict[str, dict[str, Any]] = {}
    with EmbeddedBroker(log_path=log_dir / "broker.log") as broker:
        asyncio.run(ensure_topics(broker.bootstrap, [topic], args.partitions, 1))
        with live_progress() as progress:
            task = progress.add_task("producing", total=len(workload.records))
            asyncio.run(
                produce(
                    broker.bootstrap,
                    topic,
                    workload.records,
                    lambda sent: progress.advance(task, sent),
                )
            )
        for workers in (1, args.workers):
            runs[str(workers)] = run_group(
                args, workload, broker, topic, workers, cpus, work_dir, log_dir
            )
    single, group = runs["1"], runs[str(args.workers)]
    parameters = {
        **workload.parameters(),
        "seed": args.seed,
        "partitions": args.partitions,
        "workers": args.workers,
        "poll_interval_seconds": args.poll_interval,
    }
    return {
        **result_header(facts, parameters),
        "runs": runs,
        "ratio": {
            "messages_per_second": round(
                group["messages_per_second"] / single["messages_per_second"], 3
            ),
            "messages_per_cpu_second": round(
                group["messages_per_cpu_second"] / single["messages_per_cpu_second"], 3
            ),
            # Not the target: the group's workers' own rates added up, each over its own
            # busy span, against the single worker's; what the ratio would be without one
            # worker starting late or finishing early.
            "summed_worker_rates": _summed_rates_ratio(group, single),
        },
        "bench_seconds": round(time.monotonic() - began, 1),
    }


def _summed_rates_ratio(group: dict[str, Any], single: dict[str, Any]) -> float | None:
    rates, alone = group["messages_per_second_by_worker"], single["messages_per_second_by_worker"]
    if None in rates or None in alone:
        return None
    return round(sum(rates) / sum(alone), 3)


def print_summary(document: dict[str, Any]) -> None:
    """One row per run and the ratio."""
    params = document["parameters"]
    table = Table(
        title=(
            f"{params['transactions']:,} transactions, {params['partitions']} partitions, "
            f"{document['machine']['cpu_count']} CPUs"
        )
    )
    for column in ("workers", "wall s", "CPU s", "msg/s", "msg/CPU-s", "machine CPU share"):
        table.add_column(column, justify="right")
    for workers, run in document["runs"].items():
        table.add_row(
            workers,
            f"{run['wall_seconds']:.2f}",
            f"{run['cpu_seconds']:.2f}",
            f"{run['messages_per_second']:,.0f}",
            f"{run['messages_per_cpu_second']:,.0f}",
            f"{run['machine_cpu_share']:.2f}",
        )
    ratio = document["ratio"]
    table.add_row(
        "ratio",
        "",
        "",
        f"{ratio['messages_per_second']:.3f}",
        f"{ratio['messages_per_cpu_second']:.3f}",
        "",
    )
    console.print(table)
    for workers, run in document["runs"].items():
        if int(workers) > 1:
            console.print(
                f"{workers} workers: first message received at "
                f"{_seconds(run['first_received_seconds'])} s, last processed at "
                f"{_seconds(run['last_processed_seconds'])} s after the first worker's first; "
                f"their own rates added up against one worker's: {ratio['summed_worker_rates']}"
            )


def _seconds(values: Sequence[float | None]) -> str:
    return " / ".join("-" if value is None else f"{value:.2f}" for value in values)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_workload_options(parser)
    parser.set_defaults(customers=SCALE_CUSTOMERS)
    parser.add_argument("--workers", type=int, default=2, help="workers of the second run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    check_workload_options(parser, args)
    if args.workers < 2:
        parser.error("--workers must be at least 2 (the first run is always one worker)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the scale-out bench (see ``run_main`` for the exit status)."""
    return run_main(parse_args(argv), run_bench, print_summary, work_prefix="bench-scale-")


if __name__ == "__main__":
    sys.exit(main())
