"""The client's floor: the Kafka client (aiokafka) alone counting messages and bytes.

What the bare Faust agent costs a message beyond this is Faust's own per-message
machinery (the message and event objects, the conductor, the stream buffer, the
acknowledgements), which the pipeline pays as well: the stream bench reports it beside
the bare agents. Same broker, topic and consumer group protocol as the worker, the dev
profile's session timeout and fetch wait, no Faust. The count is served as JSON at
``/count`` on the web port, in the bare agent's format.

Run: ``python bench/client_agent.py`` with the worker's ``AMLWATCH_*`` variables (blocks
until SIGINT/SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import signal

from aiohttp import web
from aiokafka import AIOKafkaConsumer

from core.settings import Settings
from stream.app import DEV_SESSION_TIMEOUT_SECONDS
from stream.dev_broker import FETCH_MAX_WAIT_MS


async def count_messages(settings: Settings, totals: dict[str, int], stop: asyncio.Event) -> None:
    """Consume the transactions topic as the worker's group would, counting, until ``stop``."""
    consumer = AIOKafkaConsumer(
        settings.transactions_topic,
        bootstrap_servers=settings.kafka_url().removeprefix("kafka://"),
        group_id=settings.app_id,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        session_timeout_ms=int(DEV_SESSION_TIMEOUT_SECONDS * 1000),
        heartbeat_interval_ms=1000,  # the dev profile's broker_heartbeat_interval
    )
    await consumer.start()
    try:
        while not stop.is_set():
            # Everything fetched, as Faust asks (its broker_max_poll_records is None).
            fetched = await consumer.getmany(timeout_ms=200)
            for records in fetched.values():
                for record in records:
                    totals["messages"] += 1
                    totals["bytes"] += len(record.value) if record.value is not None else 0
    finally:
        await consumer.stop()


async def serve(settings: Settings) -> None:
    totals = {"messages": 0, "bytes": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async def count_page(_request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(totals).encode(), content_type="application/json")

    application = web.Application()
    application.router.add_get("/count", count_page)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    try:
        await count_messages(settings, totals, stop)
    finally:
        await runner.cleanup()


def main() -> None:
    asyncio.run(serve(Settings()))


if __name__ == "__main__":
    main()
