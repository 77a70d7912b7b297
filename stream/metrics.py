"""Prometheus metrics of the stream. Labels stay low-cardinality: never customer data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import faust
from aiohttp.web import Response
from faust import web
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from alerts.reports import ReportGauges

# Event time to processed: seconds when live, hours or days when a backlog is replayed.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
NO_MODEL = "none"
FAUST_METRICS_PREFIX = "faust"


@dataclass(frozen=True)
class StreamMetrics:
    registry: CollectorRegistry
    processed: Counter
    dead_lettered: Counter
    duplicates: Counter
    rekeyed: Counter
    offset_jumps: Counter
    detections: Counter
    latency: Histogram
    batch_size: Histogram
    scored: Counter
    model: Info
    table_entries: Gauge
    table_bytes: Gauge
    # amlwatch_reports_overdue{kind} and amlwatch_reports_pending{kind} (the worker's
    # report timer sets them; the web app serves the same gauges).
    reports: ReportGauges

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> StreamMetrics:
        """Register the metrics in ``registry`` (a fresh one by default)."""
        registry = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=registry,
            processed=Counter(
                "amlwatch_transactions_processed",
                "Valid transactions applied to customer state.",
                registry=registry,
            ),
            dead_lettered=Counter(
                "amlwatch_transactions_dead_lettered",
                "Messages sent to the dead-letter topic, by reason category.",
                ["reason"],
                registry=registry,
            ),
            duplicates=Counter(
                "amlwatch_transactions_duplicate",
                "Redelivered transactions recognised by tx_id and skipped.",
                registry=registry,
            ),
            rekeyed=Counter(
                "amlwatch_transactions_rekeyed",
                "Transactions not keyed by customer_id, or not on that key's partition, "
                "sent through the re-keying topic (a producer to fix if it is most of them).",
                registry=registry,
            ),
            offset_jumps=Counter(
                "amlwatch_consumer_offset_jumps",
                "Times a partition's offsets jumped forward: records the consumer skipped.",
                ["topic"],
                registry=registry,
            ),
            detections=Counter(
                "amlwatch_detections",
                "Rule detections emitted, by rule, outcome (report/alert) and severity.",
                ["rule_id", "outcome", "severity"],
                registry=registry,
            ),
            latency=Histogram(
                "amlwatch_processing_latency_seconds",
                "Seconds from a transaction's event time to the end of its processing.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            batch_size=Histogram(
                "amlwatch_batch_size",
                "Transactions per micro-batch of rules and scoring.",
                buckets=BATCH_SIZE_BUCKETS,
                registry=registry,
            ),
            scored=Counter(
                "amlwatch_transactions_scored",
                "Transactions scored by the anomaly model (past their customer's warm-up).",
                registry=registry,
            ),
            model=Info(
                "amlwatch_anomaly_model",
                f"The anomaly model version scoring transactions ('{NO_MODEL}': rules only).",
                registry=registry,
            ),
            table_entries=Gauge(
                "amlwatch_customer_table_entries",
                "Customers in this worker's share of the customer table.",
                registry=registry,
            ),
            table_bytes=Gauge(
                "amlwatch_customer_table_bytes",
                "Encoded size of this worker's share of the customer table (rules state "
                "and behaviour profile per customer, as written to the changelog).",
                registry=registry,
            ),
            reports=ReportGauges.create(registry),
        )


class LabelCachingPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor, with the per-message label lookups done once.

    Faust's sensor looks up a labelled child (``labels(topic=..., partition=...)``, a
    lock and a tuple key each time) for every message received and every stream event,
    and normalises the stream's label string for every event: together about 3% of the
    worker's samples. The same metrics are written here through children kept per
    partition and per stream, forgotten whenever Faust clears the partition metrics
    (a rebalance), so no write goes to a child the registry no longer has.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received_children: dict[Any, tuple[Any, Any]] = {}
        self._end_offset_children: dict[Any, Any] = {}
        self._event_children: dict[Any, Any] = {}

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        Monitor.on_message_in(self, tp, offset, message)
        metrics = self._metrics
        metrics.messages_received.inc()
        metrics.active_messages.inc()
        children = self._received_children.get(tp)
        if children is None:
            children = self._received_children[tp] = (
                metrics.messages_received_per_topics.labels(topic=tp.topic),
                metrics.messages_received_per_topics_partition.labels(
                    topic=tp.topic, partition=tp.partition
                ),
            )
        children[0].inc()
        children[1].set(offset)

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        metrics = self._metrics
        metrics.total_events.inc()
        metrics.total_active_events.inc()
        child = self._event_children.get(stream)
        if child is None:
            child = self._event_children[stream] = metrics.total_events_per_stream.labels(
                stream=f"stream.{self._stream_label(stream)}.events"
            )
        child.inc()
        return state

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        Monitor.track_tp_end_offset(self, tp, offset)
        child = self._end_offset_children.get(tp)
        if child is None:
            child = self._end_offset_children[tp] = self._metrics.topic_partition_end_offset.labels(
                topic=tp.topic, partition=tp.partition
            )
        child.set(offset)

    def _clear_partition_related_metrics(self) -> None:
        super()._clear_partition_related_metrics()
        self._received_children.clear()
        self._end_offset_children.clear()
        self._event_children.clear()


def setup_faust_sensors(app: faust.App, registry: CollectorRegistry) -> None:
    """Faust's own metrics (faust_*) on ``registry``, served with ours at /metrics."""
    app.monitor = LabelCachingPrometheusMonitor(
        metrics=FaustMetrics.create(registry, FAUST_METRICS_PREFIX)
    )

    @app.page("/metrics")
    async def metrics_page(self: web.View, request: web.Request) -> web.Response:
        # ?name[]=<sample name>, repeated, as prometheus_client's own handler takes it:
        # a poller reading two counters does not make the worker write every series.
        # Faust types the query as a Mapping; aiohttp's is a MultiDict, with getall.
        names = request.query.getall("name[]", [])  # type: ignore[attr-defined]
        source = registry.restricted_registry(names) if names else registry
        # A header, not content_type=: aiohttp refuses a charset in that argument.
        return cast(
            web.Response,
            Response(body=generate_latest(source), headers={"Content-Type": CONTENT_TYPE_LATEST}),
        )
