"""Server-rendered pages (Jinja2, no JavaScript): sign-in, inbox, case page, console.

Pages authenticate with the session cookie and every form carries the session's CSRF
token. Authorisation is the API's: the permissions and case scope of ``access``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import URL

from alerts import cases as workflow
from alerts.actors import Actor, Role
from alerts.audit import verify_audit_chain
from alerts.cases import CaseStatus, Disposition
from alerts.performance import manager_performance
from alerts.reports import ReportKind, ReportStatus
from alerts.users import (
    SESSION_KIND,
    USER_ROLES,
    AuthenticationFailed,
    LoginThrottled,
    add_user,
    authenticate,
    disable_user,
    issue_token,
    list_users,
    reset_password,
    revoke_token,
)
from alerts.web.access import Permission, allowed, check, visible_case
from alerts.web.app import (
    LANG_COOKIE,
    SESSION_COOKIE,
    TEMPLATES,
    Context,
    WebContext,
    check_csrf,
    context,
    csrf_token,
    page_actor,
)
from alerts.web.chart import amounts_chart
from alerts.web.i18n import chosen_language, local_time, money, translator
from alerts.web.queries import (
    CaseFilters,
    case_detail,
    list_case_items,
    overdue_by_manager,
    status_counts,
)
from alerts.web.report_api import BacklogOut, ExportIn, backlog, export_file
from core.errors import InvalidInput

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES))
PageActor = Annotated[Actor, Depends(page_actor)]
OPEN_STATES = tuple(
    s.value for s in CaseStatus if s not in (CaseStatus.CLOSED, CaseStatus.REPORTED)
)
FORM_TEXT = 4000


def render(
    request: Request, name: str, actor: Actor | None, status_code: int = 200, **values: Any
) -> HTMLResponse:
    """A page with the shared context: labels, language, user, CSRF token, formatters."""
    web: WebContext = context(request)
    language = chosen_language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))
    zone = web.config.policy.timezone
    response = templates.TemplateResponse(
        request,
        name,
        {
            "t": translator(language),
            "lang": language,
            "actor": actor,
            "csrf": csrf_token(request),
            "when": lambda moment: local_time(moment, zone),
            "money": money,
            "currency": web.config.currency,
            "can": lambda permission: actor is not None and allowed(actor, Permission(permission)),
            **values,
        },
        status_code=status_code,
    )
    if request.query_params.get("lang") == language:
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, samesite="lax")
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page (the exception handler's page branch)."""
    return render(request, "error.html", None, status_code=status, status=status, message=message)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", None)


@router.post("/login")
def login_submit(
    request: Request,
    web: Context,
    user_id: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    now = web.now()
    try:
        with web.committing_anyway() as session:
            actor = authenticate(
                session, user_id=user_id, password=password, now=now, channel="page"
            )
            token = issue_token(
                session,
                actor=actor,
                kind=SESSION_KIND,
                now=now,
                lifetime=web.config.session_lifetime,
            )
    except LoginThrottled:
        t = translator(chosen_language(request.cookies.get(LANG_COOKIE)))
        return render(request, "login.html", None, status_code=429, failure=t["throttled"])
    except AuthenticationFailed:
        t = translator(chosen_language(request.cookies.get(LANG_COOKIE)))
        return render(request, "login.html", None, status_code=401, failure=t["login_failed"])
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(web.config.session_lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=web.config.secure_cookies,
    )
    return response


@router.post("/logout")
def logout(request: Request, web: Context, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    with web.transaction() as session:
        revoke_token(session, token=request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(actor: PageActor) -> Response:
    target = {
        Role.COMPLIANCE: "/console",
        Role.ADMIN: "/admin",
    }.get(actor.role, "/inbox")
    return RedirectResponse(target, status_code=303)


@router.get("/inbox", response_class=HTMLResponse)
def inbox(request: Request, web: Context, actor: PageActor) -> HTMLResponse:
    check(actor, Permission.READ_CASES)
    with web.transaction() as session:
        items = list_case_items(
            session,
            actor=actor,
            filters=CaseFilters(states=OPEN_STATES),
            now=web.now(),
            calendar=web.config.calendar,
            policy=web.config.policy,
        )
    return render(request, "inbox.html", actor, items=items, counts=status_counts(items))


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request,
    web: Context,
    actor: PageActor,
    case_id: int,
) -> HTMLResponse:
    check(actor, Permission.READ_CASES)
    _case_id_in_range(case_id)
    with web.transaction() as session:
        detail = case_detail(
            session,
            actor=actor,
            case_id=case_id,
            now=web.now(),
            calendar=web.config.calendar,
            policy=web.config.policy,
        )
    zone = web.config.policy.timezone
    points = [
        (
            s.transaction.timestamp.astimezone(zone),
            s.amount_cny,
            s.transaction.tx_id in detail.flagged_ids,
            f"{s.transaction.tx_id} {money(s.amount_cny, 'CNY')}",
        )
        for s in detail.history
    ]
    t = translator(
        chosen_language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))
    )
    chart = amounts_chart(points, currency="CNY", title=t["chart"])
    return render(
        request,
        "case.html",
        actor,
        detail=detail,
        case=detail.item.case,
        chart=chart,
        actions=_available_actions(actor, detail.item.case),
    )


@router.post("/cases/{case_id}/{action}")
def case_action(
    request: Request,
    web: Context,
    actor: PageActor,
    case_id: int,
    action: str,
    csrf: Annotated[str, Form()] = "",
    text: Annotated[str, Form(max_length=FORM_TEXT)] = "",
    disposition: Annotated[str, Form(max_length=32)] = "",
    back: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    check_csrf(request, csrf)
    _case_id_in_range(case_id)
    permission = (
        Permission.FILE_REPORTS
        if action in ("propose-report", "approve-report")
        else Permission.WORK_CASES
    )
    check(actor, permission)
    now = web.now()
    with web.transaction() as session:
        visible_case(session, actor, case_id)
        common: dict[str, Any] = {"case_id": case_id, "actor": actor, "now": now}
        if action == "acknowledge":
            workflow.acknowledge(session, **common)
        elif action == "investigate":
            workflow.start_investigation(session, **common)
        elif action == "note":
            workflow.add_note(session, body=text, **common)
        elif action == "close":
            try:
                chosen = Disposition(disposition)
            except ValueError:
                raise InvalidInput(
                    f"disposition must be one of {', '.join(d.value for d in Disposition)}"
                ) from None
            workflow.close_case(session, disposition=chosen, reason=text, **common)
        elif action == "escalate":
            workflow.escalate(session, assessment=text, **common)
        elif action == "propose-report":
            workflow.propose_report(session, **common)
        elif action == "approve-report":
            workflow.approve_report(session, **common)
        else:
            from core.errors import NotFound

            raise NotFound(f"no case action {action!r}")
    target = "/inbox" if back == "inbox" else f"/cases/{case_id}"
    return RedirectResponse(target, status_code=303)


@router.get("/console", response_class=HTMLResponse)
def console(
    request: Request,
    web: Context,
    actor: PageActor,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    verified: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    check(actor, Permission.READ_PERFORMANCE)
    now = web.now()
    zone = web.config.policy.timezone
    today = now.astimezone(zone).date()
    last = end or today
    first = start or last.replace(day=1)
    if last < first:
        raise InvalidInput(f"'to' {last} is before 'from' {first}")
    with web.transaction() as session:
        items = list_case_items(
            session,
            actor=actor,
            filters=CaseFilters(states=OPEN_STATES),
            now=now,
            calendar=web.config.calendar,
            policy=web.config.policy,
        )
        performance = manager_performance(
            session,
            start=datetime.combine(first, time(), tzinfo=zone),
            end=datetime.combine(last + timedelta(days=1), time(), tzinfo=zone),
        )
    escalated = [i for i in items if i.case.status is CaseStatus.ESCALATED]
    reports = (
        _backlog_rows(backlog(web)) if allowed(actor, Permission.READ_REPORT_BACKLOG) else None
    )
    return render(
        request,
        "console.html",
        actor,
        escalated=[i for i in escalated if i.case.report_proposed_by is None],
        approvals=[i for i in escalated if i.case.report_proposed_by is not None],
        overdue=overdue_by_manager(items),
        performance=performance,
        first=first,
        last=last,
        verified=verified,
        reports=reports,
    )


@router.post("/console/reports/export")
def console_export(
    request: Request,
    web: Context,
    actor: PageActor,
    csrf: Annotated[str, Form()] = "",
    kind: Annotated[str, Form(max_length=32)] = "",
    start: Annotated[str, Form(alias="from", max_length=32)] = "",
    end: Annotated[str, Form(alias="to", max_length=32)] = "",
    report_format: Annotated[str, Form(alias="format", max_length=32)] = "",
    message_type: Annotated[str, Form(max_length=32)] = "normal",
) -> Response:
    """The console's export form: the file comes back as a download (audited)."""
    check_csrf(request, csrf)
    check(actor, Permission.EXPORT_REPORTS)
    fields = {"kind": kind, "from": start, "to": end, "format": report_format}
    try:
        wanted = ExportIn.model_validate({**fields, "message_type": message_type or "normal"})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidInput(f"the export form is incomplete or wrong: {problems}") from None
    return export_file(web, actor, wanted).response()


@router.post("/console/verify-audit")
def console_verify(
    request: Request, web: Context, actor: PageActor, csrf: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, csrf)
    check(actor, Permission.READ_AUDIT)
    with web.transaction() as session:
        verdict = verify_audit_chain(session)
    url = URL("/console").include_query_params(verified=verdict.message[:200])
    return RedirectResponse(str(url), status_code=303)


@router.get("/admin", response_class=HTMLResponse)
def admin(
    request: Request,
    web: Context,
    actor: PageActor,
    done: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    check(actor, Permission.MANAGE_USERS)
    with web.transaction() as session:
        users = list_users(session)
    roles = [role.value for role in USER_ROLES]
    return render(request, "admin.html", actor, users=users, roles=roles, done=done)


@router.post("/admin/users")
def admin_add_user(
    request: Request,
    web: Context,
    actor: PageActor,
    csrf: Annotated[str, Form()] = "",
    user_id: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    check_csrf(request, csrf)
    check(actor, Permission.MANAGE_USERS)
    with web.transaction() as session:
        user = add_user(
            session,
            user_id=_printable(user_id),
            role=role,
            password=password,
            actor=actor,
            now=web.now(),
            display_name=_printable(display_name),
        )
    return _admin_done(f"user.add {user.user_id}")


@router.post("/admin/users/{user_id}/{action}")
def admin_user_action(
    request: Request,
    web: Context,
    actor: PageActor,
    user_id: str,
    action: str,
    csrf: Annotated[str, Form()] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    check_csrf(request, csrf)
    check(actor, Permission.MANAGE_USERS)
    user_id = _printable(user_id)[:64]
    with web.transaction() as session:
        if action == "reset":
            reset_password(session, user_id=user_id, password=password, actor=actor, now=web.now())
        elif action == "disable":
            disable_user(session, user_id=user_id, actor=actor, now=web.now())
        else:
            from core.errors import NotFound

            raise NotFound(f"no user action {action!r}")
    return _admin_done(f"user.{action} {user_id}")


def _admin_done(message: str) -> Response:
    url = URL("/admin").include_query_params(done=message[:200])
    return RedirectResponse(str(url), status_code=303)


def _printable(text: str) -> str:
    # PostgreSQL refuses NUL in text; the user services check the rest.
    if "\x00" in text:
        raise InvalidInput("text fields may not contain NUL characters")
    return text


def _backlog_rows(found: BacklogOut) -> list[dict[str, Any]]:
    """One row per report kind: records per status and how many are overdue."""
    rows: dict[str, dict[str, Any]] = {
        kind.value: {"kind": kind.value, "overdue": found.overdue[kind.value]}
        | {status.value: 0 for status in ReportStatus}
        for kind in ReportKind
    }
    for item in found.items:
        rows[item.kind.value][item.status.value] += item.count
    return list(rows.values())


def _case_id_in_range(case_id: int) -> None:
    if not 1 <= case_id <= 2_147_483_647:
        from core.errors import NotFound

        raise NotFound(f"case C{case_id} not found")


def _available_actions(actor: Actor, case: workflow.CaseSummary) -> list[str]:
    """The actions the page offers this user on this case (the services still check)."""
    if not allowed(actor, Permission.WORK_CASES):
        return []
    mine = actor.role is not Role.MANAGER or case.assignee_id == actor.user_id
    status = case.status
    actions: list[str] = []
    if mine and status is CaseStatus.NEW:
        actions.append("acknowledge")
    if mine and status is CaseStatus.ACKNOWLEDGED:
        actions.append("investigate")
    if mine and status in (CaseStatus.ACKNOWLEDGED, CaseStatus.INVESTIGATING):
        actions.append("escalate")
    if mine and status is CaseStatus.INVESTIGATING:
        actions.append("close")
    if status is CaseStatus.ESCALATED and actor.role is Role.COMPLIANCE:
        actions.append("close")
        if case.report_proposed_by is None:
            actions.append("propose-report")
        elif case.report_proposed_by != actor.user_id:
            actions.append("approve-report")
    if mine and status.value in OPEN_STATES:
        actions.append("note")
    return actions


__all__ = ["error_page", "render", "router"]
