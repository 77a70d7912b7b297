"""Prometheus metrics of the stream. Labels stay low-cardinality: never customer data."""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, cast

import faust
from aiohttp.web import Response
from faust import web
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import MS_LATENCY_BUCKETS, FaustMetrics, PrometheusMonitor
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from alerts.reports import ReportGauges

THREAD_CPU_METRIC = "amlwatch_thread_cpu_seconds"
# The label of the CPU no live Python thread accounts for: native threads (a numerical
# library's) and threads that have ended.
OTHER_THREADS = "(other)"
_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

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
    latency: CountedHistogram
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
        metrics = cls(
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
            latency=CountedHistogram(
                "amlwatch_processing_latency_seconds",
                "Seconds from a transaction's event time to the end of its processing.",
                LATENCY_BUCKETS,
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
        registry.register(ThreadCpuCollector())
        return metrics


class BucketCounts:
    """A histogram's counts as plain numbers, turned into Prometheus series when scraped.

    A value goes into the first bucket whose upper bound is at or above it (Prometheus'
    rule) with one C bisect. prometheus_client's Histogram takes a lock and searches its
    buckets in Python for every value, about 0.6 us each here: the worker counts a value
    for every transaction, and Faust's sensor one for every event. Written from the event
    loop's thread only.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = (*(float(bound) for bound in bounds), float("inf"))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def add(self, value: float, count: int = 1) -> None:
        """``count`` observations of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The ``_bucket``, ``_count`` and ``_sum`` series of the counts so far."""
        family = HistogramMetricFamily(name, documentation)
        cumulative, buckets = 0, []
        for bound, count in zip(self.bounds, self.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        family.add_metric([], buckets, self.sum)
        return family


class CountedHistogram(Collector):
    """A histogram metric kept as :class:`BucketCounts` (``observe`` a value at a time);
    registered in ``registry``. Not reproduced: prometheus_client's ``_created`` sample."""

    def __init__(
        self, name: str, documentation: str, bounds: Sequence[float], *, registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation = name, documentation
        self.counts = BucketCounts(bounds)
        self.observe = self.counts.add
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield self.counts.family(self.name, self.documentation)

    def describe(self) -> list[Metric]:
        # The name the registry files this collector under (for /metrics?name[]=...).
        return list(self.collect())


class ThreadCpuCollector(Collector):
    """``amlwatch_thread_cpu_seconds_total{thread}``: the CPU each of the process's Python
    threads has used, by thread name, read from ``/proc`` when scraped (Linux; elsewhere
    nothing), and the rest of the process's CPU as ``(other)``.

    The worker's CPU is shared by threads that do different work: the event loop (rules,
    features, Faust's delivery), the case store's writer (``case-store_0``: SQLite and the
    ORM, which run partly without the GIL), the scoring calls (``asyncio_N``) and Faust's
    consumer thread. Whether a busy worker waits on its rules or on its database shows
    here, and a benchmark can split the worker's CPU the same way. Thread names are the
    code's, never data: the label stays low-cardinality.
    """

    def __init__(self) -> None:
        self._other_seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        named = 0.0
        for name, seconds in sorted(_python_thread_cpu_seconds().items()):
            family.add_metric([name], seconds)
            named += seconds
        process = os.times()
        # The process's and the threads' figures are read at slightly different moments
        # and rounded to clock ticks apart: never let the counter step back.
        self._other_seconds = max(self._other_seconds, process.user + process.system - named)
        family.add_metric([OTHER_THREADS], self._other_seconds)
        yield family

    def describe(self) -> list[Metric]:
        # The name the registry files this collector under (for /metrics?name[]=...).
        return [self._family()]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            THREAD_CPU_METRIC,
            "CPU seconds used by each Python thread of the process, by thread name; "
            f"'{OTHER_THREADS}' for native and ended threads.",
            labels=["thread"],
        )


def _python_thread_cpu_seconds() -> dict[str, float]:
    """User + system CPU seconds of each live Python thread, added up by name."""
    found: dict[str, float] = defaultdict(float)
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue  # not Linux, or the thread ended meanwhile
        # After the command name: state is field 3 of proc(5), utime 14 and stime 15.
        found[thread.name] += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_SECOND
    return dict(found)


class ScrapeTimePrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor with its per-message metrics read at scrape time.

    Faust's sensor writes ten Prometheus values for every message (received, active,
    per topic, per partition, events, active events, per stream, the runtime histogram,
    the partition's end offset, and the active count again on the way out), each under
    its lock, on top of the plain counters its base class (``Monitor``) keeps anyway:
    21 us a message measured here, about 4% of the worker's samples. This sensor keeps
    only the base class's counters and a plain-int runtime histogram per message, and
    a collector turns them into the same series, with the same names, labels and
    values, when /metrics is read. The series written less often (sends, commits,
    rebalances, tables) stay Faust's own.

    Faust's sensor drops its per-topic and per-partition series at each rebalance; the
    per-topic counts here restart from a snapshot taken then, and the per-partition
    offsets are the base class's, which it clears at the same moment. Not reproduced:
    the ``_created`` samples of the counters read at scrape time.
    """

    def __init__(self, registry: CollectorRegistry, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        metrics = self._metrics
        read_at_scrape = (
            metrics.messages_received,
            metrics.active_messages,
            metrics.messages_received_per_topics,
            metrics.messages_received_per_topics_partition,
            metrics.events_runtime_latency,
            metrics.total_events,
            metrics.total_active_events,
            metrics.total_events_per_stream,
            metrics.topic_partition_end_offset,
        )
        self.runtime_ms = BucketCounts(MS_LATENCY_BUCKETS)
        self.received_by_topic_at_rebalance: dict[str, int] = {}
        for metric in read_at_scrape:
            registry.unregister(metric)
        registry.register(_ScrapeTimeCollector(self))

    # The per-message hooks: the base class's bookkeeping only.
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        Monitor.on_message_in(self, tp, offset, message)

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        return Monitor.on_stream_event_in(self, tp, offset, stream, event)

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        Monitor.on_stream_event_out(self, tp, offset, stream, event, state)
        if state is not None:
            self._count_runtime(state["time_total"], 1)

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        Monitor.on_message_out(self, tp, offset, message)

    # A batch taken at once (stream.event_batches): the per-event hooks' counts, once.
    def on_stream_events_in(self, stream: Any, events: Sequence[Any]) -> float:
        """Count ``events`` into ``stream`` as ``on_stream_event_in`` would; the time
        they came in, for :meth:`on_stream_events_out`."""
        count = len(events)
        now = self.time()
        for event in events:
            self.stream_inbound_time[event.message.tp] = now
        stream_key = self.stream_lookup.get(stream)
        if stream_key is None:
            stream_key = self.stream_lookup[stream] = str(stream)
        task = stream.task_owner  # None for a stream made outside any task
        if task is not None:
            task_key = self.task_lookup.get(task)
            if task_key is None:
                task_key = self.task_lookup[task] = str(task)
            self.events_by_task[task_key] += count
        self.events_total += count
        self.events_by_stream[stream_key] += count
        self.events_active += count
        return now

    def on_stream_events_out(self, count: int, time_in: float) -> None:
        """``count`` events that came in at ``time_in`` are done."""
        runtime = self.time() - time_in
        self.events_active -= count
        self.events_runtime.extend(repeat(runtime, count))
        self._count_runtime(runtime, count)

    def _count_runtime(self, seconds: float, count: int) -> None:
        """``count`` events of ``seconds`` each into the runtime histogram."""
        self.runtime_ms.add(seconds * 1000.0, count)

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        Monitor.track_tp_end_offset(self, tp, offset)

    def _clear_partition_related_metrics(self) -> None:
        super()._clear_partition_related_metrics()
        self.received_by_topic_at_rebalance = dict(self.messages_received_by_topic)

    def families(self, prefix: str) -> Iterator[Metric]:
        """The per-message series as Faust's sensor would have written them."""
        messages = CounterMetricFamily(f"{prefix}_messages_received", "Total messages received")
        messages.add_metric([], self.messages_received_total)
        yield messages
        yield GaugeMetricFamily(
            f"{prefix}_active_messages", "Total active messages", value=self.messages_active
        )
        per_topic = CounterMetricFamily(
            f"{prefix}_messages_received_per_topic", "Messages received per topic", labels=["topic"]
        )
        before = self.received_by_topic_at_rebalance
        for topic, received in self.messages_received_by_topic.items():
            since_rebalance = received - before.get(topic, 0)
            if since_rebalance > 0:
                per_topic.add_metric([topic], since_rebalance)
        yield per_topic
        yield _per_partition_gauge(
            f"{prefix}_messages_received_per_topics_partition",
            "Messages received per topic/partition",
            self.tp_read_offsets,
        )
        yield self.runtime_ms.family(f"{prefix}_events_runtime_ms", "Events runtime in ms")
        events = CounterMetricFamily(f"{prefix}_total_events", "Total events received")
        events.add_metric([], self.events_total)
        yield events
        yield GaugeMetricFamily(
            f"{prefix}_total_active_events", "Total active events", value=self.events_active
        )
        by_label: dict[str, int] = defaultdict(int)
        for stream, key in list(self.stream_lookup.items()):
            by_label[f"stream.{self._stream_label(stream)}.events"] += self.events_by_stream[key]
        per_stream = CounterMetricFamily(
            f"{prefix}_total_events_per_stream", "Events received per Stream", labels=["stream"]
        )
        for label, count in by_label.items():
            per_stream.add_metric([label], count)
        yield per_stream
        yield _per_partition_gauge(
            f"{prefix}_topic_partition_end_offset",
            "Offset ends per topic/partition",
            self.tp_end_offsets,
        )


def _per_partition_gauge(name: str, documentation: str, offsets: Mapping[Any, int]) -> Metric:
    gauge = GaugeMetricFamily(name, documentation, labels=["topic", "partition"])
    for tp, offset in offsets.items():
        gauge.add_metric([tp.topic, str(tp.partition)], offset)
    return gauge


class _ScrapeTimeCollector(Collector):
    def __init__(self, monitor: ScrapeTimePrometheusMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        return self.monitor.families(FAUST_METRICS_PREFIX)

    def describe(self) -> list[Metric]:
        # The names the registry files this collector under: what /metrics?name[]=...
        # (a restricted registry) looks up.
        return list(self.collect())


def setup_faust_sensors(app: faust.App, registry: CollectorRegistry) -> ScrapeTimePrometheusMonitor:
    """Faust's own metrics (faust_*) on ``registry``, served with ours at /metrics; the
    app's monitor."""
    monitor = ScrapeTimePrometheusMonitor(
        registry, metrics=FaustMetrics.create(registry, FAUST_METRICS_PREFIX)
    )
    app.monitor = monitor

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

    return monitor
