"""Backtest evaluation: recall per scenario, precision, and an evaluation window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.detection import Detection, Outcome, Severity
from core.settings import Settings
from core.transaction import Channel, Direction, Transaction, transaction_from_mapping
from rules.backtest import evaluate, in_event_order, run_backtest, scenarios_beginning_from
from rules.state import CustomerState
from stream.detection_engine import build_rule_engine
from stream.simulator import derive_rng, generate_history, generate_reference

TZ = ZoneInfo("Asia/Shanghai")
DAY1 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def tx(tx_id: str, day: int, typology: str = "", scenario: str = "") -> Transaction:
    return Transaction(
        tx_id=tx_id,
        timestamp=DAY1 + timedelta(days=day - 1),
        customer_id="C1",
        account_id="A1",
        direction=Direction.IN,
        amount=Decimal("100"),
        currency="CNY",
        channel=Channel.TRANSFER,
        extra={"sim_typology": typology, "sim_scenario_id": scenario},
    )


def alert(*tx_ids: str) -> Detection:
    return Detection(
        detection_id="d-" + "-".join(tx_ids),
        detector="TYP-TEST",
        detector_version="1",
        outcome=Outcome.ALERT,
        severity=Severity.MEDIUM,
        customer_id="C1",
        trigger_tx_id=tx_ids[-1],
        tx_ids=tx_ids,
        reasons=("test",),
        created_at=DAY1,
        bank_day=DAY1.date(),
    )


HISTORY = [
    tx("t1", 1, "fan_in", "early"),  # begins before the window, continues into it
    tx("t2", 3, "fan_in", "early"),
    tx("t3", 3, "fan_in", "late"),
    tx("t4", 4, "structuring", "missed"),
    tx("t5", 4),
]


def test_scenarios_beginning_from_a_day_are_those_whose_first_transaction_is_in_it() -> None:
    assert scenarios_beginning_from(HISTORY, date(2026, 3, 3), TZ) == {"late", "missed"}
    assert scenarios_beginning_from(HISTORY, date(2026, 3, 1), TZ) == {"early", "late", "missed"}


def test_counted_scenarios_limit_recall_but_not_precision() -> None:
    detections = [alert("t2"), alert("t3"), alert("t5")]
    whole = evaluate(HISTORY, detections)
    window = evaluate(HISTORY, detections, counted_scenarios={"late", "missed"})

    assert whole.by_typology["fan_in"].scenarios == 2
    assert whole.by_typology["fan_in"].detected == 2
    assert window.by_typology["fan_in"].scenarios == 1  # "early" began before the window
    assert window.by_typology["fan_in"].detected == 1
    assert window.by_typology["structuring"].scenarios == 1
    assert window.by_typology["structuring"].detected == 0
    # An alert on a labelled transaction is a true positive whichever scenario it is.
    assert window.alerts == whole.alerts == 3
    assert window.alerts_on_labelled == whole.alerts_on_labelled == 2


def test_run_backtest_gives_the_detections_of_applying_the_input_in_its_order() -> None:
    # run_backtest applies one customer after another; the detections and their order
    # must be those of the plain loop over the interleaved input.
    rng = derive_rng(3, "backtest-order")
    people, _ = generate_reference(rng, 40, 2, as_of=date(2026, 1, 1))
    history = generate_history(rng, people, start=date(2026, 1, 1), days=20, scenario_rate=40.0)
    transactions = in_event_order(transaction_from_mapping(document) for document in history)
    customers = {person.customer_id: person for person in people}
    settings = Settings()

    engine = build_rule_engine(settings)
    states: dict[str, CustomerState] = {}
    expected = []
    for transaction in transactions:
        state = states.setdefault(transaction.customer_id, CustomerState())
        found = engine.process(state, transaction, customers.get(transaction.customer_id))
        expected += [detection.to_dict() for detection in found.detections]

    processed = []
    detections = run_backtest(
        iter(transactions), customers, build_rule_engine(settings), lambda: processed.append(1)
    )
    got = [detection.to_dict() for detection in detections]

    assert len({document["customer_id"] for document in expected}) > 5
    assert got == expected
    assert len(processed) == len(transactions)
