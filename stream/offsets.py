"""Never commit past a record the consumer skipped.

Faust can hand an agent a partition's records with a stretch missing: when a
rebalance or the end of table recovery interrupts a fetch, records already taken from
the Kafka client are dropped and consumption goes on after them (faust-streaming
issues #216 and #221 describe the family; it was seen here right after recovery,
most restarts that find a backlog: messages in flight when flow control switches at the
end of recovery are dropped). Faust then takes the jump for a gap in the log, as a
compacted topic has, and commits past it: the skipped transactions are lost for good.

Our input topics have no gaps of their own (no compaction, no transaction markers),
so a forward jump always means records this process did not see. The defence has two
parts:

- :func:`refuse_offset_gaps` stops Faust from treating a jump as committable, so the
  committed offset stays before the first skipped record;
- :class:`OffsetJumpWatch` notices the jump before the agent handles the record after
  it, holds that record back unacknowledged and seeks the consumer back to the first
  skipped offset, so the stretch is read again and everything after it follows in
  order. Records handled twice are recognised downstream (source positions and tx_ids
  in the customer state, detection ids in the case store).

A jump shows only when a record after the stretch arrives. When the dropped stretch
ran to the end of the partition (a restart that finds the whole backlog already
written), nothing comes after it: the Kafka client's position sits at the end, nothing
more is fetched and the partition stalls uncommitted for good. This was the restart
stall of sessions 2-4 (about one crash-test run in ten); a live worker caught in it
showed, for the stalled partitions, the client's position at the high watermark,
Faust's read offset unset and the agent still waiting for the committed offset. The
watch's timer therefore also compares, per partition, the offset the agent expects
with the client's position and with what Faust has queued for the streams
(:class:`FaustPositions`): a partition whose client has handed out the expected record,
with nothing after it queued, and from which nothing reaches the agent for
``DELIVERY_STALL_SECONDS`` is sought back the same way.

The offset the agent expects first is the committed one, or, where the group never
committed on a partition, the partition's first offset (Faust starts such a partition
from the earliest record). Without that last rule a worker killed before its first
commit on a partition left its successor nothing to compare with: session 7 caught
such a successor with the client at the partition's end, nothing read and nothing
committed, silent for good (about one run in 12-24 of the crash test under load).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from faust.transport.consumer import Consumer
from faust.types import EventT
from prometheus_client import Counter

log = logging.getLogger(__name__)
RESEEK_SECONDS = 2.0
SLOW_REREAD_SECONDS = 10.0
# Longer than a fetched record waits for room in the streams' queue, plus the agent's
# batch, on a busy worker; a false alarm costs a re-read (duplicates are recognised
# downstream, but a re-read malformed record is dead-lettered again).
DELIVERY_STALL_SECONDS = 5.0
# Every live watch, for the timer that repeats seeks nothing else would trigger.
WATCHES: weakref.WeakSet[OffsetJumpWatch] = weakref.WeakSet()


async def seek_again_where_stalled() -> None:
    """Repeat the seek of every watch whose skipped stretch has not come back, and seek
    back where delivered records never reached the agent."""
    for watch in list(WATCHES):
        await watch.seek_again_if_stalled()
        await watch.seek_where_delivery_stopped()


def refuse_offset_gaps() -> None:
    """Make Faust keep a skipped stretch of offsets uncommitted instead of committing past it."""

    async def keep_gap_uncommitted(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        return None

    # Consumer._add_gap records a jump as offsets "to be treated as acknowledged" at the
    # next commit; without it a jump is a hole that blocks the commit, as it should be.
    Consumer._add_gap = keep_gap_uncommitted  # type: ignore[method-assign]


class Positions(Protocol):
    """What the consumer knows about a partition's positions, as the watch needs it."""

    def assigned(self, topics: Iterable[str]) -> Iterable[Any]: ...

    def committed(self, tp: Any) -> int | None:
        """The next offset after the committed ones, None when nothing was committed."""

    def handed_out(self, tp: Any) -> int | None:
        """The Kafka client's position: the offset after the last record it handed to
        Faust (or the offset it was sought to); None while it has none."""

    def queued(self, tp: Any) -> int | None:
        """The offset of the last record Faust put into the streams' queue, or the one
        it was sought to (it cannot tell them apart); None while it has neither."""

    async def earliest(self, tp: Any) -> int | None:
        """The partition's first offset still in the log (where a consumer group without
        a commit starts, as Faust resets to the earliest); None when unknown."""


class FaustPositions:
    """:class:`Positions` read from a running Faust consumer."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def assigned(self, topics: Iterable[str]) -> Iterable[Any]:
        wanted = set(topics)
        return [tp for tp in self.consumer.assignment() if tp.topic in wanted]

    def committed(self, tp: Any) -> int | None:
        committed = self.consumer._committed_offset.get(tp)
        return committed if committed is not None and committed >= 0 else None

    def handed_out(self, tp: Any) -> int | None:
        # Faust's own read offset is no guide: a revocation or seek resets it, and it
        # was unset on the stalled partitions. The client's position is read without
        # its thread's loop; an int, read whole.
        client = self.consumer._thread._consumer  # type: ignore[attr-defined]
        subscription = client._subscription.subscription if client is not None else None
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None or tp not in assignment.tps:
            return None
        state = assignment.state_value(tp)
        return state.position if state.has_valid_position else None

    def queued(self, tp: Any) -> int | None:
        # Faust's read offset: set after each record its fetch loop delivered into the
        # streams' queue, and to the target of every seek. ``get``: it is a defaultdict.
        return self.consumer._read_offset.get(tp)

    async def earliest(self, tp: Any) -> int | None:
        try:
            offsets = await self.consumer.earliest_offsets(tp)
        except Exception:  # the broker unreachable for a moment: try on the next call
            log.debug("reading the earliest offset of %s failed", tp, exc_info=True)
            return None
        return offsets.get(tp)


def watch_stream_offsets(app: Any, stream: Any, jumps: Counter) -> OffsetJumpWatch:
    """The watch for an agent's ``stream`` on a running Faust ``app``."""
    return OffsetJumpWatch(
        jumps,
        app.consumer.seek,
        positions=FaustPositions(app.consumer),
        topics=stream.channel.topics,
    )


class OffsetJumpWatch:
    """Follows each partition's offsets in one agent and rewinds the consumer after a jump.

    A record that arrives after a skipped stretch is held back: it is marked acknowledged
    so that neither this agent nor Faust registers its offset (the commit cannot pass
    the stretch), the consumer is sought back to the first skipped offset, and records
    are refused until that one arrives again; from there on everything comes in order.
    """

    def __init__(
        self,
        jumps: Counter,
        seek: Callable[[Any, int], Awaitable[None]],
        *,
        positions: Positions,
        topics: Iterable[str],
    ) -> None:
        WATCHES.add(self)
        self.jumps = jumps
        self.seek = seek
        self.positions = positions
        self.topics = tuple(topics)
        self.next_offset: dict[Any, int] = {}
        self.rewinding: dict[Any, int] = {}
        self.sought_at: dict[Any, float] = {}
        self.first_sought_at: dict[Any, float] = {}
        # Per partition: the offset the agent waits for and since when, while the Kafka
        # client has handed it out (see seek_where_delivery_stopped).
        self.waiting_since: dict[Any, tuple[int, float]] = {}

    def in_order(self, event: EventT) -> bool:
        """The common case without a coroutine per record: True when ``event`` is the
        next of its partition and nothing is being read again (it is then admitted);
        False means: ask :meth:`admit`."""
        message = event.message
        tp, offset = message.tp, message.offset
        if tp in self.rewinding:
            return False
        expected = self.next_offset.get(tp)
        if expected is None or offset > expected:
            return False  # the first of its partition is checked against the commit
        self.next_offset[tp] = offset + 1
        return True

    async def admit(self, event: EventT) -> bool:
        """Whether the agent may handle ``event`` now (False: it comes again, in order)."""
        message = event.message
        tp, offset = message.tp, message.offset
        awaited = self.rewinding.get(tp)
        if awaited is not None:
            if offset > awaited:
                _hold(message)
                # Records fetched before the seek can still be draining and move Faust's
                # read position past the stretch again, which makes it drop the re-read
                # records: seek once more after they are through.
                await self.seek_again_if_stalled()
                return False
            del self.rewinding[tp]
            self.first_sought_at.pop(tp, None)
        else:
            expected = await self._expected(tp)
            if expected is not None and offset > expected:
                log.warning(
                    "the consumer skipped offsets %d-%d of %s[%d]; reading them again",
                    expected,
                    offset - 1,
                    message.topic,
                    message.partition,
                )
                _hold(message)
                await self._read_again(tp, expected)
                return False
        # A lower offset than expected is a rewind (a seek to the committed offset after
        # a rebalance): follow it, the records come again in order.
        self.next_offset[tp] = offset + 1
        return True

    async def _expected(self, tp: Any) -> int | None:
        """The offset the agent must see next on ``tp``: after the last it handled, or,
        before the first since the start or a rebalance, the committed offset, or, when
        the group never committed on ``tp``, the partition's first offset.

        The last case was the restart stall that remained: a worker killed before its
        first commit on a partition left none, its successor's client handed out the
        whole partition, Faust dropped it at the end of recovery, and with no offset to
        expect neither check below could tell.
        """
        expected = self.next_offset.get(tp)
        if expected is not None:
            return expected
        committed = self.positions.committed(tp)
        return committed if committed is not None else await self.positions.earliest(tp)

    async def _read_again(self, tp: Any, offset: int) -> None:
        self.jumps.labels(topic=tp.topic).inc()
        self.rewinding[tp] = offset
        self.sought_at[tp] = time.monotonic()
        await self.seek(tp, offset)

    async def seek_where_delivery_stopped(self) -> None:
        """Seek back where records the agent waits for were handed out but never came.

        Called by the timer. A partition qualifies when the Kafka client has handed out
        the record the agent expects next, Faust has put nothing after it into the
        streams' queue, and the agent has waited for it for DELIVERY_STALL_SECONDS: it
        was dropped on the way (Faust drops what it fetched when the flow stops or the
        generation changes before delivering it).

        Only "nothing after it": Faust's read offset equal to the expected one is either
        that record queued or a seek to it with nothing delivered since (the stall), and
        the two look alike. Without the queue check at all, a worker whose fetch loop ran
        thousands of records ahead of a slow agent raised false alarms (session 7, with
        records delivered eagerly): records re-read and malformed ones dead-lettered twice.
        """
        now = time.monotonic()
        for tp in self.positions.assigned(self.topics):
            handed_out = self.positions.handed_out(tp)
            # Only where the client has handed something out: the earliest offset of a
            # partition without a commit costs a broker request.
            expected = await self._expected(tp) if handed_out else None
            queued = self.positions.queued(tp)
            if (
                tp in self.rewinding
                or expected is None
                or handed_out is None
                or handed_out <= expected
                # A later record is already in the streams' queue: the expected one is
                # ahead of it (or was skipped, which its successor's arrival shows). A
                # slow agent keeps thousands of records queued on a busy worker.
                or (queued is not None and queued > expected)
            ):
                self.waiting_since.pop(tp, None)
                continue
            waiting = self.waiting_since.get(tp)
            if waiting is None or waiting[0] != expected:
                self.waiting_since[tp] = (expected, now)
                continue
            if now - waiting[1] < DELIVERY_STALL_SECONDS:
                continue
            del self.waiting_since[tp]
            log.warning(
                "offsets %d-%d of %s[%d] were handed out but never reached the agent in "
                "%.0fs; reading them again",
                expected,
                handed_out - 1,
                tp.topic,
                tp.partition,
                now - waiting[1],
            )
            await self._read_again(tp, expected)

    async def seek_again_if_stalled(self) -> None:
        """Seek again where a skipped stretch has not come back within RESEEK_SECONDS.

        Called by a timer too: when the stale records ran to the end of the partition,
        no further record arrives to trigger the repeat from :meth:`admit`.
        """
        now = time.monotonic()
        for tp, awaited in list(self.rewinding.items()):
            if now - self.sought_at[tp] > RESEEK_SECONDS:
                waited = now - self.first_sought_at.setdefault(tp, self.sought_at[tp])
                if waited > SLOW_REREAD_SECONDS:
                    # A stretch that never comes back stalls the partition: say where.
                    log.warning(
                        "offset %d of %s has not come back in %.0fs; seeking to it again",
                        awaited,
                        tp,
                        waited,
                    )
                self.sought_at[tp] = now
                await self.seek(tp, awaited)


def _hold(message: Any) -> None:
    # Faust acknowledges a message only once; marking it done here makes the agent's own
    # acknowledgement a no-op, so its offset never counts towards a commit.
    message.acked = True
