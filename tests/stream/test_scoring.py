"""Stream-side scoring without a broker: warm-up, batches, the model that follows ACTIVE."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from core.customer import Customer, CustomerType, RiskRating
from core.settings import Settings
from core.transaction import Transaction, transaction_from_mapping
from models.detector import AnomalyDetector
from models.features import FEATURE_NAMES, LOG_FEATURES, BehaviourProfile
from models.registry import activate, save
from stream.customer_table import CustomerRecord
from stream.detection_engine import build_rule_engine
from stream.metrics import StreamMetrics
from stream.scoring import ActiveModel, BehaviourTracker, LiveModel, ScoringBatch

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 3, 2, 10, 0, tzinfo=TZ)


def customer() -> Customer:
    return Customer(
        customer_id="C1",
        name="测试",
        type=CustomerType.INDIVIDUAL,
        risk_rating=RiskRating.LOW,
        manager_id="M1",
        country="CN",
        opened_on=date(2020, 1, 1),
        id_type="resident_id",
        id_number="110101199001011234",
    )


def tx(at: datetime, amount: str = "100.00", tx_id: str | None = None) -> Transaction:
    document: dict[str, Any] = {
        "tx_id": tx_id or f"t-{at.isoformat()}",
        "timestamp": at.isoformat(),
        "customer_id": "C1",
        "account_id": "A1",
        "direction": "out",
        "amount": amount,
        "currency": "CNY",
        "channel": "transfer",
        "counterparty_id": "P1",
    }
    return transaction_from_mapping(document)


def tracker() -> BehaviourTracker:
    return BehaviourTracker.from_reference(build_rule_engine(Settings()).reference)


def fitted_detector(feature_names: list[str], seed: int = 0) -> AnomalyDetector:
    rng = np.random.default_rng(seed)
    training = pd.DataFrame(rng.normal(size=(300, len(feature_names))), columns=feature_names)
    return AnomalyDetector(n_estimators=20, random_state=seed, target_alert_rate=0.01).fit(training)


def saved(registry: Path, feature_names: list[str], seed: int, hours: int) -> str:
    return save(
        fitted_detector(feature_names, seed),
        directory=registry,
        feature_names=feature_names,
        training_data_hash="sha256:00",
        training_period=(date(2026, 1, 1), date(2026, 1, 31)),
        metrics=None,
        created_at=datetime(2026, 2, 1, tzinfo=TZ) + timedelta(hours=hours),
    ).version


def test_the_first_week_of_a_customer_builds_the_profile_without_scoring() -> None:
    behaviour, profile = tracker(), BehaviourProfile(TZ)
    scored_days = [
        day
        for day in range(10)
        if behaviour.observe(profile, tx(START + timedelta(days=day)), customer(), scoring=True)
        is not None
    ]
    assert scored_days == [7, 8, 9]
    assert profile.transactions == 10


def test_unknown_customers_and_rules_only_still_update_the_profile() -> None:
    behaviour, profile = tracker(), BehaviourProfile(TZ)
    for day in range(8):
        at = START + timedelta(days=day)
        assert behaviour.observe(profile, tx(at), None, scoring=True) is None
        assert (
            behaviour.observe(profile, tx(at, tx_id=f"r{day}"), customer(), scoring=False) is None
        )
    assert profile.transactions == 16
    row = behaviour.observe(profile, tx(START + timedelta(days=8)), customer(), scoring=True)
    assert row is not None and len(row) == len(FEATURE_NAMES)


def row_of(vector: np.ndarray) -> list[float]:
    """The feature row (ratios where features are their logs) of a feature vector."""
    row = vector.astype(np.float64)
    columns = [FEATURE_NAMES.index(name) for name in LOG_FEATURES]
    row[columns] = np.exp(row[columns])
    return [float(value) for value in row]


def test_a_batch_is_scored_in_one_call_and_alerts_carry_the_model_version() -> None:
    model = ActiveModel("20260201-000000-abcdef01", fitted_detector(list(FEATURE_NAMES)))
    batch = ScoringBatch()
    batch.add(tx(START, tx_id="usual"), row_of(np.zeros(len(FEATURE_NAMES))))
    batch.add(tx(START, tx_id="far-out"), row_of(np.full(len(FEATURE_NAMES), 25.0)))
    [detection] = batch.detections(model, TZ)
    assert detection.trigger_tx_id == "far-out"
    assert detection.detector == "anomaly"
    assert detection.detector_version == model.version
    assert detection.reasons
    assert ScoringBatch().detections(model, TZ) == []


def test_the_live_model_follows_active_and_refuses_an_incompatible_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = tmp_path / "models"
    metrics = StreamMetrics.create()
    live = LiveModel(registry, metrics)
    with caplog.at_level(logging.WARNING):
        live.load_at_start()
    assert live.current is None
    assert "applying the rules only" in caplog.text

    first = saved(registry, list(FEATURE_NAMES), seed=0, hours=0)
    activate(registry, first)
    live.load_at_start()
    assert live.current is not None and live.current.version == first

    other_features = saved(registry, ["amount", "hour"], seed=1, hours=1)
    activate(registry, other_features)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        asyncio.run(live.refresh())
        asyncio.run(live.refresh())  # refused once, not once per poll
    assert live.current.version == first
    assert caplog.text.count(f"anomaly model {other_features} refused") == 1
    assert metrics.registry.get_sample_value("amlwatch_anomaly_model_info", {"version": first})

    second = saved(registry, list(FEATURE_NAMES), seed=2, hours=2)
    activate(registry, second)
    asyncio.run(live.refresh())
    assert live.current.version == second
    assert metrics.registry.get_sample_value("amlwatch_anomaly_model_info", {"version": second})


def test_a_customer_record_survives_its_json_form() -> None:
    behaviour, record = tracker(), CustomerRecord.new(TZ)
    engine = build_rule_engine(Settings())
    for day in range(3):
        transaction = tx(START + timedelta(days=day), amount="60000.00")
        engine.process(record.rules, transaction, customer())
        behaviour.observe(record.profile, transaction, customer(), scoring=False)

    again = CustomerRecord.from_json_bytes(record.to_json_bytes(), tz=TZ)

    assert again.rules.to_dict() == record.rules.to_dict()
    assert again.profile.to_dict() == record.profile.to_dict()
    assert again.rules.transactions == 3
