"""The garbage collector's policy for long-lived processes: the worker and the backtest.

CPython's cycle collector walks every tracked object of a generation it collects. A
worker holds two big sets of objects that live as long as the process: what its
imports made (Faust, aiokafka, pandas, scikit-learn, SQLAlchemy: about 230,000
objects, which one full collection walked in 275 ms here) and the customer table
recovered at start. Each full collection the worker made walked both again, a pause
of that length in the middle of a batch: the tail of the alert latency.

In the cases bench (bench/cases_bench.py, 400 transactions/s for 40 s) the worker
paused 1.18 s in all for collections, two of them full collections of more than 0.3 s
each; with this policy, 0.16 s in four collections and no full one.

So, at the points where what exists is known to be long-lived (the worker once
started and again whenever table recovery completes; the backtest once its file is
read), the collector collects once and then freezes the survivors (``gc.freeze``):
they move to a permanent generation that later collections skip. Reference counting
still frees a frozen object when its last reference goes; only a frozen object that
later becomes part of a garbage *cycle* stays, and what is frozen here (modules, the
app, table records, which hold no cycles) does not.

The youngest generation's threshold is raised as well, from a collection every 700
net allocations to every 100,000: most of a batch's objects are gone by its end, and
at 5,000 the same bench still paused 0.44 s in all. On a backlog the objects that do
outlive a young collection are mostly those of batches in flight (messages waiting for
their writes, records waiting for the flush), walked again at every collection they
sit through: in the stream bench (session 24, a gc.callbacks log of the worker, five
alternating pairs of runs) the collections took 0.23-0.38 s of a run's ~4-5 s of CPU
at 20,000 and 0.06-0.13 s at 100,000, about 5% of the worker's CPU. The price is in
the pauses: a young collection at a steady 1,000 tx/s takes about 65 ms instead of
10-30, and the cases bench's p99 went from 0.074-0.089 s to 0.083-0.099 s (target
0.25 s).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

# Net allocations between collections of the youngest generation (CPython's default is
# 700); the older generations keep theirs. See bench/README.md for the measurement.
YOUNG_GENERATION_THRESHOLD = 100_000
PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def tune_collector() -> None:
    """Collect the youngest generation less often; keep the older ones' thresholds."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


def freeze_long_lived() -> int:
    """Collect everything once, then keep the survivors out of later collections.

    Call it where what exists is meant to stay (after start-up, after table recovery).
    Returns how many objects are frozen in all (counted one by one: not for a hot path).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class CollectorPauses:
    """Each collection's pause by generation, and the frozen objects, as metrics.

    ``amlwatch_gc_pause_seconds{generation}`` is timed in ``gc.callbacks`` (the
    collector calls it at the start and the end of every collection);
    ``amlwatch_gc_frozen_objects`` is set by whoever freezes (``frozen.set``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._pauses = Histogram(
            "amlwatch_gc_pause_seconds",
            "Pauses of the garbage collector, by generation collected (2: a full collection).",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self._by_generation = [self._pauses.labels(generation=str(g)) for g in range(3)]
        # Set when freezing, not read when scraped: gc.get_freeze_count walks every
        # frozen object (45 ms a scrape in the stream bench).
        self.frozen = Gauge(
            "amlwatch_gc_frozen_objects",
            "Objects the collector no longer walks: frozen after start-up and table recovery.",
            registry=registry,
        )
        self._started = 0.0

    def install(self) -> None:
        """Start timing collections (once per process)."""
        if self._observe not in gc.callbacks:
            gc.callbacks.append(self._observe)

    def uninstall(self) -> None:
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)
