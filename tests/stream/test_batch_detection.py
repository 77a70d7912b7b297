"""A micro-batch's detection work without a broker: the anomaly cool-down across batches."""

from __future__ import annotations

from datetime import timedelta

from core.detection import Detection
from core.settings import Settings
from core.transaction import Transaction
from models.scoring import anomaly_detection
from stream.batch_detection import ANOMALY_COOLDOWN_KEY, BatchDetection
from stream.customer_table import CustomerRecord
from stream.detection_engine import build_rule_engine
from tests.stream.test_scoring import START, TZ, customer, tracker, tx

ENGINE = build_rule_engine(Settings())


def batch(records: dict[str, CustomerRecord]) -> BatchDetection:
    known = customer()
    return BatchDetection(
        ENGINE,
        tracker(),
        {known.customer_id: known}.get,
        records.get,
        TZ,
        scoring=True,
    )


def found_anomaly(transaction: Transaction) -> Detection:
    """What the model would find unusual in ``transaction`` (the forest is not the point)."""
    return anomaly_detection(
        transaction, risk=0.9, reasons=(), values={}, model_version="v1", tz=TZ
    )


def test_a_backlog_batch_keeps_the_cooldown_that_its_later_transactions_expire() -> None:
    records: dict[str, CustomerRecord] = {}
    first = batch(records)
    alerted = tx(START)
    first.apply(alerted, ("p0", 0))
    assert first.take_anomalies([found_anomaly(alerted)]), "the customer's first alert fires"
    records.update(first.working)

    # A backlog's batch: a transaction 17 hours after the alert, then one twelve days on,
    # which moves the rules' expiry of what fired past the alert.
    backlog = batch(records)
    within_a_day = tx(START + timedelta(hours=17))
    backlog.apply(within_a_day, ("p0", 1))
    backlog.apply(tx(START + timedelta(days=12)), ("p0", 2))
    state = records[alerted.customer_id].rules
    assert ANOMALY_COOLDOWN_KEY not in state.fired, "the premise: the rules expired it"

    assert backlog.take_anomalies([found_anomaly(within_a_day)]) == {}


def test_alerts_a_day_apart_fire_and_the_last_is_remembered_for_redelivery() -> None:
    records: dict[str, CustomerRecord] = {}
    work = batch(records)
    times = [START, START + timedelta(hours=1), START + timedelta(hours=25)]
    transactions = [tx(at) for at in times]
    for offset, transaction in enumerate(transactions):
        work.apply(transaction, ("p0", offset))

    taken = work.take_anomalies([found_anomaly(t) for t in transactions])

    assert sorted(taken) == sorted([transactions[0].tx_id, transactions[2].tx_id])
    state = work.working[transactions[0].customer_id].rules
    assert state.fired[ANOMALY_COOLDOWN_KEY] == times[2].timestamp()
    remembered = {document["trigger_tx_id"] for document in state.recent_detections}
    assert remembered == set(taken)


def test_a_redelivered_transaction_is_neither_changed_nor_scored_again() -> None:
    records: dict[str, CustomerRecord] = {}
    first = batch(records)
    transaction = tx(START)
    first.apply(transaction, ("p0", 0))
    records.update(first.working)

    again = batch(records)
    result = again.apply(transaction, ("p0", 0))

    assert result.duplicate
    assert again.changed == set()
    assert len(again.to_score) == 0
