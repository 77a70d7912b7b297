"""CSV and XLSX for internal review: one row per reported transaction, amounts exact.

Amounts are written as text (``"50000.00"``), never as floats: a spreadsheet that rounds
them could no longer be reconciled with the case store. The XLSX bytes are made
deterministic (fixed document times, fixed zip entry times) so golden files work.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from alerts.reports.entries import (
    Entry,
    LargeValueEntry,
    ReportParty,
    ReportTransaction,
    SuspiciousEntry,
)
from alerts.reports.xmltext import amount_text

SHEET_NAMES = {"large_value": "large_value", "suspicious": "suspicious"}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")

LARGE_VALUE_COLUMNS = (
    "entry",
    "record_ids",
    "status",
    "bank_day",
    "deadline",
    "criterion",
    "detectors",
)
SUSPICIOUS_COLUMNS = (
    "entry",
    "record_id",
    "case",
    "status",
    "decided_at",
    "bank_day",
    "deadline",
    "severity",
    "detectors",
    "proposed_by",
    "approved_by",
    "fund_flows",
    "analysis",
)
PARTY_COLUMNS = (
    "customer_id",
    "customer_name",
    "customer_type",
    "id_type",
    "id_number",
    "nationality",
)
TRANSACTION_COLUMNS = (
    "tx_id", "time", "account_id", "direction", "channel", "purpose", "currency", "amount",
    "amount_cny", "amount_usd", "counterparty_name", "counterparty_id",
    "counterparty_account", "counterparty_institution", "counterparty_country",
)  # fmt: skip


def review_frame(kind: str, entries: Sequence[Entry], tz: tzinfo) -> pd.DataFrame:
    """The rows of a review file (strings only), with the columns even when empty."""
    rows: list[dict[str, Any]] = []
    for number, entry in enumerate(entries, start=1):
        if isinstance(entry, LargeValueEntry):
            head: dict[str, Any] = {
                "entry": str(number),
                "record_ids": " ".join(str(i) for i in entry.record_ids),
                "status": " ".join(entry.statuses),
                "bank_day": entry.bank_day.isoformat(),
                "deadline": entry.deadline.isoformat(),
                "criterion": entry.criterion,
                "detectors": " ".join(entry.detectors),
            }
        else:
            assert isinstance(entry, SuspiciousEntry)
            head = {
                "entry": str(number),
                "record_id": str(entry.record_id),
                "case": entry.case_ref,
                "status": entry.status,
                "decided_at": entry.decided_at.astimezone(tz).isoformat(),
                "bank_day": entry.bank_day.isoformat(),
                "deadline": entry.deadline.isoformat(),
                "severity": entry.severity,
                "detectors": " ".join(entry.detectors),
                "proposed_by": entry.proposed_by,
                "approved_by": entry.approved_by,
                "fund_flows": entry.fund_flows,
                "analysis": entry.analysis,
            }
        head |= _party(entry.customer)
        for tx in entry.transactions:
            rows.append(head | _transaction(tx, tz))
    columns = (
        (LARGE_VALUE_COLUMNS if kind == "large_value" else SUSPICIOUS_COLUMNS)
        + PARTY_COLUMNS
        + TRANSACTION_COLUMNS
    )
    return pd.DataFrame(rows, columns=list(columns), dtype=object)


def render_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV (with BOM, so spreadsheet programs read the Chinese text right)."""
    text: str = frame.to_csv(index=False, lineterminator="\n")
    return "\ufeff".encode() + text.encode("utf-8")


def render_xlsx(frames: dict[str, pd.DataFrame], *, now: datetime) -> bytes:
    """One sheet per report kind, every cell text; the same frames give the same bytes."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for sheet, frame in frames.items():
            frame.to_excel(writer, sheet_name=sheet, index=False)
        properties = writer.book.properties
        moment = now.replace(tzinfo=None, microsecond=0)
        properties.created = properties.modified = moment
        properties.creator = "amlwatch"
        properties.lastModifiedBy = "amlwatch"
    return _fixed_zip_times(buffer.getvalue(), now)


def _fixed_zip_times(archive: bytes, now: datetime) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(archive))
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl stamps the save time over the one set above.
                stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                content = _MODIFIED.sub(rb"\g<1>" + stamp + rb"\g<2>", content)
            target.writestr(fixed, content)
    return output.getvalue()


def _party(party: ReportParty) -> dict[str, str]:
    return {
        "customer_id": party.customer_id,
        "customer_name": party.name,
        "customer_type": party.type,
        "id_type": party.id_type,
        "id_number": party.id_number,
        "nationality": party.country,
    }


def _transaction(tx: ReportTransaction, tz: tzinfo) -> dict[str, str]:
    return {
        "tx_id": tx.tx_id,
        "time": tx.at.astimezone(tz).isoformat(),
        "account_id": tx.account_id,
        "direction": tx.direction,
        "channel": tx.channel,
        "purpose": tx.purpose or "",
        "currency": tx.currency,
        "amount": amount_text(tx.amount),
        "amount_cny": amount_text(tx.amount_cny),
        "amount_usd": amount_text(tx.amount_usd),
        "counterparty_name": tx.counterparty_name or "",
        "counterparty_id": tx.counterparty_id or "",
        "counterparty_account": tx.counterparty_account or "",
        "counterparty_institution": tx.counterparty_institution or "",
        "counterparty_country": tx.counterparty_country or "",
    }


__all__ = ["SHEET_NAMES", "render_csv", "render_xlsx", "review_frame"]
