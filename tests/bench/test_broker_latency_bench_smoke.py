"""The broker latency bench runs end to end and writes a complete result; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench_script


@pytest.mark.integration
def test_broker_latency_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A small run exits 0, reads back every message and writes positive figures."""
    out = tmp_path / "results" / "broker_latency.json"

    args = ["--rate", "200", "--duration", "3", "--producer-linger-ms", "0"]
    result = run_bench_script("broker_latency_bench.py", *args, out=out).result
    assert {"cpu_count", "python", "aiokafka", "broker_binary"} <= result["machine"].keys()
    assert result["parameters"]["partitions"] >= 1
    assert result["parameters"]["linger_ms"] == 0
    assert result["produce"]["messages"] == 600
    assert result["latency_seconds"]["count"] == 600
    assert 0 < result["latency_seconds"]["p50"] <= result["latency_seconds"]["p99"]
    windows = result["latency_by_send_window"]
    assert sum(row["messages"] for row in windows) == 600
    shares = result["broker_cpu_share_by_window"]
    assert len(shares) == len(windows) and all(share >= 0 for share in shares)
