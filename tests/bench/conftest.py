"""Bench smoke tests: run a bench script as ``make bench`` does and read what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class BenchRun:
    """A bench run that exited 0: the result document it wrote and what it printed."""

    result: dict[str, Any]
    stdout: str


def run_bench_script(script: str, *args: str, out: Path) -> BenchRun:
    """Run ``bench/<script> ARGS --out OUT`` in a new interpreter from the repository root;
    fail the test with the bench's output unless it exits 0."""
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / script), *args, "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return BenchRun(result=json.loads(out.read_text()), stdout=completed.stdout)
