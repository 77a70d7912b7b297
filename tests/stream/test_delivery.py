"""Eager delivery keeps the consumer's race against the flow, and skips it when there is
no race: each case runs with mode's own wait_first and with the eager one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from mode import Service
from mode.utils.locks import Event

from stream.delivery import _eager_wait_first, deliver_records_eagerly

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
