"""Pages over plain HTTP: session cookie sign-in, CSRF on every form, scope and errors."""

from __future__ import annotations

import re
from contextlib import closing
from datetime import date

import httpx

from tests.web.conftest import PASSWORD, WebWorld


def signed_in(world: WebWorld, user_id: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=world.base_url, timeout=30)
    answer = client.post("/login", data={"user_id": user_id, "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    inbox = client.get("/", follow_redirects=True)  # the role's home page
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', inbox.text)
    assert csrf is not None
    return client, csrf.group(1)


def test_pages_need_a_session(web_world: WebWorld) -> None:
    with httpx.Client(base_url=web_world.base_url) as client:
        for path in ("/", "/inbox", "/console", "/cases/1"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/login"
        wrong = client.post("/login", data={"user_id": "M1", "password": "not the password"})
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text


def test_forms_without_the_csrf_token_are_refused(web_world: WebWorld) -> None:
    case_id = web_world.new_case("M1")
    client, csrf = signed_in(web_world, "M1")
    with closing(client):
        missing = client.post(f"/cases/{case_id}/acknowledge")
        forged = client.post(f"/cases/{case_id}/acknowledge", data={"csrf": "0" * 64})
        assert missing.status_code == forged.status_code == 403
        assert "CSRF" in forged.text
        done = client.post(f"/cases/{case_id}/acknowledge", data={"csrf": csrf, "back": "inbox"})
        assert done.status_code == 303 and done.headers["location"] == "/inbox"
        again = client.post(f"/cases/{case_id}/acknowledge", data={"csrf": csrf})
        assert again.status_code == 409


def test_other_team_gets_404_pages_and_roles_their_own_home(web_world: WebWorld) -> None:
    case_id = web_world.new_case("M1")
    client, csrf = signed_in(web_world, "S2")
    with closing(client):
        assert client.get(f"/cases/{case_id}").status_code == 404
        refused = client.post(f"/cases/{case_id}/acknowledge", data={"csrf": csrf})
        assert refused.status_code == 404
        assert client.get("/cases/99999999999").status_code == 404
    client, _ = signed_in(web_world, "C1")
    with closing(client):
        assert client.get("/").headers["location"] == "/console"
        english = client.get("/console?lang=en")
        assert "Compliance console" in english.text
        assert "Compliance console" in client.get("/console").text  # remembered
    client, _ = signed_in(web_world, "A1")
    with closing(client):
        assert client.get("/").headers["location"] == "/admin"
        assert client.get("/inbox").status_code == 403


def test_console_exports_reports_from_a_csrf_protected_form(web_world: WebWorld) -> None:
    customer_id, tx_id = web_world.new_large_value(date(2024, 6, 4))
    form = {"kind": "large-value", "from": "2024-06-04", "to": "2024-06-04", "format": "csv"}
    client, csrf = signed_in(web_world, "C1")
    with closing(client):
        console = client.get("/console?lang=en")
        assert 'id="export-form"' in console.text and 'id="report-backlog"' in console.text
        assert client.post("/console/reports/export", data=form).status_code == 403
        done = client.post("/console/reports/export", data={**form, "csrf": csrf})
        assert done.status_code == 200
        assert done.headers["content-disposition"].startswith("attachment;")
        assert tx_id in done.text and customer_id in done.text
        bad = client.post(
            "/console/reports/export", data={**form, "from": "2024-06-31", "csrf": csrf}
        )
        assert bad.status_code == 400 and "the export form is incomplete or wrong: from" in bad.text
    client, csrf = signed_in(web_world, "S1")
    with closing(client):
        console = client.get("/console")
        assert console.status_code == 200 and 'id="export-form"' not in console.text
        refused = client.post("/console/reports/export", data={**form, "csrf": csrf})
        assert refused.status_code == 403
