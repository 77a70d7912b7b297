"""Transactions kept for cases and reports: idempotent batches, exact amounts, reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy.orm import Session

import alerts.transactions as transactions_module
from alerts.database import make_engine, new_sqlite_store, session_factory
from alerts.transactions import (
    StoredTransaction,
    customer_transactions,
    store_transactions,
    transactions_by_id,
)
from core.transaction import Channel, Direction, Transaction

START = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


def stored(index: int, customer_id: str = "C1", amount: str = "49999.99") -> StoredTransaction:
    return StoredTransaction(
        Transaction(
            tx_id=f"tx-{index}",
            timestamp=START + timedelta(hours=index),
            customer_id=customer_id,
            account_id="A1",
            direction=Direction.IN if index % 2 else Direction.OUT,
            amount=Decimal(amount),
            currency="USD",
            channel=Channel.WIRE,
            counterparty_id="CP9",
            counterparty_name="Acme Trading",
            counterparty_country="HK",
            description="invoice 7",
            extra=MappingProxyType({"branch": "SH01"}),
        ),
        amount_cny=Decimal(amount) * Decimal("7.123456"),
        amount_usd=Decimal(amount),
    )


def test_a_batch_is_stored_once_even_when_redelivered(session: Session) -> None:
    batch = [stored(i) for i in range(3)]
    assert store_transactions(session, batch) == 3
    assert store_transactions(session, [*batch, stored(3)]) == 1
    session.commit()
    assert sorted(transactions_by_id(session, ["tx-0", "tx-3", "tx-missing"])) == ["tx-0", "tx-3"]


def test_amounts_and_every_field_come_back_exactly(session: Session) -> None:
    original = stored(1, amount="123456789012.345678")
    store_transactions(session, [original])
    session.commit()
    assert transactions_by_id(session, ["tx-1"])["tx-1"] == original


def test_a_customers_transactions_in_a_period_oldest_first(session: Session) -> None:
    store_transactions(session, [stored(i) for i in (5, 1, 3)] + [stored(2, customer_id="C2")])
    session.commit()
    found = customer_transactions(
        session, customer_id="C1", start=START + timedelta(hours=1), end=START + timedelta(hours=5)
    )
    assert [item.transaction.tx_id for item in found] == ["tx-1", "tx-3"]


def test_a_large_batch_crosses_the_statement_size_limit(session: Session) -> None:
    assert store_transactions(session, [stored(i) for i in range(1_234)]) == 1_234


def test_a_batch_mixing_stored_and_new_counts_only_the_new(session: Session) -> None:
    store_transactions(session, [stored(i) for i in range(0, 10, 2)])
    session.commit()
    redelivered_with_new = [stored(i) for i in range(10)] + [stored(1), stored(11)]

    inserted = store_transactions(session, redelivered_with_new)
    session.commit()

    # tx-1 twice in the batch counts once; the five stored ones not at all.
    assert inserted == 6
    assert len(transactions_by_id(session, [f"tx-{i}" for i in range(12)])) == 11


def test_a_redelivered_transaction_leaves_the_stored_row_untouched(session: Session) -> None:
    original = stored(4, amount="100.00")
    store_transactions(session, [original])
    session.commit()

    assert store_transactions(session, [stored(4, amount="999.00")]) == 0
    session.commit()

    assert transactions_by_id(session, ["tx-4"])["tx-4"] == original


def with_transaction(item: StoredTransaction, **changes: Any) -> StoredTransaction:
    return dataclasses.replace(item, transaction=dataclasses.replace(item.transaction, **changes))


def sqlite_table_after(directory: Path, store: Callable[[Session], object]) -> list[Any]:
    """The transactions table's raw rows after ``store`` ran on a fresh SQLite store."""
    directory.mkdir()
    engine = make_engine(new_sqlite_store(directory))
    try:
        with session_factory(engine)() as session, session.begin():
            store(session)
        with engine.connect() as connection:
            query = "SELECT * FROM transactions ORDER BY tx_id"
            return list(connection.exec_driver_sql(query).all())
    finally:
        engine.dispose()


def test_sqlite_rows_from_the_driver_path_are_what_sqlalchemy_would_have_stored(
    tmp_path: Path,
) -> None:
    # SQLite skips SQLAlchemy's per-row bind processing; the text it stores must be the
    # very text SQLAlchemy's column types would have written, or reads and reports drift.
    shanghai = timezone(timedelta(hours=8))
    items = [
        stored(1),
        with_transaction(
            stored(2),
            timestamp=datetime(2026, 6, 1, 8, 0, tzinfo=shanghai),  # no microseconds
            counterparty_id=None,
            counterparty_name="上海某某贸易有限公司",
            counterparty_country=None,
            description=None,
            extra=MappingProxyType({}),
        ),
        with_transaction(
            stored(3, amount="0.01"),
            timestamp=datetime(2026, 6, 1, 23, 59, 59, 999_999, tzinfo=UTC),
            extra=MappingProxyType({"note": 'quote " and \\ slash, 引号', "n": 3}),
        ),
    ]

    def through_sqlalchemy(session: Session) -> object:
        rows = [transactions_module._row(item) for item in items]
        return session.connection().execute(transactions_module._INSERT_NEW["sqlite"], rows)

    through_driver = sqlite_table_after(
        tmp_path / "driver", lambda session: store_transactions(session, items)
    )
    assert through_driver == sqlite_table_after(tmp_path / "sqlalchemy", through_sqlalchemy)
    assert [row[0] for row in through_driver] == ["tx-1", "tx-2", "tx-3"]
