"""Which partition a key lands on, as Kafka's default partitioner (and Faust's) decides."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Faust's) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
