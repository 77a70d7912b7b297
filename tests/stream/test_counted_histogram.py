"""The worker's latency histogram reads as prometheus_client's own Histogram would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream.metrics import LATENCY_BUCKETS, CountedHistogram

# Below, on and between the bounds, past the last one, and zero.
VALUES = (0.0, 0.004, 0.01, 0.0100001, 0.3, 1.0, 7.5, 86_400.0, 90_000.0, 2.5, 2.5)


def exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_buckets_count_and_sum_are_prometheus_clients() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("x_seconds", "Help text.", buckets=LATENCY_BUCKETS, registry=theirs)
    counted = CountedHistogram("x_seconds", "Help text.", LATENCY_BUCKETS, registry=ours)
    for value in VALUES:
        reference.observe(value)
        counted.observe(value)

    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("x_seconds_count") == len(VALUES)
    assert ours.get_sample_value("x_seconds_bucket", {"le": "0.01"}) == 3


def test_a_restricted_scrape_finds_it_by_name() -> None:
    registry = CollectorRegistry()
    CountedHistogram("x_seconds", "Help text.", LATENCY_BUCKETS, registry=registry).observe(0.2)

    text = generate_latest(registry.restricted_registry(["x_seconds_count"])).decode()

    assert "x_seconds_count 1.0" in text
