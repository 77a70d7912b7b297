"""The JSON API (bearer tokens): cases, workflow actions, reference data, audit log.

Every route names its permission (``require_api``) and every case route first narrows
to the caller's cases (``visible_case``), so authorisation lives in ``access`` alone.
"""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StringConstraints

from alerts import cases as workflow
from alerts.actors import Actor
from alerts.audit import AuditEvent, verify_audit_chain
from alerts.cases import CaseStatus, Disposition
from alerts.imports import import_customers, import_managers
from alerts.routing import reassign_manager
from alerts.transactions import StoredTransaction
from alerts.users import API_KIND, authenticate, issue_token, revoke_token
from alerts.web.access import Permission, visible_case
from alerts.web.app import Context, api_actor, require_api
from alerts.web.queries import (
    CaseFilters,
    CaseItem,
    audit_page,
    case_detail,
    list_case_items,
)
from core.detection import Severity
from core.errors import InvalidInput
from core.transaction import MAX_ID_LENGTH

router = APIRouter(prefix="/api")

# Printable text without NUL (PostgreSQL refuses it) and within the columns' sizes.
_TEXT = r"^[^\x00]*$"
UserId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_TEXT)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_TEXT)]
LongText = Annotated[
    str, StringConstraints(min_length=1, max_length=4000, pattern=r"^[^\x00]*\S[^\x00]*$")
]
CaseId = Annotated[
    int, PathParam(ge=1, le=2_147_483_647, description="The case number (C12 -> 12).")
]
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class Credentials(BaseModel):
    user_id: UserId
    password: Password


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    user_id: str
    role: str


class CaseOut(BaseModel):
    case_id: int
    ref: str
    customer_id: str
    status: CaseStatus
    severity: Severity
    assignee_id: str | None
    queue: str
    compliance_copy: bool
    escalation_level: int
    opened_at: datetime
    acknowledged_at: datetime | None
    escalated_at: datetime | None
    assessment: str | None
    report_proposed_by: str | None
    disposition: Disposition | None
    disposition_reason: str | None
    closed_at: datetime | None
    due_at: datetime | None = None
    due_stage: str | None = None
    overdue: bool = False


class CasePage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[CaseOut]


class CaseDetailOut(BaseModel):
    case: CaseOut
    alerts: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    transactions: list[dict[str, Any]] = Field(
        description="The customer's transactions around the alerts; flagged ones marked."
    )
    audit: list[dict[str, Any]]


class NoteIn(BaseModel):
    body: LongText


class NoteOut(BaseModel):
    note_id: int


class CloseIn(BaseModel):
    disposition: Disposition
    reason: LongText


class EscalateIn(BaseModel):
    assessment: LongText


class ReassignIn(BaseModel):
    from_manager: UserId
    to_manager: UserId


class ReassignOut(BaseModel):
    from_manager: str
    to_manager: str
    customers_moved: int
    case_ids: list[int]


class ImportOut(BaseModel):
    inserted: int
    updated: int
    unchanged: int


class ReferenceKind(StrEnum):
    MANAGERS = "managers"
    CUSTOMERS = "customers"


class AuditPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[dict[str, Any]]


class VerifyOut(BaseModel):
    ok: bool
    count: int
    broken_seq: int | None
    message: str


class StateFilter(StrEnum):
    OPEN = "open"
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    ESCALATED = "escalated"
    REPORTED = "reported"
    CLOSED = "closed"
    ALL = "all"


Reader = Annotated[Actor, Depends(require_api(Permission.READ_CASES))]
Worker = Annotated[Actor, Depends(require_api(Permission.WORK_CASES))]
Filer = Annotated[Actor, Depends(require_api(Permission.FILE_REPORTS))]


@router.post("/token", response_model=TokenOut, tags=["auth"])
def login(credentials: Credentials, web: Context) -> TokenOut:
    """Exchange user id and password for a bearer token (throttled, audited)."""
    now = web.now()
    with web.committing_anyway() as session:
        actor = authenticate(
            session,
            user_id=credentials.user_id,
            password=credentials.password,
            now=now,
            channel="api",
        )
        token = issue_token(
            session, actor=actor, kind=API_KIND, now=now, lifetime=web.config.token_lifetime
        )
    return TokenOut(
        access_token=token,
        expires_at=now + web.config.token_lifetime,
        user_id=actor.user_id,
        role=actor.role.value,
    )


@router.post("/logout", status_code=204, tags=["auth"])
def logout(request: Request, web: Context, actor: Annotated[Actor, Depends(api_actor)]) -> None:
    """Revoke the bearer token used for this request."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    with web.transaction() as session:
        revoke_token(session, token=token)


@router.get("/me", tags=["auth"])
def me(actor: Annotated[Actor, Depends(api_actor)]) -> dict[str, str]:
    """Who the token belongs to."""
    return {"user_id": actor.user_id, "role": actor.role.value}


@router.get("/cases", response_model=CasePage, tags=["cases"])
def cases_list(
    web: Context,
    actor: Reader,
    state: Annotated[
        StateFilter, Query(description="A state, 'open' or 'all'.")
    ] = StateFilter.OPEN,
    severity: Severity | None = None,
    overdue: bool | None = None,
    customer_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, pattern=_TEXT)] = None,
    opened_from: Annotated[date | None, Query(description="Bank-local day, inclusive.")] = None,
    opened_to: Annotated[date | None, Query(description="Bank-local day, inclusive.")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CasePage:
    """The caller's cases, soonest deadline first, filtered and paged."""
    if opened_from is not None and opened_to is not None and opened_to < opened_from:
        raise InvalidInput(f"opened_to {opened_to} is before opened_from {opened_from}")
    states = _states(state)
    filters = CaseFilters(states, severity, overdue, customer_id, opened_from, opened_to)
    with web.transaction() as session:
        items = list_case_items(
            session,
            actor=actor,
            filters=filters,
            now=web.now(),
            calendar=web.config.calendar,
            policy=web.config.policy,
        )
    page = items[offset : offset + limit]
    return CasePage(total=len(items), offset=offset, limit=limit, items=[case_out(i) for i in page])


@router.get("/cases/{case_id}", response_model=CaseDetailOut, tags=["cases"])
def case_get(case_id: CaseId, web: Context, actor: Reader) -> CaseDetailOut:
    """A case with its alerts, reasons, notes, the customer's transactions and audit trail."""
    with web.transaction() as session:
        detail = case_detail(
            session,
            actor=actor,
            case_id=case_id,
            now=web.now(),
            calendar=web.config.calendar,
            policy=web.config.policy,
        )
    return CaseDetailOut(
        case=case_out(detail.item),
        alerts=[_plain(alert) for alert in detail.alerts],
        notes=[_plain(note) for note in detail.notes],
        transactions=[tx_out(s, s.transaction.tx_id in detail.flagged_ids) for s in detail.history],
        audit=[event_out(event) for event in detail.audit],
    )


@router.post("/cases/{case_id}/acknowledge", response_model=CaseOut, tags=["workflow"])
def case_acknowledge(case_id: CaseId, web: Context, actor: Worker) -> CaseOut:
    """new -> acknowledged."""
    return _act(web, actor, case_id, workflow.acknowledge)


@router.post("/cases/{case_id}/investigate", response_model=CaseOut, tags=["workflow"])
def case_investigate(case_id: CaseId, web: Context, actor: Worker) -> CaseOut:
    """acknowledged -> investigating."""
    return _act(web, actor, case_id, workflow.start_investigation)


@router.post("/cases/{case_id}/notes", response_model=NoteOut, status_code=201, tags=["workflow"])
def case_note(case_id: CaseId, note: NoteIn, web: Context, actor: Worker) -> NoteOut:
    """Add a note to an open case."""
    with web.transaction() as session:
        visible_case(session, actor, case_id)
        note_id = workflow.add_note(
            session, case_id=case_id, actor=actor, body=note.body, now=web.now()
        )
    return NoteOut(note_id=note_id)


@router.post("/cases/{case_id}/close", response_model=CaseOut, tags=["workflow"])
def case_close(case_id: CaseId, body: CloseIn, web: Context, actor: Worker) -> CaseOut:
    """Close as false positive or not suspicious, with a reason (disposition)."""
    return _act(
        web, actor, case_id, workflow.close_case, disposition=body.disposition, reason=body.reason
    )


@router.post("/cases/{case_id}/escalate", response_model=CaseOut, tags=["workflow"])
def case_escalate(case_id: CaseId, body: EscalateIn, web: Context, actor: Worker) -> CaseOut:
    """Escalate to compliance as suspicious, with the assessment."""
    return _act(web, actor, case_id, workflow.escalate, assessment=body.assessment)


@router.post("/cases/{case_id}/propose-report", response_model=CaseOut, tags=["workflow"])
def case_propose(case_id: CaseId, web: Context, actor: Filer) -> CaseOut:
    """Compliance proposes filing an STR; a different officer must approve it."""
    return _act(web, actor, case_id, workflow.propose_report)


@router.post("/cases/{case_id}/approve-report", response_model=CaseOut, tags=["workflow"])
def case_approve(case_id: CaseId, web: Context, actor: Filer) -> CaseOut:
    """A second compliance officer approves the STR: the case is filed (four eyes)."""
    return _act(web, actor, case_id, workflow.approve_report)


@router.post("/managers/reassign", response_model=ReassignOut, tags=["reference data"])
def managers_reassign(
    body: ReassignIn,
    web: Context,
    actor: Annotated[Actor, Depends(require_api(Permission.REASSIGN))],
) -> ReassignOut:
    """Move a leaving manager's customers and open cases to another manager."""
    with web.transaction() as session:
        moved = reassign_manager(
            session,
            from_manager=body.from_manager,
            to_manager=body.to_manager,
            actor=actor,
            now=web.now(),
        )
    return ReassignOut(
        from_manager=moved.from_manager,
        to_manager=moved.to_manager,
        customers_moved=moved.customers_moved,
        case_ids=list(moved.case_ids),
    )


@router.post("/reference/{kind}", response_model=ImportOut, tags=["reference data"])
def reference_import(
    kind: ReferenceKind,
    file: Annotated[UploadFile, File(description="CSV with the DESIGN.md columns.")],
    web: Context,
    actor: Annotated[Actor, Depends(require_api(Permission.IMPORT_REFERENCE))],
) -> ImportOut:
    """Import managers or customers from CSV: every row validated, then all or nothing."""
    importer = import_managers if kind is ReferenceKind.MANAGERS else import_customers
    with tempfile.TemporaryDirectory(prefix="amlwatch-import-") as directory:
        path = Path(directory) / f"{kind.value}.csv"
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise InvalidInput(f"the file is larger than {MAX_UPLOAD_BYTES} bytes")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{kind.value}.csv is not UTF-8 text: {exc.reason}") from None
        path.write_bytes(data)
        with web.transaction() as session:
            result = importer(session, path, actor=actor, now=web.now())
    return ImportOut(inserted=result.inserted, updated=result.updated, unchanged=result.unchanged)


@router.get("/audit", response_model=AuditPage, tags=["audit"])
def audit_list(
    web: Context,
    actor: Annotated[Actor, Depends(require_api(Permission.READ_AUDIT))],
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The audit log, newest first."""
    with web.transaction() as session:
        total, events = audit_page(session, offset=offset, limit=limit)
    return AuditPage(total=total, offset=offset, limit=limit, items=[event_out(e) for e in events])


@router.post("/audit/verify", response_model=VerifyOut, tags=["audit"])
def audit_verify(
    web: Context, actor: Annotated[Actor, Depends(require_api(Permission.READ_AUDIT))]
) -> VerifyOut:
    """Walk the hash chain: OK with the count, or the first broken event."""
    with web.transaction() as session:
        verdict = verify_audit_chain(session)
    return VerifyOut(
        ok=verdict.ok, count=verdict.count, broken_seq=verdict.broken_seq, message=verdict.message
    )


def case_out(item: CaseItem) -> CaseOut:
    """API shape of a listed case."""
    summary = item.case
    return CaseOut(
        case_id=summary.case_id,
        ref=summary.ref,
        customer_id=summary.customer_id,
        status=summary.status,
        severity=summary.severity,
        assignee_id=summary.assignee_id,
        queue=summary.queue,
        compliance_copy=summary.compliance_copy,
        escalation_level=summary.escalation_level,
        opened_at=summary.opened_at,
        acknowledged_at=summary.acknowledged_at,
        escalated_at=summary.escalated_at,
        assessment=summary.assessment,
        report_proposed_by=summary.report_proposed_by,
        disposition=summary.disposition,
        disposition_reason=summary.disposition_reason,
        closed_at=summary.closed_at,
        due_at=item.due_at,
        due_stage=item.due_stage,
        overdue=item.overdue,
    )


def tx_out(stored: StoredTransaction, flagged: bool) -> dict[str, Any]:
    """API shape of a transaction (amounts as exact decimal strings)."""
    tx = stored.transaction
    return {
        "tx_id": tx.tx_id,
        "timestamp": tx.timestamp.isoformat(),
        "direction": tx.direction.value,
        "channel": tx.channel.value,
        "amount": str(tx.amount),
        "currency": tx.currency,
        "amount_cny": str(stored.amount_cny),
        "counterparty_country": tx.counterparty_country,
        "flagged": flagged,
    }


def event_out(event: AuditEvent) -> dict[str, Any]:
    """API shape of an audit event."""
    return event.to_dict()


def _states(state: StateFilter) -> tuple[str, ...] | None:
    if state is StateFilter.ALL:
        return None
    if state is StateFilter.OPEN:
        return tuple(
            s.value for s in CaseStatus if s not in (CaseStatus.CLOSED, CaseStatus.REPORTED)
        )
    return (state.value,)


def _act(web: Any, actor: Actor, case_id: int, action: Any, **arguments: Any) -> CaseOut:
    with web.transaction() as session:
        visible_case(session, actor, case_id)
        summary = action(session, case_id=case_id, actor=actor, now=web.now(), **arguments)
        detail_item = CaseItem(summary, None, None, False)
    return case_out(detail_item)


def _plain(record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in asdict(record).items()
    }


__all__ = ["router"]
