"""Keys land on the partitions Kafka's default partitioner gives them, cached or not."""

from __future__ import annotations

import pytest

from stream.partitioning import partition_of

# murmur2 of these keys as Kafka's Java client computes it (its Utils tests).
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"abc": 479470107,
}


@pytest.mark.parametrize("partitions", [1, 4, 7, 12])
def test_partition_of_matches_kafkas_partitioner_on_every_call(partitions: int) -> None:
    for _ in range(2):  # the second round is answered from the cache
        for key, java_hash in KAFKA_MURMUR2.items():
            assert partition_of(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions, key


def test_the_same_key_with_another_partition_count_is_not_taken_from_the_cache() -> None:
    assert [partition_of(b"foobar", n) for n in (4, 7)] == [
        (-790332482 & 0x7FFFFFFF) % 4,
        (-790332482 & 0x7FFFFFFF) % 7,
    ]
