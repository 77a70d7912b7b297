"""take_batches: a rules agent's input in batches straight from its channel's buffer,
with the acknowledgement bookkeeping and sensor counts of Faust's stream iterator."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import faust
import pytest
from faust.types import EventT
from faust.types.tuples import ConsumerMessage
from prometheus_client import CollectorRegistry

from stream.event_batches import take_batches
from stream.metrics import ScrapeTimePrometheusMonitor, setup_faust_sensors

TOPIC = "transactions"
_apps = itertools.count()
_T = TypeVar("_T")


class Input:
    """A Faust app's agent input as the conductor leaves it: events in the stream's buffer."""

    def __init__(self) -> None:
        self.app = faust.App(f"event-batches-{next(_apps)}", broker="kafka://127.0.0.1:9")
        self.monitor: ScrapeTimePrometheusMonitor = setup_faust_sensors(
            self.app, CollectorRegistry()
        )
        topic = self.app.topic(TOPIC, key_type=bytes, value_type=bytes, value_serializer="raw")
        # Made inside the running task, as an agent's stream is (its task_owner).
        self.stream: Any = self.app.stream(topic)
        # What a starting worker does with the monitor, the conductor on subscribing, and
        # the consumer once assigned its partitions.
        self.app.sensors.add(self.monitor)
        self.app.topics.acking_topics.add(TOPIC)
        self.app.flow_control.resume()
        self.offsets = itertools.count()

    def put(self, count: int = 1, *, generation: int | None = None) -> list[EventT]:
        """Deliver ``count`` events, each message referenced once (one channel)."""
        events = []
        for _ in range(count):
            message = ConsumerMessage(
                TOPIC,
                0,
                next(self.offsets),
                timestamp=0.0,
                timestamp_type=0,
                headers=[],
                key=b"C1",
                value=b"{}",
                checksum=None,
                generation_id=(
                    self.app.consumer_generation_id if generation is None else generation
                ),
            )
            message.incref()
            event = self.app.conf.Event(self.app, message.key, message.value, [], message)
            self.stream.channel.queue.put_nowait(event)
            events.append(event)
        return events

    def batches(
        self, *, max_events: int = 250, within: float = 0.01
    ) -> AsyncGenerator[list[EventT], None]:
        return take_batches(self.stream, self.monitor, max_events=max_events, within=within)


def run(main: Callable[[], Awaitable[_T]]) -> _T:
    return asyncio.run(asyncio.wait_for(main(), 10))


def offsets(events: list[EventT]) -> list[int]:
    return [event.message.offset for event in events]


def test_a_batch_is_what_is_queued_up_to_the_maximum() -> None:
    async def main() -> list[list[int]]:
        given = Input()
        given.put(7)
        async with aclosing(given.batches(max_events=5)) as batches:
            return [offsets(await anext(batches)), offsets(await anext(batches))]

    assert run(main) == [[0, 1, 2, 3, 4], [5, 6]]


def test_a_batch_takes_what_arrives_within_the_wait_after_its_first_event() -> None:
    async def main() -> list[list[int]]:
        given = Input()
        given.put(1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, given.put, 2)
        async with aclosing(given.batches(within=0.3)) as batches:
            first = offsets(await anext(batches))
            loop.call_later(0.02, given.put, 1)  # after the wait: the next batch's first
            return [first, offsets(await anext(batches))]

    assert run(main) == [[0, 1, 2], [3]]


def test_a_batch_is_acknowledged_when_the_next_is_asked_for() -> None:
    async def main() -> tuple[list[bool], list[bool], list[bool]]:
        given = Input()
        first = given.put(3)
        async with aclosing(given.batches()) as batches:
            await anext(batches)
            while_handled = [event.message.acked for event in first]
            given.put(1)
            second = await anext(batches)
            return (
                while_handled,
                [event.message.acked for event in first],
                [event.message.acked for event in second],
            )

    while_handled, after_next, second = run(main)
    assert while_handled == [False] * 3
    assert after_next == [True] * 3
    assert second == [False]


def test_closing_the_batches_acknowledges_the_batch_in_hand() -> None:
    # An agent that crashes leaves its `async with aclosing(...)`, as Faust's
    # take_events acknowledges its batch when the agent crashes.
    async def main() -> tuple[list[bool], int]:
        given = Input()
        events = given.put(2)
        with pytest.raises(RuntimeError):
            async with aclosing(given.batches()) as batches:
                await anext(batches)
                raise RuntimeError("the agent crashed")
        return [event.message.acked for event in events], given.monitor.events_active

    assert run(main) == ([True, True], 0)


def test_a_message_handed_on_awaits_its_acknowledgement_and_is_counted_once() -> None:
    async def main() -> tuple[Any, ...]:
        given = Input()
        events = given.put(2)
        async with aclosing(given.batches()) as batches:
            await anext(batches)
            consumer, monitor = given.app.consumer, given.monitor
            while_handled = (
                all(event.message.tracked for event in events),
                {event.message for event in events} <= set(consumer.unacked),
                monitor.messages_received_total,
                monitor.messages_active,
            )
            given.put(1)
            await anext(batches)
            after = (
                {event.message for event in events} & set(consumer.unacked),
                monitor.messages_received_total,
                monitor.messages_active,
            )
        return while_handled, after

    while_handled, after = run(main)
    assert while_handled == (True, True, 2, 2)
    # The third message arrived, the first two were acknowledged.
    assert after == (set(), 3, 1)


def test_events_fetched_before_a_rebalance_are_acknowledged_unseen() -> None:
    async def main() -> tuple[list[int], list[bool], list[int]]:
        given = Input()
        stale = given.put(2, generation=given.app.consumer_generation_id - 1)
        given.put(1)
        async with aclosing(given.batches()) as batches:
            taken = offsets(await anext(batches))
            stale_acked = [event.message.acked for event in stale]
            # While the flow is suspended (a rebalance under way) nothing is handed on;
            # resuming clears the buffer, and the new assignment's records come.
            given.app.flow_control.suspend()
            suspended = given.put(1)

            def assigned() -> None:
                given.app.flow_control.resume()
                given.put(1)

            asyncio.get_running_loop().call_later(0.05, assigned)
            after = offsets(await anext(batches))
            return taken, [*stale_acked, suspended[0].message.acked], after

    taken, acked, after = run(main)
    assert taken == [2]
    assert acked == [True, True, True]
    assert after == [4]


def sensor_counts(monitor: ScrapeTimePrometheusMonitor) -> tuple[Any, ...]:
    return (
        monitor.events_total,
        dict(monitor.events_by_stream),
        # Keyed by the task's text, which shows where it runs: the counts only.
        sorted(monitor.events_by_task.values()),
        sum(monitor.runtime_ms.counts),
        len(monitor.events_runtime),
        set(monitor.stream_inbound_time),
        monitor.events_active,
    )


def test_the_stream_sensor_counts_a_batch_as_faust_counts_its_events() -> None:
    async def main() -> tuple[Any, ...]:
        given = Input()
        given.put(4)
        ours = given.monitor
        async with aclosing(given.batches()) as batches:
            batch = await anext(batches)
            during = (ours.events_total, ours.events_active)
            given.put(1)
            await anext(batches)  # the four are done, the fifth in hand
            in_hand = sensor_counts(ours)
        closed = sensor_counts(ours)
        # Faust's per-event hooks on another monitor, for the same four events.
        theirs = Input().monitor
        for event in batch:
            message = event.message
            state = theirs.on_stream_event_in(message.tp, message.offset, given.stream, event)
            theirs.on_stream_event_out(message.tp, message.offset, given.stream, event, state)
        return during, in_hand, closed, sensor_counts(theirs)

    during, in_hand, closed, theirs = run(main)
    assert during == (4, 4)
    events_total, by_stream, by_task, runtimes, runtime_history, partitions, active = theirs
    assert active == 0
    assert in_hand == (
        events_total + 1,
        {name: count + 1 for name, count in by_stream.items()},
        [count + 1 for count in by_task],
        runtimes,
        runtime_history,
        partitions,
        1,
    )
    # Closing the batches (the agent stopping or crashing) counts the fifth one done.
    assert closed[3:5] == (runtimes + 1, runtime_history + 1) and closed[6] == 0


def test_an_error_thrown_into_the_channel_reaches_the_agent() -> None:
    async def main() -> None:
        given = Input()
        await given.stream.channel.throw(ValueError("undecodable"))
        async with aclosing(given.batches()) as batches:
            await anext(batches)

    with pytest.raises(ValueError, match="undecodable"):
        run(main)


def test_stopping_the_agent_ends_its_batches() -> None:
    # Faust stops an agent by throwing StopAsyncIteration into its channel.
    async def main() -> tuple[list[list[int]], list[bool]]:
        given = Input()
        events = given.put(2)
        taken = []
        async with aclosing(given.batches()) as batches:
            asyncio.get_running_loop().call_later(
                0.05, given.stream.channel._throw, StopAsyncIteration()
            )
            async for batch in batches:
                taken.append(offsets(batch))
        return taken, [event.message.acked for event in events]

    assert run(main) == ([[0, 1]], [True, True])
