"""Shared fixtures: one embedded broker per test session and real worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from stream.broker import EmbeddedBroker, free_loopback_port
from stream.topics import ensure_topics

PARTITIONS = 4


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Tansu broker for the whole session (topics are unique per test)."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as embedded:
        yield embedded


@dataclass
class StreamNames:
    """Unique app id and topics, so tests sharing one broker never see each other's data."""

    app_id: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")

    @property
    def transactions(self) -> str:
        return f"{self.app_id}-in"

    @property
    def dead_letter(self) -> str:
        return f"{self.app_id}-dlq"

    @property
    def alerts(self) -> str:
        return f"{self.app_id}-alerts"

    @property
    def reports(self) -> str:
        return f"{self.app_id}-reports"


@pytest.fixture
def names() -> StreamNames:
    return StreamNames()


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def produce(
    broker: EmbeddedBroker,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
) -> list[tuple[int, int]]:
    """Send (key, value) records; the (partition, offset) each one got, in order."""

    async def send_all() -> list[tuple[int, int]]:
        await ensure_topics(broker.bootstrap, [topic], PARTITIONS, 1)
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            max_batch_size=1,  # the embedded broker's end offsets need one record per batch
            max_request_size=4 * 1024 * 1024,
            linger_ms=0,
        )
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            results = [await future for future in futures]
        finally:
            await producer.stop()
        return [(result.partition, result.offset) for result in results]

    return run(send_all())


@dataclass(frozen=True)
class ConsumedRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def consume_all(
    broker: EmbeddedBroker, topic: str, expected: int, timeout: float = 30.0
) -> list[ConsumedRecord]:
    """Read a topic from the start until ``expected`` records arrived or time ran out."""

    async def read() -> list[ConsumedRecord]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        records: list[ConsumedRecord] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < expected and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(
                        ConsumedRecord(m.partition, m.offset, m.key, m.value, dict(m.headers))
                        for m in batch
                    )
            # Anything beyond what was expected is a bug too: give it a moment to show.
            extra = await consumer.getmany(timeout_ms=1000)
            for batch in extra.values():
                records.extend(
                    ConsumedRecord(m.partition, m.offset, m.key, m.value, dict(m.headers))
                    for m in batch
                )
        finally:
            await consumer.stop()
        return records

    return run(read())


class WorkerProcess:
    """The real ``amlwatch worker`` in a subprocess, with its web port for probes."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        names: StreamNames,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.web_port = free_loopback_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "AMLWATCH_BROKER_URL": broker.url,
            "AMLWATCH_DEV_BROKER_PROFILE": "true",
            "AMLWATCH_APP_ID": names.app_id,
            "AMLWATCH_TRANSACTIONS_TOPIC": names.transactions,
            "AMLWATCH_DEAD_LETTER_TOPIC": names.dead_letter,
            "AMLWATCH_ALERTS_TOPIC": names.alerts,
            "AMLWATCH_REPORTS_TOPIC": names.reports,
            "AMLWATCH_TOPIC_PARTITIONS": str(PARTITIONS),
            "AMLWATCH_WEB_PORT": str(self.web_port),
            "AMLWATCH_LOG_LEVEL": "warning",
            "AMLWATCH_DATA_DIR": str(log_path.parent / "data"),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, ready_timeout: float = 60.0) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream.cli", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_until(self.is_ready, ready_timeout, "worker never reported ready on /healthz")
        return self

    def is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_until(self, condition, timeout: float, failure: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                if condition():
                    return
            except httpx.HTTPError:
                pass  # not answering for a moment, e.g. while the worker restarts itself
            time.sleep(0.25)
        raise AssertionError(f"{failure} within {timeout}s; log tail:\n{self.log_tail()}")

    def metrics(self, prefix: str = "amlwatch_") -> dict[str, float]:
        """The samples named ``prefix...`` (ours by default) as ``name{labels}`` -> value."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=5).text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith(prefix):
                    continue
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def customer_counts(self) -> dict[str, int]:
        body = httpx.get(f"{self.base_url}/state/customer-activity", timeout=10).json()
        return {customer: state["transactions"] for customer, state in body.items()}

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@pytest.fixture
def start_worker(broker: EmbeddedBroker, names: StreamNames, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory for worker processes of this test's app; all are stopped at the end."""
    workers: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(broker, names, log_path, extra_env)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
