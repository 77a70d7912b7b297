"""The rules bench runs end to end and writes a complete result; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

from tests.bench.conftest import run_bench_script


def test_rules_bench_writes_both_measurements(tmp_path: Path) -> None:
    out = tmp_path / "rules.json"
    result = run_bench_script("rules_bench.py", "--customers", "30", "--days", "20", out=out).result
    assert result["transactions"] > 0
    assert result["state_only"]["detections"] == 0
    for name in ("state_only", "full_pack"):
        assert result[name]["transactions_per_second"] > 0
    assert result["full_pack_cost_relative_to_state_only"] > 0
    records = result["record_json"]
    # One timed write per transaction of the write days, after the untimed first writes.
    assert records["write_days"] == 5
    assert records["writes"] > records["customers"] > 0
    assert records["encode_microseconds"] > 0
    assert records["encode_after_decode_microseconds"] > 0
