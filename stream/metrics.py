"""Prometheus metrics of the stream. Labels stay low-cardinality: never customer data."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from alerts.reports import ReportGauges

# Event time to processed: seconds when live, hours or days when a backlog is replayed.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
NO_MODEL = "none"


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
