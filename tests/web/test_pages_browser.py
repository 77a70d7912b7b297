"""The pages in a real browser: Debian's chromium driven by Playwright (no browser
download), against the app under uvicorn on a SQLite case store.

Set AMLWATCH_SCREENSHOT_DIR (e.g. docs/screenshots) to keep the inbox, case page,
console, report export and admin screenshots; they are always written under the test's
temporary directory.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from alerts.database import migrate
from core.detection import Severity
from tests.web.conftest import PASSWORD, WebWorld

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def web_database(tmp_path_factory: pytest.TempPathFactory) -> URL:
    """Browser tests need one database only: SQLite."""
    url = make_url(f"sqlite:///{tmp_path_factory.mktemp('browser') / 'cases.sqlite3'}")
    migrate(url)
    return url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    keep = os.environ.get("AMLWATCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in tmp_path.glob("*.png"):
            shutil.copy(shot, Path(keep) / shot.name)


def sign_in(browser: object, world: WebWorld, user_id: str, lang: str = "zh-CN") -> object:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.goto(f"{world.base_url}/login?lang={lang}")
    page.fill("input[name=user_id]", user_id)
    page.fill("input[name=password]", PASSWORD)
    page.click("#sign-in")
    return page


def test_manager_acknowledges_and_other_manager_cannot_see(
    browser: object, web_world: WebWorld, shots: Path
) -> None:
    web_world.new_case("M1", severity=Severity.MEDIUM, history=3)
    case_id = web_world.new_case("M1", severity=Severity.CRITICAL, history=30)
    page = sign_in(browser, web_world, "M1")
    page.wait_for_url("**/inbox")
    row = page.locator(f"tr[data-case=C{case_id}]")
    assert row.locator(".state").inner_text() == "新建"
    assert page.locator("#count-critical").inner_text() == "1"
    assert "严重" in row.inner_text()
    page.screenshot(path=str(shots / "inbox.png"), full_page=True)

    page.click(f"a[href='/cases/{case_id}']")
    page.wait_for_url(f"**/cases/{case_id}")
    assert page.locator("#case-state").inner_text() == "新建"
    assert page.locator("svg.chart circle.flagged").count() == 1
    assert page.locator("svg.chart circle.tx").count() >= 25  # the last 30 days
    page.click("#do-acknowledge")
    page.wait_for_url(f"**/cases/{case_id}")
    assert page.locator("#case-state").inner_text() == "已确认"
    actions = page.locator("#audit-trail .audit-action").all_inner_texts()
    assert actions[-1] == "case.acknowledge"
    page.screenshot(path=str(shots / "case.png"), full_page=True)

    page.goto(f"{web_world.base_url}/cases/{case_id}?lang=en")
    assert page.locator("#case-state").inner_text() == "acknowledged"
    page.close()

    other = sign_in(browser, web_world, "M2")
    other.wait_for_url("**/inbox")
    assert other.locator(f"tr[data-case=C{case_id}]").count() == 0
    answer = other.goto(f"{web_world.base_url}/cases/{case_id}")
    assert answer is not None and answer.status == 404
    assert f"C{case_id} not found" in other.locator("#message").inner_text()
    other.close()


def test_compliance_approves_an_escalation_with_four_eyes(
    browser: object, web_world: WebWorld, shots: Path
) -> None:
    case_id = web_world.new_case("M1", severity=Severity.HIGH, history=10)
    manager = sign_in(browser, web_world, "M1")
    manager.goto(f"{web_world.base_url}/cases/{case_id}")
    manager.click("#do-acknowledge")
    manager.fill("#form-escalate textarea", "现金分拆存入, 疑似规避大额报告")
    manager.click("#do-escalate")
    assert manager.locator("#case-state").inner_text() == "已上报合规"
    manager.close()

    proposer = sign_in(browser, web_world, "C2")
    proposer.wait_for_url("**/console")
    assert proposer.locator(f"tr[data-case=C{case_id}]").count() == 1
    proposer.click(f"a[href='/cases/{case_id}']")
    proposer.click("#do-propose-report")
    # Four eyes: the proposer is not offered the approval.
    assert proposer.locator("#do-approve-report").count() == 0
    proposer.goto(f"{web_world.base_url}/console")
    proposer.screenshot(path=str(shots / "console.png"), full_page=True)
    proposer.close()

    approver = sign_in(browser, web_world, "C1")
    approver.goto(f"{web_world.base_url}/cases/{case_id}")
    approver.click("#do-approve-report")
    assert approver.locator("#case-state").inner_text() == "已报送"
    approver.goto(f"{web_world.base_url}/console")
    approver.click("#verify-audit")
    assert approver.locator("#verified").inner_text().endswith("events OK")
    approver.close()


def test_compliance_exports_a_large_value_report_from_the_console(
    browser: object, web_world: WebWorld, shots: Path
) -> None:
    customer_id, tx_id = web_world.new_large_value(date(2024, 6, 3))
    page = sign_in(browser, web_world, "C1")
    page.wait_for_url("**/console")
    row = page.locator("#report-backlog tr[data-kind=large_value]")
    assert row.locator("td").first.inner_text() == "大额交易报告"
    assert int(row.locator(".pending").inner_text()) >= 1
    assert int(row.locator(".overdue-count").inner_text()) >= 1  # June 2024 is long past
    form = page.locator("#export-form")
    form.locator("select[name=kind]").select_option("large-value")
    form.locator("input[name=from]").fill("2024-06-03")
    form.locator("input[name=to]").fill("2024-06-03")
    form.locator("select[name=format]").select_option("pboc-xml")
    page.locator("#reports").screenshot(path=str(shots / "reports.png"))
    with page.expect_download() as arrived:
        page.click("#do-export")
    download = arrived.value
    assert download.suggested_filename == "large-value-pboc-2024-06-03-2024-06-03.xml"
    root = ET.parse(download.path()).getroot()
    assert root.tag == "HVTR" and [e.text for e in root.iter("TICD")] == [tx_id]
    page.goto(f"{web_world.base_url}/console?lang=en")
    row = page.locator("#report-backlog tr[data-kind=large_value]")
    assert row.locator("td").first.inner_text() == "Large-value"
    assert row.locator(".pending").inner_text() == "0"
    page.close()

    admin = sign_in(browser, web_world, "A1", lang="en")
    admin.wait_for_url("**/admin")
    admin.fill("#add-user input[name=user_id]", "M7")
    admin.select_option("#add-user select[name=role]", "manager")
    admin.fill("#add-user input[name=password]", "a long enough passphrase")
    admin.click("#do-add-user")
    assert admin.locator("#done").inner_text() == "user.add M7"
    assert admin.locator("tr[data-user=M7] .user-state").inner_text() == "active"
    admin.screenshot(path=str(shots / "admin.png"), full_page=True)
    admin.close()
    assert customer_id
