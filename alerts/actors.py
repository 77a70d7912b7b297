"""Who acts on the case store: a user id and a role, checked by every service function."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from core.errors import Forbidden


class Role(StrEnum):
    MANAGER = "manager"  # account manager (客户经理): their own customers' cases
    SUPERVISOR = "supervisor"  # a manager's supervisor: their team's cases, escalations
    COMPLIANCE = "compliance"  # compliance officer: escalations, STR filing, exports
    ADMIN = "admin"  # operator: reference data and reassignment
    SYSTEM = "system"  # amlwatch itself: ingest and deadline escalation


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated user behind an action."""

    user_id: str
    role: Role


SYSTEM_ACTOR = Actor("amlwatch", Role.SYSTEM)


def require_role(actor: Actor, allowed: Collection[Role], action: str) -> None:
    """Raise Forbidden unless ``actor`` has one of the ``allowed`` roles for ``action``."""
    if actor.role not in allowed:
        roles = ", ".join(sorted(role.value for role in allowed))
        raise Forbidden(f"{actor.role.value} {actor.user_id} may not {action} (needs {roles})")


__all__ = ["SYSTEM_ACTOR", "Actor", "Role", "require_role"]
