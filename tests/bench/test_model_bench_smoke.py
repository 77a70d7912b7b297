"""The model bench runs end to end and writes every figure; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_model_bench_writes_scoring_and_streaming_figures(tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "model_bench.py"),
         "--customers", "30", "--days", "20", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(out.read_text())
    assert set(result["scoring_by_batch_size"]) == {"1", "10", "100", "1000"}
    for figures in result["scoring_by_batch_size"].values():
        assert figures["compiled_array_rows_per_second"] > 0
        assert figures["scikit_learn_rows_per_second"] > 0
        assert figures["compiled_vs_scikit_learn"] > 0
    assert result["streaming_features_and_scoring"]["transactions_per_second"] > 0
