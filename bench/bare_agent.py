"""The framework ceiling: a Faust worker whose only agent counts messages and bytes.

It uses the same broker client options as the amlwatch worker (``faust_broker_options``)
and reads its configuration from the same ``AMLWATCH_*`` variables, so the bench can run
it over the very topic the pipeline read and compare the two. The count is served as
JSON at ``/count`` on the web port; there is no Prometheus sensor, no table and no
producer traffic, which is exactly the work the pipeline does on top of this.

With ``--eager-delivery`` it runs with amlwatch's fixes to Faust's delivery of
fetched records (``stream.delivery``; ``AMLWATCH_EAGER_DELIVERY`` in the worker): the
ceiling of a fixed Faust, reported beside the stock one.

Run: ``python bench/bare_agent.py [--eager-delivery]`` (blocks until SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import json

import faust
from faust.web import Request, Response, View

from core.settings import Settings
from stream.app import faust_broker_options
from stream.delivery import deliver_records_eagerly


def build_bare_app(settings: Settings) -> faust.App:
    """A Faust app with one raw-bytes topic and an agent that only counts."""
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url(),
        store="memory://",
        # Faust writes a data directory even for the memory store: not in the cwd.
        datadir=str(settings.data_dir / "bare-agent" / settings.app_id),
        topic_partitions=settings.topic_partitions,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        **faust_broker_options(settings),
    )
    # Raw serializers on both sides: without them Faust would JSON-decode the value and
    # the "ceiling" would include a decode the pipeline does in its own code anyway.
    topic = app.topic(
        settings.transactions_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    totals = {"messages": 0, "bytes": 0}

    @app.agent(topic, name=f"{settings.app_id}.count")
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            totals["messages"] += 1
            totals["bytes"] += len(value) if value is not None else 0

    @app.page("/count")
    class Count(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(json.dumps(totals).encode(), content_type="application/json")

    return app


def main(argv: list[str] | None = None) -> None:
    """Run the bare worker with settings from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--eager-delivery",
        action="store_true",
        help="with amlwatch's fixes to Faust's per-record delivery (stream.delivery)",
    )
    if parser.parse_args(argv).eager_delivery:
        deliver_records_eagerly()
    settings = Settings()
    # Faust creates only the last level of its datadir.
    (settings.data_dir / "bare-agent").mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(build_bare_app(settings), loglevel=settings.log_level)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
