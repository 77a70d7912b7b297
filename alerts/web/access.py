"""Who may do what, in one place: role permissions and the cases each actor can see.

Every route names a permission (``require``) and every case route narrows to the
actor's cases (``case_scope``): a manager sees cases on their own customers or assigned
to them, a supervisor their team's (managers whose ``supervisor_id`` is them, and their
own), compliance all cases. A case outside the scope answers 404 exactly like a case
that does not exist, so ids of other people's cases leak nothing. The service functions
of ``alerts.cases`` then check the action itself (state, four eyes, assignee).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role
from alerts.audit import case_ref
from alerts.database import CaseRow, CustomerRow, ManagerRow
from core.errors import Forbidden, NotFound


class Permission(StrEnum):
    READ_CASES = "read cases"
    WORK_CASES = "work on cases"  # acknowledge, investigate, note, close, escalate
    FILE_REPORTS = "propose and approve STRs"
    REASSIGN = "reassign a manager's customers"
    IMPORT_REFERENCE = "import reference data"
    READ_AUDIT = "read and verify the audit log"
    READ_PERFORMANCE = "read manager performance"
    MANAGE_USERS = "manage users"
    EXPORT_REPORTS = "export regulatory reports and record their receipts"
    READ_REPORT_BACKLOG = "read the regulatory report backlog"


CASE_ROLES = frozenset({Role.MANAGER, Role.SUPERVISOR, Role.COMPLIANCE})

# The whole authorisation table: the roles against what they may do.
PERMISSIONS: dict[Permission, frozenset[Role]] = {
    Permission.READ_CASES: CASE_ROLES,
    Permission.WORK_CASES: CASE_ROLES,
    Permission.FILE_REPORTS: frozenset({Role.COMPLIANCE}),
    Permission.REASSIGN: frozenset({Role.ADMIN}),
    Permission.IMPORT_REFERENCE: frozenset({Role.ADMIN}),
    Permission.READ_AUDIT: frozenset({Role.COMPLIANCE, Role.ADMIN}),
    Permission.READ_PERFORMANCE: frozenset({Role.COMPLIANCE, Role.SUPERVISOR}),
    Permission.MANAGE_USERS: frozenset({Role.ADMIN}),
    Permission.EXPORT_REPORTS: frozenset({Role.COMPLIANCE}),
    # Counts only (no customer data); admins watch them like the /metrics gauges.
    Permission.READ_REPORT_BACKLOG: frozenset({Role.COMPLIANCE, Role.ADMIN}),
}


def allowed(actor: Actor, permission: Permission) -> bool:
    """Whether ``actor``'s role carries ``permission``."""
    return actor.role in PERMISSIONS[permission]


def check(actor: Actor, permission: Permission) -> Actor:
    """``actor``, or Forbidden when their role lacks ``permission``."""
    if not allowed(actor, permission):
        raise Forbidden(f"{actor.role.value} {actor.user_id} may not {permission.value}")
    return actor


def case_scope(session: Session, actor: Actor) -> ColumnElement[bool]:
    """A WHERE condition on ``CaseRow`` selecting exactly the cases ``actor`` may see."""
    if actor.role is Role.COMPLIANCE:
        return true()
    if actor.role is Role.MANAGER:
        people = [actor.user_id]
    elif actor.role is Role.SUPERVISOR:
        team = session.scalars(
            select(ManagerRow.manager_id).where(ManagerRow.supervisor_id == actor.user_id)
        )
        people = [actor.user_id, *team]
    else:
        return false()
    customers = select(CustomerRow.customer_id).where(CustomerRow.manager_id.in_(people))
    return or_(CaseRow.assignee_id.in_(people), CaseRow.customer_id.in_(customers))


def visible_case(session: Session, actor: Actor, case_id: int) -> int:
    """``case_id`` when ``actor`` may see it; NotFound otherwise (existence never leaks)."""
    found = session.scalar(
        select(CaseRow.id).where(CaseRow.id == case_id, case_scope(session, actor))
    )
    if found is None:
        raise NotFound(f"case {case_ref(case_id)} not found")
    return found


__all__ = [
    "CASE_ROLES",
    "PERMISSIONS",
    "Permission",
    "allowed",
    "case_scope",
    "check",
    "visible_case",
]
