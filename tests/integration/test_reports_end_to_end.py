"""End to end on simulated data: backtest --persist -> large-value records and a case filed
as suspicious (four eyes) -> both reports in PBoC and goAML XML -> the audit chain verifies.

The stream part runs in process (``amlwatch backtest --persist`` stores through the
worker's own ``store_batch``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from typer.testing import CliRunner

from alerts.actors import Actor, Role
from alerts.cases import acknowledge, approve_report, escalate, propose_report
from alerts.database import (
    CaseRow,
    LargeValueReportRow,
    ReportExportRow,
    TransactionRow,
    make_engine,
    session_factory,
)
from alerts.reports import load_report_config
from alerts.reports.goaml import validate_goaml
from alerts.reports.pboc import check_pboc
from stream.cli import cli
from stream.simulator import (
    derive_rng,
    generate_history,
    generate_reference,
    write_customers_csv,
    write_managers_csv,
    write_transactions_csv,
)

START = date(2026, 3, 2)
XSD = Path(__file__).parents[1] / "alerts" / "schemas" / "goaml_test.xsd"


def _run(runner: CliRunner, *arguments: str) -> str:
    result = runner.invoke(cli, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


def test_simulated_stream_to_both_reports_with_an_intact_audit_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    runner = CliRunner(
        env={"AMLWATCH_DATABASE_URL": url, "AMLWATCH_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    )
    rng = derive_rng(11, "reports-e2e")
    people, managers = generate_reference(rng, 80, 3, as_of=START)
    history = list(generate_history(rng, people, start=START, days=10, scenario_rate=20.0))
    write_transactions_csv(tmp_path / "tx.csv", history)
    write_customers_csv(tmp_path / "customers.csv", people)
    write_managers_csv(tmp_path / "managers.csv", managers)
    _run(runner, "import", "managers", str(tmp_path / "managers.csv"), "--actor", "ops")
    _run(runner, "import", "customers", str(tmp_path / "customers.csv"), "--actor", "ops")
    backtest = [
        "backtest", "--transactions", str(tmp_path / "tx.csv"),
        "--customers", str(tmp_path / "customers.csv"), "--out", str(tmp_path / "alerts.jsonl"),
        "--no-model", "--persist",
    ]  # fmt: skip
    first = _run(runner, *backtest)
    assert "case store:" in first
    again = " ".join(_run(runner, *backtest).split())
    assert "case store: 0 new transactions, 0 large-value report records, 0 cases opened" in again

    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(TransactionRow)) == len(history)
        lv_records = session.scalar(select(func.count()).select_from(LargeValueReportRow))
        assert lv_records
        case_id = session.scalars(select(CaseRow.id).order_by(CaseRow.id)).first()
        assert case_id is not None
        now = datetime.now(UTC)
        acknowledge(session, case_id=case_id, actor=Actor("co0", Role.COMPLIANCE), now=now)
        escalate(
            session,
            case_id=case_id,
            actor=Actor("co0", Role.COMPLIANCE),
            assessment="funds split and passed on",
            now=now,
        )
        propose_report(session, case_id=case_id, actor=Actor("co1", Role.COMPLIANCE), now=now)
        approve_report(session, case_id=case_id, actor=Actor("co2", Role.COMPLIANCE), now=now)
        session.commit()

    bank_today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    period = ["--from", START.isoformat(), "--to", bank_today.isoformat()]
    lv_xml, lv_goaml = tmp_path / "lv-pboc.xml", tmp_path / "lv-goaml.xml"
    str_xml, str_goaml = tmp_path / "str-pboc.xml", tmp_path / "str-goaml.xml"
    _run(runner, "report", "export", "--kind", "large-value", *period,
         "--format", "pboc-xml", "--out", str(lv_xml), "--actor", "co1")  # fmt: skip
    # Filed once; the goAML copy of the same records is a re-send.
    _run(runner, "report", "export", "--kind", "large-value", *period, "--format", "goaml-xml",
         "--message-type", "resend", "--xsd", str(XSD), "--out", str(lv_goaml),
         "--actor", "co1")  # fmt: skip
    _run(runner, "report", "export", "--kind", "suspicious", *period,
         "--format", "pboc-xml", "--out", str(str_xml), "--actor", "co1")  # fmt: skip
    _run(runner, "report", "export", "--kind", "suspicious", *period, "--format", "goaml-xml",
         "--message-type", "resend", "--xsd", str(XSD), "--out", str(str_goaml),
         "--actor", "co1")  # fmt: skip

    tags = load_report_config().pboc
    assert check_pboc(lv_xml.read_bytes(), tags=tags, kind="large_value") == []
    assert check_pboc(str_xml.read_bytes(), tags=tags, kind="suspicious") == []
    assert validate_goaml(lv_goaml.read_bytes(), XSD) == []
    assert validate_goaml(str_goaml.read_bytes(), XSD) == []
    pboc_total = sum(Decimal(e.text or "") for e in ET.parse(lv_xml).iter("CRMB"))
    goaml_total = sum(Decimal(e.text or "") for e in ET.parse(lv_goaml).iter("amount_local"))
    with sessions() as session:
        exports = session.scalars(select(ReportExportRow).order_by(ReportExportRow.id)).all()
        assert [e.total_cny for e in exports[:2]] == [pboc_total, goaml_total]
        assert {r.status for r in session.scalars(select(LargeValueReportRow))} == {"exported"}
        str_export = exports[2]
        assert (str_export.kind, str_export.entries) == ("suspicious", 1)
    assert ET.parse(str_xml).getroot().tag == "BSTR"
    assert not zipfile.is_zipfile(str_xml)

    submitted = _run(
        runner, "report", "mark-submitted", str(str_export.id), "--receipt", "R-1", "--actor", "co2"
    )
    assert "1 suspicious records submitted" in submitted
    status = _run(runner, "report", "status")
    assert "large_value" in status and "suspicious" in status
    assert "audit chain intact" in _run(runner, "audit", "verify")
    engine.dispose()
