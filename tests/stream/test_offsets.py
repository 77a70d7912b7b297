"""A skipped stretch of offsets is never committed past, and stops the agent before it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from faust.transport.consumer import Consumer
from intervaltree import IntervalTree
from prometheus_client import CollectorRegistry, Counter

from stream.offsets import OffsetJumpWatch, refuse_offset_gaps


@dataclass(frozen=True)
class FakeTp:
    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    tp: FakeTp
    offset: int

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


def watch() -> tuple[OffsetJumpWatch, list[str], Counter]:
    jumps = Counter("jumps", "test", ["topic"], registry=CollectorRegistry())
    reasons: list[str] = []
    return OffsetJumpWatch(jumps, reasons.append), reasons, jumps


def test_consecutive_offsets_and_rewinds_are_admitted() -> None:
    guard, reasons, _ = watch()
    offsets = [(0, 5), (0, 6), (1, 40), (0, 7), (1, 41), (0, 3), (0, 4)]  # then a seek back
    assert all(guard.admit(event(p, o)) for p, o in offsets)
    assert reasons == []


def test_a_forward_jump_is_refused_and_reported_with_the_skipped_stretch() -> None:
    guard, reasons, jumps = watch()
    assert guard.admit(event(2, 434))
    assert guard.admit(event(2, 435))
    assert not guard.admit(event(2, 444))
    assert reasons == ["the consumer skipped offsets 436-443 of in[2]"]
    assert jumps.labels(topic="in")._value.get() == 1


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
