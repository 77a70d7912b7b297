"""The real worker against the embedded broker: nothing lost, nothing counted twice."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import date

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.dead_letter import read_dead_letter_headers
from stream.simulator import (
    MalformedKind,
    derive_rng,
    generate_reference,
    iter_transactions,
    malformed_payload,
    transaction_json_bytes,
)
from tests.conftest import StreamNames, consume_all, produce

pytestmark = pytest.mark.integration

START = date(2026, 9, 1)


def build_input(
    total: int, malformed_every: int, customers: int, seed: int = 7
) -> tuple[list[tuple[bytes | None, bytes]], list[str | None], Counter[str]]:
    """Simulated records to send, the expected DLQ reason per record, counts per customer.

    Every ``malformed_every``-th record is a malformed one, cycling through every kind
    the simulator knows (a 1 MiB payload among them).
    """
    rng = derive_rng(seed, "integration")
    population, _managers = generate_reference(rng, customers, max(1, customers // 25), as_of=START)
    history = iter_transactions(rng, population, start=START)
    kinds = itertools.cycle(MalformedKind)
    records: list[tuple[bytes | None, bytes]] = []
    expected_reasons: list[str | None] = []
    counts: Counter[str] = Counter()
    for index in range(total):
        document = next(history)
        if index % malformed_every == malformed_every - 1:
            kind = next(kinds)
            records.append((None, malformed_payload(kind, rng, document)))
            expected_reasons.append(kind.expected_reason.value)
        else:
            counts[document["customer_id"]] += 1
            # Keyed by account, not customer: the worker must re-key by itself.
            records.append((document["account_id"].encode(), transaction_json_bytes(document)))
            expected_reasons.append(None)
    return records, expected_reasons, counts


def test_every_message_is_processed_or_dead_lettered(broker, names: StreamNames, start_worker):
    records, expected_reasons, expected_counts = build_input(10_000, 100, customers=150)
    positions = produce(broker, names.transactions, records)
    worker = start_worker()

    def all_accounted() -> bool:
        samples = worker.metrics()
        processed = samples.get("amlwatch_transactions_processed_total", 0)
        dead = sum(
            v
            for k, v in samples.items()
            if k.startswith("amlwatch_transactions_dead_lettered_total")
        )
        return processed + dead >= len(records)

    worker.wait_until(all_accounted, 180, "worker did not account for every message")
    samples = worker.metrics()
    processed = samples["amlwatch_transactions_processed_total"]
    dead_by_reason = {
        key.split("reason=")[1].rstrip("}"): value
        for key, value in samples.items()
        if key.startswith("amlwatch_transactions_dead_lettered_total")
    }
    assert processed + sum(dead_by_reason.values()) == len(records)
    assert processed == sum(expected_counts.values()) == 9_900
    assert dead_by_reason == dict(Counter(r for r in expected_reasons if r is not None))

    dead_letters = consume_all(broker, names.dead_letter, expected=100)
    assert len(dead_letters) == 100
    by_source = {}
    for record in dead_letters:
        headers = read_dead_letter_headers(record.headers)
        assert headers["source.topic"] == names.transactions
        assert headers["message"]
        by_source[(int(headers["source.partition"]), int(headers["source.offset"]))] = (
            headers["reason"],
            record.value,
        )
    for position, reason, (_key, value) in zip(positions, expected_reasons, records, strict=True):
        if reason is None:
            assert position not in by_source
        else:
            assert by_source[position] == (reason, value), "DLQ keeps reason and original bytes"

    assert worker.customer_counts() == dict(expected_counts)
    assert samples["amlwatch_processing_latency_seconds_count"] == 9_900
    # The collector policy is on: what start-up and recovery left is frozen (Faust,
    # pandas and scikit-learn alone leave more than 100,000 objects), and every
    # collection is timed: at least the full one each freeze makes. (10,000 messages
    # need not fill the young generation once at its raised threshold.)
    assert samples["amlwatch_gc_frozen_objects"] > 100_000
    assert samples["amlwatch_gc_pause_seconds_count{generation=2}"] > 0

    # A poller can ask for named samples only (prometheus_client's name[] parameter).
    wanted = ["amlwatch_transactions_processed_total", "amlwatch_gc_frozen_objects"]
    page = httpx.get(f"{worker.base_url}/metrics", params={"name[]": wanted}, timeout=5).text
    named = {
        sample.name: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }
    assert named.keys() == set(wanted)
    assert named["amlwatch_transactions_processed_total"] == 9_900

    # Every input message is committed in the end, dead-lettered and re-keyed ones too:
    # each is held until what was sent for it is delivered, then let go.
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)

    def all_committed() -> bool:
        committed = worker.metrics(prefix="faust_topic_partition_offset_commited")
        return all(
            committed.get(
                f"faust_topic_partition_offset_commited{{partition={partition},"
                f"topic={names.transactions}}}",
                0,
            )
            >= end
            for partition, end in ends.items()
        )

    worker.wait_until(all_committed, 60, "not every input message was committed")
    # Faust's gauge of messages in flight comes back down: the batches acknowledged
    # by amlwatch (not by Faust's stream) report their last acknowledgement too. A
    # record held back after an offset jump is never reported, so a run with jumps
    # may end above zero.
    active = worker.metrics(prefix="faust_active_messages")["faust_active_messages"]
    jumps = sum(worker.metrics(prefix="amlwatch_consumer_offset_jumps").values())
    assert active == 0 or jumps > 0, f"{active:.0f} messages still counted in flight"


def test_sigkill_mid_stream_then_restart_counts_each_transaction_once(
    broker, names: StreamNames, start_worker
):
    records, _reasons, expected_counts = build_input(6_000, 10**9, customers=80, seed=11)
    first_half, second_half = records[:3_000], records[3_000:]
    produce(broker, names.transactions, first_half)
    worker = start_worker()
    worker.wait_until(
        lambda: worker.metrics().get("amlwatch_transactions_processed_total", 0) >= 1_000,
        120,
        "worker made no progress",
    )
    worker.kill()  # mid-stream: uncommitted offsets and in-flight changelog writes
    produce(broker, names.transactions, second_half)

    restarted = start_worker()
    try:
        restarted.wait_until(
            lambda: sum(restarted.customer_counts().values()) >= len(records),
            180,
            "restarted worker did not catch up",
        )
    except AssertionError as exc:
        counted = sum(restarted.customer_counts().values())
        metrics = restarted.metrics()
        raise AssertionError(f"{counted} of {len(records)} counted; {metrics}") from exc
    # Give late redeliveries a moment to show up before judging.
    time.sleep(3)
    assert restarted.customer_counts() == dict(expected_counts)
    assert restarted.metrics()["amlwatch_transactions_processed_total"] < len(records)


def test_a_worker_joining_and_one_leaving_mid_stream_lose_and_repeat_nothing(
    broker, names: StreamNames, start_worker
):
    # Each rebalance revokes partitions whose customers have records staged for the next
    # flush and batches held until it: they must reach the changelog (or their input be
    # read again) before another worker takes the partitions over.
    records, _reasons, expected_counts = build_input(6_000, 10**9, customers=80, seed=13)
    produce(broker, names.transactions, records[:3_000])
    first = start_worker()
    first.wait_until(
        lambda: first.metrics().get("amlwatch_transactions_processed_total", 0) >= 1_000,
        120,
        "first worker made no progress",
    )
    second = start_worker()  # joins mid-stream: the first gives up half its partitions
    produce(broker, names.transactions, records[3_000:])

    def processed_by_both() -> float:
        return sum(
            worker.metrics().get("amlwatch_transactions_processed_total", 0)
            for worker in (first, second)
        )

    first.wait_until(
        lambda: processed_by_both() >= len(records), 180, "the two workers did not catch up"
    )
    first.stop()  # leaves: the second takes every partition and recovers its records
    second.wait_until(
        lambda: sum(second.customer_counts().values()) >= len(records),
        180,
        "the remaining worker did not hold every customer's count",
    )
    time.sleep(3)  # late redeliveries would show now
    assert second.customer_counts() == dict(expected_counts)
    # The size gauges follow recovery and flushes alike: they describe the newest value
    # of every key in the changelog, which the remaining worker recovered or wrote.
    changelog = consume_all(
        broker, f"{names.app_id}-customer-state-changelog", expected=10**6, timeout=5
    )
    newest = {record.key: record.value for record in changelog}
    metrics = second.metrics()
    assert metrics["amlwatch_customer_table_entries"] == len(newest) == len(expected_counts)
    assert metrics["amlwatch_customer_table_bytes"] == sum(map(len, newest.values()))
