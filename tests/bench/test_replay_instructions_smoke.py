"""The instruction count of the in-process replay runs end to end under callgrind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.bench.conftest import run_bench_script

pytestmark = pytest.mark.skipif(
    shutil.which("valgrind") is None
    or shutil.which("gcc") is None
    or not Path("/usr/include/valgrind/callgrind.h").exists(),
    reason="needs valgrind, gcc and valgrind/callgrind.h",
)


def test_replay_instructions_counts_the_asked_transactions(tmp_path: Path) -> None:
    out = tmp_path / "replay_instructions.json"
    arguments = ("--customers", "50", "--days", "9", "--training-days", "8")
    result = run_bench_script(
        "replay_instructions.py", *arguments, "--start", "450", "--count", "300", out=out
    ).result
    # From the first transaction of the batch (400) the start falls in, count of them.
    assert result["parameters"]["start"] == 400
    assert result["counted_transactions"] == 300
    assert result["instructions_per_transaction"] > 1_000
    assert result["instructions"] == pytest.approx(
        result["instructions_per_transaction"] * 300, rel=1e-3
    )
    assert Path(result["callgrind_file"]).stat().st_size > 0
