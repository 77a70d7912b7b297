"""Detections another producer writes to the alerts and reports topics: the worker's case
agents store them, and dead-letter what is not a detection."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from core.customer import read_customers_csv
from core.detection import Detection, Outcome
from core.settings import Settings
from core.transaction import transaction_from_mapping
from rules.backtest import in_event_order, run_backtest
from stream.case_agent import INVALID_DETECTION_REASON
from stream.dead_letter import read_dead_letter_headers
from stream.detection_engine import build_rule_engine
from stream.simulator import derive_rng, generate_history, generate_reference
from tests.conftest import StreamNames, consume_all, produce
from tests.integration.test_cases_end_to_end import case_store_with_book, stored_detection_ids

pytestmark = pytest.mark.integration


def test_detections_from_another_producer_are_stored_and_garbage_dead_lettered(
    broker, names: StreamNames, start_worker, tmp_path: Path
) -> None:
    rng = derive_rng(41, "foreign-detections")
    customers, managers = generate_reference(rng, 30, 3, as_of=date(2026, 6, 1))
    url, customers_csv = case_store_with_book(tmp_path, customers, managers)

    # Detections made elsewhere (the same rules, offline): the worker never saw their
    # transactions, so only its case agents can store them.
    history = generate_history(rng, customers, start=date(2026, 6, 1), days=20, scenario_rate=15.0)
    transactions = in_event_order(transaction_from_mapping(doc) for doc in history)
    directory = {c.customer_id: c for c in read_customers_csv(customers_csv)}
    detections = list(run_backtest(transactions, directory, build_rule_engine(Settings())))
    alerts = [d for d in detections if d.outcome is Outcome.ALERT][:5]
    reports = [d for d in detections if d.outcome is Outcome.REPORT][:5]
    assert alerts and reports

    def records(found: list[Detection]) -> list[tuple[bytes | None, bytes]]:
        return [
            (d.customer_id.encode(), json.dumps(d.to_dict(), ensure_ascii=False).encode())
            for d in found
        ]

    produce(broker, names.alerts, [*records(alerts), (b"x", b"not a detection")])
    produce(broker, names.reports, [*records(reports), (b"y", b'{"outcome": "report"}')])
    worker = start_worker(AMLWATCH_CUSTOMERS_FILE=str(customers_csv), AMLWATCH_DATABASE_URL=url)

    def all_stored() -> bool:
        stored_alerts, stored_reports = stored_detection_ids(url)
        return len(stored_alerts) >= len(alerts) and len(stored_reports) >= len(reports)

    worker.wait_until(all_stored, 120, "the other producer's detections were not stored")
    stored_alerts, stored_reports = stored_detection_ids(url)
    assert set(stored_alerts) == {d.detection_id for d in alerts}
    assert set(stored_reports) == {d.detection_id for d in reports}

    dead = consume_all(broker, names.dead_letter, expected=2)
    assert sorted(record.value for record in dead) == [b"not a detection", b'{"outcome": "report"}']
    for record in dead:
        headers = read_dead_letter_headers(record.headers)
        assert headers["reason"] == INVALID_DETECTION_REASON
        assert headers["message"].startswith("not a detection")
