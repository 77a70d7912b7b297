"""The worker's writes into the case store: a rules batch's transactions and detections
together, the topics' detections after them, each counted and announced once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, func, select
from sqlalchemy.engine import URL

from alerts.database import AlertRow, CaseRow, LargeValueReportRow, TransactionRow
from alerts.notify import CaseEvent, CaseNotice, NotificationDispatcher
from alerts.transactions import StoredTransaction
from core.detection import Outcome
from core.settings import Settings
from core.transaction import Channel, Direction, Transaction
from rules.reference_data import load_rates
from rules.state import CustomerState
from stream.app import _with_amounts
from stream.case_agent import CaseMetrics, CaseWriter, refusal_text
from stream.case_store import CaseStore
from stream.detection_engine import build_rule_engine
from tests.alerts.conftest import customer, detection, load_reference, manager
from tests.alerts.conftest import database_url as database_url  # fixture: SQLite, PostgreSQL
from tests.stream.test_case_store import settings_for

AT = datetime(2024, 3, 4, 2, 0, tzinfo=UTC)


def opened_store(database_url: URL, tmp_path: Path) -> CaseStore:
    """The test's migrated store, with settings independent of the caller's environment."""
    return CaseStore.open(settings_for(tmp_path), url=database_url, migrate_schema=False)


def writer_for(
    store: CaseStore, registry: CollectorRegistry, dispatcher: NotificationDispatcher | None = None
) -> CaseWriter:
    return CaseWriter(store, CaseMetrics.create(registry), dispatcher)


class RecordingChannel:
    """A notification channel that keeps what it was handed."""

    channel = "recording"

    def __init__(self) -> None:
        self.notices: list[CaseNotice] = []

    async def deliver(self, notice: CaseNotice) -> bool:
        self.notices.append(notice)
        return True


RATES = load_rates()


def kept(transactions: Sequence[Transaction]) -> list[StoredTransaction]:
    """The transactions as a rules batch hands them over: with their converted amounts."""
    return [
        StoredTransaction(
            tx, RATES.to_cny(tx.amount, tx.currency), RATES.to_usd(tx.amount, tx.currency)
        )
        for tx in transactions
    ]


def transaction(tx_id: str, customer_id: str, amount: str) -> Transaction:
    return Transaction(
        tx_id=tx_id,
        timestamp=AT + timedelta(minutes=len(tx_id)),
        customer_id=customer_id,
        account_id=f"A-{customer_id}",
        direction=Direction.IN,
        amount=Decimal(amount),
        currency="CNY",
        channel=Channel.CASH,
    )


@contextmanager
def listening(store: CaseStore, statements: list[str]) -> Iterator[None]:
    """Collect the SQL the store executes while the block runs."""

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def stored_counts(store: CaseStore) -> dict[str, int]:
    with store.session_scope() as session:
        return {
            row.__tablename__: session.scalar(select(func.count()).select_from(row)) or 0
            for row in (TransactionRow, CaseRow, AlertRow, LargeValueReportRow)
        }


def counted(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """amlwatch_detections_stored by (outcome, result), zero counts left out."""
    return {
        (sample.labels["outcome"], sample.labels["result"]): sample.value
        for family in registry.collect()
        if family.name == "amlwatch_detections_stored"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.value
    }


def test_a_batch_and_its_detections_are_stored_together_and_announced_once(
    database_url: URL, tmp_path: Path
) -> None:
    own_alert = detection("C1", "tx-c1-1")
    own_report = detection("C2", "tx-c2-1", outcome=Outcome.REPORT, detector="LVT-CASH-CNY")
    foreign_alert = detection("C1", "tx-c1-2", detector="external-screening")
    batch = [
        transaction("tx-c1-1", "C1", "49000.00"),
        transaction("tx-c1-2", "C1", "120.50"),
        transaction("tx-c2-1", "C2", "60000.00"),
    ]
    registry = CollectorRegistry()
    channel = RecordingChannel()

    async def scenario(store: CaseStore) -> list[dict[int, Exception]]:
        dispatcher = NotificationDispatcher([channel], registry=registry)
        writer = writer_for(store, registry, dispatcher)
        async with dispatcher:
            await writer.keep_batch(kept(batch), [own_alert, own_report])
            after_batch = stored_counts(store)
            # The same batch after a crash, then the topics bringing the batch's own
            # detections back, then a detection another producer wrote.
            await writer.keep_batch(kept(batch), [own_alert, own_report])
            statements: list[str] = []
            with listening(store, statements):
                refused = [
                    await writer.store_received([own_alert]),
                    await writer.store_received([own_report]),
                ]
            assert statements == [], "its own detections are recognised without the database"
            refused.append(await writer.store_received([foreign_alert]))
        assert after_batch == {
            "transactions": 3,
            "cases": 1,
            "alerts": 1,
            "large_value_reports": 1,
        }, "a batch's cases and report records are committed with its transactions"
        return refused

    with opened_store(database_url, tmp_path) as store:
        with store.session_scope() as session:
            load_reference(session, tmp_path, [manager("M1")], [customer("C1", "M1")])
        refused = asyncio.run(scenario(store))
        assert stored_counts(store) == {
            "transactions": 3,
            "cases": 1,
            "alerts": 2,
            "large_value_reports": 1,
        }

    assert refused == [{}, {}, {}]
    assert counted(registry) == {
        ("alert", "opened"): 1,
        ("report", "report"): 1,
        ("alert", "duplicate"): 1,  # the batch again: a redelivery, worth seeing
        ("report", "duplicate"): 1,
        ("alert", "joined"): 1,
    }, "the topics' copies of the worker's own detections are not counted again"
    assert [(notice.event, notice.customer_id) for notice in channel.notices] == [
        (CaseEvent.OPENED, "C1"),
        (CaseEvent.JOINED, "C1"),
    ]


def test_without_detections_a_batch_only_keeps_its_transactions(
    database_url: URL, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    with opened_store(database_url, tmp_path) as store:
        writer = writer_for(store, registry)
        asyncio.run(writer.keep_batch(kept([transaction("tx-1", "C9", "10.00")]), []))
        asyncio.run(writer.keep_batch(kept([]), []))
        assert stored_counts(store) == {
            "transactions": 1,
            "cases": 0,
            "alerts": 0,
            "large_value_reports": 0,
        }
    assert counted(registry) == {}


def test_a_transaction_as_long_as_the_contract_allows_is_kept_with_its_case(
    database_url: URL, tmp_path: Path
) -> None:
    # Ids of 128 characters and a 2,000-character counterparty name are valid input; a
    # store that refused them had the worker retry the batch for ever.
    longest = dataclasses.replace(
        transaction("t" * 128, "c" * 128, "60000.00"),
        account_id="a" * 128,
        counterparty_id="p" * 128,
        counterparty_name="名" * 2000,
    )
    alert = dataclasses.replace(
        detection("c" * 128, "t" * 128), detection_id="d" * 64, tx_ids=("t" * 128,)
    )
    with opened_store(database_url, tmp_path) as store:
        writer = writer_for(store, CollectorRegistry())
        asyncio.run(asyncio.wait_for(writer.keep_batch(kept([longest]), [alert]), 30))
        assert stored_counts(store) == {
            "transactions": 1,
            "cases": 1,
            "alerts": 1,
            "large_value_reports": 0,
        }
        with store.session_scope() as session:
            row = session.get(TransactionRow, "t" * 128)
            assert row is not None and row.counterparty_name == "名" * 2000


def test_a_detection_the_database_refuses_is_reported_and_the_rest_stored(
    database_url: URL, tmp_path: Path
) -> None:
    if database_url.get_backend_name() == "sqlite":
        pytest.skip("SQLite keeps a value of any length in any column")
    secret = "客户-秘密-0001"
    fits = detection("C1", "tx-1", detector="external-screening")
    too_long = detection(secret, "tx-2", detector="x" * 65)  # detector ids are 64 at most
    registry = CollectorRegistry()
    with opened_store(database_url, tmp_path) as store:
        writer = writer_for(store, registry)
        refused = asyncio.run(asyncio.wait_for(writer.store_received([fits, too_long]), 30))
        assert stored_counts(store)["alerts"] == 1
    assert list(refused) == [1], "refused at once, not retried as if the store were down"
    reason = refusal_text(refused[1])
    assert reason.startswith("DataError: value too long"), reason
    assert secret not in reason, "no customer data in what is logged or dead-lettered"
    assert counted(registry) == {("alert", "opened"): 1}


def test_a_batch_whose_detections_are_refused_keeps_its_transactions_and_leaves_them_to_the_topic(
    database_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if database_url.get_backend_name() == "sqlite":
        pytest.skip("SQLite keeps a value of any length in any column")
    refused_alert = detection("C1", "tx-1", detector="x" * 65)
    fine_alert = detection("C1", "tx-2")
    registry = CollectorRegistry()
    with opened_store(database_url, tmp_path) as store:
        writer = writer_for(store, registry)

        async def scenario() -> dict[int, Exception]:
            batch = [transaction("tx-1", "C1", "10.00"), transaction("tx-2", "C1", "20.00")]
            await writer.keep_batch(kept(batch), [refused_alert, fine_alert])
            # The topic brings both back: the refused one is refused again, the other stored.
            return await writer.store_received([refused_alert, fine_alert])

        refused = asyncio.run(asyncio.wait_for(scenario(), 30))
        assert stored_counts(store) == {
            "transactions": 2,
            "cases": 1,
            "alerts": 1,
            "large_value_reports": 0,
        }
    assert list(refused) == [0]
    assert "refused a batch's 2 detections" in caplog.text
    assert counted(registry) == {("alert", "opened"): 1}


def test_batches_that_come_while_the_writer_is_busy_are_committed_together(
    database_url: URL, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    batches = [
        ([transaction("tx-1", "C1", "10.00")], [detection("C1", "tx-1")]),
        ([transaction("tx-22", "C2", "60000.00")], []),
        (
            [transaction("tx-333", "C1", "30.00")],
            [detection("C1", "tx-333", detector="external-screening")],
        ),
    ]
    with opened_store(database_url, tmp_path) as store:
        with store.session_scope() as session:
            load_reference(
                session, tmp_path, [manager("M1")], [customer("C1", "M1"), customer("C2", "M1")]
            )
        writer = writer_for(store, registry)
        statements: list[str] = []

        async def scenario() -> list[dict[str, int]]:
            seen_by_each: list[dict[str, int]] = []

            async def keep(transactions: list[Transaction], detections: list[Any]) -> None:
                await writer.keep_batch(kept(transactions), detections)
                seen_by_each.append(await asyncio.to_thread(stored_counts, store))

            # The first batch starts the writer; the others come before it is done.
            await asyncio.gather(*(keep(*batch) for batch in batches))
            return seen_by_each

        with listening(store, statements):
            seen_by_each = asyncio.run(asyncio.wait_for(scenario(), 30))
        assert stored_counts(store) == {
            "transactions": 3,
            "cases": 1,
            "alerts": 2,
            "large_value_reports": 0,
        }
    inserts = [
        sql for sql in statements if sql.lstrip().upper().startswith("INSERT INTO TRANSACTIONS")
    ]
    assert len(inserts) == 1, "the three batches were kept in one database transaction"
    assert all(counts["transactions"] == 3 for counts in seen_by_each), (
        "no batch's wait ends before its rows are committed"
    )
    assert counted(registry) == {("alert", "opened"): 1, ("alert", "joined"): 1}


def test_a_refused_batch_in_a_group_leaves_only_its_own_detections_to_the_topic(
    database_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if database_url.get_backend_name() == "sqlite":
        pytest.skip("SQLite keeps a value of any length in any column")
    refused_alert = detection("C1", "tx-1", detector="x" * 65)
    fine_alert = detection("C1", "tx-22")
    registry = CollectorRegistry()
    with opened_store(database_url, tmp_path) as store:
        with store.session_scope() as session:
            load_reference(session, tmp_path, [manager("M1")], [customer("C1", "M1")])
        writer = writer_for(store, registry)

        async def scenario() -> None:
            await asyncio.gather(
                writer.keep_batch(kept([transaction("tx-1", "C1", "10.00")]), [refused_alert]),
                writer.keep_batch(kept([transaction("tx-22", "C1", "20.00")]), [fine_alert]),
            )

        asyncio.run(asyncio.wait_for(scenario(), 30))
        assert stored_counts(store) == {
            "transactions": 2,
            "cases": 1,
            "alerts": 1,
            "large_value_reports": 0,
        }
    assert "refused a batch's 1 detections" in caplog.text
    assert counted(registry) == {("alert", "opened"): 1}


def test_a_rules_batch_hands_its_transactions_over_with_the_rules_amounts() -> None:
    engine = build_rule_engine(Settings())
    state, rates = CustomerState(), engine.reference.rates
    usd = dataclasses.replace(transaction("tx-usd", "C1", "1234.56"), currency="USD")
    first = engine.process(state, usd, None)
    again = engine.process(state, usd, None)  # a redelivery: no event
    assert first.event is not None and again.event is None

    from_event = _with_amounts(usd, first, rates)
    converted = _with_amounts(usd, again, rates)

    assert from_event.amount_cny is first.event.amount_cny
    assert from_event.amount_usd is first.event.amount_usd
    for stored in (from_event, converted):
        assert stored.transaction is usd
        assert stored.amount_cny == rates.to_cny(usd.amount, "USD") != usd.amount
        assert stored.amount_usd == Decimal("1234.56")
