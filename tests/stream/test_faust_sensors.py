"""Faust's metrics read the same through the scrape-time sensor, also after a rebalance."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry

from stream.metrics import ScrapeTimePrometheusMonitor


@dataclass
class Message:
    time_in: float | None = None


class Owner:
    """A task owner (weakly referenced by the sensor)."""


@dataclass(eq=False)
class Stream:
    shortlabel: str
    task_owner: Owner = field(default_factory=Owner)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class Clock:
    """Runtimes of 1 ms to 12 s (every histogram bucket), the same for both sensors."""

    def __init__(self) -> None:
        self.now = 0.0
        self.steps = iter([0.001 * 3**n for n in range(10)] * 2)

    def __call__(self) -> float:
        self.now += next(self.steps, 0.5)
        return self.now


def feed(monitor: PrometheusMonitor, streams: list[Stream], rebalances: tuple[int, ...]) -> None:
    tps = [TP("in", 0), TP("in", 1), TP("out", 0)]
    for n in range(15):
        if n in rebalances:
            monitor._clear_partition_related_metrics()
        tp = tps[n % len(tps)]
        message = Message()
        monitor.on_message_in(tp, 100 + n, message)  # type: ignore[arg-type]
        monitor.track_tp_end_offset(tp, 200 + n)
        stream = streams[n % len(streams)]
        state = monitor.on_stream_event_in(tp, 100 + n, stream, object())  # type: ignore[arg-type]
        monitor.on_stream_event_out(tp, 100 + n, stream, object(), state)  # type: ignore[arg-type]
        if n % 4:  # some stay in flight: the active gauges are not all zero
            monitor.on_message_out(tp, 100 + n, message)  # type: ignore[arg-type]


def test_the_scrape_time_sensor_reads_what_fausts_writes() -> None:
    # Two streams with one label (their counts add up), one with another.
    streams = [Stream("Stream: apply_rules"), Stream("Stream: store_alerts")]
    streams.append(Stream("Stream: apply_rules"))
    ours, faust = CollectorRegistry(), CollectorRegistry()
    ours_monitor = ScrapeTimePrometheusMonitor(
        ours, metrics=FaustMetrics.create(ours, "faust"), time=Clock()
    )
    feed(ours_monitor, streams, (7, 11))
    feed(
        PrometheusMonitor(metrics=FaustMetrics.create(faust, "faust"), time=Clock()),
        streams,
        (7, 11),
    )
    expected = samples(faust)
    got = samples(ours)
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected)
    # After a rebalance the per-partition series hold the new offsets, not the old, and
    # the per-topic counts start again.
    assert got[("faust_topic_partition_end_offset", (("partition", "0"), ("topic", "in")))] == 212
    assert got[("faust_messages_received_per_topic_total", (("topic", "in"),))] == 2
    assert got[("faust_events_runtime_ms_bucket", (("le", "+Inf"),))] == 15


def test_a_restricted_read_finds_the_series_read_at_scrape_time() -> None:
    # How /metrics?name[]=... reads two series (the stream bench polls this way).
    registry = CollectorRegistry()
    monitor = ScrapeTimePrometheusMonitor(
        registry, metrics=FaustMetrics.create(registry, "faust"), time=Clock()
    )
    feed(monitor, [Stream("Stream: apply_rules")], ())
    wanted = ["faust_messages_received_per_topic_total", "faust_active_messages"]
    assert samples(registry.restricted_registry(wanted)) == {
        ("faust_messages_received_per_topic_total", (("topic", "in"),)): 10.0,
        ("faust_messages_received_per_topic_total", (("topic", "out"),)): 5.0,
        ("faust_active_messages", ()): 4.0,
    }
