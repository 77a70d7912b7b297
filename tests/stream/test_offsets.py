"""A skipped stretch of offsets is never committed past, and stops the agent before it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree
from prometheus_client import CollectorRegistry, Counter

from stream.offsets import OffsetJumpWatch, refuse_offset_gaps, seek_again_where_stalled


@dataclass(frozen=True)
class FakeTp:
    topic: str
    partition: int


@dataclass
class Message:
    tp: FakeTp
    offset: int
    acked: bool = False

    @property
    def topic(self) -> str:
        return self.tp.topic

    @property
    def partition(self) -> int:
        return self.tp.partition


@dataclass(frozen=True)
class Event:
    message: Message


def event(partition: int, offset: int) -> Event:
    return Event(Message(FakeTp("in", partition), offset))


@dataclass
class Positions:
    """What the consumer reports per partition of topic "in" (see stream.offsets.Positions)."""

    committed_at: dict[int, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    earliest_at: dict[int, int] = field(default_factory=dict)
    queued_at: dict[int, int] = field(default_factory=dict)

    def assigned(self, topics: Iterable[str]) -> list[FakeTp]:
        return [FakeTp("in", p) for p in self.positions] if "in" in topics else []

    def committed(self, tp: FakeTp) -> int | None:
        return self.committed_at.get(tp.partition)

    def handed_out(self, tp: FakeTp) -> int | None:
        return self.positions.get(tp.partition)

    def queued(self, tp: FakeTp) -> int | None:
        return self.queued_at.get(tp.partition)

    async def earliest(self, tp: FakeTp) -> int | None:
        return self.earliest_at.get(tp.partition)


class Watched:
    """A watch with the seeks it asked for, and what it let the agent handle."""

    def __init__(self, positions: Positions | None = None) -> None:
        self.jumps = Counter("jumps", "test", ["topic"], registry=CollectorRegistry())
        self.seeks: list[tuple[int, int]] = []
        self.positions = positions or Positions()
        self.watch = OffsetJumpWatch(
            self.jumps, self._seek, positions=self.positions, topics=["in"]
        )
        self.handled: list[tuple[int, int]] = []
        self.held: list[Event] = []

    async def _seek(self, tp: FakeTp, offset: int) -> None:
        self.seeks.append((tp.partition, offset))
        self.positions.positions[tp.partition] = offset  # as the client's seek does

    def deliver(self, *offsets: tuple[int, int]) -> None:
        async def run() -> None:
            for partition, offset in offsets:
                delivered = event(partition, offset)
                # As the agents ask: the cheap check first, the coroutine when it fails.
                if self.watch.in_order(delivered) or await self.watch.admit(delivered):
                    self.handled.append((partition, offset))
                else:
                    self.held.append(delivered)

        asyncio.run(run())


def test_consecutive_offsets_and_rewinds_are_handled_without_seeking() -> None:
    watched = Watched()
    offsets = [(0, 5), (0, 6), (1, 40), (0, 7), (1, 41), (0, 3), (0, 4)]  # then a seek back
    watched.deliver(*offsets)
    assert watched.handled == offsets
    assert watched.seeks == []


def test_after_a_jump_the_stretch_is_read_again_before_anything_after_it() -> None:
    watched = Watched()
    watched.deliver((2, 434), (2, 435), (2, 444), (2, 445), (3, 7), (2, 436), (2, 437))
    assert watched.seeks == [(2, 436)], "one seek back to the first skipped offset"
    assert watched.handled == [(2, 434), (2, 435), (3, 7), (2, 436), (2, 437)]
    assert [e.message.offset for e in watched.held] == [444, 445]
    assert all(e.message.acked for e in watched.held), "held records never count for a commit"
    assert watched.jumps.labels(topic="in")._value.get() == 1


def test_faust_no_longer_treats_a_jump_as_committable() -> None:
    refuse_offset_gaps()
    # The consumer's own bookkeeping, as Faust builds it: the stretches it would later
    # add to the acknowledged offsets.
    gaps: defaultdict[object, IntervalTree] = defaultdict(IntervalTree)

    class ConsumerState:
        def __init__(self) -> None:
            self._gap = gaps
            self._committed_offset: defaultdict[object, int | None] = defaultdict(lambda: None)

    asyncio.run(Consumer._add_gap(ConsumerState(), FakeTp("in", 2), 436, 443))  # type: ignore[arg-type]
    assert not any(gaps.values()), "no stretch is recorded as acknowledged"


def test_the_seek_is_repeated_while_stale_records_keep_arriving(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("stream.offsets.RESEEK_SECONDS", 0.0)
    watched = Watched()
    watched.deliver((1, 10), (1, 12), (1, 13), (1, 11))
    assert watched.seeks == [(1, 11), (1, 11)], "sought again when a stale record came"
    assert watched.handled == [(1, 10), (1, 11)]


def test_a_timer_repeats_the_seek_when_nothing_else_arrives(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("stream.offsets.RESEEK_SECONDS", 0.0)
    watched = Watched()
    watched.deliver((1, 10), (1, 12))  # the stale records ran to the end of the partition
    asyncio.run(seek_again_where_stalled())
    assert watched.seeks == [(1, 11), (1, 11)]
    watched.deliver((1, 11))
    asyncio.run(seek_again_where_stalled())
    assert watched.seeks == [(1, 11), (1, 11)], "no more seeks once the stretch is back"


def test_the_first_record_after_a_restart_must_follow_the_committed_offset() -> None:
    watched = Watched(Positions(committed_at={0: 200, 1: 300}))
    watched.deliver((0, 200), (0, 201), (1, 350), (1, 300))
    assert watched.seeks == [(1, 300)], "records 300-349 were skipped before the first one"
    assert watched.handled == [(0, 200), (0, 201), (1, 300)]


def test_records_handed_out_to_the_partition_end_that_never_came_are_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("stream.offsets.DELIVERY_STALL_SECONDS", 0.0)
    # Partition 0 caught up; partition 1's records 102-199 were dropped on the way, so
    # no record after them ever arrives to show a jump; partition 2 is still being read;
    # partition 3's records 500-549 were dropped before the first one reached the agent.
    positions = Positions(
        committed_at={0: 0, 1: 0, 2: 0, 3: 500}, positions={0: 50, 1: 200, 2: 20, 3: 550}
    )
    watched = Watched(positions)
    watched.deliver(*[(0, o) for o in range(50)], *[(1, o) for o in range(102)])
    watched.deliver(*[(2, o) for o in range(20)])
    asyncio.run(seek_again_where_stalled())
    assert watched.seeks == [], "one look at a partition is not enough to call it stalled"
    asyncio.run(seek_again_where_stalled())
    assert sorted(watched.seeks) == [(1, 102), (3, 500)]
    watched.deliver((1, 150), *[(1, o) for o in range(102, 200)])
    assert watched.handled[-1] == (1, 199) and (1, 150) not in watched.handled[:-98]
    assert watched.jumps.labels(topic="in")._value.get() == 2


def test_a_partition_never_committed_whose_records_never_came_is_read_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stall seen after a restart: the killed worker never committed on partition 1,
    # the successor's client handed out all of it (0-923) and none reached the agent.
    monkeypatch.setattr("stream.offsets.DELIVERY_STALL_SECONDS", 0.0)
    positions = Positions(
        committed_at={0: 928}, positions={0: 928, 1: 924}, earliest_at={0: 0, 1: 0}
    )
    watched = Watched(positions)
    asyncio.run(seek_again_where_stalled())
    asyncio.run(seek_again_where_stalled())
    assert watched.seeks == [(1, 0)], "partition 0 is caught up; partition 1 from its start"
    watched.deliver(*[(1, o) for o in range(924)])
    assert watched.handled[-1] == (1, 923) and len(watched.handled) == 924


def test_the_first_record_of_a_partition_never_committed_must_be_its_first() -> None:
    positions = Positions(positions={2: 0}, earliest_at={2: 0})
    watched = Watched(positions)
    watched.deliver((2, 300), (2, 0), (2, 1))
    assert watched.seeks == [(2, 0)], "records 0-299 were skipped: read again"
    assert watched.handled == [(2, 0), (2, 1)]


def test_a_partition_whose_next_record_keeps_changing_is_not_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("stream.offsets.DELIVERY_STALL_SECONDS", 0.0)
    positions = Positions(committed_at={0: 0}, positions={0: 300})
    watched = Watched(positions)
    for first in (0, 100, 200):
        watched.deliver(*[(0, o) for o in range(first, first + 100)])
        asyncio.run(seek_again_where_stalled())
    assert watched.seeks == []


def test_records_waiting_in_fausts_queue_behind_a_slow_agent_are_not_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Session 7's false alarm: the client handed out 323-2199 of a partition, Faust had
    # queued up to 1500 of them, and a slow agent had handled nothing of it for seconds.
    # Partition 1 is the restart stall beside it: sought to the committed 300, its
    # records handed out and dropped, Faust's read offset still at the seek's 300.
    monkeypatch.setattr("stream.offsets.DELIVERY_STALL_SECONDS", 0.0)
    positions = Positions(
        committed_at={0: 323, 1: 300},
        positions={0: 2200, 1: 924},
        queued_at={0: 1500, 1: 300},
    )
    watched = Watched(positions)
    asyncio.run(seek_again_where_stalled())
    asyncio.run(seek_again_where_stalled())
    assert watched.seeks == [(1, 300)], "only the partition with nothing queued is stalled"
