"""User management over the API (admins): list, add, reset a password, disable.

The work is ``alerts.users``' (argon2 hashes, audit events, tokens revoked on reset and
disable). Passwords come in request bodies only: no answer carries one, and the
validation-error handler never echoes a password field back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StringConstraints

from alerts.actors import Actor
from alerts.users import UserInfo, add_user, disable_user, list_users, reset_password
from alerts.web.access import Permission
from alerts.web.app import Context, require_api

router = APIRouter(prefix="/api/users", tags=["users"])

_TEXT = r"^[^\x00]*$"
UserId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_TEXT)]
UserIdPath = Annotated[str, PathParam(min_length=1, max_length=64, pattern=_TEXT)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_TEXT)]
DisplayName = Annotated[str, StringConstraints(max_length=200, pattern=_TEXT)]
Admin = Annotated[Actor, Depends(require_api(Permission.MANAGE_USERS))]


class NewUserIn(BaseModel):
    user_id: UserId = Field(description="A manager or supervisor signs in as their manager_id.")
    role: Annotated[str, StringConstraints(max_length=16, pattern=_TEXT)] = Field(
        description="manager, supervisor, compliance or admin."
    )
    password: Password = Field(description="At least 12 characters; never echoed.")
    display_name: DisplayName = ""


class PasswordIn(BaseModel):
    password: Password = Field(description="At least 12 characters; never echoed.")


class UserOut(BaseModel):
    user_id: str
    role: str
    display_name: str
    active: bool
    locked_until: datetime | None
    last_login_at: datetime | None


def user_out(user: UserInfo) -> UserOut:
    """API shape of a user (there is no password or hash in it)."""
    return UserOut(
        user_id=user.user_id,
        role=user.role.value,
        display_name=user.display_name,
        active=user.active,
        locked_until=user.locked_until,
        last_login_at=user.last_login_at,
    )


@router.get("", response_model=list[UserOut])
def users_list(web: Context, actor: Admin) -> list[UserOut]:
    """Every user, by id."""
    with web.transaction() as session:
        return [user_out(user) for user in list_users(session)]


@router.post("", response_model=UserOut, status_code=201)
def users_add(body: NewUserIn, web: Context, actor: Admin) -> UserOut:
    """Create an active user (audited); 409 if the id is taken."""
    with web.transaction() as session:
        user = add_user(
            session,
            user_id=body.user_id,
            role=body.role,
            password=body.password,
            actor=actor,
            now=web.now(),
            display_name=body.display_name,
        )
    return user_out(user)


@router.post("/{user_id}/reset", response_model=UserOut)
def users_reset(user_id: UserIdPath, body: PasswordIn, web: Context, actor: Admin) -> UserOut:
    """New password; re-activates, unlocks and signs the user out everywhere (audited)."""
    with web.transaction() as session:
        user = reset_password(
            session, user_id=user_id, password=body.password, actor=actor, now=web.now()
        )
    return user_out(user)


@router.post("/{user_id}/disable", response_model=UserOut)
def users_disable(user_id: UserIdPath, web: Context, actor: Admin) -> UserOut:
    """No more logins; the user's sessions and tokens are revoked (audited)."""
    with web.transaction() as session:
        user = disable_user(session, user_id=user_id, actor=actor, now=web.now())
    return user_out(user)


__all__ = ["router", "user_out"]
