"""Hand each fetched record to the streams without four tasks per record, refill a full
stream buffer in bulk, and make a raw record's event without a codec.

Faust's consumer delivers every record it fetched with
``await self.wait_first(callback(message), self.suspend_flow.wait())``, so that a
rebalance (flow suspended) or a stop can abandon a delivery stuck on a full stream
buffer. mode's ``wait_first`` wraps each argument, and the service's stopped and
crashed events, in a task, waits for the first and cancels the rest: four tasks, an
``asyncio.wait`` and three cancellations per record. Measured here: 62 us a record
against 0.2 us for a plain await, a third of what a bare Faust agent costs a message.

Nearly every delivery finishes without suspending (the conductor's lock is free and
the stream buffer has room), and then there is nothing to race. So the delivery is
started at once, as Python 3.12's eager tasks start a coroutine: one that finishes in
that first step returns its result straight away; one that suspends goes on inside the
original ``wait_first``, raced against the flow and the stop exactly as before.

A delivery suspends when its stream's buffer is full, which is the steady state of a
backlog: the agent is slower than the fetch loop. Faust's buffer (an ``asyncio.Queue``)
lets one record in for each one the agent takes, so once full, nearly every delivery
suspends, each paying for the race above and for the task and ``asyncio.wait`` Faust's
conductor makes for a full buffer: 13% of the stream bench's records did. A
:class:`RefillingQueue` stays full, once full, until the agent has taken half of it;
the next half-buffer of records then goes in without suspending.

Every topic here carries raw bytes (key and value serializer ``raw``): Faust's decode
still passes each key and value through its serializer registry and the ``raw`` codec,
which returns them unchanged, and looks the Event class up in the settings: 3.3-3.6 us
a record in process here. :func:`_raw_bytes_decoder` makes the same event from the
record directly, in 0.4 us.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import faust
from faust.serializers.schemas import Schema
from faust.transport.consumer import Consumer
from faust.types import AppT, EventT, Message
from mode import Service
from mode.services import WaitResults
from mode.utils.queues import ThrowableQueue

_RACED_WAIT_FIRST = Service.wait_first
_COMPILE_WITH_CODECS = Schema.compile

_T = TypeVar("_T")


def deliver_records_eagerly() -> None:
    """Make Faust's consumer start each record's delivery before racing it, Faust's
    stream buffers :class:`RefillingQueue` s, and raw records' events without a codec
    (see module)."""
    Consumer.wait_first = _eager_wait_first  # type: ignore[method-assign]
    faust.App.FlowControlQueue = _refilling_queue  # type: ignore[method-assign]
    Schema.compile = _compile_decoder  # type: ignore[method-assign]


def _compile_decoder(self: Schema, app: AppT, **options: Any) -> Any:
    # Schema.compile, the decoder of each topic: the direct one for raw bytes.
    raw = (
        self.key_type is bytes
        and self.value_type is bytes
        and self.key_serializer == "raw"
        and self.value_serializer == "raw"
    )
    return _raw_bytes_decoder(app) if raw else _COMPILE_WITH_CODECS(self, app, **options)


def _raw_bytes_decoder(app: AppT) -> Any:
    """What Faust's decoder returns for a raw-bytes schema: the record's key and value as
    they are (``None`` included), in the app's Event class. Nothing can fail to decode."""
    app.finalize()  # as Faust's decoder does before it reads the settings
    # The settings type the class as a typing form; it is faust.Event unless configured.
    event_class: Any = app.conf.Event

    async def decode(message: Message, *, propagate: bool = False) -> EventT[Any]:
        event: EventT[Any] = event_class(app, message.key, message.value, message.headers, message)
        return event

    return decode


def _refilling_queue(
    self: faust.App, maxsize: int | None = None, *, clear_on_resume: bool = False
) -> ThrowableQueue[Any]:
    # faust.App.FlowControlQueue, the factory of every stream buffer, with the subclass.
    return RefillingQueue(
        maxsize=maxsize, flow_control=self.flow_control, clear_on_resume=clear_on_resume
    )


class RefillingQueue(ThrowableQueue[_T]):
    """A stream buffer that, once full, stays full until the agent has taken it down to
    ``refill_size`` (half of it): until then a put waits, and the conductor, which asks
    ``full()`` before each delivery, takes its path for a full buffer.

    Everything else is Faust's buffer's: puts into a buffer with room, the gets, the
    flow control, and ``clear`` (a rebalance) cancelling the puts that wait.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refill_size = self.maxsize // 2
        self._refilling = False
        self._refill_waiters: list[asyncio.Future[None]] = []

    def full(self) -> bool:
        if not self._refilling and super().full():
            self._refilling = True
        return self._refilling

    async def put(self, value: _T) -> None:
        if self.full():
            waiter = asyncio.get_running_loop().create_future()
            # A waiter cancelled (its race lost to the flow) stays listed, done, until
            # the refill or a clear drops it.
            self._refill_waiters.append(waiter)
            await waiter
        await super().put(value)

    def get_nowait(self) -> _T:
        # asyncio.Queue.get ends in get_nowait: every take passes here.
        value = super().get_nowait()
        if self._refilling and self.qsize() <= self.refill_size:
            self._refilling = False
            waiters, self._refill_waiters = self._refill_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        return value

    def clear(self) -> None:
        super().clear()
        self._refilling = False
        for waiter in self._refill_waiters:
            waiter.cancel()  # as Faust's buffer cancels its waiting puts
        self._refill_waiters.clear()


async def _eager_wait_first(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:
    first = coros[0] if coros else None
    if (
        not isinstance(first, Coroutine)
        # Raced as before when the race could be lost: the flow suspended for a
        # rebalance, or the consumer stopping.
        or self.suspend_flow.is_set()
        or self._stopped.is_set()
        or self._crashed.is_set()
    ):
        return await _RACED_WAIT_FIRST(self, *coros, timeout=timeout)
    try:
        suspended_on = first.send(None)
    except BaseException as ended:
        for other in coros[1:]:
            if isinstance(other, Coroutine):
                other.close()  # never started: no "never awaited" warning
        if isinstance(ended, StopIteration):
            return WaitResults([first], [ended.value], False)
        raise
    return await _RACED_WAIT_FIRST(self, _Resumed(first, suspended_on), *coros[1:], timeout=timeout)


class _Resumed:
    """Awaiting this goes on with a coroutine already stepped by hand, from where it
    suspended (``suspended_on``: what its last step yielded, usually a future)."""

    __slots__ = ("_coro", "_suspended_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, Any]:
        # What ``yield from`` does for a generator not yet started by it: pass each
        # yielded future up to the task, and each result or exception back down.
        coro, value = self._coro, self._suspended_on
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as finished:
                    return finished.value
