"""The case-store bench runs and writes a complete result; no speed is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.conftest import REPO_ROOT, run_bench_script

BENCH_SCRIPT = REPO_ROOT / "bench" / "case_store_bench.py"
POSTGRES_ENV = "AMLWATCH_TEST_POSTGRES_URL"
PHASES = ("transactions", "transactions_redelivered", "alerts", "reports")
FIGURES = (
    "batches",
    "wall_seconds",
    "cpu_seconds",
    "rows_per_second",
    "rows_per_cpu_second",
    "batch_seconds_p50",
    "batch_seconds_p99",
    "batch_seconds_max",
)


def test_case_store_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A tiny run exits 0 and writes every phase's figures for each database, positive."""
    out = tmp_path / "results" / "case_store.json"
    args = ["--transactions", "300", "--transaction-batch", "100", "--alerts", "40"]
    args += ["--alert-batch", "10", "--reports", "24", "--report-batch", "8", "--customers", "30"]
    postgres = os.environ.get(POSTGRES_ENV)
    if postgres:
        args += ["--database-url", postgres]

    result = run_bench_script("case_store_bench.py", *args, out=out).result
    assert result["timestamp"] and result["bench_seconds"] > 0
    assert {"cpu_count", "python", "sqlalchemy", "sqlite"} <= result["machine"].keys()
    assert result["parameters"]["transactions"] == 300
    assert result["parameters"]["alerts"] == 40
    assert result["parameters"]["reports"] == 24
    expected = ["sqlite", "postgresql"] if postgres else ["sqlite"]
    assert [run["database"] for run in result["runs"]] == expected
    for run in result["runs"]:
        assert run["transactions"]["rows"] == 300
        assert run["transactions_redelivered"]["rows"] == 0
        assert run["transactions_redelivered"]["offered"] == 30
        assert run["alerts"]["rows"] == 40
        assert run["alerts"]["cases_opened"] > 0
        assert run["reports"]["rows"] == 24
        assert run["reports"]["batches"] == 3
        for phase in PHASES:
            for figure in FIGURES:
                assert run[phase][figure] > 0, (run["database"], phase, figure)


@pytest.mark.parametrize("option", ["--transactions", "--alert-batch", "--report-batch"])
def test_case_store_bench_refuses_a_count_below_one(option: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCH_SCRIPT), option, "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2 and "must be at least 1" in completed.stderr
