"""Engine behaviour shared by every rule: idempotency, report-once, evidence, late data."""

from __future__ import annotations

from datetime import timedelta

from rules.state import CustomerState
from tests.rules.conftest import Ledger, customer


def test_large_cash_report_lists_the_days_transactions_and_fires_once(ledger: Ledger) -> None:
    assert ledger.tx("30000", channel="cash") == []
    found = ledger.tx("20000", channel="cash", at=timedelta(hours=2))
    assert [d.detector for d in found] == ["LVT-CASH-CNY"]
    report = found[0]
    assert report.tx_ids == ("T00001", "T00002")
    assert report.outcome.value == "report"
    assert "50,000.00 CNY" in report.reasons[0]
    # Same day, same direction: no second report.
    assert ledger.tx("90000", channel="cash", at=timedelta(hours=3)) == []
    # Other direction the same day is a separate criterion record.
    out = ledger.tx("60000", channel="cash", direction="out", at=timedelta(hours=4))
    assert [d.detector for d in out] == ["LVT-CASH-CNY"]


def test_redelivered_transaction_changes_nothing_and_re_emits_its_detections(
    ledger: Ledger,
) -> None:
    first = ledger.tx("50000", channel="cash", tx_id="DUP")
    before = ledger.state.to_dict()
    again = ledger.engine.process(
        ledger.state, ledger.build("50000", channel="cash", tx_id="DUP"), ledger.customer
    )
    assert again.duplicate
    assert [d.detection_id for d in again.detections] == [d.detection_id for d in first]
    assert ledger.state.to_dict() == before


def test_detection_ids_are_stable_across_runs(pboc_engine) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for _ in range(2):
        run = Ledger(pboc_engine)
        run.tx("50000", channel="cash")
        ids.append([d.detection_id for d in run.detections])
    assert ids[0] == ids[1] != []


def test_state_survives_a_json_round_trip_with_identical_results(pboc_engine) -> None:  # type: ignore[no-untyped-def]
    straight = Ledger(pboc_engine)
    restored = Ledger(pboc_engine)
    for ledger in (straight, restored):
        ledger.tx("30000", channel="cash")
    restored.state = CustomerState.from_dict(restored.state.to_dict())
    for ledger in (straight, restored):
        ledger.tx("20000", channel="cash", at=timedelta(hours=1))
    assert [d.to_dict() for d in straight.detections] == [d.to_dict() for d in restored.detections]


def test_late_transaction_within_the_day_still_completes_the_total(ledger: Ledger) -> None:
    ledger.tx("30000", channel="cash", at=timedelta(hours=5))
    found = ledger.tx("20000", channel="cash", at=timedelta(hours=1))  # arrives late
    assert [d.detector for d in found] == ["LVT-CASH-CNY"]
    assert set(found[0].tx_ids) == {"T00001", "T00002"}


def test_bank_local_day_boundary_splits_totals(ledger: Ledger) -> None:
    # 23:30 and 00:30 Shanghai time are two bank days, although UTC calls them one.
    late_evening = ledger.start.replace(hour=23, minute=30)
    ledger.tx("30000", channel="cash", at=late_evening)
    assert ledger.tx("30000", channel="cash", at=late_evening + timedelta(hours=1)) == []


def test_state_stays_bounded(ledger: Ledger) -> None:
    for day in range(60):
        ledger.tx("100", channel="card", at=timedelta(days=day))
    retained_days = {event.day for event in ledger.state.events}
    assert len(retained_days) <= (168 + 48) // 24 + 1
    assert ledger.state.transactions == 60
    assert len(ledger.state.daily) <= 97 + 3


def test_unknown_customer_is_treated_as_a_natural_person(pboc_engine) -> None:  # type: ignore[no-untyped-def]
    anonymous = Ledger(pboc_engine, customer=None)
    found = anonymous.tx("500000", direction="out", counterparty_country="CN")
    assert "LVT-IND-DOMESTIC-CNY" in {d.detector for d in found}
    corporate = Ledger(pboc_engine, customer=customer("corporate"))
    assert corporate.tx("500000", direction="out", counterparty_country="CN") == []


def test_redelivery_of_a_transaction_older_than_the_retention_is_still_recognised(
    ledger: Ledger,
) -> None:
    ledger.tx("100", channel="card", at=timedelta(days=20))
    ledger.tx("100", channel="card", at=timedelta(days=1), tx_id="OLD")  # read late
    assert all(event.tx_id != "OLD" for event in ledger.state.events)  # already expired
    replay = ledger.build("100", channel="card", at=timedelta(days=1), tx_id="OLD")
    assert ledger.engine.process(ledger.state, replay, None).duplicate
    assert ledger.state.transactions == 2


def test_a_re_read_stretch_is_recognised_by_input_position(ledger: Ledger) -> None:
    engine = ledger.engine
    for offset in range(200):  # far more than the arrival list and the retention keep
        tx = ledger.build("100", channel="card", at=timedelta(days=offset // 5), tx_id=f"T{offset}")
        assert not engine.process(ledger.state, tx, None, ("source-0", offset)).duplicate
    replayed = ledger.build("100", channel="card", tx_id="T3")
    assert engine.process(ledger.state, replayed, None, ("source-0", 3)).duplicate
    # The same offset of another input stream is a different record.
    other = ledger.build("100", channel="card", at=timedelta(days=39), tx_id="U3")
    assert not engine.process(ledger.state, other, None, ("source-1", 3)).duplicate
    assert ledger.state.transactions == 201
