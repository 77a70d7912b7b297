"""Never commit past a record the consumer skipped.

Faust can hand an agent a partition's records with a stretch missing: when a
rebalance or the end of table recovery interrupts a fetch, records already taken from
the Kafka client are dropped and consumption goes on after them (faust-streaming
issues #216 and #221 describe the family; it was seen here right after recovery,
about one restart in ten). Faust then takes the jump for a gap in the log, as a
compacted topic has, and commits past it: the skipped transactions are lost for good.

Our input topics have no gaps of their own (no compaction, no transaction markers),
so a forward jump always means records this process did not see. The defence has two
parts:

- :func:`refuse_offset_gaps` stops Faust from treating a jump as committable, so the
  committed offset stays before the first skipped record;
- :class:`OffsetJumpWatch` notices the jump before the agent handles the record after
  it, and the worker restarts itself (:func:`restart_worker`) without committing:
  it reads on from its committed offsets, skipped records included, in order. The
  records it handled twice are recognised downstream (source positions and tx_ids
  in the customer state, detection ids in the case store).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from faust.transport.consumer import Consumer
from faust.types import EventT
from prometheus_client import Counter

log = logging.getLogger(__name__)


def refuse_offset_gaps() -> None:
    """Make Faust keep a skipped stretch of offsets uncommitted instead of committing past it."""

    async def keep_gap_uncommitted(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        return None

    # Consumer._add_gap records a jump as offsets "to be treated as acknowledged" at the
    # next commit; without it a jump is a hole that blocks the commit, as it should be.
    Consumer._add_gap = keep_gap_uncommitted  # type: ignore[method-assign]


class OffsetJumpWatch:
    """Follows each partition's offsets in one agent; ``admit`` is False after a jump."""

    def __init__(self, jumps: Counter, on_jump: Callable[[str], None]) -> None:
        self.jumps = jumps
        self.on_jump = on_jump
        self.next_offset: dict[Any, int] = {}

    def admit(self, event: EventT) -> bool:
        """Whether the agent may handle ``event``: False when offsets before it were skipped."""
        message = event.message
        expected = self.next_offset.get(message.tp)
        if expected is not None and message.offset > expected:
            self.jumps.labels(topic=message.topic).inc()
            self.on_jump(
                f"the consumer skipped offsets {expected}-{message.offset - 1} of "
                f"{message.topic}[{message.partition}]"
            )
            return False
        # A lower offset is a rewind (a seek to the committed offset after a rebalance):
        # follow it, the records come again in order.
        self.next_offset[message.tp] = message.offset + 1
        return True


def restart_worker(reason: str) -> NoReturn:
    """Replace this process with a fresh worker at once, without committing anything."""
    log.error("%s; restarting the worker to read them from the committed offsets", reason)
    logging.shutdown()
    os.execv(sys.executable, sys.orig_argv)
