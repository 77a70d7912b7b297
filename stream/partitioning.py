"""Which partition a key lands on, as Kafka's default partitioner (and Faust's) decides."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

# aiokafka's murmur2 is pure Python (about 5 us a key here) and the worker asks for the
# same customers' keys with every transaction and every record write: keep the recently
# busy ones, as many as the customer table keeps decoded and a few more.
PARTITIONS_KEPT = 16_384


@lru_cache(maxsize=PARTITIONS_KEPT)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Faust's) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
