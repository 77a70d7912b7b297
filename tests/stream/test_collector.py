"""The garbage-collector policy: frozen survivors, a raised young threshold, timed pauses."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from stream.collector import (
    YOUNG_GENERATION_THRESHOLD,
    CollectorPauses,
    freeze_long_lived,
    tune_collector,
)


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """Leave the test process's collector as it was: thresholds, frozen objects, callbacks."""
    thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
    yield
    gc.set_threshold(*thresholds)
    gc.callbacks[:] = callbacks
    gc.unfreeze()


class Node:
    """An object the collector tracks, able to take part in a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_tune_collector_raises_only_the_young_threshold(restored_collector: None) -> None:
    gc.set_threshold(700, 11, 12)
    tune_collector()
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 11, 12)


def test_freeze_keeps_survivors_out_and_still_frees_what_is_dropped(
    restored_collector: None,
) -> None:
    kept = [Node() for _ in range(1000)]
    before = gc.get_freeze_count()
    assert freeze_long_lived() >= before + len(kept)
    tracked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept), "frozen objects are not walked"
    # A cycle made after the freeze is still collected.
    first, second = Node(), Node()
    first.other, second.other = second, first
    del first, second
    assert gc.collect() >= 2


def test_pauses_are_observed_by_generation(restored_collector: None) -> None:
    registry = CollectorRegistry()
    pauses = CollectorPauses(registry)
    pauses.install()
    pauses.install()  # once only
    gc.collect(0)
    gc.collect()
    pauses.uninstall()
    gc.collect()  # not observed any more

    def count(generation: str) -> float:
        value = registry.get_sample_value(
            "amlwatch_gc_pause_seconds_count", {"generation": generation}
        )
        assert value is not None
        return value

    assert count("2") == 1
    assert count("0") >= 1
    total = registry.get_sample_value("amlwatch_gc_pause_seconds_sum", {"generation": "2"})
    assert total is not None and total > 0
    assert registry.get_sample_value("amlwatch_gc_frozen_objects") == 0
    frozen = freeze_long_lived()
    pauses.frozen.set(frozen)
    # Compared with the returned count, not a second gc.get_freeze_count(): a frozen
    # object whose last reference goes away meanwhile (another thread) lowers that one.
    assert registry.get_sample_value("amlwatch_gc_frozen_objects") == frozen > 0
    assert gc.get_freeze_count() > 0
