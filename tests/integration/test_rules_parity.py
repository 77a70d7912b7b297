"""One detection code path: the live worker and the backtest agree on simulated data,
for the rule pack and for the anomaly model alike."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from core.customer import read_customers_csv
from core.detection import Detection
from core.settings import Settings
from core.transaction import transaction_from_mapping
from rules.backtest import in_event_order, run_backtest
from stream.backtest_command import score_with_active_model
from stream.detection_engine import build_rule_engine
from stream.simulator import (
    derive_rng,
    generate_history,
    generate_reference,
    transaction_json_bytes,
    write_customers_csv,
)
from tests.conftest import StreamNames, consume_all, produce
from tests.integration.test_live_scoring import train_and_activate

pytestmark = pytest.mark.integration


def comparable(detection: Detection) -> tuple[object, ...]:
    return (
        detection.detection_id,
        detection.detector,
        detection.outcome.value,
        detection.tx_ids,
        detection.reasons,
        detection.created_at,
        detection.detector_version,
        detection.score,
    )


def test_worker_and_backtest_produce_identical_detections(
    broker, names: StreamNames, start_worker, tmp_path: Path
) -> None:
    rng = derive_rng(21, "parity")
    customers, _managers = generate_reference(rng, 60, 3, as_of=date(2026, 6, 1))
    history = generate_history(rng, customers, start=date(2026, 6, 1), days=40, scenario_rate=15.0)
    customers_csv = tmp_path / "customers.csv"
    write_customers_csv(customers_csv, customers)
    # The model learns from the two months before, on the same customers.
    earlier = generate_history(rng, customers, start=date(2026, 4, 1), days=60)
    registry = tmp_path / "models"
    version = train_and_activate(
        registry, customers, in_event_order(transaction_from_mapping(doc) for doc in earlier)
    )

    settings = Settings()
    engine = build_rule_engine(settings)
    directory = {c.customer_id: c for c in read_customers_csv(customers_csv)}
    transactions = in_event_order(transaction_from_mapping(doc) for doc in history)
    scored = score_with_active_model(registry, transactions, directory, engine, settings)
    assert scored is not None and scored[0] == version
    anomalies = scored[1]
    rule_detections = list(run_backtest(transactions, directory, engine))
    expected = {comparable(d) for d in [*rule_detections, *anomalies]}
    assert len(rule_detections) >= 20, "the simulated month should trigger a fair number of rules"
    assert len(anomalies) >= 5, "and the model a few anomaly alerts"
    assert {d[2] for d in expected} == {"report", "alert"}

    # Live: keyed by customer, in event order, so each customer's order is kept end to end.
    produce(
        broker,
        names.transactions,
        [(tx.customer_id.encode(), transaction_json_bytes(tx.to_dict())) for tx in transactions],
    )
    worker = start_worker(
        AMLWATCH_CUSTOMERS_FILE=str(customers_csv), AMLWATCH_MODELS_DIR=str(registry)
    )
    worker.wait_until(
        lambda: (
            worker.metrics().get("amlwatch_transactions_processed_total", 0) >= len(transactions)
        ),
        240,
        "worker did not process every transaction",
    )
    alerts = sum(1 for d in expected if d[2] == "alert")
    live_records = [
        *consume_all(broker, names.alerts, expected=alerts),
        *consume_all(broker, names.reports, expected=len(expected) - alerts),
    ]
    live = {comparable(Detection.from_dict(json.loads(r.value))) for r in live_records}
    assert len(live_records) == len(live), "no detection was emitted twice"
    assert live == expected
