"""The memory bench reads the worker's table size and memory; no size is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench_script


@pytest.mark.integration
def test_memory_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A small run exits 0; every streamed customer has a table entry of some bytes."""
    out = tmp_path / "results" / "memory.json"

    result = run_bench_script("memory_bench.py", "--customers", "300", out=out).result
    assert result["timestamp"]
    params, table = result["parameters"], result["table"]
    assert params["customers"] == 300
    assert table["entries"] == params["streamed_customers"] > 0
    assert table["bytes"] > 0 and table["bytes_per_customer"] > 0
    assert result["rss_bytes"]["ready"] > 0 and result["rss_bytes"]["after_stream"] > 0
    assert result["throughput"]["messages_per_second"] > 0
