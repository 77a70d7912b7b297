"""A micro-batch's records reach the changelog whole, on their key's partition, in order."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

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


def test_records_wait_for_the_deliveries_they_come_after(broker: EmbeddedBroker) -> None:
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    records = [(f"C{n}".encode(), f"applied-{n}".encode()) for n in range(6)]

    async def scenario() -> tuple[int, bool, int]:
        await ensure_topics(broker.bootstrap, [topic], PARTITIONS, 1)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await producer.start()
        await consumer.start()
        try:
            detection_delivered = asyncio.get_running_loop().create_future()
            changelog = ChangelogBatches(lambda: producer, topic, PARTITIONS)
            stored = changelog.send(records, after=[detection_delivered])
            before = await _read_for(consumer, seconds=1.5)
            still_waiting = not stored.done()
            detection_delivered.set_result(None)
            await asyncio.wait_for(stored, 30)
            return len(before), still_waiting, len(await _read_for(consumer, seconds=1.5))
        finally:
            await consumer.stop()
            await producer.stop()

    before, still_waiting, after = asyncio.run(scenario())
    assert before == 0, "no record may reach the changelog before the detections it follows"
    assert still_waiting
    assert after == len(records)


def test_a_failed_delivery_keeps_the_records_and_later_ones_out_of_the_changelog() -> None:
    def producer_not_to_be_asked() -> AIOKafkaProducer:
        raise AssertionError("records were about to be sent after a failed delivery")

    async def scenario() -> list[BaseException | None]:
        refused = asyncio.get_running_loop().create_future()
        refused.set_exception(ConnectionRefusedError("the alerts topic's leader is gone"))
        changelog = ChangelogBatches(producer_not_to_be_asked, "changelog", PARTITIONS)
        first = changelog.send([(b"C1", b"v1")], after=[refused])
        second = changelog.send([(b"C1", b"v2")])
        return await asyncio.gather(first, second, return_exceptions=True)  # type: ignore[return-value]

    first, second = asyncio.run(scenario())
    assert isinstance(first, ConnectionRefusedError)
    assert isinstance(second, ConnectionRefusedError), "v2 must not be written without v1"


async def _read_for(consumer: AIOKafkaConsumer, *, seconds: float) -> list[object]:
    """Whatever the consumer reads within ``seconds``."""
    records: list[object] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        batches = await consumer.getmany(timeout_ms=int(left * 1000))
        for batch in batches.values():
            records.extend(batch)
    return records
