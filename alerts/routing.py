"""Who is responsible for a customer's case, why, and moving cases between people.

The responsible person is the customer's account manager; when that manager is inactive
or missing, their supervisor, and so on up the chain (a loop in the chain is detected);
when nobody is left, the compliance queue. Critical alerts go to the manager *and* to
compliance at once. Every decision is recorded with its reason and audited.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role, require_role
from alerts.audit import AuditEvent, audit_case_event, lock_chain, record_event
from alerts.database import CaseRow, CustomerRow, ManagerRow, RoutingDecisionRow
from core.detection import Severity
from core.errors import Conflict, InvalidInput, NotFound

MANAGER_QUEUE = "manager"
COMPLIANCE_QUEUE = "compliance"
OPEN_STATES = ("new", "acknowledged", "investigating", "escalated")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a case goes: a manager (or nobody, in the compliance queue) and why."""

    assignee_id: str | None
    queue: str
    compliance_copy: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Reassignment:
    """What a reassignment moved from one manager to another."""

    from_manager: str
    to_manager: str
    customers_moved: int
    case_ids: tuple[int, ...]


def route_customer(session: Session, *, customer_id: str, severity: Severity) -> Route:
    """The route of a new case on ``customer_id``; critical severity also copies compliance."""
    customer = session.get(CustomerRow, customer_id)
    if customer is None:
        steps = [f"customer {customer_id} not in the reference data"]
        assignee = None
    else:
        steps = [f"customer {customer_id} has manager {customer.manager_id}"]
        assignee = first_active(session, customer.manager_id, steps)
    route = _route(assignee, steps)
    if severity is Severity.CRITICAL:
        return Route(
            route.assignee_id, route.queue, True, route.reason + "; critical: compliance copied"
        )
    return route


def supervisor_route(session: Session, *, manager_id: str | None) -> Route:
    """The route one level above ``manager_id``: the first active manager above them."""
    if manager_id is None:
        return _route(None, ["case already with compliance"])
    row = session.get(ManagerRow, manager_id)
    if row is None or row.supervisor_id is None:
        return _route(None, [f"manager {manager_id} has no supervisor"])
    steps = [f"manager {manager_id} reports to {row.supervisor_id}"]
    return _route(first_active(session, row.supervisor_id, steps, seen={manager_id}), steps)


def first_active(
    session: Session, manager_id: str, steps: list[str], *, seen: set[str] | None = None
) -> str | None:
    """The first active manager from ``manager_id`` up the supervisor chain, noting each step."""
    visited = set(seen or ())
    current: str | None = manager_id
    while current is not None:
        if current in visited:
            steps.append(f"supervisor chain loops back to {current}")
            return None
        visited.add(current)
        row = session.get(ManagerRow, current)
        if row is None:
            steps.append(f"manager {current} missing")
            return None
        if row.active:
            return current
        if row.supervisor_id is None:
            steps.append(f"manager {current} inactive with no supervisor")
            return None
        steps.append(f"manager {current} inactive; routed to supervisor {row.supervisor_id}")
        current = row.supervisor_id
    return None


def record_routing(
    session: Session,
    case: CaseRow,
    route: Route,
    *,
    kind: str,
    actor: Actor,
    now: datetime,
    escalation_level: int | None = None,
) -> None:
    """Apply ``route`` (and a new escalation level) to ``case``; record the decision, audited."""
    record_audit = apply_routing(
        session, case, route, kind=kind, actor=actor, now=now, escalation_level=escalation_level
    )
    record_audit()


def apply_routing(
    session: Session,
    case: CaseRow,
    route: Route,
    *,
    kind: str,
    actor: Actor,
    now: datetime,
    escalation_level: int | None = None,
) -> Callable[[], AuditEvent]:
    """Apply ``route`` to ``case`` and add the decision; its audit append, to call in order.

    A batch that appends its audit events only once its rows have ids (a new case gets
    one when flushed) calls the returned function later, in the order of the changes.
    """
    before = _assignment(case)
    session.add(
        RoutingDecisionRow(
            case=case,
            kind=kind,
            from_assignee_id=case.assignee_id if kind != "new_case" else None,
            assignee_id=route.assignee_id,
            queue=route.queue,
            compliance_copy=route.compliance_copy,
            reason=route.reason,
            decided_by=actor.user_id,
            decided_at=now,
        )
    )
    case.assignee_id = route.assignee_id
    case.queue = route.queue
    case.compliance_copy = case.compliance_copy or route.compliance_copy
    if escalation_level is not None:
        case.escalation_level = escalation_level
    return partial(
        audit_case_event,
        session,
        case,
        actor=actor,
        action=f"case.route.{kind}",
        before=None if kind == "new_case" else before,
        after={**_assignment(case), "reason": route.reason},
        now=now,
    )


# Built once (see alerts.cases: building a select cost about as much as running it).
_CUSTOMERS = select(CustomerRow).where(
    CustomerRow.customer_id.in_(bindparam("customer_ids", expanding=True))
)
_MANAGERS = select(ManagerRow).where(
    ManagerRow.manager_id.in_(bindparam("manager_ids", expanding=True))
)


def prefetch_routing(session: Session, *, customer_ids: Collection[str]) -> list[object]:
    """Load these customers and their managers, so routing them needs no query of its own.

    Returns the loaded rows: hold on to them while routing, since the session's identity
    map keeps unchanged rows only as long as something else refers to them.
    """
    if not customer_ids:
        return []
    customers = list(session.scalars(_CUSTOMERS, {"customer_ids": list(customer_ids)}))
    manager_ids = list({customer.manager_id for customer in customers})
    managers = session.scalars(_MANAGERS, {"manager_ids": manager_ids})
    return [*customers, *managers]


def reassign_manager(
    session: Session, *, from_manager: str, to_manager: str, actor: Actor, now: datetime
) -> Reassignment:
    """Move a leaving manager's customers and open cases to ``to_manager``; audited."""
    require_role(actor, (Role.ADMIN, Role.SUPERVISOR), "reassign a manager's customers")
    if from_manager == to_manager:
        raise InvalidInput(f"cannot reassign manager {from_manager} to themselves")
    lock_chain(session)
    if session.get(ManagerRow, from_manager) is None:
        raise NotFound(f"manager {from_manager} not found")
    target = session.get(ManagerRow, to_manager)
    if target is None:
        raise NotFound(f"manager {to_manager} not found")
    if not target.active:
        raise Conflict(f"manager {to_manager} is inactive; cannot take over {from_manager}")
    customers = list(
        session.scalars(select(CustomerRow).where(CustomerRow.manager_id == from_manager))
    )
    for customer in customers:
        customer.manager_id = to_manager
    cases = list(
        session.scalars(
            select(CaseRow)
            .where(CaseRow.assignee_id == from_manager, CaseRow.status.in_(OPEN_STATES))
            .order_by(CaseRow.id)
        )
    )
    reason = f"manager {from_manager} reassigned to {to_manager} by {actor.user_id}"
    for case in cases:
        route = Route(to_manager, MANAGER_QUEUE, False, reason)
        record_routing(session, case, route, kind="reassignment", actor=actor, now=now)
    record_event(
        session,
        actor=actor.user_id,
        role=actor.role.value,
        action="manager.reassign",
        target=f"manager {from_manager}",
        before={"manager_id": from_manager},
        after={
            "manager_id": to_manager,
            "customers_moved": len(customers),
            "case_ids": [case.id for case in cases],
        },
        at=now,
    )
    session.flush()
    return Reassignment(from_manager, to_manager, len(customers), tuple(c.id for c in cases))


def manager_email(session: Session, *, manager_id: str) -> str | None:
    """The manager's e-mail address, if the manager is known and has one."""
    row = session.get(ManagerRow, manager_id)
    return row.email if row is not None and row.email else None


def _route(assignee: str | None, steps: list[str]) -> Route:
    if assignee is None:
        steps.append("routed to the compliance queue")
        return Route(None, COMPLIANCE_QUEUE, False, "; ".join(steps))
    return Route(assignee, MANAGER_QUEUE, False, "; ".join(steps))


def _assignment(case: CaseRow) -> dict[str, object]:
    return {
        "assignee_id": case.assignee_id,
        "queue": case.queue,
        "compliance_copy": case.compliance_copy,
        "escalation_level": case.escalation_level,
    }


__all__ = [
    "COMPLIANCE_QUEUE",
    "MANAGER_QUEUE",
    "OPEN_STATES",
    "Reassignment",
    "Route",
    "apply_routing",
    "first_active",
    "manager_email",
    "prefetch_routing",
    "reassign_manager",
    "record_routing",
    "route_customer",
    "supervisor_route",
]
