"""A micro-batch's records reach the changelog whole, on their key's partition, in order."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from stream.broker import EmbeddedBroker
from stream.customer_table import ChangelogBatches
from stream.partitioning import partition_of
from stream.topics import ensure_topics
from tests.conftest import consume_all

pytestmark = pytest.mark.integration
PARTITIONS = 3


def test_records_land_on_their_keys_partitions_and_later_values_after_earlier_ones(
    broker: EmbeddedBroker,
) -> None:
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    first = [(f"C{n}".encode(), b"first-" + b"x" * 3000) for n in range(40)]
    second = [(f"C{n}".encode(), f"second-{n}".encode()) for n in range(0, 40, 3)]

    async def write() -> None:
        await ensure_topics(broker.bootstrap, [topic], PARTITIONS, 1)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            # Small batches, so one call's records of a partition take several.
            changelog = ChangelogBatches(lambda: producer, topic, PARTITIONS, max_batch_bytes=8000)
            # Both calls queued before either is stored, as consecutive micro-batches are.
            await asyncio.gather(changelog.send(first), changelog.send(second))
        finally:
            await producer.stop()

    asyncio.run(write())
    records = consume_all(broker, topic, expected=len(first) + len(second))
    assert len(records) == len(first) + len(second)
    assert all(r.partition == partition_of(r.key or b"", PARTITIONS) for r in records)
    latest = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[record.key] = record.value
    expected = dict(first) | dict(second)
    assert latest == expected, "each key's last record is its last value"


def test_a_call_after_a_failed_one_fails_too() -> None:
    def no_producer() -> AIOKafkaProducer:
        raise ConnectionError("the producer is gone")

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        changelog = ChangelogBatches(no_producer, "changelog", PARTITIONS)
        failed = changelog.send([(b"C1", b"v1")])
        after = changelog.send([(b"C1", b"v2")])
        results = await asyncio.gather(failed, after, return_exceptions=True)
        return results[0], results[1]  # type: ignore[return-value]

    failed, after = asyncio.run(scenario())
    assert isinstance(failed, ConnectionError)
    assert isinstance(after, ConnectionError), "v2 must not be written without v1 before it"
