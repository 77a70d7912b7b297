"""Faust against the embedded broker (Tansu): two workarounds, dev profile only.

**End offsets.** Tansu answers ListOffsets(latest) with the base offset of the last
stored record batch + 1, not the offset after its last record: after a producer batch
of 27 records (offsets 0-26) it answers 1. Faust's table recovery reads a changelog
partition up to that answer, so it would stop before the last batch's other records
and the worker would start with customer records out of date. Fetch responses carry
the right high watermark. The workaround used to be one record per producer batch,
which costs a broker round trip for every record the worker writes and was the
worker's main throughput limit. Instead :func:`read_end_offsets_from_fetches` has
recovery take each answer as a lower bound and fetch from just before it: the fetch
response's high watermark is the true end. It costs one fetch per changelog partition
per rebalance.

**Fetch wait.** Faust has its consumer ask the broker to hold a fetch for up to 1.5 s
while there is too little data, and Tansu was seen to hold a fetch that long although
records arrived meanwhile: at a steady 1,000 tx/s the worker sat idle 0.3-1.4 s every
second or two (case latency p50 about 1.2 s). :func:`shorten_fetch_wait` makes it
``FETCH_MAX_WAIT_MS`` (p50 0.33 s in the same run at 50 ms). At 20 ms the alerts' hop
from the rules agent to the case agent (same worker) shrank further: with the case
agent's batch wait cut to 10 ms, alerts were 88 instead of 140 ms old (p50) when the
case agent took them, and the case latency p50 went from 0.33-0.37 s to 0.27-0.31 s.
An idle worker then polls the broker 50 times a second, which a real Kafka would not
need.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, server_list

FETCH_TIMEOUT_SECONDS = 10.0
FETCH_MAX_WAIT_MS = 20


def adapt_to_embedded_broker() -> None:
    """Apply both workarounds (idempotent, process-wide: call it on the dev profile)."""
    read_end_offsets_from_fetches()
    shorten_fetch_wait()


def shorten_fetch_wait() -> None:
    """Make the worker's consumer hold fetches for ``FETCH_MAX_WAIT_MS`` at most."""
    if getattr(AIOKafkaConsumerThread._create_worker_consumer, "shortened_wait", False):
        return
    create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer

    def with_short_fetch_wait(self: Any, transport: Any) -> Any:
        consumer = create_worker_consumer(self, transport)
        # Faust passes fetch_max_wait_ms=1500 without a setting to change it; aiokafka
        # hands this attribute to its fetcher when the consumer starts.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    with_short_fetch_wait.shortened_wait = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = with_short_fetch_wait  # type: ignore[method-assign]


async def true_end_offsets(bootstrap: Sequence[str], listed: Mapping[Any, int]) -> dict[Any, int]:
    """The offset after each partition's last record, given ListOffsets' answers.

    ``listed`` maps topic partitions (any ``(topic, partition)`` tuple) to what
    ListOffsets(latest) said; the answer keeps its keys. A partition the broker
    reports empty is empty; any other is fetched from one before the answer, where the
    last stored batch begins, and the fetch response's high watermark is its end.
    """
    result = dict(listed)
    wanted = {
        TopicPartition(tp[0], tp[1]): tp
        for tp, offset in listed.items()
        if offset is not None and offset > 0
    }
    if not wanted:
        return result
    consumer = AIOKafkaConsumer(bootstrap_servers=list(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, listed[wanted[tp]] - 1)
        unanswered = set(wanted)
        deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
        while unanswered:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no fetch answer for {sorted(map(str, unanswered))} "
                    f"in {FETCH_TIMEOUT_SECONDS:.0f}s: cannot tell where their changelog ends"
                )
            fetched = await consumer.getmany(
                *unanswered, timeout_ms=int(min(remaining, 1.0) * 1000)
            )
            for tp, records in fetched.items():
                highwater = consumer.highwater(tp)
                last = records[-1].offset + 1 if records else 0
                result[wanted[tp]] = max(listed[wanted[tp]], last, highwater or 0)
                unanswered.discard(tp)
    finally:
        await consumer.stop()
    return result


def read_end_offsets_from_fetches() -> None:
    """Make Faust's recovery use :func:`true_end_offsets` (idempotent, process-wide)."""
    if getattr(AIOKafkaConsumerThread._highwaters, "reads_fetches", False):
        return
    listed_end_offsets = AIOKafkaConsumerThread._highwaters

    async def end_offsets_from_fetches(self: Any, partitions: Any) -> Mapping[Any, int]:
        listed = await listed_end_offsets(self, partitions)
        bootstrap = server_list(self.transport.url, self.transport.default_port)
        return await true_end_offsets(bootstrap, listed)

    end_offsets_from_fetches.reads_fetches = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._highwaters = end_offsets_from_fetches  # type: ignore[method-assign]
