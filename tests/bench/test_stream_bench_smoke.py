"""The stream bench runs end to end and writes a complete result; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_SCRIPT = REPO_ROOT / "bench" / "stream_bench.py"
RATES = ("wall_seconds", "cpu_seconds", "messages_per_second", "messages_per_cpu_second")


@pytest.mark.integration
def test_stream_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A small run exits 0 and writes every key, with positive rates for both consumers."""
    out = tmp_path / "results" / "stream.json"

    completed = subprocess.run(
        [sys.executable, str(BENCH_SCRIPT), "--messages", "300", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(out.read_text())
    assert result["messages"] == 300
    assert {"cpu_count", "python", "faust_streaming", "aiokafka"} <= result["machine"].keys()
    assert result["timestamp"]
    for name in ("pipeline", "bare_agent"):
        for key in RATES:
            assert result[name][key] > 0, (name, key)
    for key in RATES:
        assert result["pipeline"]["from_first_processed"][key] > 0
    ratio = result["ratio_pipeline_to_bare"]
    assert ratio["messages_per_cpu_second"] > 0
    assert ratio["messages_per_second"] > 0
