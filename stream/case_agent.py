"""Detections -> cases: the worker side of the case store.

The rules agents hand each batch's transactions and the detections it sent to
:func:`register_case_agents`'s sink and wait for it before acknowledging the batch. The
sink keeps the transactions (cases and reports list them) and stores the detections as
cases and report records in one database transaction, in the store's writer thread (the
store is blocking SQLAlchemy and must stay off Faust's event loop). A case is then
committed with the batch that raised it: no broker hop and no second consumer between a
transaction and its case.

The ``alerts`` and ``large-value-reports`` topics are still read, in small batches: for
detections other producers write there, and as the fallback for a batch whose
detections the store refused (they are then stored one at a time, and a refused one
dead-lettered with its reason). The worker's own detections come back on them already
stored and change nothing.

Storing is idempotent on the detection id, so a batch redelivered after a crash or a
rebalance changes nothing and notifies nobody twice: only what a batch newly opened or
joined is announced.

A timer moves overdue cases up (supervisor, then compliance) and announces each move;
another refreshes the report backlog gauges (overdue and pending records per kind).
Notifications go through a bounded dispatcher: a slow or dead webhook never holds up
the stream, it only shows in the notification metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import faust
from faust.types import EventT
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from alerts.cases import IngestResult, ingest_detections
from alerts.deadlines import OverdueEscalation, escalate_overdue
from alerts.notify import (
    CaseEvent,
    CaseNotice,
    EmailNotifier,
    NotificationDispatcher,
    Notifier,
    WebhookNotifier,
)
from alerts.reports import ReportGauges, record_decided_reports
from alerts.routing import COMPLIANCE_QUEUE, MANAGER_QUEUE, manager_email
from alerts.transactions import StoredTransaction, store_transactions
from core.detection import Detection
from core.errors import AmlwatchError
from core.settings import Settings
from stream.case_store import CaseStore
from stream.dead_letter import send_dead_letter
from stream.event_batches import agent_batches
from stream.offsets import watch_stream_offsets

if TYPE_CHECKING:
    from stream.app import AmlwatchApp

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# The worker's own detections are stored by their rules batch (CaseWriter.keep_batch);
# these agents store only what other producers write, which no latency target covers:
# a batch waits this long after its first detection for more to join it.
BATCH_WITHIN_SECONDS = 0.1
INVALID_DETECTION_REASON = "invalid_detection"
STORE_RETRY_FIRST_SECONDS = 0.5
STORE_RETRY_MAX_SECONDS = 30.0
REPORT_METRICS_SECONDS = 60.0
# What the store refuses as such, which trying again would only repeat: its own checks,
# and the database's refusal of a value (too long for its column, a missing field).
# Anything else (the database unreachable, a lock timeout) is retried.
REFUSALS = (AmlwatchError, DataError, IntegrityError)
# Ids of the detections the rules batches stored lately, kept to recognise them when
# their topics bring them back (within seconds) without a database round trip each.
RECENTLY_STORED_KEPT = 10_000


@dataclass(frozen=True)
class CaseMetrics:
    stored: Counter
    escalated: Counter
    store_failures: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CaseMetrics:
        """Register the case metrics beside the stream's own."""
        return cls(
            stored=Counter(
                "amlwatch_detections_stored",
                "Detections stored in the case store, by outcome and what storing did "
                "(opened, joined, report, duplicate).",
                ["outcome", "result"],
                registry=registry,
            ),
            escalated=Counter(
                "amlwatch_cases_escalated_overdue",
                "Cases moved up because a deadline passed, by level "
                "(1: supervisor, 2: compliance).",
                ["level"],
                registry=registry,
            ),
            store_failures=Counter(
                "amlwatch_case_store_failures",
                "Attempts to store a batch of detections that failed (retried until stored).",
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class WaitingBatch:
    """A rules batch handed to :meth:`CaseWriter.keep_batch`, waiting for the writer."""

    transactions: Sequence[StoredTransaction]
    detections: Sequence[Detection]
    kept: asyncio.Future[None]  # done when its transactions and detections are committed


@dataclass(frozen=True, slots=True)
class StoredDetection:
    detection: Detection
    result: IngestResult


@dataclass(frozen=True, slots=True)
class StoredBatch:
    new_transactions: int
    detections: list[StoredDetection]


def store_batch(
    store: CaseStore, transactions: Sequence[StoredTransaction], detections: Sequence[Detection]
) -> StoredBatch:
    """Keep the transactions and store the detections, in one database transaction
    (blocking: call it in a worker thread): how many transactions were new and what
    storing did with each detection."""
    with store.session_scope() as session:
        new_transactions = store_transactions(session, transactions)
        # After the transactions: an alert's received_at is then about its commit time.
        now = datetime.now(UTC)
        results = (
            ingest_detections(session, detections, now=now, calendar=store.calendar)
            if detections
            else []
        )
    return StoredBatch(
        new_transactions,
        [
            StoredDetection(detection, result)
            for detection, result in zip(detections, results, strict=True)
        ],
    )


def escalate_due_cases(store: CaseStore) -> list[OverdueEscalation]:
    """Move every overdue case one level up (blocking: call it in a worker thread)."""
    with store.session_scope() as session:
        return escalate_overdue(
            session, now=datetime.now(UTC), calendar=store.calendar, policy=store.policy
        )


def refresh_report_metrics(store: CaseStore, gauges: ReportGauges) -> dict[str, int]:
    """Record newly decided STRs, then set the report gauges; overdue records per kind
    (blocking: call it in a worker thread)."""
    now, policy = datetime.now(UTC), store.policy
    with store.session_scope() as session:
        # An approved case is an STR record from then on: it counts (and can fall
        # overdue) before anyone exports it.
        record_decided_reports(
            session,
            now=now,
            calendar=store.calendar,
            tz=policy.timezone,
            working_days=policy.str_working_days,
        )
        return gauges.refresh(session, today=now.astimezone(policy.timezone).date())


def ingest_notice(stored: StoredDetection) -> CaseNotice | None:
    """What to announce about one stored detection: a new case, or an alert joining one."""
    result, detection = stored.result, stored.detection
    if result.duplicate or result.case_id is None or not (result.created or result.joined):
        return None
    return CaseNotice(
        event=CaseEvent.OPENED if result.created else CaseEvent.JOINED,
        case_id=str(result.case_id),
        customer_id=detection.customer_id,
        manager_id=result.routed_to,
        queue=MANAGER_QUEUE if result.routed_to is not None else COMPLIANCE_QUEUE,
        severity=detection.severity,
        escalation_level=0,
        reasons=tuple(detection.reasons),
        occurred_at=datetime.now(UTC),
    )


def escalation_notice(moved: OverdueEscalation) -> CaseNotice:
    """What to announce about a case moved up because a deadline passed."""
    return CaseNotice(
        event=CaseEvent.ESCALATED,
        case_id=str(moved.case_id),
        customer_id=moved.customer_id,
        manager_id=moved.to_assignee_id,
        queue=moved.queue,
        severity=moved.severity,
        escalation_level=moved.level,
        reasons=(moved.reason,),
        occurred_at=datetime.now(UTC),
    )


def build_dispatcher(
    settings: Settings, store: CaseStore, registry: CollectorRegistry
) -> NotificationDispatcher | None:
    """The notification channels the settings configure; None when there are none."""
    notifiers: list[Notifier] = []
    if settings.webhook_url is not None and settings.webhook_secret is not None:
        notifiers.append(
            WebhookNotifier(
                settings.webhook_url,
                settings.webhook_secret.get_secret_value(),
                registry=registry,
            )
        )
    if settings.smtp_host is not None and settings.smtp_sender is not None:

        def recipient_for(manager_id: str) -> str | None:
            with store.session_scope() as session:
                return manager_email(session, manager_id=manager_id)

        notifiers.append(
            EmailNotifier(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_sender,
                starttls=settings.smtp_starttls,
                recipient_for=recipient_for,
                registry=registry,
            )
        )
    if not notifiers:
        return None
    return NotificationDispatcher(notifiers, registry=registry)


class CaseWriter:
    """Puts a worker's transactions and detections into the case store and announces what
    they opened or joined (metrics, notifications)."""

    def __init__(
        self,
        store: CaseStore,
        case_metrics: CaseMetrics,
        dispatcher: NotificationDispatcher | None,
    ) -> None:
        self.store = store
        self.case_metrics = case_metrics
        self.dispatcher = dispatcher
        self._recently_stored: dict[str, None] = {}  # in the order stored
        # Rules batches that came while the writer was busy, committed together next.
        self._waiting: list[WaitingBatch] = []
        self._writing: asyncio.Task[None] | None = None

    async def keep_batch(
        self, kept: Sequence[StoredTransaction], detections: Sequence[Detection]
    ) -> None:
        """A rules batch's sink: its transactions (with the amounts the rules converted
        them to) and detections in one database transaction.

        The rules agents await it with every batch before acknowledging the batch: the
        case store then holds every transaction a case or report can refer to, and the
        batch's cases. Batches that come while the writer is busy with an earlier one
        wait for it and are then committed together (a group commit): a commit with its
        lookups costs several milliseconds whatever its size, and at a live stream's
        small batches they had taken a fifth of the worker's core.
        """
        if not kept and not detections:
            return
        waiting = WaitingBatch(kept, detections, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._write_waiting())
        await waiting.kept

    async def _write_waiting(self) -> None:
        """Commit the waiting batches, all that waited at once, until none is left."""
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await self._keep_together(group)
            except asyncio.CancelledError:
                # The worker is stopping: nothing waiting is committed now.
                for waiting in (*group, *self._waiting):
                    waiting.kept.cancel()
                self._waiting = []
                raise
            except Exception as exc:
                for waiting in group:
                    if not waiting.kept.done():
                        waiting.kept.set_exception(exc)

    async def _keep_together(self, group: Sequence[WaitingBatch]) -> None:
        kept = [item for waiting in group for item in waiting.transactions]
        detections = [detection for waiting in group for detection in waiting.detections]
        try:
            stored = await self._until_done(partial(store_batch, self.store, kept, detections))
        except REFUSALS as exc:
            if len(group) > 1:
                # One batch's detections refused the whole group: each batch on its
                # own, so only that one leaves its detections to their topics.
                for waiting in group:
                    await self._keep_together((waiting,))
                return
            # Their topics bring the detections again: stored one at a time there, and
            # a refused one dead-lettered with its reason. Keep the transactions now.
            log.warning(
                "the case store refused a batch's %d detections (%s); storing them from "
                "their topics",
                len(detections),
                refusal_text(exc),
            )
            await self._until_done(partial(store_batch, self.store, kept, ()))
        else:
            # Duplicates here are redeliveries (a batch again after a crash or rebalance).
            self._announce(stored.detections, count_duplicates=True)
            recent = self._recently_stored
            recent.update((item.detection.detection_id, None) for item in stored.detections)
            while len(recent) > RECENTLY_STORED_KEPT:
                del recent[next(iter(recent))]
        for waiting in group:
            if not waiting.kept.done():  # its caller may have given up (cancelled)
                waiting.kept.set_result(None)

    async def store_received(self, detections: Sequence[Detection]) -> dict[int, Exception]:
        """Detections read from their topics; the refused ones (by index) and why.

        The worker's own, stored by their rules batch a moment ago, are passed over.
        """
        recent = self._recently_stored
        indexes = [i for i, d in enumerate(detections) if d.detection_id not in recent]
        if not indexes:
            return {}
        pending = [detections[i] for i in indexes]
        try:
            stored = await self._until_done(partial(store_batch, self.store, (), pending))
            done = stored.detections
            refused: dict[int, Exception] = {}
        except REFUSALS:
            # The store refused something in the batch: find it, keep the rest.
            done, refused = [], {}
            for index, detection in zip(indexes, pending, strict=True):
                try:
                    one = await self._until_done(partial(store_batch, self.store, (), [detection]))
                except REFUSALS as exc:
                    refused[index] = exc
                else:
                    done += one.detections
        # The worker's own detections were stored with their rules batch and come back
        # on the topics as duplicates: counted there, not again.
        self._announce(done, count_duplicates=False)
        return refused

    def _announce(self, stored: Sequence[StoredDetection], *, count_duplicates: bool) -> None:
        for item in stored:
            if item.result.duplicate and not count_duplicates:
                continue
            self.case_metrics.stored.labels(
                outcome=item.detection.outcome.value, result=_result_label(item.result)
            ).inc()
            notice = ingest_notice(item)
            if notice is not None and self.dispatcher is not None:
                self.dispatcher.submit(notice)

    async def _until_done(self, write: Callable[[], StoredBatch]) -> StoredBatch:
        """Run ``write`` on the store, retrying while the store is unreachable.

        Giving up would lose the batch (a taken batch is acknowledged even when its
        agent raises, as Faust's ``take_events`` does), so the stream waits for the
        database to come back instead. A refusal (``REFUSALS``) would only repeat: it is raised.
        """
        delay = STORE_RETRY_FIRST_SECONDS
        while True:
            try:
                return await self.store.run(write)
            except REFUSALS:
                raise
            except Exception:
                self.case_metrics.store_failures.inc()
                log.exception("storing a batch failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_SECONDS)


def register_case_agents(
    built: AmlwatchApp,
    store: CaseStore,
    dispatcher: NotificationDispatcher | None,
    *,
    escalation_check_seconds: float,
) -> None:
    """The rules batches' sink into the case store, agents that store detections arriving
    on their topics, and the escalation and report-gauge timers."""
    app, metrics = built.faust_app, built.metrics
    case_metrics = CaseMetrics.create(metrics.registry)
    writer = CaseWriter(store, case_metrics, dispatcher)

    async def dead_letter(event: EventT, message: str) -> None:
        delivery = await send_dead_letter(
            built.dead_letter_topic,
            event,
            reason=INVALID_DETECTION_REASON,
            message=message,
            field=None,
        )
        metrics.dead_lettered.labels(reason=INVALID_DETECTION_REASON).inc()
        # The batch is acknowledged when the agent asks for the next one: the dead
        # letter must be delivered by then (rare: a detection the store refuses).
        await delivery

    async def store_from_topic(stream: faust.StreamT[bytes]) -> None:
        watch = watch_stream_offsets(app, stream, metrics.offset_jumps)
        async with agent_batches(
            stream, built.faust_monitor, max_events=BATCH_SIZE, within=BATCH_WITHIN_SECONDS
        ) as batches:
            async for taken in batches:
                batch = [e for e in taken if watch.in_order(e) or await watch.admit(e)]
                events: list[EventT] = []
                detections: list[Detection] = []
                for event in batch:
                    try:
                        # A record without a value (a tombstone) is not JSON either.
                        detection = Detection.from_dict(json.loads(event.message.value or b""))
                    except (ValueError, KeyError, TypeError) as exc:
                        # Only a foreign producer on our topics gets here.
                        await dead_letter(event, f"not a detection: {type(exc).__name__}: {exc}")
                        continue
                    events.append(event)
                    detections.append(detection)
                if detections:
                    refused = await writer.store_received(detections)
                    for index, refusal in refused.items():
                        await dead_letter(
                            events[index], f"refused by the case store: {refusal_text(refusal)}"
                        )

    built.batch_sinks.append(writer.keep_batch)
    app.agent(built.alerts_topic, name=f"{built.settings.app_id}.store_alerts")(store_from_topic)
    app.agent(built.reports_topic, name=f"{built.settings.app_id}.store_reports")(store_from_topic)

    @app.timer(interval=escalation_check_seconds)
    async def escalate_overdue_cases() -> None:
        # An exception escaping a Faust timer stops the worker: contain it.
        try:
            moved = await store.run(escalate_due_cases, store)
        except Exception:
            log.exception("escalating overdue cases failed; trying again next interval")
            return
        for escalation in moved:
            case_metrics.escalated.labels(level=str(escalation.level)).inc()
            if dispatcher is not None:
                dispatcher.submit(escalation_notice(escalation))

    @app.timer(interval=REPORT_METRICS_SECONDS)
    async def refresh_report_gauges() -> None:
        # An exception escaping a Faust timer stops the worker: contain it.
        try:
            await store.run(refresh_report_metrics, store, metrics.reports)
        except Exception:
            log.exception("refreshing the report gauges failed; trying again next interval")

    if dispatcher is not None:
        running = dispatcher

        @app.service
        class Notifications(faust.Service):
            """Runs the dispatcher for as long as the worker runs."""

            async def on_start(self) -> None:
                await running.start()

            async def on_stop(self) -> None:
                await running.stop()


def refusal_text(refusal: Exception) -> str:
    """Why the store refused, without the statement and parameters a database error
    carries (customer data must not reach logs or dead-letter headers)."""
    if isinstance(refusal, DBAPIError):
        lines = str(refusal.orig).strip().splitlines()
        return f"{type(refusal).__name__}: {lines[0] if lines else 'refused'}"
    return str(refusal)


def _result_label(result: IngestResult) -> str:
    if result.duplicate:
        return "duplicate"
    if result.case_id is None:
        return "report"
    return "opened" if result.created else "joined"
