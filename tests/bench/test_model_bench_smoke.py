"""The model bench runs end to end and writes every figure; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

from tests.bench.conftest import run_bench_script


def test_model_bench_writes_scoring_and_streaming_figures(tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    result = run_bench_script("model_bench.py", "--customers", "30", "--days", "20", out=out).result
    assert set(result["scoring_by_batch_size"]) == {"1", "10", "100", "1000"}
    for figures in result["scoring_by_batch_size"].values():
        assert figures["compiled_array_rows_per_second"] > 0
        assert figures["scikit_learn_rows_per_second"] > 0
        assert figures["compiled_vs_scikit_learn"] > 0
    assert result["streaming_features_and_scoring"]["transactions_per_second"] > 0
