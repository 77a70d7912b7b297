"""Report routes over HTTP: exports come back as files, audited like the CLI's, nothing
marked when they fail; receipts; the backlog and its gauges on /metrics.

Each test uses bank days of its own, so exports of one test never take another's records.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from datetime import date

from sqlalchemy import func, select, update

from alerts.database import AuditEventRow, CustomerRow, LargeValueReportRow, ReportExportRow
from tests.web.conftest import WebWorld
from tests.web.test_api_authorisation import _act


def _export(world: WebWorld, user: str = "C1", **body: str):  # type: ignore[no-untyped-def]
    with world.client(user) as client:
        return client.post("/api/reports/exports", json=body)


def _statuses(world: WebWorld, customer_ids: list[str]) -> dict[str, str]:
    with world.sessions() as session:
        rows = session.execute(
            select(LargeValueReportRow.customer_id, LargeValueReportRow.status).where(
                LargeValueReportRow.customer_id.in_(customer_ids)
            )
        )
        return {customer_id: status for customer_id, status in rows}


def _count(world: WebWorld, model: type) -> int:
    with world.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_compliance_exports_a_pboc_filing_audited_and_marked(web_world: WebWorld) -> None:
    day = date(2024, 5, 6)
    first, second = web_world.new_large_value(day), web_world.new_large_value(day)
    answer = _export(
        web_world,
        kind="large-value",
        **{"from": "2024-05-06", "to": "2024-05-06"},
        format="pboc-xml",
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/xml")
    disposition = answer.headers["content-disposition"]
    assert disposition == 'attachment; filename="large-value-pboc-2024-05-06-2024-05-06.xml"'
    root = ET.fromstring(answer.content)
    assert root.tag == "HVTR"
    assert sorted(e.text for e in root.iter("TICD")) == sorted([first[1], second[1]])
    assert answer.headers["x-export-entries"] == "2" and answer.headers["x-export-marked"] == "2"
    export_id = int(answer.headers["x-export-id"])
    assert _statuses(web_world, [first[0], second[0]]) == {
        first[0]: "exported",
        second[0]: "exported",
    }
    with web_world.sessions() as session:
        export = session.get(ReportExportRow, export_id)
        assert export is not None and export.exported_by == "C1"
        assert export.sha256 == answer.headers["x-export-sha256"]
        event = session.scalars(
            select(AuditEventRow).where(AuditEventRow.target == f"report export {export_id}")
        ).one()
    assert (event.action, event.actor, event.role) == ("report.export", "C1", "compliance")
    # A second normal filing of the period finds nothing pending any more.
    again = _export(
        web_world,
        kind="large-value",
        **{"from": "2024-05-06", "to": "2024-05-06"},
        format="pboc-xml",
    )
    assert again.status_code == 200 and again.headers["x-export-entries"] == "0"


def test_review_files_mark_nothing(web_world: WebWorld) -> None:
    day = date(2024, 5, 7)
    customer_id, tx_id = web_world.new_large_value(day)
    for fmt, media in (("csv", "text/csv"), ("xlsx", "application/vnd.openxmlformats")):
        answer = _export(
            web_world, kind="large-value", **{"from": "2024-05-07", "to": "2024-05-07"}, format=fmt
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith(media)
        assert answer.headers["x-export-marked"] == "0"
    assert tx_id in answer.content.decode("utf-8", "replace") or fmt == "xlsx"
    assert _statuses(web_world, [customer_id]) == {customer_id: "pending"}


def test_bad_input_is_refused_with_the_reason(web_world: WebWorld) -> None:
    period = {"from": "2024-05-06", "to": "2024-05-06"}
    cases = [
        ({"kind": "huge", **period, "format": "csv"}, 422, "kind"),
        (
            {"kind": "large-value", "from": "2024-02-30", "to": "2024-03-01", "format": "csv"},
            422,
            "from",
        ),
        ({"kind": "large-value", **period, "format": "pdf"}, 422, "format"),
        (
            {"kind": "large-value", "from": "2024-05-08", "to": "2024-05-01", "format": "csv"},
            400,
            "'to' 2024-05-01 is before 'from' 2024-05-08",
        ),
        (
            {"kind": "large-value", **period, "format": "csv", "message_type": "resend"},
            400,
            "message type resend applies to filings",
        ),
    ]
    exports_before = _count(web_world, ReportExportRow)
    for body, status, reason in cases:
        answer = _export(web_world, **body)
        assert answer.status_code == status, (body, answer.text)
        assert reason in answer.text, answer.text
    assert _count(web_world, ReportExportRow) == exports_before


def test_a_failing_export_marks_nothing_and_records_nothing(web_world: WebWorld) -> None:
    day = date(2024, 5, 8)
    good, _ = web_world.new_large_value(day)
    broken, _ = web_world.new_large_value(day)
    with web_world.sessions() as session:
        session.execute(
            update(CustomerRow).where(CustomerRow.customer_id == broken).values(id_number=" ")
        )
        session.commit()
    exports_before = _count(web_world, ReportExportRow)
    events_before = _count(web_world, AuditEventRow)
    answer = _export(
        web_world,
        kind="large-value",
        **{"from": "2024-05-08", "to": "2024-05-08"},
        format="pboc-xml",
    )
    assert answer.status_code == 400
    assert f"customer {broken}: missing id_number" in answer.json()["detail"]
    assert _statuses(web_world, [good, broken]) == {good: "pending", broken: "pending"}
    assert _count(web_world, ReportExportRow) == exports_before
    assert _count(web_world, AuditEventRow) == events_before


def test_other_roles_may_not_export(web_world: WebWorld) -> None:
    day = date(2024, 5, 9)
    customer_id, _ = web_world.new_large_value(day)
    for user in ("M1", "S1", "A1"):
        answer = _export(
            web_world,
            user,
            kind="large-value",
            **{"from": "2024-05-09", "to": "2024-05-09"},
            format="pboc-xml",
        )
        assert answer.status_code == 403
        assert "may not export regulatory reports" in answer.json()["detail"]
    assert _statuses(web_world, [customer_id]) == {customer_id: "pending"}


def test_suspicious_filings_come_as_a_zip_of_one_message_per_case(web_world: WebWorld) -> None:
    case_id = web_world.new_case("M1", history=3)  # an STR reports the transactions
    _act(web_world, "M1", case_id, "acknowledge")
    _act(web_world, "M1", case_id, "escalate", {"assessment": "拆分现金交易"})
    _act(web_world, "C2", case_id, "propose-report")
    _act(web_world, "C1", case_id, "approve-report")
    with web_world.client("C1") as client:
        backlog = client.get("/api/reports/backlog").json()  # records the decided STR
    assert any(i["kind"] == "suspicious" and i["status"] == "pending" for i in backlog["items"])
    today = backlog["today"]
    answer = _export(
        web_world, kind="suspicious", **{"from": today, "to": today}, format="pboc-xml"
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert any(re.fullmatch(rf"\w+-C{case_id}\.xml", name) for name in names), names
    # An empty period's filing is a zip too, holding one .xml that says so.
    empty = _export(
        web_world,
        kind="suspicious",
        **{"from": "2024-01-03", "to": "2024-01-03"},
        format="goaml-xml",
    )
    assert empty.status_code == 200, empty.text
    assert zipfile.ZipFile(io.BytesIO(empty.content)).namelist() == [
        "suspicious-goaml-2024-01-03-2024-01-03.xml"
    ]


def test_receipts_make_records_submitted_once(web_world: WebWorld) -> None:
    day = date(2024, 5, 10)
    customer_id, _ = web_world.new_large_value(day)
    period = {"from": "2024-05-10", "to": "2024-05-10"}
    filed = _export(web_world, kind="large-value", **period, format="goaml-xml")
    review = _export(web_world, kind="large-value", **period, format="csv")
    export_id, review_id = filed.headers["x-export-id"], review.headers["x-export-id"]
    with web_world.client("C2") as client:
        blank = client.post(f"/api/reports/{export_id}/submitted", json={"receipt": "  "})
        done = client.post(f"/api/reports/{export_id}/submitted", json={"receipt": "FIU-42"})
        twice = client.post(f"/api/reports/{export_id}/submitted", json={"receipt": "FIU-43"})
        not_filing = client.post(f"/api/reports/{review_id}/submitted", json={"receipt": "X"})
        missing = client.post("/api/reports/999999/submitted", json={"receipt": "X"})
    with web_world.client("M1") as client:
        refused = client.post(f"/api/reports/{export_id}/submitted", json={"receipt": "X"})
    assert blank.status_code == 422
    assert done.status_code == 200, done.text
    assert done.json() == {"export_id": int(export_id), "kind": "large_value", "records": 1}
    assert twice.status_code == 409 and "already submitted (FIU-42)" in twice.json()["detail"]
    assert not_filing.status_code == 409 and "review file" in not_filing.json()["detail"]
    assert missing.status_code == 404 and "999999 not found" in missing.json()["detail"]
    assert refused.status_code == 403
    assert _statuses(web_world, [customer_id]) == {customer_id: "submitted"}


def test_backlog_counts_overdue_records_and_metrics_agree(web_world: WebWorld) -> None:
    with web_world.client("C1") as client:
        before = client.get("/api/reports/backlog").json()
    web_world.new_large_value(date(2024, 5, 13))  # long past its deadline
    with web_world.client("A1") as client:
        after = client.get("/api/reports/backlog")
    assert after.status_code == 200
    overdue = after.json()["overdue"]
    assert overdue["large_value"] == before["overdue"]["large_value"] + 1
    pending = sum(
        i["count"]
        for i in after.json()["items"]
        if i["kind"] == "large_value" and i["status"] == "pending"
    )
    with web_world.client() as client:
        metrics = client.get("/metrics").text
    assert f'amlwatch_reports_overdue{{kind="large_value"}} {overdue["large_value"]}.0' in metrics
    assert f'amlwatch_reports_overdue{{kind="suspicious"}} {overdue["suspicious"]}.0' in metrics
    assert f'amlwatch_reports_pending{{kind="large_value"}} {pending}.0' in metrics
