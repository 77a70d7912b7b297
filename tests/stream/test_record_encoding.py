"""The table value written from kept text equals the value encoded from scratch.

``CustomerRecord.to_json_bytes`` reuses the text of whatever did not change since the
record's last write; a text kept past a change would silently corrupt a customer's
state. A long seeded stream drives every mutation path the worker uses (in-order and
late transactions, expiry of events and days, detections remembered, cool-downs,
positions, redeliveries, table reads in between) and after every transaction compares
the record's bytes with a from-scratch ``json.dumps`` of both halves' ``to_dict``.
"""

from __future__ import annotations

import json
import random
from datetime import date

import pytest

from core.transaction import Transaction, transaction_from_mapping
from models.features import country_risk_from_lists
from rules.backtest import in_event_order
from rules.engine import RuleEngine
from rules.pack import load_pack, packaged_pack_path
from rules.reference_data import Reference, load_country_lists, load_rates, load_watch_list
from stream.customer_table import CustomerRecord
from stream.scoring import BehaviourTracker
from stream.simulator import SHANGHAI, derive_rng, generate_history, generate_reference

SEED = 23
CUSTOMERS = 25
# Longer than every kept span (rules: about 92 days of totals; profile: 91 days).
DAYS = 130
SCENARIO_RATE = 20.0  # every typology fires often: detections and cool-downs kept
LATE_SHARE = 0.1
LATE_SECONDS = 36 * 3600
REDELIVERED_SHARE = 0.03
ROUND_TRIP_EVERY = 5


def _from_scratch(record: CustomerRecord) -> bytes:
    document = {"rules": record.rules.to_dict(), "profile": record.profile.to_dict()}
    return json.dumps(document, separators=(",", ":")).encode()


def _arrivals() -> list[Transaction]:
    """Event order, a tenth of it up to a day and a half late, a few redelivered."""
    rng = derive_rng(SEED, "record-encoding")
    people, _managers = generate_reference(rng, CUSTOMERS, 2, as_of=date(2026, 1, 1))
    history = generate_history(
        rng, people, start=date(2026, 1, 1), days=DAYS, scenario_rate=SCENARIO_RATE
    )
    # A customer silent for longer than the profile keeps days, then active again.
    quiet = people[0].customer_id
    history = [
        document
        for document in history
        if document["customer_id"] != quiet
        or not "2026-02-01" <= document["timestamp"][:10] < "2026-05-15"
    ]
    transactions = in_event_order(transaction_from_mapping(document) for document in history)
    shuffle = random.Random(SEED)
    delay = {
        tx.tx_id: shuffle.uniform(0, LATE_SECONDS) if shuffle.random() < LATE_SHARE else 0.0
        for tx in transactions
    }
    arrival = sorted(transactions, key=lambda tx: tx.event_epoch + delay[tx.tx_id])
    redelivered: list[Transaction] = []
    for index, tx in enumerate(arrival):
        redelivered.append(tx)
        if shuffle.random() < REDELIVERED_SHARE:
            redelivered.extend(arrival[max(0, index - 3) : index + 1])
    return redelivered


@pytest.fixture(scope="module")
def engine() -> RuleEngine:
    reference = Reference(
        rates=load_rates(),
        country_lists=load_country_lists(),
        watch_list=load_watch_list(),
        timezone=SHANGHAI,
    )
    return RuleEngine(load_pack(packaged_pack_path()), reference)


def test_every_write_equals_a_from_scratch_encoding(engine: RuleEngine) -> None:
    behaviour = BehaviourTracker.from_reference(engine.reference)
    records: dict[str, CustomerRecord] = {}
    writes: dict[str, int] = {}
    positions: dict[str, int] = {}
    late = detected = duplicates = 0
    for offset, tx in enumerate(_arrivals()):
        record = records.setdefault(tx.customer_id, CustomerRecord.new(SHANGHAI))
        # A redelivered transaction comes back at its first offset.
        position = ("by-customer-0", positions.setdefault(tx.tx_id, offset))
        newest = record.rules.last_event_at
        late += newest is not None and tx.event_epoch < newest
        result = engine.process(record.rules, tx, None, position)
        if result.duplicate:
            duplicates += 1
            continue
        if result.detections:
            detected += 1
            # The worker's other path into remembered detections (the anomaly model's).
            engine.remember(record.rules, result.detections[:1])
        behaviour.observe(record.profile, tx, None, scoring=False)
        written = record.to_json_bytes()
        assert written == _from_scratch(record), (tx.customer_id, tx.tx_id)
        writes[tx.customer_id] = writes.get(tx.customer_id, 0) + 1
        if writes[tx.customer_id] % ROUND_TRIP_EVERY == 0:
            # Read back from the table: the decoded record keeps the text it was read from.
            restored = CustomerRecord.from_json_bytes(written, tz=SHANGHAI)
            assert restored.to_json_bytes() == written
            records[tx.customer_id] = restored
    # The stream reached the paths it is meant to cover.
    assert late > 100 and detected > 50 and duplicates > 50
    assert any(record.rules.fired for record in records.values())


def test_a_second_write_of_an_unchanged_record_gives_the_same_bytes() -> None:
    record = CustomerRecord.new(SHANGHAI)
    tx = transaction_from_mapping(
        {
            "tx_id": "T1",
            "timestamp": "2026-01-05T10:00:00+08:00",
            "customer_id": "C1",
            "account_id": "A1",
            "direction": "in",
            "amount": "100.00",
            "currency": "CNY",
            "channel": "transfer",
            "counterparty_id": "P1",
        }
    )
    behaviour = BehaviourTracker(load_rates(), country_risk_from_lists(grey=(), black=()))
    behaviour.observe(record.profile, tx, None, scoring=False)
    first = record.to_json_bytes()
    assert record.to_json_bytes() == first == _from_scratch(record)
    assert json.loads(first)["profile"]["dc"] == [1]


def test_a_record_in_any_other_json_layout_is_read_whole(engine: RuleEngine) -> None:
    """The compact reader keeps the texts of what it reads; a value written otherwise
    (spaces, the halves in another order, more keys) is parsed whole instead, and all
    give the same record."""
    behaviour = BehaviourTracker.from_reference(engine.reference)
    record = CustomerRecord.new(SHANGHAI)
    arrivals = _arrivals()[:400]
    for tx in arrivals:
        if tx.customer_id == arrivals[0].customer_id:
            engine.process(record.rules, tx, None)
            behaviour.observe(record.profile, tx, None, scoring=False)
    compact = record.to_json_bytes()
    document = json.loads(compact)
    assert len(document["rules"]["e"]) > 1 and len(document["rules"]["a"]) > 1
    layouts = [
        compact,
        json.dumps(document).encode(),  # spaces after separators
        json.dumps({"profile": document["profile"], "rules": document["rules"]}).encode(),
        compact[:-1] + b',"note":"kept by hand"}',
        compact + b"\n",
    ]
    for raw in layouts:
        restored = CustomerRecord.from_json_bytes(raw, tz=SHANGHAI)
        assert restored.to_json_bytes() == compact, raw[:40]
        assert restored.to_json_bytes() == _from_scratch(restored)
