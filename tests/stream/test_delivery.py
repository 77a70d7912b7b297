"""Eager delivery keeps the consumer's race against the flow, and skips it when there is
no race: each case runs with mode's own wait_first and with the eager one. A full stream
buffer is refilled in bulk, and otherwise behaves as Faust's. A raw record becomes the
event Faust's codecs would have made."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
import pytest
from faust.serializers.schemas import Schema
from faust.transport.consumer import Consumer
from faust.types import TP, Message
from mode import Service
from mode.utils.locks import Event
from mode.utils.queues import FlowControlEvent

from stream.delivery import (
    _COMPILE_WITH_CODECS,
    RefillingQueue,
    _compile_decoder,
    _eager_wait_first,
    deliver_records_eagerly,
)

WAIT_FIRSTS: dict[str, Callable[..., Any]] = {
    "mode": Service.wait_first,
    "eager": _eager_wait_first,
}


class Delivering(Service):
    """What the consumer's wait_first reads: a flow that a rebalance suspends."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = Event()


def deliver(wait_first: Callable[..., Any], consumer: Delivering, delivery: Any) -> Any:
    # As Faust's consumer calls it for every fetched record.
    return wait_first(consumer, delivery, consumer.suspend_flow.wait())


@pytest.mark.parametrize("name", WAIT_FIRSTS)
def test_a_delivery_that_never_suspends_returns_its_result(name: str) -> None:
    delivered: list[int] = []

    async def on_message(offset: int) -> int:
        delivered.append(offset)
        return offset

    async def main() -> Any:
        consumer = Delivering()
        return await deliver(WAIT_FIRSTS[name], consumer, on_message(7))

    results = asyncio.run(main())
    assert delivered == [7]
    assert results.results == [7] and not results.stopped


def test_the_eager_delivery_finishes_before_anything_else_runs() -> None:
    order: list[str] = []

    async def on_message() -> None:
        order.append("delivered")

    async def main() -> None:
        consumer = Delivering()
        other = asyncio.get_running_loop().call_soon(order.append, "loop turned")
        await deliver(_eager_wait_first, consumer, on_message())
        order.append("returned")
        other.cancel()

    asyncio.run(main())
    # mode's wait_first needs a turn of the loop (tasks) for even an instant delivery.
    assert order == ["delivered", "returned"]


@pytest.mark.parametrize("name", WAIT_FIRSTS)
def test_a_delivery_that_suspends_is_awaited_to_its_end(name: str) -> None:
    async def on_message(room: asyncio.Future[str]) -> str:
        return f"put after {await room}"  # a full stream buffer making room

    async def main() -> Any:
        consumer = Delivering()
        room: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, room.set_result, "room")
        return await deliver(WAIT_FIRSTS[name], consumer, on_message(room))

    results = asyncio.run(main())
    assert results.results == ["put after room"]


@pytest.mark.parametrize("name", WAIT_FIRSTS)
def test_a_rebalance_abandons_a_suspended_delivery(name: str) -> None:
    seen: list[str] = []

    async def on_message(room: asyncio.Future[None]) -> None:
        try:
            await room
            seen.append("put")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> tuple[Any, asyncio.Future[None]]:
        consumer = Delivering()
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
        results = await deliver(WAIT_FIRSTS[name], consumer, on_message(room))
        await asyncio.sleep(0)  # the cancellation reaches the delivery
        return results, room

    results, room = asyncio.run(main())
    assert seen == ["cancelled"]
    assert room.cancelled(), "the future it waited on is cancelled with it"
    assert results.results == [True], "only the flow's wait finished"


@pytest.mark.parametrize("name", WAIT_FIRSTS)
@pytest.mark.parametrize("suspends_first", [False, True])
def test_a_failing_delivery_raises_to_the_consumer(name: str, suspends_first: bool) -> None:
    async def on_message() -> None:
        if suspends_first:
            await asyncio.sleep(0)
        raise KeyError("no callback for this partition")

    async def main() -> None:
        await deliver(WAIT_FIRSTS[name], Delivering(), on_message())

    with pytest.raises(KeyError, match="no callback"):
        asyncio.run(main())


def test_while_the_flow_is_suspended_nothing_is_delivered_eagerly() -> None:
    order: list[str] = []

    async def on_message() -> None:
        order.append("delivered")

    async def main() -> Any:
        consumer = Delivering()
        consumer.suspend_flow.set()
        delivery = on_message()
        waiting = asyncio.ensure_future(deliver(_eager_wait_first, consumer, delivery))
        await asyncio.sleep(0)
        order.append("loop turned")
        return await waiting

    asyncio.run(main())
    # Raced as mode does it: the delivery runs in a task, after the loop turned.
    assert order == ["loop turned", "delivered"]


def test_installing_it_replaces_the_consumers_wait_first_only() -> None:
    deliver_records_eagerly()
    assert Consumer.wait_first is _eager_wait_first
    assert Service.wait_first is WAIT_FIRSTS["mode"]


def test_installing_it_gives_faust_channels_refilling_buffers() -> None:
    deliver_records_eagerly()
    app = faust.App("refilling-buffers", broker="memory://", stream_buffer_maxsize=64)
    channel = app.channel(maxsize=None).clone(is_iterator=True)
    assert isinstance(channel.queue, RefillingQueue)
    assert channel.queue.maxsize == 64 and channel.queue.refill_size == 32


def buffer(maxsize: int) -> RefillingQueue[int]:
    flow = FlowControlEvent(initially_suspended=False)
    return RefillingQueue(maxsize=maxsize, flow_control=flow, clear_on_resume=True)


def test_a_put_into_a_full_buffer_waits_until_half_of_it_is_taken() -> None:
    async def main() -> tuple[list[int], list[int]]:
        queue = buffer(4)
        for value in range(4):
            await queue.put(value)
        put = asyncio.ensure_future(queue.put(4))
        sizes_while_waiting = []
        for _ in range(2):
            await asyncio.sleep(0)
            assert not put.done(), "one record taken is not yet a refill"
            sizes_while_waiting.append(queue.qsize())
            await queue.get()
        await asyncio.wait_for(put, timeout=1)
        return sizes_while_waiting, [queue.get_nowait() for _ in range(queue.qsize())]

    sizes, left = asyncio.run(main())
    assert sizes == [4, 3]
    assert left == [2, 3, 4], "in order, nothing lost"


def test_a_full_buffer_says_it_is_full_until_half_of_it_is_taken() -> None:
    # Faust's conductor asks before each delivery, and takes its full-buffer path.
    async def main() -> list[bool]:
        queue = buffer(4)
        answers = [queue.full()]
        for value in range(4):
            await queue.put(value)
        for _ in range(2):
            answers.append(queue.full())
            queue.get_nowait()
        answers.append(queue.full())
        return answers

    assert asyncio.run(main()) == [False, True, True, False]


def test_a_put_into_a_buffer_with_room_does_not_wait() -> None:
    async def main() -> list[int]:
        queue = buffer(4)
        for value in range(3):
            await queue.put(value)
        queue.get_nowait()
        await queue.put(3)  # three of four: room, whatever the refill size
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(main()) == [1, 2, 3]


def test_clearing_the_buffer_cancels_the_waiting_put() -> None:
    async def main() -> tuple[bool, int]:
        queue = buffer(2)
        await queue.put(0)
        await queue.put(1)
        put = asyncio.ensure_future(queue.put(2))
        await asyncio.sleep(0)
        queue.clear()  # what a rebalance does to the streams' buffers
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(put, timeout=1)
        return put.cancelled(), queue.qsize()

    assert asyncio.run(main()) == (True, 0)


def test_a_cleared_buffer_has_room_at_once() -> None:
    async def main() -> bool:
        queue = buffer(2)
        await queue.put(0)
        await queue.put(1)
        assert queue.full()
        queue.clear()
        return queue.full()

    assert asyncio.run(main()) is False


def test_a_cancelled_put_leaves_nothing_waiting() -> None:
    async def main() -> list[int]:
        queue = buffer(2)
        await queue.put(0)
        await queue.put(1)
        put = asyncio.ensure_future(queue.put(2))
        await asyncio.sleep(0)
        put.cancel()  # the consumer's race lost to a suspended flow
        with pytest.raises(asyncio.CancelledError):
            await put
        taken = [await queue.get(), await queue.get()]
        await queue.put(3)
        return [*taken, queue.get_nowait()]

    assert asyncio.run(main()) == [0, 1, 3]


RAW_BYTES: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def record(key: bytes | None, value: bytes | None, headers: Any) -> Message:
    return Message(
        topic="transactions",
        partition=1,
        offset=7,
        timestamp=1.0,
        timestamp_type=0,
        headers=headers,
        key=key,
        value=value,
        checksum=None,
        tp=TP("transactions", 1),
    )


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (b"C001", b'{"tx_id": "T1"}', []),
        (None, b"not json at all \xff", [("source", b"0:12")]),
        (b"C001", None, ()),
        (b"", b"", None),
    ],
)
def test_a_raw_record_becomes_the_event_faust_would_make(
    key: bytes | None, value: bytes | None, headers: Any
) -> None:
    app = faust.App("raw-decoder", broker="memory://")
    schema: Schema[Any, Any] = Schema(**RAW_BYTES)
    message = record(key, value, headers)

    async def main() -> tuple[Any, Any]:
        faust_made = await _COMPILE_WITH_CODECS(schema, app)(message, propagate=True)
        made = await _compile_decoder(schema, app)(message, propagate=True)
        return faust_made, made

    faust_made, made = asyncio.run(main())
    assert type(made) is type(faust_made) is faust.Event
    assert (made.app, made.key, made.value, made.headers, made.message) == (
        faust_made.app,
        faust_made.key,
        faust_made.value,
        faust_made.headers,
        faust_made.message,
    )
    assert made.key is key and made.value is value, "the record's own objects, not copies"


@pytest.mark.parametrize(
    "changed",
    [{"value_serializer": "json"}, {"key_type": str}, {"value_type": None}],
)
def test_any_other_schema_keeps_fausts_decoder(changed: dict[str, Any]) -> None:
    app = faust.App("codec-decoder", broker="memory://")
    schema: Schema[Any, Any] = Schema(**{**RAW_BYTES, **changed})
    message = record(b"C001", b'{"tx_id": "T1"}', [])

    async def main() -> tuple[Any, Any]:
        faust_made = await _COMPILE_WITH_CODECS(schema, app)(message, propagate=True)
        made = await _compile_decoder(schema, app)(message, propagate=True)
        return faust_made, made

    faust_made, made = asyncio.run(main())
    assert (made.key, made.value) == (faust_made.key, faust_made.value)
    if changed == {"value_serializer": "json"}:
        assert made.value == {"tx_id": "T1"}, "decoded by the json codec"


def test_installing_it_gives_raw_topics_the_direct_decoder() -> None:
    deliver_records_eagerly()
    app = faust.App("raw-topic", broker="memory://")
    raw_topic = app.topic("transactions", **RAW_BYTES)
    json_topic = app.topic("other", key_type=bytes, value_serializer="json")
    assert raw_topic.decode.__qualname__.startswith("_raw_bytes_decoder")
    assert not json_topic.decode.__qualname__.startswith("_raw_bytes_decoder")
