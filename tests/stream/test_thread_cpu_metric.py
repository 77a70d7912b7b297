"""The worker's CPU by thread, as /metrics serves it."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from stream.metrics import OTHER_THREADS, THREAD_CPU_METRIC, StreamMetrics

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="read from /proc")
SERIES = f"{THREAD_CPU_METRIC}_total"


def _scrape(registry: CollectorRegistry) -> dict[str, float]:
    """The thread CPU series by thread label, read through a restricted registry as the
    worker's /metrics?name[]=... does."""
    return {
        sample.labels["thread"]: sample.value
        for metric in registry.restricted_registry([SERIES]).collect()
        for sample in metric.samples
        if sample.name == SERIES
    }


def _burn(cpu_seconds: float, started: threading.Event, release: threading.Event) -> None:
    began = time.thread_time()
    while time.thread_time() - began < cpu_seconds:
        pass
    started.set()
    release.wait(10)


def test_each_thread_s_cpu_is_counted_under_its_name() -> None:
    registry = StreamMetrics.create().registry
    started, release = threading.Event(), threading.Event()
    burner = threading.Thread(
        target=_burn, args=(0.3, started, release), name="cpu-burner", daemon=True
    )
    burner.start()
    try:
        assert started.wait(10)
        first = _scrape(registry)
    finally:
        release.set()
        burner.join(10)

    assert 0.25 <= first["cpu-burner"] <= 1.0
    assert "MainThread" in first
    assert first[OTHER_THREADS] >= 0
    # The burner has ended: its CPU now counts as other, and no series steps back.
    second = _scrape(registry)
    assert "cpu-burner" not in second
    assert second[OTHER_THREADS] >= first[OTHER_THREADS] + 0.25
    assert second["MainThread"] >= first["MainThread"]


def test_the_series_add_up_to_the_process_cpu() -> None:
    registry = StreamMetrics.create().registry
    process = time.process_time()
    total = sum(_scrape(registry).values())
    # Clock ticks (10 ms) per thread, and a moment between the readings.
    assert total == pytest.approx(process, abs=0.05 * (threading.active_count() + 1))
