"""Every role against every API route, over HTTP to a real server and database.

The case of each row belongs to manager M1 (supervisor S1) and is brought to the state
the route needs; M2 and S2 are the other team, so their attempts must answer 404 exactly
as for a case that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from alerts.actors import SYSTEM_ACTOR, Role
from alerts.users import add_user
from tests.web.conftest import LONGEST_CUSTOMER_ID, PASSWORD, USERS, WebWorld

ANON = "anonymous"
ACTORS = (*USERS, ANON)


def _act(world: WebWorld, user: str, case_id: int, action: str, body: dict | None = None) -> None:
    with world.client(user) as client:
        answer = client.post(f"/api/cases/{case_id}/{action}", json=body)
        assert answer.status_code in (200, 201), answer.text


def _new(world: WebWorld) -> int:
    return world.new_case("M1")


def _acknowledged(world: WebWorld) -> int:
    case_id = _new(world)
    _act(world, "M1", case_id, "acknowledge")
    return case_id


def _investigating(world: WebWorld) -> int:
    case_id = _acknowledged(world)
    _act(world, "M1", case_id, "investigate")
    return case_id


def _escalated(world: WebWorld) -> int:
    case_id = _acknowledged(world)
    _act(world, "M1", case_id, "escalate", {"assessment": "fits structuring"})
    return case_id


def _proposed(world: WebWorld) -> int:
    case_id = _escalated(world)
    _act(world, "C2", case_id, "propose-report")
    return case_id


def _filed_export(world: WebWorld) -> int:
    """A PBoC filing of an empty period, not yet submitted: its export id."""
    body = {"kind": "large-value", "from": "2024-01-02", "to": "2024-01-02", "format": "pboc-xml"}
    with world.client("C1") as client:
        answer = client.post("/api/reports/exports", json=body)
    assert answer.status_code == 200, answer.text
    return int(answer.headers["x-export-id"])


def _disposable_user(world: WebWorld) -> str:
    """A manager login nobody else uses (resetting or disabling it revokes its tokens)."""
    user_id = f"U{uuid.uuid4().hex[:8]}"
    with world.sessions() as session:
        add_user(
            session,
            user_id=user_id,
            role=Role.MANAGER,
            password=PASSWORD,
            actor=SYSTEM_ACTOR,
            now=datetime.now(UTC),
        )
        session.commit()
    return user_id


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # {case} is replaced by what setup returns (a case, export or user id)
    setup: Callable[[WebWorld], int | str] | None
    allowed: dict[str, int]  # user -> status; everyone else gets ``others``
    others: int
    body: dict | None = None
    files: dict | None = None


CASE_TEAM = {"M1": 200, "S1": 200, "C1": 200, "C2": 200, "M2": 404, "S2": 404, "A1": 403}
FILERS = {"C1": 200, "C2": 200, "M1": 403, "M2": 403, "S1": 403, "S2": 403, "A1": 403}
REPORTERS = {**dict.fromkeys(USERS, 403), "C1": 200, "C2": 200}
ADMINS = {**dict.fromkeys(USERS, 403), "A1": 200}
REVIEW_EXPORT = {"kind": "large-value", "from": "2024-01-01", "to": "2024-01-31", "format": "csv"}
MANAGERS_CSV = (
    "manager_id,name,email,grade,supervisor_id,branch,active\n"
    "R3,经理R3,r3@bank.example,junior,,Shanghai,true\n"
)
ROUTES = [
    Route("me", "GET", "/api/me", None, {u: 200 for u in USERS}, 401),
    Route("list", "GET", "/api/cases", None, {**dict.fromkeys(USERS, 200), "A1": 403}, 401),
    Route("detail", "GET", "/api/cases/{case}", _new, CASE_TEAM, 401),
    Route("acknowledge", "POST", "/api/cases/{case}/acknowledge", _new, CASE_TEAM, 401),
    Route("investigate", "POST", "/api/cases/{case}/investigate", _acknowledged, CASE_TEAM, 401),
    Route(
        "note",
        "POST",
        "/api/cases/{case}/notes",
        _new,
        {**CASE_TEAM, "M1": 201, "S1": 201, "C1": 201, "C2": 201},
        401,
        body={"body": "called the customer"},
    ),
    Route(
        "close",
        "POST",
        "/api/cases/{case}/close",
        _investigating,
        CASE_TEAM,
        401,
        body={"disposition": "false_positive", "reason": "salary"},
    ),
    Route(
        "escalate",
        "POST",
        "/api/cases/{case}/escalate",
        _acknowledged,
        CASE_TEAM,
        401,
        body={"assessment": "suspicious"},
    ),
    Route("propose", "POST", "/api/cases/{case}/propose-report", _escalated, FILERS, 401),
    # C2 proposed the STR: four eyes refuse their own approval.
    Route(
        "approve",
        "POST",
        "/api/cases/{case}/approve-report",
        _proposed,
        {**FILERS, "C2": 403},
        401,
    ),
    Route(
        "reassign",
        "POST",
        "/api/managers/reassign",
        None,
        {**dict.fromkeys(USERS, 403), "A1": 200},
        401,
        body={"from_manager": "R1", "to_manager": "R2"},
    ),
    Route(
        "import",
        "POST",
        "/api/reference/managers",
        None,
        {**dict.fromkeys(USERS, 403), "A1": 200},
        401,
        files={"file": ("managers.csv", MANAGERS_CSV.encode(), "text/csv")},
    ),
    Route(
        "audit",
        "GET",
        "/api/audit",
        None,
        {**dict.fromkeys(USERS, 403), "C1": 200, "C2": 200, "A1": 200},
        401,
    ),
    Route(
        "verify",
        "POST",
        "/api/audit/verify",
        None,
        {**dict.fromkeys(USERS, 403), "C1": 200, "C2": 200, "A1": 200},
        401,
    ),
    Route("export", "POST", "/api/reports/exports", None, REPORTERS, 401, body=REVIEW_EXPORT),
    Route(
        "submitted",
        "POST",
        "/api/reports/{case}/submitted",
        _filed_export,
        REPORTERS,
        401,
        body={"receipt": "PBOC-RCPT-0001"},
    ),
    Route("backlog", "GET", "/api/reports/backlog", None, {**REPORTERS, "A1": 200}, 401),
    Route("users", "GET", "/api/users", None, ADMINS, 401),
    Route(
        "add user",
        "POST",
        "/api/users",
        None,
        {**ADMINS, "A1": 201},
        401,
        body={"user_id": "N1", "role": "manager", "password": PASSWORD},
    ),
    Route(
        "reset",
        "POST",
        "/api/users/{case}/reset",
        _disposable_user,
        ADMINS,
        401,
        body={"password": "another long enough password"},
    ),
    Route("disable", "POST", "/api/users/{case}/disable", _disposable_user, ADMINS, 401),
]


def _expected(route: Route, user: str) -> int:
    if user == ANON:
        return route.others
    return route.allowed[user]


def test_the_table_names_every_user_for_every_route() -> None:
    for route in ROUTES:
        assert set(route.allowed) == set(USERS), route.name


@pytest.mark.parametrize("user", ACTORS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_role_against_every_route(web_world: WebWorld, route: Route, user: str) -> None:
    case_id = route.setup(web_world) if route.setup else None
    path = route.path.replace("{case}", str(case_id))
    with web_world.client(None if user == ANON else user) as client:
        answer = client.request(route.method, path, json=route.body, files=route.files)
    expected = _expected(route, user)
    assert answer.status_code == expected, (route.name, user, answer.text)
    assert PASSWORD not in answer.text, "no answer echoes a password"
    if expected >= 400:
        assert answer.json()["detail"], "every refusal says why"
    if expected == 404:
        # Indistinguishable from a case that does not exist.
        with web_world.client(user) as client:
            missing = client.request(
                route.method, route.path.replace("{case}", "999999"), json=route.body
            )
        assert missing.status_code == 404
        assert answer.json()["detail"].replace(f"C{case_id}", "C999999") == missing.json()["detail"]


def test_case_list_is_scoped_per_actor(web_world: WebWorld) -> None:
    mine, theirs = web_world.new_case("M1"), web_world.new_case("M2")

    def visible(user: str) -> set[int]:
        with web_world.client(user) as client:
            answer = client.get("/api/cases", params={"limit": 500, "state": "all"})
        assert answer.status_code == 200
        return {item["case_id"] for item in answer.json()["items"]}

    assert mine in visible("M1") and theirs not in visible("M1")
    assert theirs in visible("M2") and mine not in visible("M2")
    assert mine in visible("S1") and theirs not in visible("S1")
    assert {mine, theirs} <= visible("C1")


def test_the_case_list_filters_on_customer_ids_as_long_as_the_contract_allows(
    web_world: WebWorld,
) -> None:
    found = web_world.new_case("M1", customer_id=LONGEST_CUSTOMER_ID)
    other = web_world.new_case("M1")
    with web_world.client("M1") as client:
        answer = client.get("/api/cases", params={"customer_id": LONGEST_CUSTOMER_ID})
        too_long = client.get("/api/cases", params={"customer_id": LONGEST_CUSTOMER_ID + "X"})
    assert answer.status_code == 200, answer.text
    listed = {item["case_id"] for item in answer.json()["items"]}
    assert found in listed and other not in listed
    assert too_long.status_code == 422


def test_four_eyes_the_proposer_cannot_approve(web_world: WebWorld) -> None:
    case_id = _proposed(web_world)
    with web_world.client("C2") as client:
        refused = client.post(f"/api/cases/{case_id}/approve-report")
    assert refused.status_code == 403
    assert "four eyes" in refused.json()["detail"]
    with web_world.client("C1") as client:
        approved = client.post(f"/api/cases/{case_id}/approve-report")
    assert approved.status_code == 200
    assert approved.json()["status"] == "reported"


def test_refused_state_changes_are_conflicts_with_reasons(web_world: WebWorld) -> None:
    case_id = _acknowledged(web_world)
    with web_world.client("M1") as client:
        again = client.post(f"/api/cases/{case_id}/acknowledge")
        empty = client.post(f"/api/cases/{case_id}/escalate", json={"assessment": "   "})
        bad = client.get("/api/cases", params={"severity": "enormous"})
        huge = client.get("/api/cases/99999999999999")
    assert again.status_code == 409 and "acknowledged; cannot acknowledge" in again.json()["detail"]
    assert empty.status_code == 422
    assert bad.status_code == 422
    assert huge.status_code == 422


def test_case_detail_has_alerts_reasons_transactions_and_audit(web_world: WebWorld) -> None:
    case_id = _acknowledged(web_world)
    with web_world.client("M1") as client:
        detail = client.get(f"/api/cases/{case_id}").json()
    assert detail["case"]["status"] == "acknowledged"
    assert detail["alerts"][0]["reasons"]
    assert [e["action"] for e in detail["audit"]][-1] == "case.acknowledge"


def test_failed_logins_are_throttled_and_audited(web_world: WebWorld) -> None:
    with httpx.Client(base_url=web_world.base_url) as client:
        for _ in range(5):
            wrong = client.post("/api/token", json={"user_id": "S2", "password": "nope nope nope"})
            assert wrong.status_code == 401
        locked = client.post(
            "/api/token", json={"user_id": "S2", "password": "correct horse battery staple"}
        )
    assert locked.status_code == 429
    assert "too many failed logins" in locked.json()["detail"]
    with web_world.client("C1") as client:
        events = client.get("/api/audit", params={"limit": 50}).json()["items"]
    actions = [(e["action"], e["target"]) for e in events]
    assert ("auth.login_throttled", "user S2") in actions
    assert ("auth.login_failed", "user S2") in actions


def test_health_and_metrics_need_no_login(web_world: WebWorld) -> None:
    with httpx.Client(base_url=web_world.base_url) as client:
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert 'amlwatch_reports_overdue{kind="large_value"}' in metrics.text
        assert 'amlwatch_reports_pending{kind="suspicious"}' in metrics.text
        assert client.get("/openapi.json").status_code == 200
