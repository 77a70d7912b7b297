"""Dead-letter records: the original bytes as the value, the why and where in headers.

Keeping the value byte-for-byte (rather than wrapping it in JSON) means nothing is
lost or re-encoded, and a fixed message can be replayed by copying the value back.
The header names follow Kafka Connect's ``__connect.errors.*`` convention in spirit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import faust
from faust.types import EventT

HEADER_PREFIX = "amlwatch.dlq."
UNEXPECTED_REASON = "unexpected"
# Valid by contract, but reference data to process it is missing (e.g. a currency rate).
NO_REFERENCE_DATA_REASON = "no_reference_data"


def dead_letter_headers(
    *,
    reason: str,
    message: str,
    field: str | None,
    topic: str,
    partition: int,
    offset: int,
) -> list[tuple[str, bytes]]:
    """Headers for a dead-lettered message (reason category, message, source position)."""
    headers = {
        "reason": reason,
        "message": message,
        "source.topic": topic,
        "source.partition": str(partition),
        "source.offset": str(offset),
    }
    if field is not None:
        headers["field"] = field
    return [(HEADER_PREFIX + name, value.encode()) for name, value in headers.items()]


async def send_dead_letter(
    topic: faust.TopicT, event: EventT, *, reason: str, message: str, field: str | None
) -> Awaitable[Any]:
    """Send ``event``'s message, key and bytes as they came, to the dead-letter ``topic``
    with the why and where in headers; the send's delivery, to await before the message
    is acknowledged."""
    source = event.message
    return await topic.send(
        key=source.key,
        value=source.value if source.value is not None else b"",
        headers=dead_letter_headers(
            reason=reason,
            message=message,
            field=field,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
        ),
    )


def read_dead_letter_headers(
    headers: Mapping[str, bytes] | list[tuple[str, bytes]],
) -> dict[str, str]:
    """The dead-letter headers of a record, without their prefix, decoded."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {
        name.removeprefix(HEADER_PREFIX): value.decode()
        for name, value in pairs
        if name.startswith(HEADER_PREFIX)
    }
