"""HeldBatch: when the rules agents process what they received, and the references held."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from core.transaction import Channel, Direction, Transaction
from stream.app import (
    BACKLOG_TAKEN_EVENTS,
    BATCH_MAX_EVENTS,
    TAKE_MAX_EVENTS,
    HeldBatch,
    Received,
)


@dataclass
class CountedMessage:
    """Stands in for a Faust message: only its reference count is read here."""

    refcount: int = 0

    def incref(self) -> None:
        self.refcount += 1


@dataclass
class TakenEvent:
    message: CountedMessage


def received(index: int) -> Received:
    tx = Transaction(
        tx_id=f"t{index}",
        timestamp=datetime(2026, 11, 2, 9, tzinfo=UTC),
        customer_id="C1",
        account_id="A1",
        direction=Direction.IN,
        amount=Decimal("10"),
        currency="CNY",
        channel=Channel.TRANSFER,
    )
    return Received(cast(Any, TakenEvent(CountedMessage())), tx, ("in-place-0", index))


def hold(batch: HeldBatch, count: int) -> list[Received]:
    items = [received(index) for index in range(count)]
    for item in items:
        batch.add(item)
    return items


def test_each_received_event_holds_one_more_reference_until_processed() -> None:
    batch = HeldBatch()
    items = hold(batch, 3)
    assert [item.event.message.refcount for item in items] == [1, 1, 1]
    assert batch.take() == items
    assert batch.take() == [] and not batch.due(taken=1, queued=0)


def test_a_live_stream_batch_is_processed_at_once() -> None:
    batch = HeldBatch()
    hold(batch, 20)
    # A small batch, or a large one with nothing queued behind it (the input stopped).
    assert batch.due(taken=20, queued=5000)
    assert batch.due(taken=BACKLOG_TAKEN_EVENTS, queued=0)


def test_a_backlog_is_joined_up_to_the_batch_limit() -> None:
    batch = HeldBatch()
    hold(batch, BACKLOG_TAKEN_EVENTS)
    assert not batch.due(taken=BACKLOG_TAKEN_EVENTS, queued=1)
    hold(batch, BATCH_MAX_EVENTS - TAKE_MAX_EVENTS - BACKLOG_TAKEN_EVENTS)
    # One more taken batch would still fit: keep holding.
    assert not batch.due(taken=TAKE_MAX_EVENTS, queued=1)
    hold(batch, 1)
    assert batch.due(taken=TAKE_MAX_EVENTS, queued=1)
    assert len(batch.take()) == BATCH_MAX_EVENTS - TAKE_MAX_EVENTS + 1
