"""The bench summary reads whatever results exist and judges each against its target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SUMMARY_SCRIPT = REPO_ROOT / "bench" / "summary.py"


def _write(directory: Path, name: str, document: dict) -> None:
    (directory / f"{name}.json").write_text(json.dumps(document))


def _summary_lines(results: Path) -> list[str]:
    """Run the summary over ``results``; the lines of the Markdown it writes there."""
    completed = subprocess.run(
        [sys.executable, str(SUMMARY_SCRIPT), "--results", str(results)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return (results / "summary.md").read_text().splitlines()


def _rows(lines: list[str]) -> dict[str, str]:
    """Each table row by its figure's name."""
    return {line.split(" | ")[1]: line for line in lines if line.startswith("| ")}


def test_summary_marks_targets_met_and_missing_results(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "stream",
        {
            "timestamp": "2026-11-29T00:00:00+00:00",
            "machine": {"cpu_count": 2, "python": "3.11"},
            "pipeline": {"messages_per_second": 3500.0},
            "ratio_pipeline_to_faster_bare": {
                "messages_per_second": 0.4,
                "messages_per_cpu_second": 0.6,
            },
        },
    )
    _write(tmp_path, "memory", {"table": {"bytes_per_customer": 900.0}, "rss_bytes": {}})
    # p99 under the bound, but at a lower offered rate than the target's: not met.
    _write(tmp_path, "cases", {"parameters": {"rate": 200}, "latency_seconds": {"p99": 0.1}})
    records = {"decode_microseconds": 210.5, "encode_after_decode_microseconds": 85.0}
    _write(tmp_path, "rules", {"full_pack": {}, "record_json": records})
    windows = [{"p99": 0.02}, {"p99": 0.205}]
    _write(tmp_path, "broker_latency", {"latency_by_send_window": windows})

    lines = _summary_lines(tmp_path)
    rows = _rows(lines)
    assert rows["full pipeline, one worker on one core"].endswith(
        "| 3,500 tx/s | yes | 2026-11-29 |"
    )
    assert "| 0.40 | no |" in rows["pipeline / the faster bare Faust agent run (wall rate)"]
    assert "| 0.60 | yes |" in rows["pipeline / the faster bare Faust agent run (per CPU-second)"]
    assert "| 900 bytes | yes |" in rows["customer table, encoded bytes per customer"]
    assert "| 0.100 s | no |" in rows["alert stored as a case, p99 latency"]
    assert "| not run |" in rows["2 workers / 1 worker, 4 partitions"]
    record = "a customer's record decoded and written again (a 60-day customer, in process)"
    assert "| - | 296 us | - |" in rows[record]
    broker = "embedded broker alone, one hop, p99 of the last sixth (not run by make bench)"
    assert "| - | 0.205 s | - |" in rows[broker]
    assert any(line.startswith("Machine: 2 CPUs") for line in lines)


def test_the_ratios_are_held_against_the_faster_bare_run_not_the_mean(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "stream",
        {
            "timestamp": "2026-12-01T00:00:00+00:00",
            "pipeline": {"messages_per_second": 5000.0},
            # The mean of two bare runs far apart would meet the target on both counts.
            "ratio_pipeline_to_bare": {"messages_per_second": 0.6, "messages_per_cpu_second": 0.6},
            "ratio_pipeline_to_faster_bare": {
                "messages_per_second": 0.48,
                "messages_per_cpu_second": 0.52,
            },
        },
    )

    rows = _rows(_summary_lines(tmp_path))
    assert "| 0.48 | no |" in rows["pipeline / the faster bare Faust agent run (wall rate)"]
    assert "| 0.52 | yes |" in rows["pipeline / the faster bare Faust agent run (per CPU-second)"]
