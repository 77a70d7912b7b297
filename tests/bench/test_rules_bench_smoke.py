"""The rules bench runs end to end and writes a complete result; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rules_bench_writes_both_measurements(tmp_path: Path) -> None:
    out = tmp_path / "rules.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "rules_bench.py"),
         "--customers", "30", "--days", "20", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(out.read_text())
    assert result["transactions"] > 0
    assert result["state_only"]["detections"] == 0
    for name in ("state_only", "full_pack"):
        assert result[name]["transactions_per_second"] > 0
    assert result["full_pack_cost_relative_to_state_only"] > 0
