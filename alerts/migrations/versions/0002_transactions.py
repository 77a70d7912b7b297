"""Transactions: the movements that alerts and large-value reports refer to.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("tx_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_cny", sa.String(length=40), nullable=False),
        sa.Column("amount_usd", sa.String(length=40), nullable=False),
        sa.Column("counterparty_id", sa.String(length=128), nullable=True),
        sa.Column("counterparty_name", sa.String(length=300), nullable=True),
        sa.Column("counterparty_country", sa.String(length=2), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("tx_id"),
    )
    op.create_index(
        "ix_transactions_customer_at", "transactions", ["customer_id", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_customer_at", table_name="transactions")
    op.drop_table("transactions")
