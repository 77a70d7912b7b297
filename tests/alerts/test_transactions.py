"""Transactions kept for cases and reports: idempotent batches, exact amounts, reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from sqlalchemy.orm import Session

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
