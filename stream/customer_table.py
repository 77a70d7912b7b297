"""The per-customer table: rules state and behaviour profile in one value per customer."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import faust

from models.features import BehaviourProfile
from rules.state import CustomerState

# Enough for the customers active within minutes on a busy worker; a customer beyond it
# is decoded again on their next transaction (tens of microseconds).
DECODED_RECORDS_KEPT = 10_000


class ConfirmedChangelogTable(faust.Table):
    """A table whose changelog writes can be awaited before the input is acknowledged.

    Faust queues changelog writes in its producer buffer and, before committing input
    offsets, flushes that buffer only as far as its queue is empty: a write already
    taken off the queue but not yet handed to the Kafka client is not waited for. A
    worker killed at that moment has committed the input behind a state change that
    never reached the changelog, and the restarted worker never applies it. Awaiting
    every write's delivery before a batch is acknowledged closes that window.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unconfirmed: list[Any] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        self._unconfirmed.append(future)
        return future

    def take_unconfirmed(self) -> list[Any]:
        """The changelog writes made since the last call (futures of their delivery)."""
        pending, self._unconfirmed = self._unconfirmed, []
        return pending


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
        text = f'{{"rules":{self.rules.to_json()},"profile":{self.profile.to_json()}}}'
        return text.encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes, *, tz: tzinfo) -> CustomerRecord:
        """Rebuild what ``to_json_bytes`` wrote."""
        document = json.loads(raw)
        return cls(
            CustomerState.from_dict(document["rules"]),
            BehaviourProfile.from_dict(document["profile"], tz=tz),
        )


class CustomerTable:
    """The customer table, holding JSON bytes, with recently used records kept decoded.

    Keys are the customer_id's UTF-8 bytes, the very key of the by-customer topic, and
    the table uses Faust's partitioner: a value written while a micro-batch holds other
    customers' events still goes to the changelog partition of its own customer, the
    partition its transactions arrive on.

    Decoding the JSON on every message would dominate the cost, so a decoded record is
    kept and reused as long as the table still holds the very bytes it was decoded from
    (a revoked partition or a recovered value is a different object, never mistaken for
    it). Only the ``DECODED_RECORDS_KEPT`` most recently used customers stay decoded: a
    decoded record takes several times the memory of its bytes, and a worker's share of
    a bank's customers must fit in memory as bytes, not as Python objects.
    """

    def __init__(
        self,
        table: ConfirmedChangelogTable,
        tz: tzinfo,
        *,
        decoded_kept: int = DECODED_RECORDS_KEPT,
    ) -> None:
        self.table = table
        self.tz = tz
        self.decoded_kept = decoded_kept
        self._decoded: OrderedDict[str, tuple[bytes, CustomerRecord]] = OrderedDict()

    def get(self, customer_id: str) -> CustomerRecord | None:
        raw = self.table.get(customer_id.encode())
        if raw is None:
            return None
        cached = self._decoded.get(customer_id)
        if cached is not None and cached[0] is raw:
            self._decoded.move_to_end(customer_id)
            return cached[1]
        record = CustomerRecord.from_json_bytes(raw, tz=self.tz)
        self._keep_decoded(customer_id, raw, record)
        return record

    def put(self, customer_id: str, record: CustomerRecord) -> None:
        raw = record.to_json_bytes()
        self.table[customer_id.encode()] = raw
        self._keep_decoded(customer_id, raw, record)

    def _keep_decoded(self, customer_id: str, raw: bytes, record: CustomerRecord) -> None:
        self._decoded[customer_id] = (raw, record)
        self._decoded.move_to_end(customer_id)
        while len(self._decoded) > self.decoded_kept:
            self._decoded.popitem(last=False)

    def written_so_far(self) -> asyncio.Future[Any]:
        """Done when every record written so far is in the changelog (taken now, so
        records written later are not waited for)."""
        return asyncio.gather(*self.table.take_unconfirmed())

    def forget(self, customer_id: str) -> None:
        """Drop the decoded record (it may hold changes the table never received)."""
        self._decoded.pop(customer_id, None)

    def entries(self) -> int:
        """Customers this worker holds (its partitions' share of the table)."""
        return len(self.table.data)

    def encoded_bytes(self) -> int:
        """The size of the values this worker holds, as stored and sent to the changelog."""
        return sum(len(raw) for raw in self.table.data.values())

    def items(self) -> list[tuple[str, CustomerRecord]]:
        customer_ids = [key.decode() for key in list(self.table)]
        found = ((customer_id, self.get(customer_id)) for customer_id in customer_ids)
        return [(customer_id, record) for customer_id, record in found if record is not None]
