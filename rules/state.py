"""Per-customer state the rules read: recent transactions, daily totals, what already fired.

The same code keeps this state in the live stream (one value per customer in a Faust
table) and in the backtest (a dict), which is what makes the two give the same
detections. Everything is keyed on the transaction's own event time, never on the
broker's or the wall clock, and everything expires so the state stays bounded:

- ``events``: the customer's transactions of the last ``retention`` (the longest
  window any rule uses plus the allowed lateness), sorted by event time. Their tx_ids
  also make every update idempotent: a redelivered transaction is recognised.
- ``positions``: per input stream (e.g. a source partition), the furthest position
  applied for this customer. A stream is read in order, so a record at or before that
  position was applied already: this is what recognises a whole re-read stretch after
  a crash, however long, in one comparison.
- ``arrived``: the tx_ids of the customer's latest transactions in *arrival* order.
  A redelivery after a crash repeats what arrived last, whatever its event time; a
  transaction much older than the customer's newest (a backlog read across partitions)
  leaves ``events`` at once, and only this list still recognises it.
- ``daily``: per bank-local day and direction, counts and CNY totals, kept longer for
  behavioural baselines.
- ``fired``: dedupe keys of detections already emitted (report once per
  customer-day-direction-criterion; alert cool-downs), and ``recent_detections`` so
  a redelivered transaction re-emits exactly what it emitted the first time.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.detection import Detection
from core.transaction import Channel, Direction

# More than a customer can have in flight between two offset commits of the worker.
ARRIVALS_KEPT = 64


@dataclass(frozen=True, slots=True)
class TxEvent:
    """The parts of one applied transaction that windows and evidence need."""

    tx_id: str
    at: float  # event time, POSIX seconds
    day: int  # bank-local day, date.toordinal()
    direction: Direction
    channel: Channel
    currency: str
    amount_cny: Decimal
    amount_usd: Decimal
    counterparty: str | None
    country: str | None
    cross_border: bool
    # The serialised form, built once: an event is written with its customer's state
    # on every later transaction until it expires.
    _as_list: list[Any] | None = field(default=None, compare=False, repr=False)

    def to_list(self) -> list[Any]:
        if self._as_list is not None:
            return self._as_list
        as_list = [
            self.tx_id,
            self.at,
            self.day,
            self.direction.value,
            self.channel.value,
            self.currency,
            str(self.amount_cny),
            str(self.amount_usd),
            self.counterparty,
            self.country,
            self.cross_border,
        ]
        object.__setattr__(self, "_as_list", as_list)
        return as_list

    @classmethod
    def from_list(cls, item: list[Any]) -> TxEvent:
        return cls(
            tx_id=item[0],
            at=float(item[1]),
            day=int(item[2]),
            direction=Direction(item[3]),
            channel=Channel(item[4]),
            currency=item[5],
            amount_cny=Decimal(item[6]),
            amount_usd=Decimal(item[7]),
            counterparty=item[8],
            country=item[9],
            cross_border=bool(item[10]),
        )


@dataclass(slots=True)
class DailyTotals:
    count_in: int = 0
    count_out: int = 0
    cny_in: Decimal = Decimal(0)
    cny_out: Decimal = Decimal(0)

    def add(self, event: TxEvent) -> None:
        if event.direction is Direction.IN:
            self.count_in += 1
            self.cny_in += event.amount_cny
        else:
            self.count_out += 1
            self.cny_out += event.amount_cny

    def total(self, direction: Direction | None) -> Decimal:
        if direction is Direction.IN:
            return self.cny_in
        if direction is Direction.OUT:
            return self.cny_out
        return self.cny_in + self.cny_out


@dataclass(slots=True)
class CustomerState:
    """Everything the rules know about one customer; JSON-serialisable, bounded."""

    transactions: int = 0
    first_event_at: float | None = None
    last_event_at: float | None = None
    events: list[TxEvent] = field(default_factory=list)
    daily: dict[int, DailyTotals] = field(default_factory=dict)
    fired: dict[str, float] = field(default_factory=dict)
    recent_detections: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[str] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    _event_times: list[tuple[float, str]] = field(default_factory=list, repr=False)
    _tx_ids: set[str] = field(default_factory=set, repr=False)
    _swept_day: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._reindex()

    def _reindex(self) -> None:
        self._event_times = [(event.at, event.tx_id) for event in self.events]
        self._tx_ids = {event.tx_id for event in self.events}

    def has_seen(self, tx_id: str, position: tuple[str, int] | None = None) -> bool:
        """Whether this transaction was already applied (by input position or tx_id)."""
        if position is not None:
            stream, offset = position
            applied = self.positions.get(stream)
            if applied is not None and offset <= applied:
                return True
        return tx_id in self._tx_ids or tx_id in self.arrived

    def mark_position(self, position: tuple[str, int]) -> None:
        """Record that the input stream ``position[0]`` was applied up to ``position[1]``."""
        stream, offset = position
        if offset > self.positions.get(stream, -1):
            self.positions[stream] = offset

    def remember_detections(self, detections: Iterable[Detection], *, kept: int) -> None:
        """Keep what fired, so a redelivery of its trigger re-emits it; drop older ones.

        Only a redelivery re-emits, and redeliveries are of recent arrivals: at most
        ``kept`` detections, and only those triggered by a transaction still in ``arrived``.
        """
        self.recent_detections.extend(detection.to_dict() for detection in detections)
        if self.recent_detections:
            arrived = set(self.arrived)
            self.recent_detections[:] = [
                document
                for document in self.recent_detections[-kept:]
                if document["trigger_tx_id"] in arrived
            ]

    def add(self, event: TxEvent, *, arrivals_kept: int = ARRIVALS_KEPT) -> None:
        """Insert ``event`` in event-time order and update the running figures."""
        self.arrived.append(event.tx_id)
        del self.arrived[:-arrivals_kept]
        key = (event.at, event.tx_id)
        index = bisect.bisect_right(self._event_times, key)
        self._event_times.insert(index, key)
        self.events.insert(index, event)
        self._tx_ids.add(event.tx_id)
        self.daily.setdefault(event.day, DailyTotals()).add(event)
        self.transactions += 1
        if self.first_event_at is None or event.at < self.first_event_at:
            self.first_event_at = event.at
        if self.last_event_at is None or event.at > self.last_event_at:
            self.last_event_at = event.at

    def window(self, start: float, end: float) -> list[TxEvent]:
        """Events with ``start <= at <= end``."""
        low = bisect.bisect_left(self._event_times, (start, ""))
        high = bisect.bisect_right(self._event_times, (end, "\U0010ffff"))
        return self.events[low:high]

    def expire(
        self,
        *,
        now: float,
        today: int,
        retention_seconds: float,
        daily_days: int,
        fired_seconds: float,
    ) -> None:
        """Drop what no rule can look at any more, relative to event time ``now``/``today``."""
        cutoff = now - retention_seconds
        if self.events and self.events[0].at < cutoff:
            keep_from = bisect.bisect_left(self._event_times, (cutoff, ""))
            for event in self.events[:keep_from]:
                self._tx_ids.discard(event.tx_id)
            del self.events[:keep_from]
            del self._event_times[:keep_from]
        # Day-granular data only needs sweeping once per bank day.
        if today == self._swept_day:
            return
        self._swept_day = today
        oldest_day = today - daily_days
        for day in [day for day in self.daily if day < oldest_day]:
            del self.daily[day]
        fired_cutoff = now - fired_seconds
        for key in [key for key, at in self.fired.items() if at < fired_cutoff]:
            del self.fired[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions,
            "first_event_at": self.first_event_at,
            "last_event_at": self.last_event_at,
            "events": [event.to_list() for event in self.events],
            "daily": {
                str(day): [t.count_in, t.count_out, str(t.cny_in), str(t.cny_out)]
                for day, t in self.daily.items()
            },
            "fired": self.fired,
            "recent_detections": self.recent_detections,
            "arrived": self.arrived,
            "positions": self.positions,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> CustomerState:
        return cls(
            transactions=int(document["transactions"]),
            first_event_at=document.get("first_event_at"),
            last_event_at=document.get("last_event_at"),
            events=[TxEvent.from_list(item) for item in document.get("events", [])],
            daily={
                int(day): DailyTotals(int(v[0]), int(v[1]), Decimal(v[2]), Decimal(v[3]))
                for day, v in document.get("daily", {}).items()
            },
            fired={str(k): float(v) for k, v in document.get("fired", {}).items()},
            recent_detections=list(document.get("recent_detections", [])),
            arrived=list(document.get("arrived", [])),
            positions={str(k): int(v) for k, v in document.get("positions", {}).items()},
        )
