"""The stream bench runs end to end and writes a complete result; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.app import BATCH_MAX_EVENTS
from tests.bench.conftest import run_bench_script

RATES = ("wall_seconds", "cpu_seconds", "messages_per_second", "messages_per_cpu_second")
# Small enough for a test, and long enough that some customers are past the warm-up.
SMALL_WORKLOAD = ["--customers", "60", "--days", "9", "--training-days", "8"]


@pytest.mark.integration
def test_stream_bench_writes_a_complete_result(tmp_path: Path) -> None:
    """A small run exits 0 and writes every key: positive rates for both consumers, the
    model scoring every scorable transaction, every alert emitted stored. Its worker keeps
    fewer records decoded than there are customers, so it decodes records again from the
    table's bytes (the replay in process flushes only at the end of so short a stream)."""
    out = tmp_path / "results" / "stream.json"

    result = run_bench_script(
        "stream_bench.py", *SMALL_WORKLOAD, "--decoded-records-kept", "10", out=out
    ).result
    assert result["timestamp"]
    assert {"cpu_count", "python", "faust_streaming", "aiokafka"} <= result["machine"].keys()
    params = result["parameters"]
    assert params["customers"] == 60
    assert params["transactions"] > 0 and params["message_bytes"] > 0
    assert params["model_version"]
    assert params["decoded_records_kept"] == result["in_process"]["decoded_records_kept"] == 10
    affinity = params["cpu_affinity"]
    assert len(affinity["consumer"]) == 1
    consumers = ("pipeline", "bare_agent", "bare_agent_after", "bare_agent_eager", "client_agent")
    for name in consumers:
        for key in RATES:
            assert result[name][key] > 0, (name, key)
        assert result[name]["measured_messages"] > 0
    assert result["pipeline"]["rss_bytes_at_end"] > 0
    # The worker's CPU by thread over the window (its /metrics), adding up to the
    # process's: the event loop and the case store's writer among them.
    by_thread = result["pipeline"]["cpu_seconds_by_thread"]
    assert {"MainThread", "case-store_0"} <= by_thread.keys()
    assert all(seconds >= 0 for seconds in by_thread.values())
    assert sum(by_thread.values()) == pytest.approx(
        result["pipeline"]["cpu_seconds"], abs=0.02 * len(by_thread) + 0.05
    )
    assert "cpu_seconds_by_thread" not in result["bare_agent"]
    outcome = result["pipeline"]["outcome"]
    assert outcome["transactions_scored"] == params["scorable_transactions"] > 0
    assert outcome["alerts_stored"] == outcome["detections_emitted"]["alert"]
    assert 1 <= outcome["mean_batch_size"] <= BATCH_MAX_EVENTS
    ratio = result["ratio_pipeline_to_bare"]
    for key in ("messages_per_second", "messages_per_cpu_second"):
        # To the mean of the two bare runs around the pipeline's (4 decimals kept).
        bare = (result["bare_agent"][key] + result["bare_agent_after"][key]) / 2
        assert ratio[key] == pytest.approx(result["pipeline"][key] / bare, abs=1e-4)
    faster_ratio = result["ratio_pipeline_to_faster_bare"]
    for key in ("messages_per_second", "messages_per_cpu_second"):
        faster = max(result["bare_agent"][key], result["bare_agent_after"][key])
        assert faster_ratio[key] == pytest.approx(result["pipeline"][key] / faster, abs=1e-4)
        assert faster_ratio[key] <= ratio[key]
    eager_ratio = result["ratio_pipeline_to_eager_bare"]["messages_per_cpu_second"]
    assert eager_ratio == pytest.approx(
        result["pipeline"]["messages_per_cpu_second"]
        / result["bare_agent_eager"]["messages_per_cpu_second"],
        abs=1e-4,
    )
    cost = result["microseconds_per_message"]
    assert set(cost) == {"pipeline", "bare_agent", "bare_agent_eager", "client_agent"}
    assert cost["client_agent"] == pytest.approx(
        1e6 / result["client_agent"]["messages_per_cpu_second"], abs=0.1
    )
    bare_rate = (
        result["bare_agent"]["messages_per_cpu_second"]
        + result["bare_agent_after"]["messages_per_cpu_second"]
    ) / 2
    assert cost["bare_agent"] == pytest.approx(1e6 / bare_rate, abs=0.1)
    assert result["bare_agent_drift"] == pytest.approx(
        result["bare_agent_after"]["messages_per_second"]
        / result["bare_agent"]["messages_per_second"],
        abs=1e-4,
    )
    assert result["bare_agent_cpu_drift"] == pytest.approx(
        result["bare_agent_after"]["messages_per_cpu_second"]
        / result["bare_agent"]["messages_per_cpu_second"],
        abs=1e-4,
    )
    work = result["in_process"]
    stages = work["microseconds_per_transaction"]
    assert set(stages) == {
        "decode", "rules_and_features", "scoring", "encoding", "record_decoding"
    }  # fmt: skip
    assert all(spent > 0 for name, spent in stages.items() if name != "record_decoding"), stages
    assert stages["record_decoding"] >= 0
    assert work["total_microseconds_per_transaction"] == pytest.approx(
        sum(stages.values()), abs=0.3
    )
    assert 0 < work["record_writes_per_transaction"] <= 1
    assert work["share_of_pipeline_cpu"] == pytest.approx(
        work["total_microseconds_per_transaction"]
        * result["pipeline"]["messages_per_cpu_second"]
        / 1e6,
        abs=2e-3,
    )


@pytest.mark.integration
def test_the_floor_run_is_the_pipeline_without_its_aml_work(tmp_path: Path) -> None:
    """--floor runs the worker with bench/floor_pack.toml and no model, writes apart from
    the pipeline's result by default, and says so in the result."""
    out = tmp_path / "results" / "stream_floor.json"

    run = run_bench_script("stream_bench.py", *SMALL_WORKLOAD, "--floor", out=out)
    result = run.result
    assert result["parameters"]["floor"] is True
    assert result["pipeline"]["measured_messages"] > 0
    outcome = result["pipeline"]["outcome"]
    assert outcome["transactions_scored"] == 0, "no model in the floor run"
    assert outcome["detections_emitted"]["alert"] == 0
    assert outcome["detections_emitted"]["report"] == 0
    assert result["in_process"]["microseconds_per_transaction"]["scoring"] == 0
    # The worker's own cache size by default: 60 customers all stay decoded.
    assert result["parameters"]["decoded_records_kept"] == 10_000
    assert result["in_process"]["microseconds_per_transaction"]["record_decoding"] == 0
    assert "│ floor " in run.stdout, "the table names the run as the floor"
