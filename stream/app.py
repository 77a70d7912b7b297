"""The Faust app: the composition root that wires topics, tables, agents and pages.

Data path::

    transactions (raw bytes, any key)
      -> validate_transactions: decode + validate
           invalid -> transactions-dlq (original bytes, reason in headers)
           valid   -> <app_id>-transactions-by-customer (key customer_id, canonical JSON,
                      record timestamp = event time)
      -> apply_rules: the customer's state (table keyed by customer_id) + the rule pack
           report detections -> large-value-reports
           alert detections  -> alerts

The re-keying step is what co-partitions every customer's transactions with their
table entries, whatever key (or none) the upstream producer used. Detections are sent
before the state is written: after a crash the transaction comes again, finds the
state without it and fires the same detections (same ids) again, or finds it already
applied and re-sends what it fired the first time. Either way nothing is lost and
downstream de-duplicates by detection id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import EventT, TableT
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from core.detection import Detection, Outcome
from core.errors import InvalidInput
from core.settings import Settings
from core.transaction import InvalidTransaction, decode_transaction
from rules.engine import RuleEngine
from rules.state import CustomerState
from stream.customers import CustomerDirectory
from stream.dead_letter import NO_REFERENCE_DATA_REASON, UNEXPECTED_REASON, dead_letter_headers
from stream.metrics import StreamMetrics

log = logging.getLogger(__name__)

# Room for the largest message a broker normally accepts plus our DLQ headers, so a
# refused oversized message can still be dead-lettered with its original bytes.
PRODUCER_MAX_REQUEST_BYTES = 16 * 1024 * 1024
CUSTOMERS_REFRESH_SECONDS = 10.0
SOURCE_POSITION_HEADER = "amlwatch.source.position"


class CustomerStates:
    """The customer-state table, holding JSON bytes, with decoded objects kept beside it.

    The table (and its changelog) stores each customer's state as JSON; decoding it on
    every message would dominate the cost, so the decoded object is kept and reused as
    long as the table still holds the very bytes it was decoded from. After a restart
    the table is recovered from the changelog and each customer is decoded once.
    """

    def __init__(self, table: TableT) -> None:
        self.table = table
        self._decoded: dict[str, tuple[bytes, CustomerState]] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        raw = self.table.get(customer_id)
        if raw is None:
            return None
        cached = self._decoded.get(customer_id)
        if cached is not None and cached[0] is raw:
            return cached[1]
        state = CustomerState.from_dict(json.loads(raw))
        self._decoded[customer_id] = (raw, state)
        return state

    def put(self, customer_id: str, state: CustomerState) -> None:
        raw = json.dumps(state.to_dict(), separators=(",", ":")).encode()
        self.table[customer_id] = raw
        self._decoded[customer_id] = (raw, state)

    def forget(self, customer_id: str) -> None:
        """Drop the decoded object (it may hold changes the table never received)."""
        self._decoded.pop(customer_id, None)

    def items(self) -> list[tuple[str, CustomerState]]:
        found = ((customer_id, self.get(customer_id)) for customer_id in list(self.table))
        return [(customer_id, state) for customer_id, state in found if state is not None]


@dataclass(frozen=True)
class AmlwatchApp:
    """The built app with handles that tests, pages and the CLI need."""

    faust_app: faust.App
    settings: Settings
    metrics: StreamMetrics
    transactions_topic: faust.TopicT
    dead_letter_topic: faust.TopicT
    by_customer_topic: faust.TopicT
    alerts_topic: faust.TopicT
    reports_topic: faust.TopicT
    customer_states: CustomerStates
    engine: RuleEngine
    customers: CustomerDirectory

    def is_ready(self) -> bool:
        app = self.faust_app
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # concrete TableManager
        return bool(recovery.completed.is_set() and not app.rebalancing and not app.in_recovery)


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
    engine: RuleEngine,
    customers: CustomerDirectory,
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
    alerts_topic = app.topic(settings.alerts_topic, **topic_options)
    reports_topic = app.topic(settings.reports_topic, **topic_options)
    customer_state = app.Table(
        "customer-state",
        key_type=str,
        value_type=bytes,
        partitions=settings.topic_partitions,
        help="Per-customer rule state (recent transactions, daily totals), by customer_id.",
    )
    built = AmlwatchApp(
        faust_app=app,
        settings=settings,
        metrics=metrics,
        transactions_topic=transactions_topic,
        dead_letter_topic=dead_letter_topic,
        by_customer_topic=by_customer_topic,
        alerts_topic=alerts_topic,
        reports_topic=reports_topic,
        customer_states=CustomerStates(customer_state),
        engine=engine,
        customers=customers,
    )
    _register_agents(built)
    _register_pages(built)
    _register_timers(built)
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
            source = event.message
            await built.by_customer_topic.send(
                key=tx.customer_id.encode(),
                value=tx.to_json_bytes(),
                # Record time = event time, so anything time-based downstream follows
                # the transaction's own clock, not the broker's.
                timestamp=tx.event_epoch,
                # Where it came from: a stretch re-forwarded after a crash carries the
                # same positions, and the customer's state recognises them.
                headers=[(SOURCE_POSITION_HEADER, f"{source.partition}:{source.offset}".encode())],
            )

    @app.agent(built.by_customer_topic, name=f"{settings.app_id}.apply_rules")
    async def apply_rules(stream: faust.StreamT[bytes]) -> None:
        engine, states = built.engine, built.customer_states
        async for event in stream.events():
            try:
                tx = decode_transaction(event.message.value, max_bytes=PRODUCER_MAX_REQUEST_BYTES)
            except InvalidTransaction as exc:
                # Only a foreign producer writing to our internal topic gets here.
                await dead_letter(event, exc.reason.value, exc.message, exc.field)
                continue
            state = states.get(tx.customer_id) or CustomerState()
            try:
                result = engine.process(
                    state, tx, built.customers.get(tx.customer_id), _source_position(event)
                )
            except InvalidInput as exc:
                # Valid by contract but not processable here, e.g. no rate for its currency.
                await dead_letter(event, NO_REFERENCE_DATA_REASON, str(exc), None)
                continue
            try:
                await _emit(built, result.detections, counted=not result.duplicate)
            except BaseException:
                # The state object was changed in place but never written: re-read it.
                states.forget(tx.customer_id)
                raise
            if result.duplicate:
                metrics.duplicates.inc()
                continue
            states.put(tx.customer_id, state)
            metrics.processed.inc()
            metrics.latency.observe(max(0.0, time.time() - tx.event_epoch))


def _source_position(event: EventT) -> tuple[str, int] | None:
    """("source partition", offset) from the re-keying hop's header, if present."""
    headers = event.message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == SOURCE_POSITION_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            partition, _, offset = text.partition(":")
            return f"source-{partition}", int(offset)
    return None


async def _emit(built: AmlwatchApp, detections: tuple[Detection, ...], *, counted: bool) -> None:
    """Send detections to their topic: reports and alerts go separate ways."""
    for detection in detections:
        topic = built.reports_topic if detection.outcome is Outcome.REPORT else built.alerts_topic
        await topic.send(
            key=detection.customer_id.encode(),
            value=json.dumps(detection.to_dict(), ensure_ascii=False).encode(),
        )
        if counted:
            built.metrics.detections.labels(
                rule_id=detection.detector,
                outcome=detection.outcome.value,
                severity=detection.severity.value,
            ).inc()


def _register_timers(built: AmlwatchApp) -> None:
    app = built.faust_app

    @app.timer(interval=CUSTOMERS_REFRESH_SECONDS)
    async def refresh_customers() -> None:
        # An exception escaping a Faust timer stops the worker: contain it.
        try:
            await asyncio.to_thread(built.customers.refresh)
        except Exception:
            log.exception("refreshing the customers file failed; keeping the previous one")


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
            states = built.customer_states
            items = [(wanted, states.get(wanted))] if wanted else states.items()
            body = {
                customer_id: {
                    "transactions": state.transactions,
                    "last_event_at": state.last_event_at,
                    "transactions_retained": len(state.events),
                }
                for customer_id, state in items
                if state is not None
            }
            return self.bytes(json.dumps(body).encode(), content_type="application/json")
