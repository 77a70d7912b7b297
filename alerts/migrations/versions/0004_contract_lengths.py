"""Columns as wide as the transaction contract: ids up to 128 characters, counterparty
names up to 2,000.

The worker keeps every transaction the contract admits. PostgreSQL refused a valid one
with a customer or account id over 64 characters (or a counterparty name over 300), and
the worker, taking the refusal for an outage, retried that batch for ever.

Revision ID: 0004_contract_lengths
Revises: 0003_reports
Create Date: 2026-11-29 19:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_contract_lengths"
down_revision = "0003_reports"
branch_labels = None
depends_on = None

# (table, column, old length, new length): the columns holding a transaction's ids.
WIDENED = (
    ("customers", "customer_id", 64, 128),
    ("cases", "customer_id", 64, 128),
    ("cases", "open_customer_id", 64, 128),
    ("alerts", "customer_id", 64, 128),
    ("alerts", "trigger_tx_id", 64, 128),
    ("transactions", "customer_id", 64, 128),
    ("transactions", "account_id", 64, 128),
    ("transactions", "counterparty_name", 300, 2000),
    ("large_value_reports", "customer_id", 64, 128),
    ("large_value_reports", "trigger_tx_id", 64, 128),
)


def _alter(to_new: bool) -> None:
    for table in dict.fromkeys(table for table, *_ in WIDENED):
        # Batch mode: SQLite cannot change a column's type in place and rebuilds the table.
        with op.batch_alter_table(table) as batch:
            for _table, column, old, new in (w for w in WIDENED if w[0] == table):
                batch.alter_column(
                    column,
                    existing_type=sa.String(length=old if to_new else new),
                    type_=sa.String(length=new if to_new else old),
                )


def upgrade() -> None:
    _alter(to_new=True)


def downgrade() -> None:
    _alter(to_new=False)
