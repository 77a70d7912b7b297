"""Explanations in words and anomaly alerts."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from core.transaction import transaction_from_mapping
from models.detector import AnomalyDetector
from models.features import FEATURE_NAMES
from models.scoring import (
    WARMUP_DAYS,
    AnomalyCooldowns,
    anomaly_detection,
    explain,
    outside_cooldown,
    score_batch,
    warmed_up,
)

USUAL = dict.fromkeys(FEATURE_NAMES, 0.0)


def features(**unusual: float) -> list[float]:
    return [unusual.get(name, USUAL[name]) for name in FEATURE_NAMES]


def test_usual_behaviour_has_nothing_to_explain() -> None:
    assert explain(features()) == []


def test_the_three_most_unusual_facts_come_first_with_their_numbers() -> None:
    reasons = explain(
        features(
            amount_robust_z=12.0,
            new_counterparty=1.0,
            volume_24h_vs_baseline=math.log(38.0),
            in_out_balance_48h=0.97,
        )
    )
    assert len(reasons) == 3
    assert reasons[0] == "38.0x the usual amount moved in 24 hours"
    assert "amount 12.0 robust deviations" in reasons[1]
    assert reasons[2] == "money in and out within 48 hours balance to 97% (pass-through)"


def test_country_risk_and_dormancy_read_as_sentences() -> None:
    assert explain(features(counterparty_country_risk=2.0)) == [
        "counterparty in a FATF black-list country"
    ]
    assert explain(features(days_since_previous=200.0)) == ["first activity in 200 days"]


def test_batch_scoring_flags_what_the_detector_would() -> None:
    rng = np.random.default_rng(1)
    training = pd.DataFrame(rng.normal(size=(500, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    detector = AnomalyDetector(n_estimators=50, random_state=0, target_alert_rate=0.01).fit(
        training
    )
    batch = training.iloc[:50].copy()
    batch.iloc[0] = 25.0  # far outside anything seen
    scored = score_batch(detector, batch)
    assert scored.alert[0]
    assert np.array_equal(scored.alert, detector.predict(batch).astype(bool))
    assert ((scored.risk >= 0) & (scored.risk <= 1)).all()
    # The worker's plain array in FEATURE_NAMES order scores the same, names unchecked.
    from_array = score_batch(detector, batch.to_numpy())
    np.testing.assert_array_equal(from_array.risk, scored.risk)
    np.testing.assert_array_equal(from_array.alert, scored.alert)
    reordered = batch[list(reversed(FEATURE_NAMES))]
    with pytest.raises(ValueError, match="same order"):
        score_batch(detector, reordered)


def test_anomaly_alert_records_the_model_version_and_is_stable() -> None:
    tx = transaction_from_mapping(
        {
            "tx_id": "T1",
            "timestamp": datetime(2026, 3, 1, 16, 30, tzinfo=UTC).isoformat(),
            "customer_id": "C1",
            "account_id": "A1",
            "direction": "out",
            "amount": "1000",
            "currency": "CNY",
            "channel": "wire",
        }
    )
    made = [
        anomaly_detection(
            tx,
            risk=0.9995,
            reasons=["first transaction with this counterparty"],
            values={"new_counterparty": 1.0},
            model_version="20260301-000000-abcdef12",
            tz=ZoneInfo("Asia/Shanghai"),
        )
        for _ in range(2)
    ]
    assert made[0] == made[1]
    detection = made[0]
    assert detection.detector == "anomaly"
    assert detection.detector_version == "20260301-000000-abcdef12"
    assert detection.severity.value == "high"
    assert detection.bank_day.isoformat() == "2026-03-02"  # 00:30 in Shanghai
    assert detection.reasons == ("first transaction with this counterparty",)


def test_a_customer_is_scored_from_the_seventh_day_after_first_seen() -> None:
    first = datetime(2026, 3, 1).toordinal()
    assert not warmed_up(first, first)
    assert not warmed_up(first, first + WARMUP_DAYS - 1)
    assert warmed_up(first, first + WARMUP_DAYS)
    days = np.array([first, first + 6, first + 7, first + 400])
    assert warmed_up(np.full(4, first), days).tolist() == [False, False, True, True]


def test_anomaly_cooldown_lets_one_alert_per_customer_per_day() -> None:
    day = 24 * 3600.0
    assert outside_cooldown(None, 1_000.0)
    assert not outside_cooldown(1_000.0, 1_000.0 + day - 1)
    assert outside_cooldown(1_000.0, 1_000.0 + day)
    assert not outside_cooldown(1_000.0 + day, 1_000.0 + 1), "a late transaction too"


def test_anomaly_cooldowns_remember_the_last_alert_taken_per_customer() -> None:
    day = 24 * 3600.0
    cooldowns = AnomalyCooldowns()
    taken = [
        cooldowns.take("C1", 0.0),
        cooldowns.take("C1", day - 1),  # held back: not remembered
        cooldowns.take("C2", day - 1),  # another customer's own
        cooldowns.take("C1", day),
        cooldowns.take("C1", 2 * day - 1),  # within a day of the last taken
    ]
    assert taken == [True, False, True, True, False]
    assert cooldowns.last_alert_at == {"C1": day, "C2": day - 1}
