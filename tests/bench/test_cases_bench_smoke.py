"""The cases bench runs end to end and writes a complete result; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench_script

LATENCY_KEYS = ("p50", "p95", "p99", "max")


@pytest.mark.integration
def test_cases_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A small run exits 0, stores every expected alert and writes positive figures."""
    out = tmp_path / "results" / "cases.json"
    args = ["--rate", "200", "--duration", "4", "--warmup-seconds", "1", "--customers", "60"]
    args += ["--producer-linger-ms", "2"]

    result = run_bench_script("cases_bench.py", *args, out=out).result
    assert result["timestamp"]
    assert {"cpu_count", "python", "faust_streaming", "aiokafka"} <= result["machine"].keys()
    assert result["parameters"]["transactions"] == 800
    assert result["parameters"]["database"] == "sqlite"
    assert result["parameters"]["producer_linger_ms"] == 2
    assert result["produce"]["achieved_rate"] > 0
    worker = result["worker"]
    assert isinstance(worker["kept_up"], bool) and worker["verdict"]
    assert worker["sustained_tx_per_second"] > 0
    pauses = worker["collector_pauses"]
    assert set(pauses) == {"0", "1", "2"}
    assert all(figures["collections"] >= figures["over_0_1_s"] >= 0 for figures in pauses.values())
    alerts = result["alerts"]
    assert alerts["complete"] is True
    assert alerts["expected"] >= 2 and alerts["stored"] == alerts["expected"]
    assert alerts["missing"] == 0 and alerts["unexpected"] == 0
    assert alerts["persisted_per_second"] > 0
    assert alerts["cases_opened"] > 0
    for key in LATENCY_KEYS:
        assert result["latency_seconds"][key] > 0, key
    assert result["latency_seconds"]["count"] == alerts["stored"]
    assert len(result["latency_by_send_window"]) > 0
