"""A micro-batch's detection work without a broker: the anomaly cool-down across batches,
and the behaviour profile fed from the rules' view of each transaction."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from core.detection import Detection
from core.settings import Settings
from core.transaction import Transaction
from models.features import BehaviourProfile
from models.scoring import anomaly_detection
from stream.batch_detection import ANOMALY_COOLDOWN_KEY, BatchDetection
from stream.customer_table import CustomerRecord
from stream.detection_engine import build_rule_engine
from stream.scoring import BehaviourTracker
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


def _in_usd(transaction: Transaction) -> Transaction:
    return dataclasses.replace(transaction, currency="USD", amount=Decimal("100.00"))


def test_the_profile_built_from_the_rules_event_is_the_profile_built_alone() -> None:
    # Around the bank's midnight and a UTC hour, on several days, in two currencies.
    moments = [
        START + timedelta(days=day, hours=hours) for day in range(9) for hours in (0, 13.99, 14.01)
    ]
    transactions = [tx(at, tx_id=f"t{n}") for n, at in enumerate(moments)]
    transactions[::4] = [_in_usd(transaction) for transaction in transactions[::4]]
    shared = BatchDetection(
        ENGINE,
        BehaviourTracker.from_reference(ENGINE.reference),
        {customer().customer_id: customer()}.get,
        {}.get,
        TZ,
        scoring=True,
    )
    alone, alone_profile, rows = tracker(), BehaviourProfile(TZ), []
    for transaction in transactions:
        result = shared.apply(transaction, None)
        assert result.event is not None and result.local_time is not None
        rows.append(alone.observe(alone_profile, transaction, customer(), scoring=True))

    assert shared._rules_convert_alike
    assert shared.working["C1"].profile.to_json() == alone_profile.to_json()
    expected = [row for row in rows if row is not None]
    assert len(expected) == len(shared.to_score) > 0
    assert all(np.array_equal(a, b) for a, b in zip(shared.to_score.rows, expected, strict=True))


def test_a_tracker_with_other_rates_converts_for_itself() -> None:
    reference = ENGINE.reference
    own_rates = dataclasses.replace(
        reference.rates, cny_per_unit={**reference.rates.cny_per_unit, "USD": Decimal("1.00")}
    )
    detecting = BatchDetection(
        ENGINE,
        BehaviourTracker(own_rates, lambda country: 0),
        {customer().customer_id: customer()}.get,
        {}.get,
        TZ,
        scoring=False,
    )
    result = detecting.apply(_in_usd(tx(START)), None)

    assert not detecting._rules_convert_alike
    assert result.event is not None and result.event.amount_cny > Decimal("100.00")
    # The profile's day total is in fen: 100.00 USD at the tracker's 1.00.
    assert list(detecting.working["C1"].profile.daily.values()) == [[1, 10_000]]


def test_a_local_time_in_another_zone_than_the_profiles_is_not_taken() -> None:
    transaction = tx(START + timedelta(hours=15))  # 01:00 the next day in Shanghai
    in_utc = BehaviourProfile(ZoneInfo("UTC"))
    given = in_utc.facts(
        transaction, Decimal("100.00"), local_time=transaction.timestamp.astimezone(TZ)
    )
    assert given == in_utc.facts(transaction, Decimal("100.00"))
    assert given.hour == 17 and given.day == START.toordinal()
