"""Regulatory reports: golden files per format, reconciliation, validation, statuses.

Golden files are in tests/alerts/golden; regenerate them after an intended change with
``AMLWATCH_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import csv
import io
import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.audit import verify_audit_chain
from alerts.cases import (
    acknowledge,
    add_note,
    approve_report,
    escalate,
    ingest_detection,
    propose_report,
)
from alerts.database import (
    AuditEventRow,
    CustomerRow,
    LargeValueReportRow,
    ReportExportRow,
    SuspiciousReportRow,
)
from alerts.reports import (
    ExportRequest,
    IncompleteReport,
    ReportKind,
    export_reports,
    load_report_config,
    mark_submitted,
    overdue_report_counts,
    report_backlog,
)
from alerts.reports.goaml import validate_goaml
from alerts.reports.pboc import check_pboc
from alerts.transactions import StoredTransaction, store_transactions
from core.calendar import WorkingCalendar
from core.customer import CustomerType
from core.detection import Outcome, Severity
from core.errors import Forbidden, InvalidInput
from core.transaction import Channel, Direction, Transaction
from tests.alerts.conftest import T0, customer, detection, load_reference, manager

GOLDEN = Path(__file__).parent / "golden"
XSD = Path(__file__).parent / "schemas" / "goaml_test.xsd"
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 3, 6, 2, 0, tzinfo=UTC)
DAY = date(2024, 3, 4)
COMPLIANCE_A = Actor("co1", Role.COMPLIANCE)
COMPLIANCE_B = Actor("co2", Role.COMPLIANCE)
MANAGER = Actor("M1", Role.MANAGER)
CONFIG = load_report_config()


def _tx(
    tx_id: str,
    customer_id: str,
    minutes: int,
    amount: str,
    *,
    direction: str = "in",
    channel: str = "cash",
    currency: str = "CNY",
    cny: str | None = None,
    usd: str,
    counterparty: tuple[str, str, str] | None = None,
    description: str | None = None,
) -> StoredTransaction:
    cp_id, cp_name, cp_country = counterparty or (None, None, None)
    return StoredTransaction(
        Transaction(
            tx_id=tx_id,
            timestamp=T0 + timedelta(minutes=minutes),
            customer_id=customer_id,
            account_id=f"6222{customer_id[-4:]}0001",
            direction=Direction(direction),
            amount=Decimal(amount),
            currency=currency,
            channel=Channel(channel),
            counterparty_id=cp_id,
            counterparty_name=cp_name,
            counterparty_country=cp_country,
            description=description,
        ),
        Decimal(cny if cny is not None else amount),
        Decimal(usd),
    )


TRANSACTIONS = [
    _tx("tx-001", "C0001", 0, "30000.00", usd="4166.67", description="现金存款"),
    _tx("tx-002", "C0001", 30, "20000.5", usd="2777.85"),
    _tx(
        "tx-003",
        "C0002",
        60,
        "300000.00",
        direction="out",
        channel="wire",
        currency="USD",
        cny="2160000.00",
        usd="300000.00",
        counterparty=("HK8888000111", "Harbour Trading Ltd", "HK"),
        description="货款 & <settlement>",
    ),
    _tx(
        "tx-004",
        "C0001",
        90,
        "49999.99",
        direction="out",
        channel="transfer",
        usd="6944.44",
        counterparty=("6217000011112222", "王五", "CN"),
    ),
]


def _corporate(customer_id: str, manager_id: str):  # type: ignore[no-untyped-def]
    return replace(
        customer(customer_id, manager_id),
        name="上海示例贸易有限公司",
        type=CustomerType.CORPORATE,
        id_type="uscc",
        id_number="91310000MA1FL00001",
    )


def _populate(session: Session, tmp_path: Path, calendar: WorkingCalendar) -> int:
    """Two large-value records (one customer-day with two transactions), one STR case."""
    load_reference(
        session,
        tmp_path,
        [manager("M1")],
        [customer("C0001", "M1"), _corporate("C0002", "M1")],
    )
    store_transactions(session, TRANSACTIONS)
    lv = [
        replace(
            detection("C0001", "tx-002", outcome=Outcome.REPORT, detector="LVT-CASH-CNY"),
            tx_ids=("tx-001", "tx-002"),
            severity=Severity.MEDIUM,
        ),
        replace(
            detection("C0002", "tx-003", outcome=Outcome.REPORT, detector="LVT-CORP-TRANSFER-FX"),
            severity=Severity.MEDIUM,
        ),
    ]
    for item in lv:
        ingest_detection(session, item, now=T0, calendar=calendar)
    alert = replace(
        detection("C0001", "tx-004", detector="TYP-STRUCTURING"),
        tx_ids=("tx-001", "tx-002", "tx-004"),
        reasons=("Structuring: 3 transactions just under 50,000 CNY",),
    )
    case_id = ingest_detection(session, alert, now=T0, calendar=calendar).case_id
    assert case_id is not None
    later = T0 + timedelta(hours=1)
    acknowledge(session, case_id=case_id, actor=MANAGER, now=later)
    add_note(session, case_id=case_id, actor=MANAGER, body="客户无法说明资金来源", now=later)
    escalate(
        session, case_id=case_id, actor=MANAGER, assessment="拆分现金交易规避大额报告", now=later
    )
    propose_report(session, case_id=case_id, actor=COMPLIANCE_A, now=later)
    approve_report(session, case_id=case_id, actor=COMPLIANCE_B, now=later)
    session.commit()
    return case_id


@pytest.fixture
def populated(session: Session, tmp_path: Path, calendar: WorkingCalendar) -> Session:
    _populate(session, tmp_path, calendar)
    return session


def _export(
    session: Session,
    calendar: WorkingCalendar,
    out: Path,
    *,
    kind: str,
    fmt: str,
    first: str = "2024-03-01",
    last: str = "2024-03-08",
    message_type: str = "normal",
    xsd: Path | None = None,
    actor: Actor = COMPLIANCE_A,
):  # type: ignore[no-untyped-def]
    request = ExportRequest.parse(
        kind=kind, first=first, last=last, format=fmt, out=out, message_type=message_type, xsd=xsd
    )
    result = export_reports(
        session,
        request,
        actor=actor,
        now=NOW,
        calendar=calendar,
        tz=TZ,
        str_working_days=5,
        config=CONFIG,
    )
    session.commit()
    return result


def _golden(name: str, content: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("AMLWATCH_UPDATE_GOLDEN") == "1":
        path.write_bytes(content)
    assert path.exists(), f"no golden file {path.name}; run with AMLWATCH_UPDATE_GOLDEN=1"
    assert content == path.read_bytes(), f"{name} differs from its golden file"


SUFFIX = {"pboc-xml": "xml", "goaml-xml": "xml", "csv": "csv", "xlsx": "xlsx"}


@pytest.mark.parametrize("fmt", ["pboc-xml", "goaml-xml", "csv", "xlsx"])
@pytest.mark.parametrize("kind", ["large-value", "suspicious"])
def test_export_matches_its_golden_file(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path, kind: str, fmt: str
) -> None:
    out = tmp_path / f"{kind}.{SUFFIX[fmt]}"
    xsd = XSD if fmt == "goaml-xml" else None
    result = _export(populated, calendar, out, kind=kind, fmt=fmt, xsd=xsd)
    _golden(f"{kind}-{fmt}.{SUFFIX[fmt]}", out.read_bytes())
    assert result.entries == (2 if kind == "large-value" else 1)


def test_same_input_gives_the_same_bytes(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    first = _export(populated, calendar, tmp_path / "a.xlsx", kind="large-value", fmt="xlsx")
    second = _export(populated, calendar, tmp_path / "b.xlsx", kind="large-value", fmt="xlsx")
    assert first.sha256 == second.sha256
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()


def test_large_value_export_reconciles_with_the_database(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    out = tmp_path / "lv.xml"
    result = _export(populated, calendar, out, kind="large-value", fmt="pboc-xml")
    root = ET.fromstring(out.read_bytes())
    records = populated.scalars(select(LargeValueReportRow)).all()
    tx_ids = {tx for record in records for tx in record.tx_ids}
    stored = {tx.transaction.tx_id: tx for tx in TRANSACTIONS}
    assert [e.text for e in root.iter("TICD")] == sorted(tx_ids)
    assert sum(Decimal(e.text or "") for e in root.iter("CRMB")) == sum(
        stored[tx].amount_cny for tx in tx_ids
    )
    assert [Decimal(e.text or "") for e in root.iter("CRAT")] == [
        stored[tx].transaction.amount for tx in sorted(tx_ids)
    ]
    assert root.findtext("RBIF/CTTN") == "2"
    assert result.total_cny == Decimal("2210000.50")
    assert result.records == len(records) == 2
    assert result.transactions == 3
    assert {r.status for r in records} == {"exported"}
    assert {r.last_export_id for r in records} == {result.export_id}
    export = populated.get(ReportExportRow, result.export_id)
    assert export is not None and export.total_cny == Decimal("2210000.50")


def test_pboc_messages_carry_every_mandatory_tag(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    lv = tmp_path / "lv.xml"
    _export(populated, calendar, lv, kind="large-value", fmt="pboc-xml")
    assert check_pboc(lv.read_bytes(), tags=CONFIG.pboc, kind="large_value") == []
    root = ET.fromstring(lv.read_bytes())
    for tag in ("CBIF", "HTCR", "CCIF", "TSDT", "ATIF", "TSIF", "TCIF", "CRCD", "TSDR"):
        assert root.find(f".//{tag}") is not None, tag
    assert [e.text for e in root.iter("CRCD")] == ["0501", "0502"]
    assert [e.text for e in root.iter("TSDR")] == ["01", "01", "02"]
    str_file = tmp_path / "str.xml"
    _export(populated, calendar, str_file, kind="suspicious", fmt="pboc-xml")
    assert check_pboc(str_file.read_bytes(), tags=CONFIG.pboc, kind="suspicious") == []
    bstr = ET.fromstring(str_file.read_bytes())
    assert bstr.tag == "BSTR"
    for tag in ("SEIF", "STIF", "STCB", "AOSP", "TOSC", "STCR", "DETR"):
        assert bstr.find(f".//{tag}") is not None, tag
    assert "客户无法说明资金来源" in (bstr.findtext(".//AOSP") or "")
    assert "拆分现金交易规避大额报告" in (bstr.findtext(".//AOSP") or "")


def test_structural_check_names_a_missing_mandatory_tag() -> None:
    document = b"<HVTR><RBIF><CTTN>0</CTTN></RBIF><CATIs/></HVTR>"
    assert check_pboc(document, tags=CONFIG.pboc, kind="large_value") == [
        "RBIF #1: RICD is missing"
    ]


def test_goaml_exports_validate_against_the_test_xsd(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    for kind in ("large-value", "suspicious"):
        out = tmp_path / f"{kind}.xml"
        _export(populated, calendar, out, kind=kind, fmt="goaml-xml", xsd=XSD)
        assert validate_goaml(out.read_bytes(), XSD) == []
    broken = (tmp_path / "suspicious.xml").read_bytes().replace(b"<amount_local>", b"<amount_x>")
    broken = broken.replace(b"</amount_local>", b"</amount_x>")
    assert validate_goaml(broken, XSD)


def test_an_empty_period_exports_a_valid_file_that_says_so(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    for fmt in ("pboc-xml", "goaml-xml", "csv", "xlsx"):
        for kind in ("large-value", "suspicious"):
            out = tmp_path / f"empty-{kind}-{fmt}.{SUFFIX[fmt]}"
            result = _export(
                populated, calendar, out, kind=kind, fmt=fmt, first="2024-02-01", last="2024-02-02"
            )
            assert result.empty and result.marked == 0
            if fmt == "goaml-xml":
                assert validate_goaml(out.read_bytes(), XSD) == []
                assert b"empty period" in out.read_bytes()
    lv = ET.fromstring((tmp_path / "empty-large-value-pboc-xml.xml").read_bytes())
    assert lv.findtext("RBIF/CTTN") == "0"
    bstr = ET.fromstring((tmp_path / "empty-suspicious-pboc-xml.xml").read_bytes())
    assert "empty period" in (bstr.findtext("RBIF/AOSP") or "")


def test_second_normal_export_finds_nothing_new_and_resend_repeats(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    first = _export(populated, calendar, tmp_path / "a.xml", kind="large-value", fmt="pboc-xml")
    again = _export(populated, calendar, tmp_path / "b.xml", kind="large-value", fmt="pboc-xml")
    assert (first.entries, again.entries) == (2, 0)
    resend = _export(
        populated, calendar, tmp_path / "c.xml", kind="large-value", fmt="pboc-xml",
        message_type="resend",
    )  # fmt: skip
    assert resend.entries == 2
    review = _export(populated, calendar, tmp_path / "r.csv", kind="large-value", fmt="csv")
    assert review.entries == 2 and review.marked == 0


def test_submitted_then_corrected(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    exported = _export(populated, calendar, tmp_path / "s.xml", kind="suspicious", fmt="pboc-xml")
    submitted = mark_submitted(
        populated, export_id=exported.export_id, actor=COMPLIANCE_B, receipt="CAMLMAC-1", now=NOW
    )
    populated.commit()
    assert submitted.records == 1
    record = populated.scalars(select(SuspiciousReportRow)).one()
    assert record.status == "submitted" and record.submitted_at is not None
    corrected = _export(
        populated, calendar, tmp_path / "c.xml", kind="suspicious", fmt="pboc-xml",
        message_type="correction",
    )  # fmt: skip
    assert corrected.entries == 1
    populated.refresh(record)
    assert record.status == "corrected" and record.corrected_at is not None
    with pytest.raises(InvalidInput):
        mark_submitted(
            populated, export_id=exported.export_id, actor=COMPLIANCE_B, receipt=" ", now=NOW
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "monthly"}, "unknown report kind 'monthly'"),
        ({"first": "2024-13-01"}, "bad dates"),
        ({"first": "2024-03-09"}, "is before --from"),
        ({"fmt": "pdf"}, "unknown format 'pdf'"),
        ({"message_type": "delete"}, "unknown message type 'delete'"),
    ],
)
def test_invalid_requests_are_refused(changes: dict[str, str], message: str) -> None:
    arguments = {
        "kind": "large-value",
        "first": "2024-03-01",
        "last": "2024-03-08",
        "fmt": "pboc-xml",
        "message_type": "normal",
    } | changes
    with pytest.raises(InvalidInput, match=message):
        ExportRequest.parse(
            kind=arguments["kind"],
            first=arguments["first"],
            last=arguments["last"],
            format=arguments["fmt"],
            out=Path("x.xml"),
            message_type=arguments["message_type"],
        )


def test_missing_identity_data_fails_naming_it_and_marks_nothing(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    populated.execute(
        update(CustomerRow).where(CustomerRow.customer_id == "C0002").values(id_number=" ")
    )
    populated.commit()
    events_before = len(populated.scalars(select(AuditEventRow)).all())
    out = tmp_path / "lv.xml"
    with pytest.raises(IncompleteReport, match="customer C0002: missing id_number") as raised:
        _export(populated, calendar, out, kind="large-value", fmt="pboc-xml")
    populated.rollback()
    assert "91310000" not in str(raised.value)  # the message names fields, not values
    assert not out.exists()
    assert {r.status for r in populated.scalars(select(LargeValueReportRow))} == {"pending"}
    assert populated.scalars(select(ReportExportRow)).all() == []
    assert len(populated.scalars(select(AuditEventRow)).all()) == events_before


def test_a_transaction_missing_from_the_store_is_named(
    populated: Session, calendar: WorkingCalendar
) -> None:
    ingest_detection(
        populated,
        replace(
            detection("C0001", "tx-404", outcome=Outcome.REPORT, detector="LVT-CASH-CNY"),
            detection_id="det-missing",
        ),
        now=T0,
        calendar=calendar,
    )
    populated.commit()
    with pytest.raises(IncompleteReport, match="tx-404 not in the case store"):
        _export(populated, calendar, Path("/nonexistent/x.xml"), kind="large-value", fmt="csv")


def test_only_compliance_exports(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    with pytest.raises(Forbidden):
        _export(
            populated, calendar, tmp_path / "x.csv", kind="large-value", fmt="csv", actor=MANAGER
        )


def test_export_is_audited_with_the_file_digest(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    import hashlib

    out = tmp_path / "lv.xml"
    result = _export(populated, calendar, out, kind="large-value", fmt="goaml-xml")
    event = populated.scalars(
        select(AuditEventRow).where(AuditEventRow.action == "report.export")
    ).one()
    assert event.after is not None
    assert event.after["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == result.sha256
    assert event.after["total_cny"] == "2210000.50"
    assert verify_audit_chain(populated).ok


def test_several_strs_go_into_a_zip(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    second = replace(
        detection("C0002", "tx-003", detector="TYP-FATF-GREYLIST"), severity=Severity.CRITICAL
    )
    case_id = ingest_detection(populated, second, now=T0, calendar=calendar).case_id
    assert case_id is not None
    later = T0 + timedelta(hours=2)
    acknowledge(populated, case_id=case_id, actor=MANAGER, now=later)
    escalate(populated, case_id=case_id, actor=MANAGER, assessment="高风险地区", now=later)
    propose_report(populated, case_id=case_id, actor=COMPLIANCE_A, now=later)
    approve_report(populated, case_id=case_id, actor=COMPLIANCE_B, now=later)
    populated.commit()
    with pytest.raises(InvalidInput, match=r"ending in \.zip"):
        _export(populated, calendar, tmp_path / "s.xml", kind="suspicious", fmt="goaml-xml")
    populated.rollback()
    result = _export(
        populated, calendar, tmp_path / "s.zip", kind="suspicious", fmt="goaml-xml", xsd=XSD
    )
    names = zipfile.ZipFile(tmp_path / "s.zip").namelist()
    assert names == ["NBS-C1.xml", "NBS-C2.xml"] and result.files == 2


def test_review_files_keep_amounts_exact(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    _export(populated, calendar, tmp_path / "lv.csv", kind="large-value", fmt="csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "lv.csv").read_text("utf-8-sig"))))
    assert [row["amount"] for row in rows] == ["30000.00", "20000.50", "300000.00"]
    _export(populated, calendar, tmp_path / "lv.xlsx", kind="large-value", fmt="xlsx")
    sheet = load_workbook(tmp_path / "lv.xlsx")["large_value"]
    header = [cell.value for cell in sheet[1]]
    amounts = [
        row[header.index("amount_cny")] for row in sheet.iter_rows(min_row=2, values_only=True)
    ]
    assert amounts == ["30000.00", "20000.50", "2160000.00"]


def test_overdue_counts_for_metrics(
    populated: Session, calendar: WorkingCalendar, tmp_path: Path
) -> None:
    assert overdue_report_counts(populated, today=date(2024, 3, 5)) == {
        "large_value": 0,
        "suspicious": 0,
    }
    _export(populated, calendar, tmp_path / "r.csv", kind="suspicious", fmt="csv")  # records STR
    # Due 5 working days after 4 March: 11 March. Overdue from the 12th until submitted.
    assert overdue_report_counts(populated, today=date(2024, 3, 12)) == {
        "large_value": 2,
        "suspicious": 1,
    }
    backlog = report_backlog(populated, today=date(2024, 3, 12))
    assert {(b.kind, b.status.value, b.overdue, b.count) for b in backlog} == {
        (ReportKind.LARGE_VALUE, "pending", True, 2),
        (ReportKind.SUSPICIOUS, "pending", True, 1),
    }
