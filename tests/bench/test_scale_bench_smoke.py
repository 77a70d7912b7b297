"""The scale-out bench runs one worker, then two in one group; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench_script

SMALL_WORKLOAD = ["--customers", "40", "--days", "8", "--training-days", "8"]


@pytest.mark.integration
def test_scale_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A small run exits 0; both runs process the whole stream, the group shares it."""
    out = tmp_path / "results" / "scale.json"

    result = run_bench_script("scale_bench.py", *SMALL_WORKLOAD, out=out).result
    assert result["timestamp"]
    assert result["parameters"]["partitions"] == 4
    total = result["parameters"]["transactions"]
    assert set(result["runs"]) == {"1", "2"}
    for workers, run in result["runs"].items():
        assert run["messages_per_second"] > 0 and run["cpu_seconds"] > 0
        assert run["machine_cpu_share"] > 0
        assert len(run["processed_by_worker"]) == int(workers)
        assert sum(run["processed_by_worker"]) == total
        assert len(run["cpu_affinity"]["workers"]) == int(workers)
        # Each worker's start and finish, after the first worker's first message.
        firsts, lasts = run["first_received_seconds"], run["last_processed_seconds"]
        assert len(firsts) == len(lasts) == int(workers)
        assert min(firsts) == 0.0
        assert all(0.0 <= first <= last for first, last in zip(firsts, lasts, strict=True))
        assert len(run["messages_per_second_by_worker"]) == int(workers)
    assert result["ratio"]["messages_per_second"] > 0
