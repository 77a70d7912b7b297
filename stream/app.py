"""The Faust app: the composition root that wires topics, tables, agents and pages.

Data path::

    transactions (raw bytes; keyed by customer_id, or any key)
      -> apply_rules, in micro-batches of up to BATCH_MAX_EVENTS (taken from the stream's
         buffer within BATCH_WAIT_SECONDS of their first, see stream.event_batches; a
         backlog's are joined, see HeldBatch): decode + validate
           invalid -> transactions-dlq (original bytes, reason in headers)
           keyed by customer_id and on that key's partition -> processed here
           any other key or partition -> <app_id>-transactions-by-customer (key
              customer_id, record time = event time) -> apply_rekeyed_rules, the same
              batches and processing
      processing: per transaction, the customer's record (table keyed by customer_id:
      rules state + behaviour profile) and the rule pack; then the batch's feature rows
      scored by the active anomaly model in one forest call
           report detections -> large-value-reports
           alert detections (rules and anomaly model) -> alerts
           the batch's transactions and detections -> the case store (when the worker
              has one), in one database transaction: a case is stored with the batch
              that raised it, not one broker hop later
           the batch's changed records -> staged; encoded into the table and its
              changelog by the next flush (every RECORD_FLUSH_SECONDS at most, sooner
              once the stream is quiet)

A customer's transactions must meet the customer's table entry on one worker. A
producer that keys by customer_id with Kafka's default partitioner (murmur2) puts them
on the partition of that entry already, so they are processed where they arrive: no
second hop, no second decode. Only the rest is re-keyed, which co-partitions every
customer's transactions with their table entries whatever key (or none) the upstream
producer used. The two paths never process at the same time (one lock), and each keeps
its own source positions, since each is in order only within itself.

A batch's detections and dead letters are all delivered (acknowledged by the broker)
before any of its records is written to the changelog. After a crash a transaction
comes again and either finds the record without it and fires the same detections (same
ids) again, or finds it already applied, what it fired already on its topics, and
re-sends what the record still remembers of it (anomaly detections included: the
record keeps them beside the rules'), for a case store that missed the batch. Either
way nothing is lost and downstream de-duplicates by detection id. A redelivered
transaction is never scored again: its profile already holds it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import faust
from faust.types import EventT
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from alerts.transactions import StoredTransaction
from core.detection import Detection, Outcome
from core.errors import InvalidInput
from core.settings import Settings
from core.transaction import InvalidTransaction, Transaction, decode_transaction
from rules.engine import ProcessResult, RuleEngine
from rules.reference_data import RateTable
from stream.batch_detection import BatchDetection
from stream.customer_table import (
    RECORD_FLUSH_QUIET_SECONDS,
    RECORD_FLUSH_STAGES,
    ChangelogBatches,
    CustomerTable,
)
from stream.customers import CustomerDirectory
from stream.dead_letter import NO_REFERENCE_DATA_REASON, UNEXPECTED_REASON, send_dead_letter
from stream.delivery import deliver_records_eagerly
from stream.dev_broker import adapt_to_embedded_broker
from stream.event_batches import agent_batches, release_events
from stream.metrics import ScrapeTimePrometheusMonitor, StreamMetrics, setup_faust_sensors
from stream.offsets import (
    RESEEK_SECONDS,
    refuse_offset_gaps,
    seek_again_where_stalled,
    watch_stream_offsets,
)
from stream.partitioning import partition_of
from stream.scoring import BehaviourTracker, LiveModel

log = logging.getLogger(__name__)

# Room for the largest message a broker normally accepts plus our DLQ headers, so a
# refused oversized message can still be dead-lettered with its original bytes.
PRODUCER_MAX_REQUEST_BYTES = 16 * 1024 * 1024
CUSTOMERS_REFRESH_SECONDS = 10.0
SOURCE_POSITION_HEADER = "amlwatch.source.position"
# Tansu makes the first group join wait half the session timeout: keep it short in dev.
DEV_SESSION_TIMEOUT_SECONDS = 4.0
# A batch pays once for its changelog round trip, case-store commit and forest call;
# the wait bounds what a quiet stream adds to a transaction's latency. At a steady 1,000
# tx/s, 20 ms instead of 50 ms took the case latency p99 from 0.245-0.253 s to
# 0.211-0.215 s in alternating cases-bench runs, for 0.63-0.65 of the worker's core
# instead of 0.55-0.57 (smaller batches). On a backlog 20 ms takes about 200 events, and
# batches that small cost about 12% of the throughput (2,876-3,052 tx/s against
# 3,285-3,447 at 50 ms, about 430 a batch): so a backlog's taken batches are joined (see
# HeldBatch) into batches of up to BATCH_MAX_EVENTS.
BATCH_MAX_EVENTS = 500
TAKE_MAX_EVENTS = 250
BATCH_WAIT_SECONDS = 0.02
# A taken batch this large means the input is behind (a live stream at 1,000 tx/s gives
# about 20 in 20 ms): it is held and joined to the next one(s).
BACKLOG_TAKEN_EVENTS = 100
SLOW_DURABILITY_SECONDS = 15.0
# A flush's worth of batches with the forwards (re-keys, dead letters) of each, and two
# more: a batch waits for the oldest only beyond that.
DURABLE_BATCHES_IN_FLIGHT = 2 * RECORD_FLUSH_STAGES + 2

# Sends a message's original bytes to the dead-letter topic; returns its delivery.
DeadLetter = Callable[[EventT, str, str, str | None], Awaitable[Awaitable[Any]]]
# Where a decoded transaction sits in an ordered input: (stream name, offset).
Position = tuple[str, int]
# Awaited with every batch's valid transactions (with their CNY and USD amounts) and the
# detections it sent (re-sent ones of redelivered transactions too) before the batch is
# acknowledged.
BatchSink = Callable[[Sequence[StoredTransaction], Sequence[Detection]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded transaction, the event it came in and its place in that input."""

    event: EventT
    tx: Transaction
    position: Position | None


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
    customer_table: CustomerTable
    engine: RuleEngine
    customers: CustomerDirectory
    live_model: LiveModel
    behaviour: BehaviourTracker
    # The app's monitor: the agents that take their own batches count them in it.
    faust_monitor: ScrapeTimePrometheusMonitor
    # Both rules agents change the same table entries, and a batch awaits between its
    # reads and its writes: one batch at a time.
    batch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    durable_acks: DurableAcks = field(init=False)
    batch_sinks: list[BatchSink] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "durable_acks", DurableAcks(self.faust_app))

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
            broker_session_timeout=DEV_SESSION_TIMEOUT_SECONDS,
            broker_heartbeat_interval=1.0,
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
    refuse_offset_gaps()
    if settings.eager_delivery:
        deliver_records_eagerly()
    if settings.use_dev_broker_profile:
        adapt_to_embedded_broker()
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
    monitor = setup_faust_sensors(app, metrics.registry)

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
    customer_state: faust.Table[bytes, bytes] = faust.Table(
        app,
        name="customer-state",
        beacon=app.tables.beacon,
        # Raw customer_id bytes. Values are written through CustomerTable, whose
        # ChangelogBatches puts a customer's record on the key's murmur2 partition, as
        # the by-customer topic's; Faust's own per-key changelog path is not used.
        # The types as well as the schema: Faust derives the changelog topic's (and
        # so table recovery's) serializers from key_type/value_type.
        key_type=bytes,
        value_type=bytes,
        schema=faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        ),
        partitions=settings.topic_partitions,
        help="Per-customer rules state and behaviour profile, by customer_id.",
    )
    app.tables.add(customer_state)
    tz = ZoneInfo(settings.bank_timezone)
    built = AmlwatchApp(
        faust_app=app,
        settings=settings,
        metrics=metrics,
        transactions_topic=transactions_topic,
        dead_letter_topic=dead_letter_topic,
        by_customer_topic=by_customer_topic,
        alerts_topic=alerts_topic,
        reports_topic=reports_topic,
        customer_table=CustomerTable(
            customer_state,
            tz,
            ChangelogBatches(
                lambda: app.producer._ensure_producer(),  # type: ignore[attr-defined]
                customer_state.changelog_topic.get_topic_name(),
                settings.topic_partitions,
            ),
            decoded_kept=settings.decoded_records_kept,
        ),
        engine=engine,
        customers=customers,
        live_model=LiveModel(settings.model_registry, metrics),
        behaviour=BehaviourTracker.from_reference(engine.reference),
        faust_monitor=monitor,
    )
    # Computed when scraped: the table changes on every batch and by recovery.
    metrics.table_entries.set_function(built.customer_table.entries)
    metrics.table_bytes.set_function(built.customer_table.encoded_bytes)
    _register_agents(built)
    _register_pages(built)
    _register_timers(built)
    return built


def _register_agents(built: AmlwatchApp) -> None:
    app, settings, metrics = built.faust_app, built.settings, built.metrics

    async def dead_letter(
        event: EventT, reason: str, message: str, field: str | None
    ) -> Awaitable[Any]:
        delivery = await send_dead_letter(
            built.dead_letter_topic, event, reason=reason, message=message, field=field
        )
        metrics.dead_lettered.labels(reason=reason).inc()
        return delivery

    async def rekey(event: EventT, tx: Transaction) -> Awaitable[Any]:
        source = event.message
        delivery = await built.by_customer_topic.send(
            key=tx.customer_id.encode(),
            value=tx.to_json_bytes(),
            # Record time = event time, so anything time-based downstream follows
            # the transaction's own clock, not the broker's.
            timestamp=tx.event_epoch,
            # Where it came from: a stretch re-forwarded after a crash carries the
            # same positions, and the customer's state recognises them.
            headers=[(SOURCE_POSITION_HEADER, f"{source.partition}:{source.offset}".encode())],
        )
        metrics.rekeyed.inc()
        return delivery

    @app.agent(built.transactions_topic, name=f"{settings.app_id}.apply_rules")
    async def apply_rules(stream: faust.StreamT[bytes]) -> None:
        partitions = await _partitions_processed_in_place(built)
        watch = watch_stream_offsets(app, stream, metrics.offset_jumps)
        here = HeldBatch()
        async with agent_batches(
            stream, built.faust_monitor, max_events=TAKE_MAX_EVENTS, within=BATCH_WAIT_SECONDS
        ) as batches:
            async for batch in batches:
                passed_on = PassedOn()  # dead-lettered or re-keyed: acknowledged once delivered
                for event in batch:
                    if not (watch.in_order(event) or await watch.admit(event)):
                        continue
                    source = event.message
                    try:
                        tx = decode_transaction(source.value, max_bytes=settings.max_message_bytes)
                    except InvalidTransaction as exc:
                        passed_on.add(
                            event,
                            await dead_letter(event, exc.reason.value, exc.message, exc.field),
                        )
                        continue
                    except Exception as exc:
                        log.exception("unexpected error decoding offset %s", source.offset)
                        passed_on.add(
                            event,
                            await dead_letter(event, UNEXPECTED_REASON, type(exc).__name__, None),
                        )
                        continue
                    key = tx.customer_id.encode()
                    if (
                        partitions
                        and source.key == key
                        and source.partition == partition_of(key, partitions)
                    ):
                        position = (f"in-place-{source.partition}", source.offset)
                        here.add(Received(event, tx, position))
                    else:
                        passed_on.add(event, await rekey(event, tx))
                if here.due(taken=len(batch), queued=_queued_for(stream)):
                    await _apply_batch(built, here.take(), dead_letter)
                await passed_on.hold(built.durable_acks)

    @app.agent(built.by_customer_topic, name=f"{settings.app_id}.apply_rekeyed_rules")
    async def apply_rekeyed_rules(stream: faust.StreamT[bytes]) -> None:
        watch = watch_stream_offsets(app, stream, metrics.offset_jumps)
        received = HeldBatch()
        async with agent_batches(
            stream, built.faust_monitor, max_events=TAKE_MAX_EVENTS, within=BATCH_WAIT_SECONDS
        ) as batches:
            async for batch in batches:
                passed_on = PassedOn()
                for event in batch:
                    if not (watch.in_order(event) or await watch.admit(event)):
                        continue
                    try:
                        tx = decode_transaction(
                            event.message.value, max_bytes=PRODUCER_MAX_REQUEST_BYTES
                        )
                    except InvalidTransaction as exc:
                        # Only a foreign producer writing to our internal topic gets here.
                        passed_on.add(
                            event,
                            await dead_letter(event, exc.reason.value, exc.message, exc.field),
                        )
                        continue
                    received.add(Received(event, tx, _rekeyed_position(event)))
                if received.due(taken=len(batch), queued=_queued_for(stream)):
                    await _apply_batch(built, received.take(), dead_letter)
                await passed_on.hold(built.durable_acks)


def _queued_for(stream: faust.StreamT[bytes]) -> int:
    """Events delivered to the stream's channel and not taken yet (Faust's stream buffer)."""
    # StreamT types its channel as a plain async iterator; it is the agent's Channel.
    return int(stream.channel.queue.qsize())  # type: ignore[attr-defined]


async def _partitions_processed_in_place(built: AmlwatchApp) -> int:
    """The transactions topic's partition count if its partitions line up with the
    table's, else 0 (then every transaction is re-keyed).

    Faust assigns partition *n* of topics with equal partition counts to one worker,
    so a transaction on the partition its customer_id hashes to meets that customer's
    table entry only when the counts are equal.
    """
    producer = built.faust_app.producer._ensure_producer()  # type: ignore[attr-defined]
    found = await producer.partitions_for(built.transactions_topic.get_topic_name())
    table_partitions = built.settings.topic_partitions
    if len(found) != table_partitions:
        log.warning(
            "the transactions topic has %d partitions, the customer table %d: every "
            "transaction takes the re-keying hop",
            len(found),
            table_partitions,
        )
        return 0
    return table_partitions


async def _apply_batch(
    built: AmlwatchApp, batch: Sequence[Received], dead_letter: DeadLetter
) -> None:
    """One batch at a time, whichever agent it comes from (see ``batch_lock``); its input
    is acknowledged once its writes are durable, while the next batch is processed.
    Each event holds the reference ``HeldBatch.add`` took."""
    built.metrics.batch_size.observe(len(batch))
    events = [item.event for item in batch]
    try:
        async with built.batch_lock:
            applied, durable = await _apply_batch_alone(built, batch, dead_letter)
    except BaseException:
        release_events(events)  # as before: the agent crashes, Faust acknowledges the batch
        raise
    await built.durable_acks.hold(events, durable, partial(_count_processed, built, applied))


def _count_processed(
    built: AmlwatchApp, applied: Sequence[tuple[Transaction, ProcessResult]]
) -> None:
    metrics, done = built.metrics, time.time()
    observe = metrics.latency.observe
    duplicates = 0
    for tx, result in applied:
        if result.duplicate:
            duplicates += 1
        else:
            observe(max(0.0, done - tx.event_epoch))
    # Once per batch: each increment takes the counter's lock.
    if duplicates:
        metrics.duplicates.inc(duplicates)
    if len(applied) > duplicates:
        metrics.processed.inc(len(applied) - duplicates)


class HeldBatch:
    """The transactions an agent received and has not processed yet: a taken batch's, or
    on a backlog several taken batches' (see ``BACKLOG_TAKEN_EVENTS``), processed as one.

    A taken batch's events are acknowledged when the agent asks for the next one; the
    reference each takes here keeps it from counting towards a commit until its batch's
    writes are durable (``DurableAcks`` releases it).
    """

    def __init__(self) -> None:
        self.items: list[Received] = []

    def add(self, item: Received) -> None:
        item.event.message.incref()
        self.items.append(item)

    def due(self, *, taken: int, queued: int) -> bool:
        """Whether to process what is held, given the size of the batch just taken and
        the events queued for the stream: yes, unless that batch says the input is behind,
        more is queued and one more batch still fits. Only with events queued is the next
        batch sure to come at once: ``take_batches`` yields nothing while nothing arrives,
        and a held batch must not wait for the next transaction."""
        if not self.items:
            return False
        behind = taken >= BACKLOG_TAKEN_EVENTS and queued > 0
        return not behind or len(self.items) + TAKE_MAX_EVENTS > BATCH_MAX_EVENTS

    def take(self) -> list[Received]:
        items, self.items = self.items, []
        return items


class PassedOn:
    """A batch's messages handed on to another topic (dead-lettered, or re-keyed to the
    by-customer topic) and the deliveries of what was sent for them.

    A batch's events are acknowledged when the agent asks for the next batch, and Faust's
    commit flushes the producer only as far as its buffer queue is empty: a message
    acknowledged while its forward is in flight is lost if the worker dies then. Each
    is held (one more reference) until its forward is delivered.
    """

    def __init__(self) -> None:
        self.events: list[EventT] = []
        self.deliveries: list[Awaitable[Any]] = []

    def add(self, event: EventT, delivery: Awaitable[Any]) -> None:
        event.message.incref()
        self.events.append(event)
        self.deliveries.append(delivery)

    async def hold(self, acks: DurableAcks) -> None:
        """Acknowledge the events once every delivery is done (after earlier batches)."""
        if self.events:
            await acks.hold(self.events, asyncio.gather(*self.deliveries))


class DurableAcks:
    """Acknowledges each batch's input once its writes are durable, batch after batch.

    A batch's writes take a database commit (kept transactions) and a broker round trip
    (its detections; its changed records, once the next flush of staged records writes
    them, within ``RECORD_FLUSH_SECONDS``). The worker processes the next batches
    meanwhile instead of waiting: on a live stream, at a steady 1,000 tx/s, that took
    the case latency p99 from about 3.7 s to 0.9 s here. A backlog is not waited for
    either: its full batches share one flush of staged records like any others, so a
    customer busy across them is encoded once per flush, not once per batch (full
    batches of about 490, 1,000 customers, stream bench: 3,083-3,352 tx/s when each full
    batch was flushed and waited for, 3,510-4,005 without). At most ``DURABLE_BATCHES_IN_FLIGHT``
    batches wait at once. A batch whose
    writes fail is never acknowledged; the worker stops, and its successor reads the
    batch again (the customer state recognises what it already applied).
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._in_flight: deque[asyncio.Task[None]] = deque()

    async def hold(
        self,
        events: Sequence[EventT],
        durable: asyncio.Future[Any],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Acknowledge ``events`` (each holding one extra reference) and call ``then``, if
        given, when ``durable`` is done and every earlier batch was acknowledged."""
        previous = self._in_flight[-1] if self._in_flight else None
        self._in_flight.append(
            asyncio.ensure_future(self._acknowledge(events, durable, then, previous))
        )
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft()
        if len(self._in_flight) > DURABLE_BATCHES_IN_FLIGHT:
            await asyncio.shield(self._in_flight[0])

    async def _acknowledge(
        self,
        events: Sequence[EventT],
        durable: asyncio.Future[Any],
        then: Callable[[], None] | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        try:
            await _until_durable(len(events), durable)
            if previous is not None:
                await previous
        except asyncio.CancelledError:
            return  # the worker is stopping: the batch is read again after a restart
        except BaseException as exc:
            log.critical("a batch's writes failed; stopping so it is read again: %r", exc)
            await self.app.crash(exc)
            raise
        release_events(events)
        if then is not None:
            then()


async def _apply_batch_alone(
    built: AmlwatchApp, batch: Sequence[Received], dead_letter: DeadLetter
) -> tuple[list[tuple[Transaction, ProcessResult]], asyncio.Future[Any]]:
    """Rules per transaction, the batch's anomaly scores, detections out, then records
    staged (flushed when a flush is due); what was applied, and a future done when the
    batch's writes are durable."""
    table, metrics = built.customer_table, built.metrics
    model = built.live_model.current  # one version per batch: a reload swaps between batches
    detecting = BatchDetection(
        built.engine,
        built.behaviour,
        built.customers.get,
        table.get,
        table.tz,
        scoring=model is not None,
    )
    working, applied = detecting.working, detecting.applied  # records read once, staged once
    deliveries: list[Awaitable[Any]] = []  # of the detections and dead letters sent
    try:
        for item in batch:
            try:
                detecting.apply(item.tx, item.position)
            except InvalidInput as exc:
                # Valid by contract but not processable here, e.g. no rate for its currency.
                deliveries.append(
                    await dead_letter(item.event, NO_REFERENCE_DATA_REASON, str(exc), None)
                )
        anomalies: dict[str, Detection] = {}
        to_score = detecting.to_score
        if model is not None and len(to_score):
            # The forest call is CPU-bound: off the event loop, so heartbeats and the
            # web port stay responsive.
            found = await asyncio.to_thread(to_score.detections, model, table.tz)
            anomalies = detecting.take_anomalies(found)
            metrics.scored.inc(len(to_score))
        sent: list[Detection] = []
        for tx, result in applied:
            detections = result.detections
            if tx.tx_id in anomalies and not result.duplicate:
                detections = (*detections, anomalies[tx.tx_id])
            deliveries += await _emit(built, detections, counted=not result.duplicate)
            sent += detections
        stored = table.stage(
            {customer_id: working[customer_id] for customer_id in detecting.changed},
            after=deliveries,
        )
        if table.flush_due():
            table.flush()
        # Acknowledged once its detections and dead letters are delivered, its records
        # are in the changelog and its transactions and detections kept (redelivered
        # ones too: keeping is idempotent).
        rates = built.engine.reference.rates
        kept_transactions = [_with_amounts(tx, result, rates) for tx, result in applied]
        durable = asyncio.gather(
            stored, *deliveries, *(keep(kept_transactions, sent) for keep in built.batch_sinks)
        )
    except BaseException as exc:
        # Records changed in place but not (all) staged, and earlier batches' staged
        # changes to them: drop every staged record unwritten, so no batch that staged
        # one is acknowledged, and re-read them next time.
        table.abandon_staged(exc)
        for customer_id in working:
            table.forget(customer_id)
        raise
    return applied, durable


def _with_amounts(tx: Transaction, result: ProcessResult, rates: RateTable) -> StoredTransaction:
    """``tx`` with its CNY and USD amounts: the rules' event's, or for a redelivery (which
    the rules did not apply again) converted here."""
    event = result.event
    if event is None:
        return StoredTransaction(
            tx, rates.to_cny(tx.amount, tx.currency), rates.to_usd(tx.amount, tx.currency)
        )
    return StoredTransaction(tx, event.amount_cny, event.amount_usd)


async def _until_durable(size: int, durable: asyncio.Future[Any]) -> None:
    """Wait for a batch's writes; say so in the log while they take unusually long.

    The wait has no deadline (giving up would acknowledge a batch whose state may be
    lost), so a stuck broker or case store must at least show where the worker waits.
    """
    waited = 0.0
    while True:
        try:
            await asyncio.wait_for(asyncio.shield(durable), SLOW_DURABILITY_SECONDS)
            return
        except TimeoutError:
            waited += SLOW_DURABILITY_SECONDS
            log.warning(
                "a batch of %d has waited %.0fs for its changelog writes and case-store "
                "keep; still waiting",
                size,
                waited,
            )


def _rekeyed_position(event: EventT) -> Position | None:
    """("rekeyed-<source partition>", offset) from the re-keying hop's header, if present."""
    headers = event.message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == SOURCE_POSITION_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            partition, _, offset = text.partition(":")
            return f"rekeyed-{partition}", int(offset)
    return None


async def _emit(
    built: AmlwatchApp, detections: tuple[Detection, ...], *, counted: bool
) -> list[Awaitable[Any]]:
    """Send detections to their topic (reports and alerts go separate ways); their
    deliveries."""
    deliveries = []
    for detection in detections:
        topic = built.reports_topic if detection.outcome is Outcome.REPORT else built.alerts_topic
        delivery = await topic.send(
            key=detection.customer_id.encode(),
            value=json.dumps(detection.to_dict(), ensure_ascii=False).encode(),
        )
        if counted:
            built.metrics.detections.labels(
                rule_id=detection.detector,
                outcome=detection.outcome.value,
                severity=detection.severity.value,
            ).inc()
        deliveries.append(delivery)
    return deliveries


def _register_timers(built: AmlwatchApp) -> None:
    app = built.faust_app

    @app.timer(interval=RECORD_FLUSH_QUIET_SECONDS)
    async def flush_staged_records() -> None:
        # The flush of a quiet stream's last batches, and of those waited for by a
        # rebalance (Faust waits until every message taken is acknowledged); a busy
        # stream's batches flush when one is staged past its time or count.
        table = built.customer_table
        if table.flush_due():
            async with built.batch_lock:
                table.flush()

    @app.timer(interval=RESEEK_SECONDS)
    async def reread_skipped_offsets() -> None:
        # An exception escaping a Faust timer stops the worker: contain it.
        try:
            await seek_again_where_stalled()
        except Exception:
            log.exception("seeking back to skipped offsets failed; trying again")

    @app.timer(interval=CUSTOMERS_REFRESH_SECONDS)
    async def refresh_customers() -> None:
        # An exception escaping a Faust timer stops the worker: contain it.
        try:
            await asyncio.to_thread(built.customers.refresh)
        except Exception:
            log.exception("refreshing the customers file failed; keeping the previous one")

    @app.timer(interval=built.settings.model_poll_seconds)
    async def follow_active_model() -> None:
        try:
            await built.live_model.refresh()
        except Exception:
            log.exception("checking the model registry failed; the current model keeps scoring")


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
            table = built.customer_table
            items = [(wanted, table.get(wanted))] if wanted else table.items()
            body = {
                customer_id: {
                    "transactions": record.rules.transactions,
                    "last_event_at": record.rules.last_event_at,
                    "transactions_retained": len(record.rules.events),
                    "profile_transactions": record.profile.transactions,
                }
                for customer_id, record in items
                if record is not None
            }
            return self.bytes(json.dumps(body).encode(), content_type="application/json")
