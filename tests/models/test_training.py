"""Training helpers: label metrics and the data fingerprint."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from models.training import data_hash, label_metrics


def test_label_metrics_count_scenarios_not_rows() -> None:
    frame = pd.DataFrame(
        {
            "sim_typology": ["", "fan_in", "fan_in", "structuring", "", "fan_in"],
            "sim_scenario_id": ["", "s1", "s1", "s2", "", "s3"],
        }
    )
    alerts = np.array([True, True, False, False, False, False])
    metrics = label_metrics(frame, alerts)
    assert metrics["alerts"] == 2
    assert metrics["precision"] == 0.5  # one of two alerted rows is labelled
    assert metrics["recall_by_typology"] == {"fan_in": 0.5, "structuring": 0.0}
    assert metrics["alert_rate"] == 2 / 6


def test_data_hash_is_stable_and_sees_any_change() -> None:
    frame = pd.DataFrame(
        {"tx_id": ["a", "b"], "timestamp": ["t1", "t2"], "amount_cny": ["1.00", "2.00"]}
    )
    assert data_hash(frame) == data_hash(frame.copy())
    changed = frame.copy()
    changed.loc[1, "amount_cny"] = "2.01"
    assert data_hash(changed) != data_hash(frame)
