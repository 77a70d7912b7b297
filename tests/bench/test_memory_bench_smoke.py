"""The memory bench reads the worker's table size and memory; no size is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_SCRIPT = REPO_ROOT / "bench" / "memory_bench.py"


@pytest.mark.integration
def test_memory_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A small run exits 0; every streamed customer has a table entry of some bytes."""
    out = tmp_path / "results" / "memory.json"

    completed = subprocess.run(
        [sys.executable, str(BENCH_SCRIPT), "--customers", "300", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(out.read_text())
    assert result["timestamp"]
    params, table = result["parameters"], result["table"]
    assert params["customers"] == 300
    assert table["entries"] == params["streamed_customers"] > 0
    assert table["bytes"] > 0 and table["bytes_per_customer"] > 0
    assert result["rss_bytes"]["ready"] > 0 and result["rss_bytes"]["after_stream"] > 0
    assert result["throughput"]["messages_per_second"] > 0
