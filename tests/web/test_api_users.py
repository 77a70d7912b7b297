"""User management over the API and the admin page: audited, passwords never echoed."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
from sqlalchemy import select

from alerts.database import AuditEventRow
from tests.web.conftest import WebWorld
from tests.web.test_pages_http import signed_in

NEW_PASSWORD = "a brand new passphrase 42"
LATER_PASSWORD = "yet another passphrase 43"


def _token(world: WebWorld, user_id: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=world.base_url) as client:
        return client.post("/api/token", json={"user_id": user_id, "password": password})


def test_admin_adds_resets_and_disables_a_user(web_world: WebWorld) -> None:
    with web_world.client("A1") as admin:
        added = admin.post(
            "/api/users",
            json={
                "user_id": "M9",
                "role": "manager",
                "password": NEW_PASSWORD,
                "display_name": "经理M9",
            },
        )
        assert added.status_code == 201, added.text
        assert added.json()["user_id"] == "M9" and added.json()["active"] is True
        assert "password" not in added.text
        token = _token(web_world, "M9", NEW_PASSWORD).json()["access_token"]
        taken = admin.post(
            "/api/users", json={"user_id": "M9", "role": "manager", "password": NEW_PASSWORD}
        )
        assert taken.status_code == 409 and "already exists" in taken.json()["detail"]

        reset = admin.post("/api/users/M9/reset", json={"password": LATER_PASSWORD})
        assert reset.status_code == 200 and "password" not in reset.text
        with httpx.Client(base_url=web_world.base_url) as old:
            revoked = old.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert revoked.status_code == 401  # a reset signs the user out everywhere
        assert _token(web_world, "M9", NEW_PASSWORD).status_code == 401
        assert _token(web_world, "M9", LATER_PASSWORD).status_code == 200

        disabled = admin.post("/api/users/M9/disable")
        assert disabled.status_code == 200 and disabled.json()["active"] is False
        assert _token(web_world, "M9", LATER_PASSWORD).status_code == 401
        listed = {u["user_id"]: u for u in admin.get("/api/users").json()}
        assert listed["M9"]["active"] is False and "password" not in str(listed)

    with web_world.sessions() as session:
        events = session.scalars(
            select(AuditEventRow).where(AuditEventRow.target == "user M9")
        ).all()
    actions = [(e.action, e.actor) for e in events if e.action.startswith("user.")]
    assert actions == [("user.add", "A1"), ("user.reset", "A1"), ("user.disable", "A1")]
    trail = " ".join(f"{e.before} {e.after}" for e in events)
    assert NEW_PASSWORD not in trail and LATER_PASSWORD not in trail


def test_refusals_say_why_and_never_echo_the_password(web_world: WebWorld) -> None:
    short, huge = "tooshort", "x" * 1025
    with web_world.client("A1") as admin:
        weak = admin.post(
            "/api/users", json={"user_id": "M8", "role": "manager", "password": short}
        )
        long = admin.post("/api/users", json={"user_id": "M8", "role": "manager", "password": huge})
        role = admin.post(
            "/api/users", json={"user_id": "M8", "role": "system", "password": NEW_PASSWORD}
        )
        unknown = admin.post("/api/users/nobody/reset", json={"password": NEW_PASSWORD})
        themselves = admin.post("/api/users/A1/disable")
    assert weak.status_code == 400 and "12 to 1024 characters" in weak.json()["detail"]
    assert long.status_code == 422
    assert role.status_code == 400 and "role system is not one of" in role.json()["detail"]
    assert unknown.status_code == 404 and "user nobody not found" in unknown.json()["detail"]
    assert themselves.status_code == 409
    for answer in (weak, long, role):
        assert short not in answer.text and "x" * 100 not in answer.text
        assert NEW_PASSWORD not in answer.text
    with web_world.client("C1") as compliance:
        refused = compliance.post(
            "/api/users", json={"user_id": "M8", "role": "admin", "password": NEW_PASSWORD}
        )
    assert refused.status_code == 403 and "may not manage users" in refused.json()["detail"]


def test_admin_page_manages_users_with_csrf(web_world: WebWorld) -> None:
    client, csrf = signed_in(web_world, "A1")
    with closing(client):
        page = client.get("/admin")
        assert page.status_code == 200 and 'id="add-user"' in page.text
        form = {"user_id": "P7", "role": "supervisor", "password": NEW_PASSWORD}
        forged = client.post("/admin/users", data={**form, "csrf": "0" * 64})
        assert forged.status_code == 403 and "CSRF" in forged.text
        added = client.post("/admin/users", data={**form, "csrf": csrf})
        assert added.status_code == 303
        listed = client.get(added.headers["location"])
        assert "user.add P7" in listed.text and 'data-user="P7"' in listed.text
        assert NEW_PASSWORD not in listed.text
        weak = client.post("/admin/users/P7/reset", data={"csrf": csrf, "password": "tinypw"})
        assert weak.status_code == 400 and "12 to 1024 characters" in weak.text
        assert "tinypw" not in weak.text
        disabled = client.post("/admin/users/P7/disable", data={"csrf": csrf})
        assert disabled.status_code == 303
        page = client.get("/admin?lang=en")
        row = re.search(r'<tr data-user="P7">.*?</tr>', page.text, re.S)
        assert row is not None and "disabled" in row.group(0)
    assert _token(web_world, "P7", NEW_PASSWORD).status_code == 401
    client, csrf = signed_in(web_world, "C1")
    with closing(client):
        assert client.get("/admin").status_code == 403
        refused = client.post("/admin/users", data={**form, "user_id": "P8", "csrf": csrf})
        assert refused.status_code == 403
