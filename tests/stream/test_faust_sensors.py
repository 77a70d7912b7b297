"""Faust's metrics read the same through the label-caching sensor, also after a rebalance."""

from __future__ import annotations

from dataclasses import dataclass, field

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry

from stream.metrics import LabelCachingPrometheusMonitor


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


def feed(monitor: PrometheusMonitor, streams: list[Stream], rebalance_after: int) -> None:
    tps = [TP("in", 0), TP("in", 1), TP("out", 0)]
    for n in range(12):
        if n == rebalance_after:
            monitor._clear_partition_related_metrics()
        tp = tps[n % len(tps)]
        monitor.on_message_in(tp, 100 + n, Message())  # type: ignore[arg-type]
        monitor.track_tp_end_offset(tp, 200 + n)
        stream = streams[n % len(streams)]
        state = monitor.on_stream_event_in(tp, 100 + n, stream, object())  # type: ignore[arg-type]
        monitor.on_stream_event_out(tp, 100 + n, stream, object(), state)  # type: ignore[arg-type]


def test_the_caching_sensor_writes_what_fausts_writes() -> None:
    streams = [Stream("Stream: apply_rules"), Stream("Stream: store_alerts")]
    ours, faust = CollectorRegistry(), CollectorRegistry()
    feed(LabelCachingPrometheusMonitor(metrics=FaustMetrics.create(ours, "faust")), streams, 7)
    feed(PrometheusMonitor(metrics=FaustMetrics.create(faust, "faust")), streams, 7)
    expected = {k: v for k, v in samples(faust).items() if "runtime_ms_sum" not in k[0]}
    got = {k: v for k, v in samples(ours).items() if "runtime_ms_sum" not in k[0]}
    assert got == expected
    # After the rebalance the per-partition series hold the new offsets, not the old.
    assert got[("faust_topic_partition_end_offset", (("partition", "0"), ("topic", "in")))] == 209
