"""The backtest bench runs end to end and writes a complete result; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

from tests.bench.conftest import run_bench_script

PHASES = ("order", "rules", "features", "scoring", "anomalies")


def test_backtest_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "backtest.json"
    # 11 days in the file: a customer's transactions after its first 7 are scored.
    run = run_bench_script(
        "backtest_bench.py", "--customers", "40", "--days", "20", "--train-days", "9", out=out
    )
    result = run.result
    assert result["transactions"] > 0
    assert result["training_transactions"] > 0
    assert result["rule_detections"] >= 0
    assert result["anomaly_detections"] >= 0
    for key in ("wall_seconds", "cpu_seconds", "transactions_per_second",
                "transactions_per_cpu_second"):  # fmt: skip
        assert result[key] > 0, key
    assert sorted(result["phases"]) == sorted(PHASES)
    for phase in ("rules", "features", "scoring"):
        figures = result["phases"][phase]
        assert figures["cpu_seconds"] > 0, phase
        assert figures["wall_seconds"] > 0, phase
        assert 0 < figures["share_of_cpu"] < 1, phase
    assert {"python", "platform", "cpu", "load_average_at_end"} <= set(result["machine"])
    assert "tx/s" in run.stdout
