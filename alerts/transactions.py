"""The customers' transactions, kept so cases and regulatory reports can show them.

The worker stores every validated transaction in batches; storing is idempotent on
``tx_id`` (a redelivered batch inserts nothing new). Reads return
:class:`StoredTransaction` records, never ORM rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from alerts.database import TransactionRow
from core.transaction import Channel, Direction, Transaction

# Ids per IN list when reading: well under SQLite's limit of bound parameters.
_IDS_PER_QUERY = 500
_TABLE = TransactionRow.metadata.tables[TransactionRow.__tablename__]
# One statement per dialect, built once and executed with a list of rows. Without
# RETURNING, SQLAlchemy hands the rows to the driver's executemany: sqlite3 steps one
# prepared statement per row, psycopg pipelines one prepared statement. A multi-row
# ``.values(rows)`` statement was compiled afresh for every batch, and a batched
# "insertmanyvalues" statement is too long for psycopg's query cache, which then parses
# the whole text again for every batch. Both drivers sum the rows each execution changed,
# so rowcount counts exactly the rows inserted (a conflict changes none); SQLAlchemy keeps
# an INSERT's rowcount only when asked (``preserve_rowcount``).
_INSERT_NEW = {
    "sqlite": sqlite_insert(_TABLE).on_conflict_do_nothing(index_elements=["tx_id"]),
    "postgresql": postgresql_insert(_TABLE).on_conflict_do_nothing(index_elements=["tx_id"]),
}
_KEEP_ROWCOUNT = {"preserve_rowcount": True}
# On SQLite the rows go to the driver as tuples already in the form SQLAlchemy's own
# bind processing gives them (the same text for decimals, datetimes and JSON), skipping
# its per-row parameter processing: 14-17 instead of 24-27 us of CPU a row in a store
# micro-benchmark.
_SQLITE_INSERT_NEW = _INSERT_NEW["sqlite"].compile(dialect=sqlite_dialect())


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    """A transaction with the CNY and USD amounts it was converted to when it arrived."""

    transaction: Transaction
    amount_cny: Decimal
    amount_usd: Decimal


def store_transactions(session: Session, transactions: Sequence[StoredTransaction]) -> int:
    """Insert the transactions not stored yet; how many were new."""
    if not transactions:
        return 0
    # On the session's connection, not session.execute: the ORM's bulk insert path would
    # translate every row's attribute keys again.
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "sqlite":
        result = connection.exec_driver_sql(
            _SQLITE_INSERT_NEW.string,
            [_sqlite_row(item) for item in transactions],
            execution_options=_KEEP_ROWCOUNT,
        )
    else:
        rows = [_row(item) for item in transactions]
        result = connection.execute(_INSERT_NEW[dialect], rows, execution_options=_KEEP_ROWCOUNT)
    return result.rowcount


def transactions_by_id(session: Session, tx_ids: Iterable[str]) -> dict[str, StoredTransaction]:
    """The stored transactions among ``tx_ids``, by tx_id (missing ones are left out)."""
    wanted = sorted(set(tx_ids))
    found: dict[str, StoredTransaction] = {}
    for start in range(0, len(wanted), _IDS_PER_QUERY):
        chunk = wanted[start : start + _IDS_PER_QUERY]
        rows = session.scalars(select(TransactionRow).where(TransactionRow.tx_id.in_(chunk)))
        found.update((row.tx_id, _record(row)) for row in rows)
    return found


def customer_transactions(
    session: Session, *, customer_id: str, start: datetime, end: datetime, limit: int = 500
) -> list[StoredTransaction]:
    """The customer's transactions with ``start <= time < end``, oldest first."""
    rows = session.scalars(
        select(TransactionRow)
        .where(
            TransactionRow.customer_id == customer_id,
            TransactionRow.at >= start,
            TransactionRow.at < end,
        )
        .order_by(TransactionRow.at, TransactionRow.tx_id)
        .limit(limit)
    )
    return [_record(row) for row in rows]


def _row(item: StoredTransaction) -> dict[str, Any]:
    tx = item.transaction
    return {
        "tx_id": tx.tx_id,
        "customer_id": tx.customer_id,
        "account_id": tx.account_id,
        "at": tx.timestamp,
        "direction": tx.direction.value,
        "channel": tx.channel.value,
        "amount": tx.amount,
        "currency": tx.currency,
        "amount_cny": item.amount_cny,
        "amount_usd": item.amount_usd,
        "counterparty_id": tx.counterparty_id,
        "counterparty_name": tx.counterparty_name,
        "counterparty_country": tx.counterparty_country,
        "description": tx.description,
        "extra": dict(tx.extra),
    }


def _sqlite_row(item: StoredTransaction) -> tuple[Any, ...]:
    """``_row`` as SQLite stores it (see ``UtcDateTime``, ``DecimalText`` and JSON), in the
    table's column order, as the statement binds them; a test holds the stored rows equal
    to SQLAlchemy's."""
    tx = item.transaction
    at = tx.timestamp.astimezone(UTC).replace(tzinfo=None)
    return (
        tx.tx_id,
        tx.customer_id,
        tx.account_id,
        # SQLAlchemy's SQLite DATETIME text: microseconds always written.
        at.isoformat(" ", "microseconds"),
        tx.direction.value,
        tx.channel.value,
        str(tx.amount),
        tx.currency,
        str(item.amount_cny),
        str(item.amount_usd),
        tx.counterparty_id,
        tx.counterparty_name,
        tx.counterparty_country,
        tx.description,
        json.dumps(dict(tx.extra)) if tx.extra else "{}",
    )


def _record(row: TransactionRow) -> StoredTransaction:
    return StoredTransaction(
        transaction=Transaction(
            tx_id=row.tx_id,
            timestamp=row.at,
            customer_id=row.customer_id,
            account_id=row.account_id,
            direction=Direction(row.direction),
            amount=Decimal(row.amount),
            currency=row.currency,
            channel=Channel(row.channel),
            counterparty_id=row.counterparty_id,
            counterparty_name=row.counterparty_name,
            counterparty_country=row.counterparty_country,
            description=row.description,
            extra=MappingProxyType(dict(row.extra or {})),
        ),
        amount_cny=Decimal(row.amount_cny),
        amount_usd=Decimal(row.amount_usd),
    )


__all__ = [
    "StoredTransaction",
    "customer_transactions",
    "store_transactions",
    "transactions_by_id",
]
