"""Regulatory reports: STR records, export batches, submission and correction times.

Revision ID: 0003_reports
Revises: 0003_users
Create Date: 2026-11-28 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_reports"
# After the web app's users (written at the same time): one line of history, one head.
down_revision = "0003_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("large_value_reports") as batch:
        batch.add_column(sa.Column("last_export_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_large_value_reports_last_export_id",
        "large_value_reports",
        ["last_export_id"],
        unique=False,
    )
    op.create_table(
        "suspicious_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bank_day", sa.Date(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_export_id", sa.Integer(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id"),
    )
    op.create_index("ix_suspicious_reports_status", "suspicious_reports", ["status"], unique=False)
    op.create_index(
        "ix_suspicious_reports_last_export_id",
        "suspicious_reports",
        ["last_export_id"],
        unique=False,
    )
    op.create_table(
        "report_exports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=False),
        sa.Column("period_to", sa.Date(), nullable=False),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("total_cny", sa.String(length=40), nullable=False),
        sa.Column("record_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exported_by", sa.String(length=64), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_by", sa.String(length=64), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_report_exports_status", "report_exports", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_report_exports_status", table_name="report_exports")
    op.drop_table("report_exports")
    op.drop_index("ix_suspicious_reports_last_export_id", table_name="suspicious_reports")
    op.drop_index("ix_suspicious_reports_status", table_name="suspicious_reports")
    op.drop_table("suspicious_reports")
    op.drop_index("ix_large_value_reports_last_export_id", table_name="large_value_reports")
    with op.batch_alter_table("large_value_reports") as batch:
        batch.drop_column("corrected_at")
        batch.drop_column("submitted_at")
        batch.drop_column("last_export_id")
