"""The Faust app: the composition root that wires topics, tables, agents and pages.

Data path::

    transactions (raw bytes, any key)
      -> validate_transactions: decode + validate
           invalid -> transactions-dlq (original bytes, reason in headers)
           valid   -> <app_id>-transactions-by-customer (key customer_id, canonical JSON,
                      record timestamp = event time)
      -> track_customer_activity: per-customer state in tables keyed by customer_id

The re-keying step is what co-partitions every customer's transactions with their
table entries, whatever key (or none) the upstream producer used.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import EventT, TableT
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from core.settings import Settings
from core.transaction import InvalidTransaction, Transaction, decode_transaction
from stream.dead_letter import UNEXPECTED_REASON, dead_letter_headers
from stream.metrics import StreamMetrics

log = logging.getLogger(__name__)

# Room for the largest message a broker normally accepts plus our DLQ headers, so a
# refused oversized message can still be dead-lettered with its original bytes.
PRODUCER_MAX_REQUEST_BYTES = 16 * 1024 * 1024


class CustomerActivity(faust.Record, serializer="json"):
    """Running per-customer state.

    ``recent_tx_ids`` is written in the same table update as the counts it guards, so a
    transaction redelivered after a crash is recognised whether or not its first
    processing reached the changelog. It is bounded (the customer's latest N tx_ids) to
    keep every changelog write small; a replay of something older would count again.
    """

    transactions: int
    last_event_at: float
    recent_tx_ids: list[str]


@dataclass(frozen=True)
class AmlwatchApp:
    """The built app with handles that tests, pages and the CLI need."""

    faust_app: faust.App
    settings: Settings
    metrics: StreamMetrics
    transactions_topic: faust.TopicT
    dead_letter_topic: faust.TopicT
    by_customer_topic: faust.TopicT
    customer_activity: TableT

    def is_ready(self) -> bool:
        app = self.faust_app
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # concrete TableManager
        return bool(recovery.completed.is_set() and not app.rebalancing and not app.in_recovery)


def apply_transaction(
    activity: CustomerActivity | None, tx: Transaction, keep_recent: int
) -> CustomerActivity:
    """The customer's state after ``tx`` (callers have ruled out duplicates)."""
    if activity is None:
        return CustomerActivity(
            transactions=1, last_event_at=tx.event_epoch, recent_tx_ids=[tx.tx_id]
        )
    recent = [*activity.recent_tx_ids[-(keep_recent - 1) :], tx.tx_id]
    return CustomerActivity(
        transactions=activity.transactions + 1,
        last_event_at=max(activity.last_event_at, tx.event_epoch),
        recent_tx_ids=recent,
    )


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """Client settings; the dev profile works around the embedded broker's limits."""
    options: dict[str, Any] = {
        "producer_max_request_size": PRODUCER_MAX_REQUEST_BYTES,
        "processing_guarantee": "at_least_once",
    }
    if settings.use_dev_broker_profile:
        options.update(
            # Tansu makes the first group join wait half the session timeout.
            broker_session_timeout=4.0,
            broker_heartbeat_interval=1.0,
            # Tansu answers ListOffsets(latest) with the last *batch's* base offset + 1,
            # so table recovery stops early unless every batch holds one record.
            producer_max_batch_size=1,
        )
    return options


def build_app(
    settings: Settings,
    *,
    broker_url: str | None = None,
    registry: CollectorRegistry | None = None,
) -> AmlwatchApp:
    """Build the Faust app for ``settings``; ``broker_url`` overrides the configured one."""
    app = faust.App(
        settings.app_id,
        broker=broker_url or settings.kafka_url(),
        store="memory://",
        # Faust keeps a data directory even for the memory store; keep it out of the cwd.
        datadir=str(settings.data_dir / "faust" / settings.app_id),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        **faust_broker_options(settings),
    )
    metrics = StreamMetrics.create(registry)
    setup_prometheus_sensors(app, registry=metrics.registry, name_prefix="faust")

    topic_options: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.topic_partitions,
        "replicas": settings.topic_replication,
        "internal": True,  # create when missing, with our partition count
    }
    transactions_topic = app.topic(settings.transactions_topic, **topic_options)
    dead_letter_topic = app.topic(settings.dead_letter_topic, **topic_options)
    by_customer_topic = app.topic(f"{settings.app_id}-transactions-by-customer", **topic_options)
    customer_activity = app.Table(
        "customer-activity",
        key_type=str,
        value_type=CustomerActivity,
        partitions=settings.topic_partitions,
        help="Running per-customer counts, keyed by customer_id.",
    )
    built = AmlwatchApp(
        faust_app=app,
        settings=settings,
        metrics=metrics,
        transactions_topic=transactions_topic,
        dead_letter_topic=dead_letter_topic,
        by_customer_topic=by_customer_topic,
        customer_activity=customer_activity,
    )
    _register_agents(built)
    _register_pages(built)
    return built


def _register_agents(built: AmlwatchApp) -> None:
    app, settings, metrics = built.faust_app, built.settings, built.metrics

    async def dead_letter(event: EventT, reason: str, message: str, field: str | None) -> None:
        source = event.message
        await built.dead_letter_topic.send(
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
        metrics.dead_lettered.labels(reason=reason).inc()

    @app.agent(built.transactions_topic, name=f"{settings.app_id}.validate_transactions")
    async def validate_transactions(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                tx = decode_transaction(event.message.value, max_bytes=settings.max_message_bytes)
            except InvalidTransaction as exc:
                await dead_letter(event, exc.reason.value, exc.message, exc.field)
                continue
            except Exception as exc:
                log.exception("unexpected error decoding offset %s", event.message.offset)
                await dead_letter(event, UNEXPECTED_REASON, type(exc).__name__, None)
                continue
            await built.by_customer_topic.send(
                key=tx.customer_id.encode(),
                value=tx.to_json_bytes(),
                # Record time = event time, so anything time-based downstream follows
                # the transaction's own clock, not the broker's.
                timestamp=tx.event_epoch,
            )

    @app.agent(built.by_customer_topic, name=f"{settings.app_id}.track_customer_activity")
    async def track_customer_activity(stream: faust.StreamT[bytes]) -> None:
        keep_recent = settings.recent_tx_ids_per_customer
        async for event in stream.events():
            try:
                tx = decode_transaction(event.message.value, max_bytes=PRODUCER_MAX_REQUEST_BYTES)
            except InvalidTransaction as exc:
                # Only a foreign producer writing to our internal topic gets here.
                await dead_letter(event, exc.reason.value, exc.message, exc.field)
                continue
            activity = built.customer_activity.get(tx.customer_id)
            if activity is not None and tx.tx_id in activity.recent_tx_ids:
                metrics.duplicates.inc()
                continue
            built.customer_activity[tx.customer_id] = apply_transaction(activity, tx, keep_recent)
            metrics.processed.inc()
            metrics.latency.observe(max(0.0, time.time() - tx.event_epoch))


def _register_pages(built: AmlwatchApp) -> None:
    app = built.faust_app

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            if built.is_ready():
                return self.json({"status": "ready"})
            return self.json({"status": "starting"}, status=503)

    @app.page("/state/customer-activity")
    class CustomerActivityState(View):
        """This worker's share of the per-customer table (operators and tests)."""

        async def get(self, request: Request) -> Response:
            wanted = request.query.get("customer_id")
            table = built.customer_activity
            items = [(wanted, table.get(wanted))] if wanted else list(table.items())
            body = {
                customer_id: {
                    "transactions": activity.transactions,
                    "last_event_at": activity.last_event_at,
                }
                for customer_id, activity in items
                if activity is not None
            }
            return self.bytes(json.dumps(body).encode(), content_type="application/json")
