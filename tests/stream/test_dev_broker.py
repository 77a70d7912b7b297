"""Table recovery must read a changelog to its last record, however the broker batched it."""

from __future__ import annotations

import asyncio
import uuid

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.broker import EmbeddedBroker
from stream.dev_broker import FETCH_MAX_WAIT_MS, shorten_fetch_wait, true_end_offsets
from stream.topics import ensure_topics

pytestmark = pytest.mark.integration


async def _produce_in_batches(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    # A long linger puts each partition's records in one producer batch.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"value", key=b"key", partition=partition)
            for partition, count in counts.items()
            for _ in range(count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _listed_end_offsets(
    bootstrap: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def test_end_offsets_count_every_record_of_the_last_batch(broker: EmbeddedBroker) -> None:
    topic = f"end-offsets-{uuid.uuid4().hex[:8]}"
    counts = {0: 27, 1: 1, 2: 0}

    async def scenario() -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        await ensure_topics(broker.bootstrap, [topic], 3, 1)
        await _produce_in_batches(broker.bootstrap, topic, counts)
        tps = [TopicPartition(topic, partition) for partition in counts]
        listed = await _listed_end_offsets(broker.bootstrap, tps)
        return listed, await true_end_offsets([broker.bootstrap], listed)

    listed, true = asyncio.run(scenario())
    # What makes the workaround necessary: the broker's answer stops at the last batch.
    assert listed[TopicPartition(topic, 0)] < 27
    assert true == {TopicPartition(topic, partition): count for partition, count in counts.items()}


def test_the_worker_consumer_holds_fetches_briefly() -> None:
    shorten_fetch_wait()
    app = faust.App("dev-broker-fetch-wait", broker="kafka://127.0.0.1:9", store="memory://")

    async def created_consumer() -> AIOKafkaConsumer:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        return thread._create_worker_consumer(thread.transport)  # type: ignore[no-any-return]

    consumer = asyncio.run(created_consumer())

    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
