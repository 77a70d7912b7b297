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
import json
import json.scanner
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter
from typing import Any, cast

from core.compiled import reduced_through_init
from core.detection import Detection
from core.transaction import Channel, Direction

# More than a customer can have in flight between two offset commits on a live stream.
# A redelivery re-sends the detections of these arrivals only; a backlog can have more
# in flight, but what they fired is on its topics before the state that applied them is
# written (the worker's changelog waits for those deliveries), so nothing is lost.
ARRIVALS_KEPT = 64


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# which costs twice as much, once per transaction. Nothing changes an event once made.
@dataclass(slots=True)
class TxEvent:
    """The parts of one applied transaction that windows and evidence need.

    ``__init__`` is written out: the one ``dataclass`` generates is Python that mypyc does
    not compile (1.1 us an event, and one is made per transaction and per event decoded
    from a record). It sets the fields below, in their order.
    """

    tx_id: str
    at: float  # event time, POSIX seconds
    day: int  # bank-local day, date.toordinal()
    direction: Direction
    channel: Channel
    currency: str
    amount_cny: Decimal  # whole fen: converted amounts are rounded to the fen
    amount_usd: Decimal
    counterparty: str | None
    country: str | None
    cross_border: bool
    # Its JSON text after a given previous event and with a given counterparty reference,
    # kept: the state is written once per micro-batch and most events keep both from one
    # write to the next.
    encoded: tuple[TxEvent | None, str | int | None, str] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def __init__(
        self,
        tx_id: str,
        at: float,
        day: int,
        direction: Direction,
        channel: Channel,
        currency: str,
        amount_cny: Decimal,
        amount_usd: Decimal,
        counterparty: str | None,
        country: str | None,
        cross_border: bool,
    ) -> None:
        self.tx_id = tx_id
        self.at = at
        self.day = day
        self.direction = direction
        self.channel = channel
        self.currency = currency
        self.amount_cny = amount_cny
        self.amount_usd = amount_usd
        self.counterparty = counterparty
        self.country = country
        self.cross_border = cross_border
        self.encoded = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Through __init__ (pickle, copy): see reduced_through_init.
        return reduced_through_init(self)


@dataclass(slots=True)
class DailyTotals:
    """One bank day's CNY totals per direction, in fen: integer sums, exact."""

    fen_in: int = 0
    fen_out: int = 0

    # Written out, as TxEvent's is: one is made per customer and bank day, and per day
    # decoded from a record.
    def __init__(self, fen_in: int = 0, fen_out: int = 0) -> None:
        self.fen_in = fen_in
        self.fen_out = fen_out

    def add(self, event: TxEvent) -> None:
        fen = int(event.amount_cny.scaleb(2))
        if event.direction is Direction.IN:
            self.fen_in += fen
        else:
            self.fen_out += fen

    def total(self, direction: Direction | None) -> Decimal:
        """The day's total in CNY (both directions for None)."""
        if direction is Direction.IN:
            fen = self.fen_in
        elif direction is Direction.OUT:
            fen = self.fen_out
        else:
            fen = self.fen_in + self.fen_out
        return Decimal(fen).scaleb(-2)


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
    # The events' times, for bisecting: floats compare faster than (time, tx_id) tuples.
    _times: list[float] = field(default_factory=list, repr=False)
    _tx_ids: set[str] = field(default_factory=set, repr=False)
    _arrived_ids: set[str] = field(default_factory=set, repr=False)
    _swept_day: int | None = field(default=None, repr=False)
    # Per arrival, the JSON text of its id front-coded against the arrival before it,
    # kept in step with ``arrived`` (None until a write needs it: retained arrivals are
    # written as positions).
    _arrival_texts: list[str | None] | None = field(default=None, repr=False)
    # The oldest arrival's own text, coded against nothing: (tx_id, text).
    _first_arrival: tuple[str, str] = field(default=("", ""), repr=False)
    # How many of the oldest arrivals are known to have left ``events`` (kept in step
    # with ``_arrival_texts``): an arrival never comes back to ``events``, so a write
    # joins their texts as they are and looks up positions only for the newer ones.
    _expired_arrivals: int = field(default=0, repr=False)
    # The JSON text of the first ``_daily_kept`` entries of ``daily``: a transaction
    # almost always changes only the last entry (its own day), so the days before it
    # are not encoded again.
    _daily_text: str = field(default="", repr=False)
    _daily_kept: int = field(default=0, repr=False)
    # Per document of ``recent_detections``, by id: the document and its JSON text.
    _detection_texts: dict[int, tuple[dict[str, Any], str]] = field(
        default_factory=dict, repr=False
    )
    # Baseline sums of the current bank day, by (direction, first day, end day).
    _baselines: dict[tuple[Direction, int, int], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._times = [event.at for event in self.events]
        self._tx_ids = {event.tx_id for event in self.events}
        self._arrived_ids = set(self.arrived)

    def has_seen(self, tx_id: str, position: tuple[str, int] | None = None) -> bool:
        """Whether this transaction was already applied (by input position or tx_id)."""
        if position is not None:
            stream, offset = position
            applied = self.positions.get(stream)
            if applied is not None and offset <= applied:
                return True
        return tx_id in self._tx_ids or tx_id in self._arrived_ids

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
            arrived = self._arrived_ids
            self.recent_detections[:] = [
                document
                for document in self.recent_detections[-kept:]
                if document["trigger_tx_id"] in arrived
            ]

    def add(self, event: TxEvent, *, arrivals_kept: int = ARRIVALS_KEPT) -> None:
        """Insert ``event`` in event-time order and update the running figures."""
        arrived, texts = self.arrived, self._arrival_texts
        arrived.append(event.tx_id)
        if texts is not None:
            texts.append(None)
        self._arrived_ids.add(event.tx_id)
        if len(arrived) > arrivals_kept:
            dropped = len(arrived) - arrivals_kept
            for tx_id in arrived[:dropped]:
                self._arrived_ids.discard(tx_id)
            del arrived[:dropped]
            if texts is not None:
                del texts[:dropped]
                self._expired_arrivals = max(0, self._expired_arrivals - dropped)
        at, events, times = event.at, self.events, self._times
        if not times or at > times[-1] or (at == times[-1] and event.tx_id > events[-1].tx_id):
            # The common case: the customer's newest transaction so far.
            times.append(at)
            events.append(event)
        else:
            # After those at the same time with a smaller tx_id: ties go by tx_id.
            low = bisect.bisect_left(times, at)
            high = bisect.bisect_right(times, at, low)
            same_time = [other.tx_id for other in events[low:high]]
            index = low + bisect.bisect_right(same_time, event.tx_id)
            times.insert(index, at)
            events.insert(index, event)
        self._tx_ids.add(event.tx_id)
        baselines = self._baselines
        if baselines:
            # A baseline ends days before today, where new transactions land: it is
            # rebuilt only in the rare case one falls inside it.
            day = event.day
            for _, first, end in baselines:
                if first <= day < end:
                    self._baselines = {
                        key: fen for key, fen in baselines.items() if not key[1] <= day < key[2]
                    }
                    break
        daily = self.daily
        totals = daily.get(event.day)
        if totals is None:
            totals = daily[event.day] = DailyTotals()
        elif self._daily_kept and event.day != next(reversed(daily)):
            self._daily_kept = 0  # an earlier entry changed: its encoded text is stale
        totals.add(event)
        self.transactions += 1
        if self.first_event_at is None or event.at < self.first_event_at:
            self.first_event_at = event.at
        if self.last_event_at is None or event.at > self.last_event_at:
            self.last_event_at = event.at

    def window(self, start: float, end: float) -> list[TxEvent]:
        """Events with ``start <= at <= end``."""
        times = self._times
        low = bisect.bisect_left(times, start)
        if not times or times[-1] <= end:
            return self.events[low:]
        return self.events[low : bisect.bisect_right(times, end, low)]

    def daily_fen_total(self, direction: Direction | None, start: int, end: int) -> int:
        """Fen in ``direction`` (None: both) over the bank days ``start <= day < end``."""
        daily = self.daily
        if end - start < len(daily):
            get = daily.get
            found = [totals for day in range(start, end) if (totals := get(day)) is not None]
        else:
            found = [totals for day, totals in daily.items() if start <= day < end]
        # Plain loops: a span has a few days, where a generator's set-up would dominate.
        fen = 0
        if direction is Direction.IN:
            for totals in found:
                fen += totals.fen_in
        elif direction is Direction.OUT:
            for totals in found:
                fen += totals.fen_out
        else:
            for totals in found:
                fen += totals.fen_in + totals.fen_out
        return fen

    def baseline_fen_total(self, direction: Direction, start: int, end: int) -> int:
        """:meth:`daily_fen_total`, kept until a transaction lands in those days.

        A baseline spans months and ends days ago: new transactions rarely change it.
        """
        key = (direction, start, end)
        fen = self._baselines.get(key)
        if fen is None:
            fen = self._baselines[key] = self.daily_fen_total(direction, start, end)
        return fen

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
            keep_from = bisect.bisect_left(self._times, cutoff)
            for event in self.events[:keep_from]:
                self._tx_ids.discard(event.tx_id)
            del self.events[:keep_from]
            del self._times[:keep_from]
        # Day-granular data only needs sweeping once per bank day.
        if today == self._swept_day:
            return
        self._swept_day = today
        # Days are about to leave the daily totals, and the baselines of earlier days
        # are rarely asked for again.
        self._baselines.clear()
        oldest_day = today - daily_days
        for day in [day for day in self.daily if day < oldest_day]:
            del self.daily[day]
            self._daily_kept = 0
        fired_cutoff = now - fired_seconds
        for key in [key for key, at in self.fired.items() if at < fired_cutoff]:
            del self.fired[key]

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form (short keys; see :func:`_event_items`), encoded afresh."""
        document: dict[str, Any] = {
            "v": STATE_FORMAT,
            "n": self.transactions,
            "t0": self.first_event_at,
            "t1": self.last_event_at,
            "e": [
                _event_item(event, previous, counterparty)
                for event, previous, counterparty in _event_items(self.events)
            ],
            "d": _encode_daily(self.daily),
            "a": _encode_arrivals(self.arrived, self.events),
        }
        # Usually empty: left out rather than written as {} and [] for every customer.
        for key, value in (
            ("f", self.fired),
            ("r", self.recent_detections),
            ("p", self.positions),
        ):
            if value:
                document[key] = value
        return document

    def to_json(self) -> str:
        """``to_dict`` as compact JSON text, reusing the text of what did not change.

        The worker writes the state after every micro-batch, and one transaction changes
        little of it: each event keeps its text while its predecessor and counterparty
        reference stay the same, and the daily totals keep the text of all but the days
        written to since.
        """
        texts = []
        # _event_items, inlined: this loop runs over every retained event at every write.
        previous: TxEvent | None = None
        last_used: dict[str, int] = {}
        for index, event in enumerate(self.events):
            name = event.counterparty
            counterparty: str | int | None = name
            if name is not None:
                used = last_used.get(name)
                last_used[name] = index
                if used is not None:
                    counterparty = index - used
            cached = event.encoded
            if cached is None or cached[0] is not previous or cached[1] != counterparty:
                text = _dumps(_event_item(event, previous, counterparty))
                event.encoded = (previous, counterparty, text)
            else:
                text = cached[2]
            texts.append(text)
            previous = event
        parts = [
            f'{{"v":{STATE_FORMAT},"n":{self.transactions:d},'
            f'"t0":{_dumps(self.first_event_at)},"t1":{_dumps(self.last_event_at)},'
            f'"e":[{",".join(texts)}],"d":{self._daily_json()},'
            f'"a":{self._arrivals_json()}'
        ]
        if self.fired:
            parts.append(f',"f":{_dumps(self.fired)}')
        if self.recent_detections:
            parts.append(f',"r":{self._detections_json()}')
        if self.positions:
            parts.append(f',"p":{_dumps(self.positions)}')
        parts.append("}")
        return "".join(parts)

    def _detections_json(self) -> str:
        """``recent_detections`` as JSON text, each document's text kept while it stays.

        The list is refiltered after every transaction, but its documents are the same
        objects, never changed: kept by id, with the document itself, so an id cannot
        be reused by another document while its text is kept.
        """
        kept = self._detection_texts
        fresh: dict[int, tuple[dict[str, Any], str]] = {}
        for document in self.recent_detections:
            known = kept.get(id(document))
            fresh[id(document)] = known or (document, _dumps(document))
        self._detection_texts = fresh
        return f"[{','.join(text for _, text in fresh.values())}]"

    def _arrivals_json(self) -> str:
        """``_encode_arrivals`` as JSON text, front-coding only the arrivals not retained.

        Arrivals are mostly the newest events, written as their positions, after a run
        of arrivals whose events have expired (most of them, for a customer with a long
        history): that run's texts are joined as they are, and only the arrivals after it
        are looked up among the events. An arrival's front code is made the first time
        it is needed and kept in step with ``arrived``.
        """
        arrived = self.arrived
        count = len(arrived)
        if not count:
            return "[]"
        texts = self._arrival_texts
        if texts is None or len(texts) != count:
            texts = self._arrival_texts = [None] * count
            self._expired_arrivals = 0
        retained_ids = self._tx_ids
        expired = self._expired_arrivals
        while expired < count and arrived[expired] not in retained_ids:
            if expired and texts[expired] is None:
                texts[expired] = _dumps(_front_coded(arrived[expired], arrived[expired - 1]))
            expired += 1
        self._expired_arrivals = expired
        items: list[str] = []
        if expired:
            # The oldest arrival is written against nothing.
            if self._first_arrival[0] != arrived[0]:
                self._first_arrival = (arrived[0], _dumps(_front_coded(arrived[0], "")))
            items.append(self._first_arrival[1])
            items += cast(list[str], texts[1:expired])
        if expired < count:
            events = self.events
            # The newest arrivals are nearly always the newest events in the same order:
            # each is tried at the position after the previous one's before a lookup in
            # every event's position, which a write then seldom has to build.
            guess = len(events) - (count - expired)
            retained: dict[str, int] | None = None
            at: int | None
            for index in range(expired, count):
                tx_id = arrived[index]
                if 0 <= guess < len(events) and events[guess].tx_id == tx_id:
                    at = guess
                else:
                    if retained is None:
                        retained = dict(
                            zip(map(_tx_id_of, events), range(len(events)), strict=True)
                        )
                    at = retained.get(tx_id)
                if at is not None:
                    items.append(_POSITION_TEXTS[at] if at < len(_POSITION_TEXTS) else str(at))
                    guess = at + 1
                    continue
                # Not the oldest arrival: that one is retained, or the run above has it.
                text = texts[index]
                if text is None:
                    text = texts[index] = _dumps(_front_coded(arrived[index], arrived[index - 1]))
                items.append(text)
        return f"[{','.join(items)}]"

    def _daily_json(self) -> str:
        """``_encode_daily`` as JSON text, the entries before the last kept as text."""
        entries = list(self.daily.items())
        if not entries:
            return "[]"
        kept = self._daily_kept
        text = self._daily_text if kept else ""
        previous = entries[kept - 1][0] if kept else 0
        fresh = []
        for day, totals in entries[kept:]:
            fresh.append(f"{day - previous},{totals.fen_in},{totals.fen_out}")
            previous = day
        # All but the last entry are kept for the next write; the last is usually the
        # day the next transaction lands on.
        if len(fresh) > 1:
            text = ",".join([text, *fresh[:-1]]) if text else ",".join(fresh[:-1])
        self._daily_text, self._daily_kept = text, len(entries) - 1
        return f"[{text},{fresh[-1]}]" if text else f"[{fresh[-1]}]"

    @classmethod
    def from_json(cls, text: str, start: int = 0) -> tuple[CustomerState, int]:
        """Rebuild the state whose JSON object starts at ``text[start]``, as ``to_json``
        wrote it (compact): (the state, the index after the object). ValueError for text
        in any other layout (parse it and call :meth:`from_dict` then).

        Unlike ``json.loads`` and :meth:`from_dict`, it keeps the text each event, arrival
        and daily entry was read from as the text its next write reuses. A worker whose
        book is larger than its decoded-record cache decodes a record for nearly every
        transaction and writes it again right after: without the texts, that write
        encoded every retained event afresh.
        """
        try:
            document, texts, end = _parse_state_object(text, start)
        except (IndexError, StopIteration) as exc:
            raise ValueError(f"not a compact rules state at {start}") from exc
        state = cls.from_dict(document)
        if document["v"] == STATE_FORMAT:
            state._reuse_texts(document, texts)
        return state, end

    def _reuse_texts(self, document: dict[str, Any], texts: _StateTexts) -> None:
        """Take the texts ``document`` was read from as what the next write encodes."""
        previous: TxEvent | None = None
        for event, item, event_text in zip(self.events, document["e"], texts.events, strict=True):
            event.encoded = (previous, item[7] if len(item) > 7 else None, event_text)
            previous = event
        arrivals = document["a"]
        self._arrival_texts = [
            arrival_text if isinstance(item, str) else None
            for item, arrival_text in zip(arrivals, texts.arrivals, strict=True)
        ]
        self._expired_arrivals = 0
        if arrivals and isinstance(arrivals[0], str):
            self._first_arrival = (self.arrived[0], texts.arrivals[0])
        if len(self.daily) > 1:
            # Every entry but the newest: the list's text up to its last three numbers.
            body = texts.daily[1:-1]
            cut = body.rfind(",", 0, body.rfind(",", 0, body.rfind(",")))
            self._daily_text, self._daily_kept = body[:cut], len(self.daily) - 1

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> CustomerState:
        """Rebuild what ``to_dict`` wrote; ValueError for another format version."""
        version = document.get("v")
        if version not in (2, STATE_FORMAT):
            raise ValueError(f"rules state format {version!r}, expected {STATE_FORMAT}")
        events = _decode_events(document["e"], counterparty_back=version == STATE_FORMAT)
        return cls(
            transactions=int(document["n"]),
            first_event_at=document["t0"],
            last_event_at=document["t1"],
            events=events,
            daily=_decode_daily(document["d"], version=version),
            fired={str(k): float(v) for k, v in document.get("f", {}).items()},
            recent_detections=list(document.get("r", [])),
            arrived=_decode_arrivals(document["a"], events),
            positions={str(k): int(v) for k, v in document.get("p", {}).items()},
        )


# --------------------------------------------------------------------------- encoding
#
# A customer's state is written to the table's changelog once per micro-batch, so its
# JSON is kept small: ids front-coded against their predecessor (a bank's ids share
# long prefixes), arrivals still retained as events as list positions, a repeated
# counterparty as how many events back it was last used, times and days as differences
# from the previous event, amounts in whole fen, direction/channel/cross-border as one
# small number, a currency or country as the previous event's as 0.
#
# Format 3 (format 2 is still read) writes a repeated counterparty as how many events
# back it was last used, not as the position of its first event, and a day of the
# daily totals as days after the previous entry, not days back from the newest day:
# dropping the oldest events or starting a new day then leaves the other entries' text
# as it was, so a write re-encodes only what changed.

STATE_FORMAT = 3
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DIRECTIONS = tuple(Direction)
_tx_id_of = attrgetter("tx_id")
_CHANNELS = tuple(Channel)
_SAME = 0  # "as the previous event" for the currency and the country
# The text of the event positions arrivals are written as, made once (a customer rarely
# has more events within the longest rule window).
_POSITION_TEXTS = tuple(str(position) for position in range(1024))


# JSON's own scanner, called a value at a time: (value, the index after it); raises
# StopIteration where no value starts.
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())
)


@dataclass(slots=True)
class _StateTexts:
    """The text of each event and arrival item, and of the daily list, as read."""

    events: list[str] = field(default_factory=list)
    arrivals: list[str] = field(default_factory=list)
    daily: str = "[]"


def _parse_state_object(text: str, index: int) -> tuple[dict[str, Any], _StateTexts, int]:
    """The JSON object at ``text[index]`` in ``to_json``'s compact layout, the texts of
    the parts a write reuses, and the index after it; IndexError or StopIteration for
    anything else."""
    if text[index] != "{":
        raise StopIteration(index)
    index += 1
    document: dict[str, Any] = {}
    texts = _StateTexts()
    if text[index] == "}":
        return document, texts, index + 1
    while True:
        if text[index] != '"':
            raise StopIteration(index)
        key, index = _SCAN_ONCE(text, index)
        if text[index] != ":":
            raise StopIteration(index)
        index += 1
        if key == "e":
            document[key], index = _parse_array(text, index, texts.events)
        elif key == "a":
            document[key], index = _parse_array(text, index, texts.arrivals)
        else:
            start = index
            document[key], index = _SCAN_ONCE(text, index)
            if key == "d":
                texts.daily = text[start:index]
        if text[index] == "}":
            return document, texts, index + 1
        if text[index] != ",":
            raise StopIteration(index)
        index += 1


def _parse_array(text: str, index: int, item_texts: list[str]) -> tuple[list[Any], int]:
    """The JSON array at ``text[index]`` (compact), each item's text appended to
    ``item_texts``, and the index after it."""
    if text[index] != "[":
        raise StopIteration(index)
    index += 1
    items: list[Any] = []
    if text[index] == "]":
        return items, index + 1
    while True:
        start = index
        item, index = _SCAN_ONCE(text, index)
        items.append(item)
        item_texts.append(text[start:index])
        if text[index] == "]":
            return items, index + 1
        if text[index] != ",":
            raise StopIteration(index)
        index += 1


def _chunk_encoder() -> Callable[[Any, int], Sequence[str]]:
    """What ``_ENCODER.encode`` uses, built once.

    JSONEncoder.encode builds its C encoder afresh on every call, about half the cost of
    encoding one event's short list. Built here as JSONEncoder builds it, without the
    cycle check (a state holds no cycles); the plain encode where CPython's accelerator
    is missing.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return lambda value, _level: (_ENCODER.encode(value),)
    encoder: Callable[[Any, int], Sequence[str]] = make(
        None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",",
        False, False, True,
    )  # fmt: skip
    return encoder


_ENCODE_CHUNKS = _chunk_encoder()


def _dumps(value: Any) -> str:
    """``value`` as compact JSON, what ``_ENCODER.encode`` writes."""
    return "".join(_ENCODE_CHUNKS(value, 0))


def _front_coded(tx_id: str, previous: str) -> str:
    """``"shared:rest"``: how many leading characters ``tx_id`` shares with ``previous``."""
    # Bisected on slice comparisons (done in C), not walked a character at a time.
    shared, longest = 0, min(len(previous), len(tx_id))
    while shared < longest:
        middle = (shared + longest + 1) // 2
        if previous[:middle] == tx_id[:middle]:
            shared = middle
        else:
            longest = middle - 1
    return f"{shared}:{tx_id[shared:]}"


def _front_decoded(coded: str, previous: str) -> str:
    shared, _, rest = coded.partition(":")
    return previous[: int(shared)] + rest


def _encode_arrivals(arrived: list[str], events: list[TxEvent]) -> list[int | str]:
    """Each arrival as the position of its retained event, or its id front-coded
    against the arrival before it."""
    retained = {event.tx_id: index for index, event in enumerate(events)}
    encoded: list[int | str] = []
    previous = ""
    for tx_id in arrived:
        index = retained.get(tx_id)
        encoded.append(_front_coded(tx_id, previous) if index is None else index)
        previous = tx_id
    return encoded


def _decode_arrivals(encoded: list[int | str], events: list[TxEvent]) -> list[str]:
    arrived: list[str] = []
    previous = ""
    for item in encoded:
        previous = events[item].tx_id if isinstance(item, int) else _front_decoded(item, previous)
        arrived.append(previous)
    return arrived


def _fen(amount: Decimal) -> int | str:
    """Whole fen (cents) as an integer; any other form as text, kept exactly."""
    text = str(amount)
    whole, point, cents = text.partition(".")
    if point and len(cents) == 2 and whole.isdigit() and cents.isdigit():
        return int(whole + cents)
    return text


def _from_fen(value: int | str) -> Decimal:
    return Decimal(value).scaleb(-2) if isinstance(value, int) else Decimal(value)


def _time_step(at: float, previous: float | None) -> int | float:
    """``at`` less the previous time when both are whole seconds (exact), else ``at``."""
    if previous is not None and at.is_integer() and previous.is_integer():
        return int(at - previous)
    return at


def _event_items(
    events: list[TxEvent],
) -> Iterator[tuple[TxEvent, TxEvent | None, str | int | None]]:
    """Each event with its predecessor and its counterparty as written: the id at its
    first use among the events, then how many events back it was used last."""
    previous: TxEvent | None = None
    last_used: dict[str, int] = {}
    for index, event in enumerate(events):
        name = event.counterparty
        counterparty: str | int | None = name
        if name is not None:
            used = last_used.get(name)
            last_used[name] = index
            if used is not None:
                counterparty = index - used
        yield event, previous, counterparty
        previous = event


def _event_item(
    event: TxEvent, previous: TxEvent | None, counterparty: str | int | None
) -> list[Any]:
    """[front-coded id, time, day, kind, fen, usd cents, currency, counterparty, country],
    trailing empties left out."""
    kind = (
        _DIRECTIONS.index(event.direction) * 2 * len(_CHANNELS)
        + _CHANNELS.index(event.channel) * 2
        + event.cross_border
    )
    if previous is None:
        # The first event's time is absolute, and flagged by its list: [time].
        item = [_front_coded(event.tx_id, ""), [event.at], event.day]
    else:
        item = [
            _front_coded(event.tx_id, previous.tx_id),
            _time_step(event.at, previous.at),
            event.day - previous.day,
        ]
    item += (
        kind,
        _fen(event.amount_cny),
        _fen(event.amount_usd),
        _same_as(event.currency, previous.currency if previous else None),
        counterparty,
        _same_as(event.country, previous.country if previous else None),
    )
    while item[-1] is None:
        item.pop()
    return item


def _same_as(value: str | None, previous: str | None) -> str | int | None:
    return _SAME if value is not None and value == previous else value


def _decode_events(encoded: list[list[Any]], *, counterparty_back: bool) -> list[TxEvent]:
    """The events of either format: ``counterparty_back`` for format 3's references."""
    events: list[TxEvent] = []
    previous: TxEvent | None = None
    for index, item in enumerate(encoded):
        padded = item + [None] * (9 - len(item))
        coded_id, at, day, kind, fen, usd, currency, counterparty, country = padded
        if previous is None:
            tx_id = _front_decoded(coded_id, "")
            at = float(at[0])
        else:
            tx_id = _front_decoded(coded_id, previous.tx_id)
            at = previous.at + at if isinstance(at, int) else float(at)
            day += previous.day
            if currency == _SAME:
                currency = previous.currency
            if country == _SAME:
                country = previous.country
        if isinstance(counterparty, int):
            used = index - counterparty if counterparty_back else counterparty
            counterparty = events[used].counterparty
        direction, rest = divmod(kind, 2 * len(_CHANNELS))
        channel, cross_border = divmod(rest, 2)
        event = TxEvent(
            tx_id=tx_id,
            at=at,
            day=day,
            direction=_DIRECTIONS[direction],
            channel=_CHANNELS[channel],
            currency=currency,
            amount_cny=_from_fen(fen),
            amount_usd=_from_fen(usd),
            counterparty=counterparty,
            country=country,
            cross_border=bool(cross_border),
        )
        events.append(event)
        previous = event
    return events


def _encode_daily(daily: dict[int, DailyTotals]) -> list[int]:
    """Per day: the day (after the first, as days after the previous), fen in, fen out.

    Each entry depends on the one before only, so an entry keeps its text when a new
    day starts (format 2 wrote days back from the newest, which all change then).
    """
    encoded: list[int] = []
    previous = 0
    for day, totals in daily.items():
        encoded += (day - previous, totals.fen_in, totals.fen_out)
        previous = day
    return encoded


def _decode_daily(encoded: list[int], *, version: int) -> dict[int, DailyTotals]:
    if not encoded:
        return {}
    if version == 2:
        newest = encoded[0]
        return {
            newest - encoded[index]: DailyTotals(encoded[index + 1], encoded[index + 2])
            for index in range(1, len(encoded), 3)
        }
    daily: dict[int, DailyTotals] = {}
    day = 0
    for index in range(0, len(encoded), 3):
        day += encoded[index]
        daily[day] = DailyTotals(encoded[index + 1], encoded[index + 2])
    return daily
