"""The per-customer table: rules state and behaviour profile in one value per customer."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from functools import partial
from typing import Any

import faust
from aiokafka.producer.message_accumulator import BatchBuilder

from core.settings import DEFAULT_DECODED_RECORDS_KEPT
from models.features import BehaviourProfile
from rules.state import CustomerState
from stream.partitioning import partition_of

# Kafka record batches of up to 1 MiB: a typical micro-batch's records of one partition
# in one batch, within what a broker accepts by default.
CHANGELOG_BATCH_BYTES = 1024 * 1024
# Changed records are encoded once per flush, not once per batch (see CustomerTable): a
# flush is due this long after the first record staged into it, or after this many
# stage calls (batches), or once no batch has staged anything for RECORD_FLUSH_QUIET_SECONDS
# (a stream gone quiet, a backlog's end: nothing more to gather). The staged batches'
# input waits for it.
RECORD_FLUSH_SECONDS = 1.0
RECORD_FLUSH_STAGES = 32
RECORD_FLUSH_QUIET_SECONDS = 0.1


class ChangelogBatches:
    """Writes a micro-batch's changed records to the table's changelog, one record batch
    per partition, and tells when they are stored.

    Setting a Faust table key sends its changelog record through Faust's producer buffer
    one message at a time (a future, a buffer task, sensor calls, then the Kafka client's
    own per-message path): about a tenth of the worker's time when every transaction
    rewrites its customer's record. Here the records are appended to one Kafka record
    batch per partition and handed to the client whole. Recovery reads them as it reads
    Faust's own (same key and value bytes, same partition: murmur2 of the key, as the
    table's partitioner).

    Each call's batches are queued after the previous call's, so a key's later value is
    never written before its earlier one, and after the deliveries it is given
    (``after``): the detections and dead letters of the batches whose effects the records
    hold. A record in the changelog says "these transactions were applied", and a
    redelivered transaction that finds itself applied re-sends only what its record still
    remembers (a customer's recent detections); so what it fired must be on its topic
    before the record is. Sending first is not enough: with partitions on several brokers
    the changelog's leader can acknowledge while a detection's request still fails.
    The returned future is done when every record of the call is in the changelog: a
    batch's input is acknowledged only then, so a worker killed before it has not
    committed past a state change it never stored.
    """

    def __init__(
        self,
        producer: Callable[[], Any],
        topic: str,
        partitions: int,
        *,
        max_batch_bytes: int = CHANGELOG_BATCH_BYTES,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self.max_batch_bytes = max_batch_bytes
        self._queued: asyncio.Future[None] | None = None

    def send(
        self, records: Iterable[tuple[bytes, bytes]], after: Sequence[Awaitable[Any]] = ()
    ) -> asyncio.Future[None]:
        """Queue ``(key, value)`` records, to be sent once every delivery in ``after`` is
        done; the future is done when all are stored, and fails, with nothing sent, if a
        delivery in ``after`` failed."""
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for key, value in records:
            by_partition[partition_of(key, self.partitions)].append((key, value))
        queued: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stored = asyncio.ensure_future(self._send(by_partition, self._queued, after, queued))
        self._queued = queued
        return stored

    async def _send(
        self,
        by_partition: dict[int, list[tuple[bytes, bytes]]],
        previous: asyncio.Future[None] | None,
        after: Sequence[Awaitable[Any]],
        queued: asyncio.Future[None],
    ) -> None:
        try:
            if previous is not None:
                await previous
            if after:
                await asyncio.gather(*after)
            producer = self.producer()
            deliveries = []
            for partition, records in by_partition.items():
                for batch in self._batches(producer, records):
                    deliveries.append(
                        await producer.send_batch(batch, self.topic, partition=partition)
                    )
        except BaseException as exc:
            # The calls queued after this one must not write around the gap either.
            queued.set_exception(exc)
            queued.exception()  # retrieved: a caller that never awaits it is no error
            raise
        queued.set_result(None)
        await asyncio.gather(*deliveries)

    def _batches(self, producer: Any, records: list[tuple[bytes, bytes]]) -> Iterator[Any]:
        batch = self._new_batch(producer)
        for key, value in records:
            if batch.append(timestamp=None, key=key, value=value) is None:
                yield batch  # full; an empty batch always takes one record
                batch = self._new_batch(producer)
                batch.append(timestamp=None, key=key, value=value)
        yield batch

    def _new_batch(self, producer: Any) -> BatchBuilder:
        accumulator = producer._message_accumulator
        return BatchBuilder(self.max_batch_bytes, accumulator._compression_type)


class SizedValues(dict[bytes, Any]):
    """The table store's dict (Faust's memory store, which the app configures), keeping
    the total length of its values as they change.

    Every writer of the store goes through it: the flush, and Faust itself when it
    recovers the changelog (``update``, ``pop``) or drops revoked partitions (``pop``).
    The size gauge then reads one number instead of summing every value at each scrape
    (about 0.1 s on the event loop for a million customers here). Reads stay dict reads.
    """

    __slots__ = ("total",)

    def __init__(self, values: Mapping[bytes, Any]) -> None:
        super().__init__(values)
        self.total = sum(map(_size, self.values()))

    def __setitem__(self, key: bytes, value: Any) -> None:
        self.total += _size(value) - _size(self.get(key))
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        value = self[key]
        super().__delitem__(key)
        self.total -= _size(value)

    def pop(self, key: bytes, *default: Any) -> Any:
        if key not in self:
            return super().pop(key, *default)
        value = super().pop(key)
        self.total -= _size(value)
        return value

    def popitem(self) -> tuple[bytes, Any]:
        key, value = super().popitem()
        self.total -= _size(value)
        return key, value

    def setdefault(self, key: bytes, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *others: Any, **more: Any) -> None:
        for key, value in dict(*others, **more).items():
            self[key] = value

    def clear(self) -> None:
        super().clear()
        self.total = 0


def _size(value: Any) -> int:
    # A changelog tombstone is applied as None before it is deleted.
    return 0 if value is None else len(value)


# What opens each half of a record's JSON: written by ``CustomerRecord.to_json_bytes``,
# looked for by ``from_json_bytes``.
_RULES_OPENING = '{"rules":'
_PROFILE_OPENING = ',"profile":'


@dataclass(slots=True)
class CustomerRecord:
    """One customer's table value; both halves are written together or not at all."""

    rules: CustomerState
    profile: BehaviourProfile

    @classmethod
    def new(cls, tz: tzinfo) -> CustomerRecord:
        """The record of a customer seen for the first time."""
        return cls(CustomerState(), BehaviourProfile(tz))

    def to_json_bytes(self) -> bytes:
        """``{"rules": ..., "profile": ...}`` as compact JSON.

        Joined from each half's text: both reuse the text of what the last write
        already encoded, which a json.dumps of the whole value could not.
        """
        text = f"{_RULES_OPENING}{self.rules.to_json()}{_PROFILE_OPENING}{self.profile.to_json()}}}"
        return text.encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes, *, tz: tzinfo) -> CustomerRecord:
        """Rebuild what ``to_json_bytes`` wrote.

        The rules half is read with :meth:`CustomerState.from_json`, which keeps the
        texts its next write reuses; a value in any other JSON layout (spaces, the
        halves in another order, more keys: written by hand) is parsed whole.
        """
        text = raw.decode()
        if text.startswith(_RULES_OPENING):
            try:
                rules, end = CustomerState.from_json(text, len(_RULES_OPENING))
                if not text.startswith(_PROFILE_OPENING, end):
                    raise ValueError("no profile after the rules state")
                profile = json.loads(text[end + len(_PROFILE_OPENING) : -1])
            except ValueError:
                pass
            else:
                return cls(rules, BehaviourProfile.from_dict(profile, tz=tz))
        document = json.loads(text)
        return cls(
            CustomerState.from_dict(document["rules"]),
            BehaviourProfile.from_dict(document["profile"], tz=tz),
        )


class CustomerTable:
    """The customer table, holding JSON bytes, with recently used records kept decoded,
    and changed records staged until the next flush.

    Keys are the customer_id's UTF-8 bytes, the very key of the by-customer topic, and
    the changelog partition is the key's murmur2 partition (:class:`ChangelogBatches`),
    the partition its transactions arrive on.

    Decoding the JSON on every message would dominate the cost, so a decoded record is
    kept and reused as long as the table still holds the very bytes it was decoded from
    (a revoked partition or a recovered value is a different object, never mistaken for
    it). Only the ``decoded_kept`` most recently used customers stay decoded: a
    decoded record takes several times the memory of its bytes, and a worker's share of
    a bank's customers must fit in memory as bytes, not as Python objects.

    Encoding is the other large cost: a record is rewritten whole, and an active customer
    changes in batch after batch. So, like the record cache of Kafka Streams, changed
    records are staged (:meth:`stage`) and encoded once per :meth:`flush`, however many
    batches changed them since; a staged record is what :meth:`get` returns, never the
    older bytes. The caller acknowledges a batch's input only when the flush that wrote
    its records is done, so a crash before it re-reads that input, as before; and the
    flush writes them only after the deliveries staged with them (see
    :class:`ChangelogBatches`).
    """

    def __init__(
        self,
        table: faust.Table,
        tz: tzinfo,
        changelog: ChangelogBatches,
        *,
        decoded_kept: int = DEFAULT_DECODED_RECORDS_KEPT,
        flush_after_seconds: float = RECORD_FLUSH_SECONDS,
        flush_after_stages: int = RECORD_FLUSH_STAGES,
        flush_when_quiet_for: float = RECORD_FLUSH_QUIET_SECONDS,
    ) -> None:
        self.table = table
        # The store's own dict, replaced by one that keeps its size (see SizedValues).
        store = table.data
        self._values = store.data = SizedValues(store.data)
        self.tz = tz
        self.changelog = changelog
        self.decoded_kept = decoded_kept
        self.flush_after_seconds = flush_after_seconds
        self.flush_after_stages = flush_after_stages
        self.flush_when_quiet_for = flush_when_quiet_for
        self._decoded: OrderedDict[str, tuple[bytes, CustomerRecord]] = OrderedDict()
        self._staged: dict[str, CustomerRecord] = {}
        # The deliveries of what the staged batches sent: written before their records.
        self._staged_after: list[Awaitable[Any]] = []
        # Done when the staged records are in the changelog; made by the first stage.
        self._staged_stored: asyncio.Future[None] | None = None
        self._staged_since = 0.0  # monotonic time of the first stage since the last flush
        self._staged_last = 0.0  # monotonic time of the last stage
        self._stages = 0  # stage calls since the last flush

    def get(self, customer_id: str) -> CustomerRecord | None:
        staged = self._staged.get(customer_id)
        if staged is not None:
            return staged
        # The store itself: the table's own get reports every read to the sensors,
        # a Prometheus label lookup per transaction.
        raw = self.table.data.get(customer_id.encode())
        if raw is None:
            return None
        cached = self._decoded.get(customer_id)
        if cached is not None and cached[0] is raw:
            self._decoded.move_to_end(customer_id)
            return cached[1]
        record = CustomerRecord.from_json_bytes(raw, tz=self.tz)
        self._keep_decoded(customer_id, raw, record)
        return record

    def stage(
        self, records: Mapping[str, CustomerRecord], after: Sequence[Awaitable[Any]] = ()
    ) -> asyncio.Future[None]:
        """Take ``records`` (by customer_id) as the customers' values; the future is done
        when a flush has put them in the table and its changelog, which it does only once
        the deliveries in ``after`` (what the batch that changed them sent) are done."""
        if self._staged_stored is None:
            self._staged_stored = asyncio.get_running_loop().create_future()
            self._staged_since = time.monotonic()
        self._staged.update(records)
        self._staged_after += after
        self._stages += 1
        self._staged_last = time.monotonic()
        # Shielded: one caller giving up must not cancel what the others wait for.
        return asyncio.shield(self._staged_stored)

    def flush_due(self) -> bool:
        """Whether records were staged ``flush_after_seconds`` ago, or in
        ``flush_after_stages`` calls, or none for ``flush_when_quiet_for``."""
        if self._staged_stored is None:
            return False
        now = time.monotonic()
        return (
            self._stages >= self.flush_after_stages
            or now - self._staged_since >= self.flush_after_seconds
            or now - self._staged_last >= self.flush_when_quiet_for
        )

    def flush(self) -> None:
        """Encode every staged record into the table and send it to the changelog."""
        stored = self._staged_stored
        if stored is None:
            return
        staged, after = self._staged, self._staged_after
        self._staged, self._staged_stored, self._stages = {}, None, 0
        self._staged_after = []
        data = self.table.data  # the store itself: the changelog is written below
        written = []
        for customer_id, record in staged.items():
            raw = record.to_json_bytes()
            key = customer_id.encode()
            data[key] = raw
            self._keep_decoded(customer_id, raw, record)
            written.append((key, raw))
        self.changelog.send(written, after).add_done_callback(partial(_pass_on, stored))

    def abandon_staged(self, reason: BaseException) -> None:
        """Drop the staged records unwritten (a batch failed half-way through changing
        them); whoever waits for them gets ``reason``, so nothing staged is acknowledged."""
        stored = self._staged_stored
        for customer_id in self._staged:
            self._decoded.pop(customer_id, None)
        self._staged, self._staged_stored, self._stages = {}, None, 0
        self._staged_after = []
        if stored is not None:
            stored.set_exception(reason)

    def _keep_decoded(self, customer_id: str, raw: bytes, record: CustomerRecord) -> None:
        self._decoded[customer_id] = (raw, record)
        self._decoded.move_to_end(customer_id)
        while len(self._decoded) > self.decoded_kept:
            self._decoded.popitem(last=False)

    def forget(self, customer_id: str) -> None:
        """Drop the decoded record (it may hold changes the table never received)."""
        self._decoded.pop(customer_id, None)

    def entries(self) -> int:
        """Customers this worker holds (its partitions' share of the table, as flushed)."""
        return len(self.table.data)

    def encoded_bytes(self) -> int:
        """The size of the values this worker holds, as stored and sent to the changelog."""
        return self._values.total

    def items(self) -> list[tuple[str, CustomerRecord]]:
        customer_ids = [key.decode() for key in list(self.table)]
        customer_ids += [
            customer_id
            for customer_id in self._staged
            if customer_id.encode() not in self.table.data
        ]
        found = ((customer_id, self.get(customer_id)) for customer_id in customer_ids)
        return [(customer_id, record) for customer_id, record in found if record is not None]


def _pass_on(target: asyncio.Future[None], source: asyncio.Future[None]) -> None:
    """Finish ``target`` as ``source`` finished (a cancelled write is a failed one)."""
    if target.done():
        return
    if source.cancelled():
        target.set_exception(RuntimeError("the changelog write was cancelled"))
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(None)
