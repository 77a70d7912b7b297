"""The real worker scores with the registry's active model and follows it without a restart."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]
import pytest

from core.customer import Customer
from core.detection import Detection
from core.settings import Settings
from core.transaction import Transaction, transaction_from_mapping
from models.features import country_risk_from_lists
from models.registry import activate
from models.training import save_result, train_detector
from rules.backtest import in_event_order
from stream.detection_engine import build_rule_engine
from stream.partitioning import partition_of
from stream.simulator import (
    derive_rng,
    generate_history,
    generate_reference,
    transaction_json_bytes,
    write_customers_csv,
)
from tests.conftest import (
    PARTITIONS,
    ConsumedRecord,
    StreamNames,
    WorkerProcess,
    consume_all,
    produce,
)

pytestmark = pytest.mark.integration

ANOMALY = "anomaly"


def train_and_activate(
    registry: Path,
    customers: Sequence[Customer],
    history: Sequence[Transaction],
    *,
    target_alert_rate: float = 0.005,
    random_state: int = 0,
) -> str:
    """Fit a model on ``history`` as ``amlwatch model train`` does, save and activate it."""
    settings = Settings()
    reference = build_rule_engine(settings).reference
    frame = pd.DataFrame(
        [{**tx.to_dict(), "amount_cny": reference.rates.to_cny(tx.amount, tx.currency)}
         for tx in history]
    )  # fmt: skip
    lists = reference.country_lists
    result = train_detector(
        frame,
        {customer.customer_id: customer for customer in customers},
        country_risk_from_lists(grey=lists.grey, black=lists.black),
        ZoneInfo(settings.bank_timezone),
        target_alert_rate=target_alert_rate,
        random_state=random_state,
    )
    artefact = save_result(result, registry)
    activate(registry, artefact.version)
    return artefact.version


def population(seed: int, customers: int, start: date) -> list[Customer]:
    people, _managers = generate_reference(derive_rng(seed, "people"), customers, 2, as_of=start)
    return people


def simulated(people: Sequence[Customer], seed: int, start: date, days: int) -> list[Transaction]:
    """A history of ``people`` in event order (scenarios included)."""
    rng = derive_rng(seed, "live-scoring-history")
    documents = generate_history(rng, people, start=start, days=days, scenario_rate=20.0)
    return in_event_order(transaction_from_mapping(document) for document in documents)


def keyed(transactions: Sequence[Transaction]) -> list[tuple[bytes | None, bytes]]:
    return [(tx.customer_id.encode(), transaction_json_bytes(tx.to_dict())) for tx in transactions]


def processed(worker: WorkerProcess) -> float:
    return worker.metrics().get("amlwatch_transactions_processed_total", 0)


def model_version(worker: WorkerProcess) -> str | None:
    for name, value in worker.metrics().items():
        if name.startswith("amlwatch_anomaly_model_info{") and value == 1:
            return name.split("version=")[1].rstrip("}")
    return None


def detections(records: Sequence[ConsumedRecord]) -> list[Detection]:
    return [Detection.from_dict(json.loads(record.value)) for record in records]


def test_worker_scores_with_the_active_model_and_follows_a_new_activation(
    broker, names: StreamNames, start_worker, tmp_path: Path
) -> None:
    seed, customers = 31, 30
    people = population(seed, customers, date(2026, 3, 1))
    customers_csv = tmp_path / "customers.csv"
    write_customers_csv(customers_csv, people)
    training = simulated(people, seed, date(2026, 3, 1), 30)
    live = simulated(people, seed + 1, date(2026, 5, 1), 30)
    stages = [
        [tx for tx in live if tx.timestamp.date() < date(2026, 5, 12)],
        [tx for tx in live if date(2026, 5, 12) <= tx.timestamp.date() < date(2026, 5, 21)],
        [tx for tx in live if tx.timestamp.date() >= date(2026, 5, 21)],
    ]
    registry = tmp_path / "models"
    worker = start_worker(
        AMLWATCH_CUSTOMERS_FILE=str(customers_csv),
        AMLWATCH_MODELS_DIR=str(registry),
        AMLWATCH_MODEL_POLL_SECONDS="0.5",
    )
    sent = 0

    def run_stage(transactions: list[Transaction]) -> None:
        nonlocal sent
        produce(broker, names.transactions, keyed(transactions))
        sent += len(transactions)
        worker.wait_until(lambda: processed(worker) >= sent, 120, "stage not processed")

    # No model: rules only, nothing scored.
    run_stage(stages[0])
    assert model_version(worker) == "none"
    assert worker.metrics()["amlwatch_transactions_scored_total"] == 0

    # A high alert budget, so that a few days of 30 customers give anomaly alerts.
    version_a = train_and_activate(registry, people, training, target_alert_rate=0.05)
    worker.wait_until(lambda: model_version(worker) == version_a, 30, "version A not loaded")
    run_stage(stages[1])

    version_b = train_and_activate(
        registry, people, training, target_alert_rate=0.05, random_state=1
    )
    assert version_b != version_a
    worker.wait_until(lambda: model_version(worker) == version_b, 30, "version B not loaded")
    run_stage(stages[2])

    found = detections(consume_all(broker, names.alerts, expected=10**6, timeout=5))
    stage_of = {tx.tx_id: index for index, stage in enumerate(stages) for tx in stage}
    versions_by_stage: dict[int, set[str]] = defaultdict(set)
    for detection in found:
        if detection.detector == ANOMALY:
            versions_by_stage[stage_of[detection.trigger_tx_id]].add(detection.detector_version)
    assert any(d.detector != ANOMALY for d in found), "the rules ran all along"
    assert versions_by_stage == {1: {version_a}, 2: {version_b}}
    assert worker.metrics()["amlwatch_transactions_scored_total"] > 0
    assert sum(1 for d in found if d.detector == ANOMALY) == len(
        {d.detection_id for d in found if d.detector == ANOMALY}
    ), "each anomaly alert once"


def test_transactions_meet_their_customers_table_entry_keyed_or_not(
    broker, names: StreamNames, start_worker
) -> None:
    people = population(41, 40, date(2026, 7, 1))
    transactions = simulated(people, 41, date(2026, 7, 1), 3)
    # Half the customers' producer keys by customer_id, as the contract asks; the other
    # half's keys by account: those must take the re-keying hop.
    rekeyed_customers = {customer.customer_id for customer in people[::2]}
    produce(
        broker,
        names.transactions,
        [
            (
                (tx.account_id if tx.customer_id in rekeyed_customers else tx.customer_id).encode(),
                transaction_json_bytes(tx.to_dict()),
            )
            for tx in transactions
        ],
    )
    worker = start_worker()
    worker.wait_until(
        lambda: processed(worker) >= len(transactions), 120, "not every transaction processed"
    )

    expected_rekeyed = [tx for tx in transactions if tx.customer_id in rekeyed_customers]
    by_customer = consume_all(
        broker, f"{names.app_id}-transactions-by-customer", expected=len(expected_rekeyed)
    )
    changelog = consume_all(
        broker, f"{names.app_id}-customer-state-changelog", expected=10**6, timeout=5
    )
    assert len(expected_rekeyed) > 0
    assert len(by_customer) == len(expected_rekeyed)
    assert worker.metrics()["amlwatch_transactions_rekeyed_total"] == len(expected_rekeyed)
    assert {record.key for record in by_customer} == {
        customer_id.encode() for customer_id in rekeyed_customers
    } & {tx.customer_id.encode() for tx in transactions}

    def partitions_by_key(records: Sequence[ConsumedRecord]) -> dict[bytes | None, set[int]]:
        found: dict[bytes | None, set[int]] = defaultdict(set)
        for record in records:
            found[record.key].add(record.partition)
        return found

    hashed = {
        tx.customer_id.encode(): {partition_of(tx.customer_id.encode(), PARTITIONS)}
        for tx in transactions
    }
    assert len({p for ps in hashed.values() for p in ps}) > 1, "several partitions used"
    assert partitions_by_key(changelog) == hashed
    rekeyed_partitions = partitions_by_key(by_customer)
    assert rekeyed_partitions == {key: hashed[key] for key in rekeyed_partitions}
