"""The pboc pack's detections over a seeded simulated history, pinned by a recorded digest.

Two runs over the same transactions, each summarised by a SHA-256 of every detection's
JSON in emission order (``detection_digests.json``, recorded from the engine before its
speed-up):

- ``event_order``: the backtest path (``run_backtest``), transactions in event order;
- ``live_like``: the worker's situation: some transactions arrive up to a day and a half
  late, each customer's state makes a JSON round trip now and then (a table value read
  back), transactions carry their input position, and recent ones are redelivered.

A few counterparty names are replaced by watch-list aliases, misspellings of them and
unrelated names, so screening contributes too; a few hand-made transactions cover the
rules the simulated traffic does not reach (foreign-currency cash, round amounts, a
dormant account). Any change to a detection, its evidence,
its values or its wording changes the digest. When a rule change is meant to change
detections, regenerate with ``.venv/bin/python -m tests.rules.test_detection_digest``
and review the per-detector counts in the diff.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.transaction import Transaction, transaction_from_mapping
from rules.backtest import in_event_order, run_backtest
from rules.engine import RuleEngine
from rules.pack import load_pack, packaged_pack_path
from rules.reference_data import Reference, load_country_lists, load_rates, load_watch_list
from rules.state import CustomerState
from stream.simulator import SHANGHAI, derive_rng, generate_history, generate_reference

DIGESTS = Path(__file__).with_name("detection_digests.json")
SEED = 11
CUSTOMERS = 120
DAYS = 100
# Scenarios per 1,000 customer-days: ten times the default, so every typology fires often.
SCENARIO_RATE = 20.0
SCREENED_NAMES = (
    "Kuang Yuheng",  # an alias as listed
    "Yuheng Kuang",
    "Kuang Yuhen",  # one letter short
    "Nieh Sheng Lan",
    "詹启鹤",
    "Zhan Qi",  # close, but not close enough
    "Acme Trading Co., Ltd.",
    "王小明",
)
SCREENED_SHARE = 0.01
LATE_SHARE = 0.1
LATE_SECONDS = 36 * 3600
ROUND_TRIP_EVERY = 7
REDELIVERED_SHARE = 0.03


def _engine() -> RuleEngine:
    reference = Reference(
        rates=load_rates(),
        country_lists=load_country_lists(),
        watch_list=load_watch_list(),
        timezone=SHANGHAI,
    )
    return RuleEngine(load_pack(packaged_pack_path()), reference)


def _dataset() -> tuple[list[Transaction], dict[str, Any]]:
    rng = derive_rng(SEED, "detection-digest")
    people, _managers = generate_reference(rng, CUSTOMERS, 6, as_of=date(2026, 1, 1))
    history = generate_history(
        rng, people, start=date(2026, 1, 1), days=DAYS, scenario_rate=SCENARIO_RATE
    )
    names = random.Random(SEED)
    for document in history:
        if names.random() < SCREENED_SHARE:
            document["counterparty_name"] = names.choice(SCREENED_NAMES)
    individuals = [person for person in people if person.type.value == "individual"][:3]
    for index, person in enumerate(individuals):
        history.extend(_uncommon(person.customer_id, date(2026, 2, 2 + 7 * index), f"X{index}"))
    # An unknown customer, silent for 95 days.
    history.extend(_uncommon("DORMANT", date(2026, 1, 2), "D")[:1])
    history.extend(_uncommon("DORMANT", date(2026, 4, 7), "E")[:1])
    transactions = in_event_order(transaction_from_mapping(document) for document in history)
    return transactions, {person.customer_id: person for person in people}


def _uncommon(customer_id: str, day: date, prefix: str) -> list[dict[str, Any]]:
    """Foreign-currency cash and transfers, and round amounts, on four days running."""
    rows = [
        ("10:00", "in", "60000", "CNY", "cash", None),
        ("10:30", "in", "12000", "USD", "cash", None),
        ("11:00", "out", "150000", "USD", "wire", "CN"),
        ("12:00", "out", "20000", "CNY", "transfer", None),
    ]
    documents = []
    for offset in range(4):
        moment = day + timedelta(days=offset)
        for number, (clock, direction, amount, currency, channel, country) in enumerate(rows):
            document = {
                "tx_id": f"{prefix}-{offset}-{number}",
                "timestamp": f"{moment.isoformat()}T{clock}:00+08:00",
                "customer_id": customer_id,
                "account_id": f"{customer_id}-A",
                "direction": direction,
                "amount": amount,
                "currency": currency,
                "channel": channel,
                "counterparty_id": f"{prefix}-party-{number}",
            }
            if country is not None:
                document["counterparty_country"] = country
            documents.append(document)
    return documents


def _digest(emitted: list[Any]) -> str:
    canonical = json.dumps(emitted, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _event_order(engine: RuleEngine, transactions: list[Transaction], customers: dict) -> dict:
    detections = list(run_backtest(transactions, customers, engine))
    return {
        "detections": len(detections),
        "by_detector": dict(sorted(Counter(d.detector for d in detections).items())),
        "sha256": _digest([d.to_dict() for d in detections]),
    }


def _live_like(engine: RuleEngine, transactions: list[Transaction], customers: dict) -> dict:
    shuffle = random.Random(SEED + 1)
    arrival = sorted(
        transactions,
        key=lambda tx: (
            tx.event_epoch
            + (shuffle.uniform(0, LATE_SECONDS) if shuffle.random() < LATE_SHARE else 0.0),
            tx.tx_id,
        ),
    )
    states: dict[str, CustomerState] = {}
    applied: dict[str, int] = Counter()
    recent: dict[str, list[tuple[Transaction, tuple[str, int]]]] = {}
    offsets: dict[str, int] = Counter()
    emitted: list[Any] = []
    counts: Counter[str] = Counter()
    duplicates = 0

    def apply(tx: Transaction, position: tuple[str, int]) -> None:
        nonlocal duplicates
        customer_id = tx.customer_id
        state = states.setdefault(customer_id, CustomerState())
        result = engine.process(state, tx, customers.get(customer_id), position)
        duplicates += result.duplicate
        counts.update(d.detector for d in result.detections)
        emitted.append([tx.tx_id, result.duplicate, [d.to_dict() for d in result.detections]])
        applied[customer_id] += 1
        if applied[customer_id] % ROUND_TRIP_EVERY == 0:
            document = json.loads(json.dumps(state.to_dict()))
            states[customer_id] = CustomerState.from_dict(document)

    for tx in arrival:
        stream = f"source-{sum(tx.customer_id.encode()) % 4}"
        position = (stream, offsets[stream])
        offsets[stream] += 1
        apply(tx, position)
        latest = recent.setdefault(tx.customer_id, [])
        latest.append((tx, position))
        del latest[:-5]
        if shuffle.random() < REDELIVERED_SHARE:
            apply(*shuffle.choice(latest))
    return {
        "detections": sum(counts.values()),
        "duplicates": duplicates,
        "by_detector": dict(sorted(counts.items())),
        "sha256": _digest(emitted),
    }


def current_digests() -> dict[str, Any]:
    """Both runs' figures with the engine as it is now."""
    engine = _engine()
    transactions, customers = _dataset()
    return {
        "transactions": len(transactions),
        "event_order": _event_order(engine, transactions, customers),
        "live_like": _live_like(engine, transactions, customers),
    }


@pytest.fixture(scope="module")
def digests() -> dict[str, Any]:
    return current_digests()


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return dict(json.loads(DIGESTS.read_text(encoding="utf-8")))


def test_the_dataset_is_the_recorded_one(digests: dict, recorded: dict) -> None:
    assert digests["transactions"] == recorded["transactions"]


@pytest.mark.parametrize("run", ["event_order", "live_like"])
def test_detections_are_the_recorded_ones(digests: dict, recorded: dict, run: str) -> None:
    # Counts first: when they differ, the diff shows which rule moved.
    assert digests[run]["by_detector"] == recorded[run]["by_detector"]
    assert digests[run] == recorded[run]


def test_the_recorded_runs_exercise_every_rule_and_redelivery(recorded: dict) -> None:
    rule_ids = {rule.id for rule in load_pack(packaged_pack_path()).rules}
    fired = set(recorded["event_order"]["by_detector"]) | set(recorded["live_like"]["by_detector"])
    assert rule_ids == fired
    assert recorded["live_like"]["duplicates"] > 0


if __name__ == "__main__":
    DIGESTS.write_text(json.dumps(current_digests(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {DIGESTS}")
