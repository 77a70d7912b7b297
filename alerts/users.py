"""Users of the web app: argon2 password hashes, throttled and audited logins, tokens.

A user's id is the id the case store knows them by: a manager or supervisor signs in
with their ``manager_id``, so ``Actor(user_id, role)`` lines up with case assignees.
Session cookies and API bearer tokens are random strings kept only as their SHA-256;
disabling a user or resetting their password revokes every token they hold.

After ``MAX_FAILED_LOGINS`` wrong passwords in a row an account is locked for
``LOCK_MINUTES`` (the right password is refused too while locked); every login, failed
login and refused login is written to the audit log. Nothing here logs passwords.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from alerts.actors import Actor, Role, require_role
from alerts.audit import lock_chain, record_event
from alerts.database import UserRow, UserTokenRow
from core.errors import AmlwatchError, Conflict, ErrorCategory, InvalidInput, NotFound

USER_ROLES = (Role.MANAGER, Role.SUPERVISOR, Role.COMPLIANCE, Role.ADMIN)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_USER_ID_LENGTH = 64
MAX_FAILED_LOGINS = 5
LOCK_MINUTES = 15
SESSION_KIND = "session"
API_KIND = "api"
TOKEN_KINDS = (SESSION_KIND, API_KIND)

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong user id costs as long as a
# wrong password and response times do not tell which ids exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password-for-timing")


class AuthenticationFailed(AmlwatchError):
    """Wrong user id or password, or a disabled user; deliberately says no more."""

    category = ErrorCategory.FORBIDDEN


class LoginThrottled(AuthenticationFailed):
    """Too many failed logins: the account is locked until ``locked_until``."""

    def __init__(self, message: str, *, locked_until: datetime) -> None:
        super().__init__(message)
        self.locked_until = locked_until


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as listings show it (no password hash)."""

    user_id: str
    role: Role
    display_name: str
    active: bool
    locked_until: datetime | None
    last_login_at: datetime | None


def add_user(
    session: Session,
    *,
    user_id: str,
    role: Role | str,
    password: str,
    actor: Actor,
    now: datetime,
    display_name: str = "",
) -> UserInfo:
    """Create an active user; audited. Conflict if the id is taken."""
    require_role(actor, (Role.ADMIN, Role.SYSTEM), "add users")
    user_id = _valid_user_id(user_id)
    chosen = _valid_role(role)
    _valid_password(password)
    lock_chain(session)
    if session.get(UserRow, user_id) is not None:
        raise Conflict(f"user {user_id} already exists")
    row = UserRow(
        user_id=user_id,
        role=chosen.value,
        display_name=display_name.strip()[:200] or user_id,
        password_hash=_hasher.hash(password),
        active=True,
        failed_logins=0,
        locked_until=None,
        last_login_at=None,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    _audit(session, actor, "user.add", user_id, None, {"role": chosen.value}, now)
    return _info(row)


def reset_password(
    session: Session, *, user_id: str, password: str, actor: Actor, now: datetime
) -> UserInfo:
    """Set a new password, re-activate and unlock the user, revoke their tokens; audited."""
    require_role(actor, (Role.ADMIN, Role.SYSTEM), "reset passwords")
    _valid_password(password)
    lock_chain(session)
    row = _user(session, user_id)
    before = {"active": row.active, "locked": row.locked_until is not None}
    row.password_hash = _hasher.hash(password)
    row.active, row.failed_logins, row.locked_until, row.updated_at = True, 0, None, now
    revoked = _revoke_all(session, row.user_id)
    after = {"active": True, "locked": False, "tokens_revoked": revoked}
    _audit(session, actor, "user.reset", row.user_id, before, after, now)
    return _info(row)


def disable_user(session: Session, *, user_id: str, actor: Actor, now: datetime) -> UserInfo:
    """Stop the user signing in and revoke their tokens; audited."""
    require_role(actor, (Role.ADMIN, Role.SYSTEM), "disable users")
    lock_chain(session)
    row = _user(session, user_id)
    if actor.user_id == row.user_id:
        raise Conflict(f"{actor.user_id} cannot disable themselves")
    before = {"active": row.active}
    row.active, row.updated_at = False, now
    revoked = _revoke_all(session, row.user_id)
    _audit(
        session,
        actor,
        "user.disable",
        row.user_id,
        before,
        {"active": False, "tokens_revoked": revoked},
        now,
    )
    return _info(row)


def list_users(session: Session) -> list[UserInfo]:
    """Every user, by id."""
    return [_info(row) for row in session.scalars(select(UserRow).order_by(UserRow.user_id))]


def authenticate(
    session: Session, *, user_id: str, password: str, now: datetime, channel: str
) -> Actor:
    """The actor behind a correct user id and password; audited either way.

    Raises ``LoginThrottled`` while the account is locked and ``AuthenticationFailed``
    otherwise. The caller must commit even when this raises: the failure is recorded in
    the same session (counter, lock, audit event).
    """
    lock_chain(session)
    attempted = user_id.strip()[:MAX_USER_ID_LENGTH]
    row = session.get(UserRow, attempted) if attempted else None
    if row is None:
        _check(_DUMMY_HASH, password)
        _audit_login(session, attempted, None, "auth.login_failed", now, channel, "unknown user")
        raise AuthenticationFailed("wrong user id or password")
    if row.locked_until is not None and now < row.locked_until:
        _audit_login(session, row.user_id, row.role, "auth.login_throttled", now, channel, "locked")
        raise LoginThrottled(
            f"too many failed logins; try again after {row.locked_until.isoformat()}",
            locked_until=row.locked_until,
        )
    if not _check(row.password_hash, password) or not row.active:
        reason = "wrong password" if row.active else "user disabled"
        row.failed_logins += 1
        if row.failed_logins >= MAX_FAILED_LOGINS:
            row.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            row.failed_logins = 0
            reason += f"; locked for {LOCK_MINUTES} minutes"
        _audit_login(session, row.user_id, row.role, "auth.login_failed", now, channel, reason)
        raise AuthenticationFailed("wrong user id or password")
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    row.failed_logins, row.locked_until, row.last_login_at = 0, None, now
    _audit_login(session, row.user_id, row.role, "auth.login", now, channel, None)
    return Actor(row.user_id, Role(row.role))


def issue_token(
    session: Session, *, actor: Actor, kind: str, now: datetime, lifetime: timedelta
) -> str:
    """A new random token of ``kind`` (session or api) for ``actor``; only its hash is kept."""
    if kind not in TOKEN_KINDS:
        raise InvalidInput(f"token kind must be one of {', '.join(TOKEN_KINDS)}")
    token = secrets.token_urlsafe(32)
    session.add(
        UserTokenRow(
            token_hash=token_digest(token),
            user_id=actor.user_id,
            kind=kind,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def actor_for_token(session: Session, *, token: str, kind: str, now: datetime) -> Actor | None:
    """The active user holding an unexpired ``token`` of ``kind``, else None."""
    if not token or len(token) > 256:
        return None
    found = session.execute(
        select(UserRow.user_id, UserRow.role, UserRow.active, UserTokenRow.expires_at)
        .join(UserTokenRow, UserTokenRow.user_id == UserRow.user_id)
        .where(UserTokenRow.token_hash == token_digest(token), UserTokenRow.kind == kind)
    ).one_or_none()
    if found is None or not found.active or found.expires_at <= now:
        return None
    return Actor(found.user_id, Role(found.role))


def revoke_token(session: Session, *, token: str) -> None:
    """Forget ``token`` (logout); unknown tokens are ignored."""
    session.execute(delete(UserTokenRow).where(UserTokenRow.token_hash == token_digest(token)))


def token_digest(token: str) -> str:
    """The SHA-256 a token is stored as."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password[:MAX_PASSWORD_LENGTH]))
    except (VerificationError, InvalidHashError):
        return False


def _user(session: Session, user_id: str) -> UserRow:
    row = session.get(UserRow, user_id)
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return row


def _valid_user_id(user_id: str) -> str:
    user_id = user_id.strip()
    if not user_id or len(user_id) > MAX_USER_ID_LENGTH or not user_id.isprintable():
        raise InvalidInput(f"a user id is 1 to {MAX_USER_ID_LENGTH} printable characters")
    return user_id


def _valid_role(role: Role | str) -> Role:
    try:
        chosen = Role(role)
    except ValueError:
        chosen = Role.SYSTEM
    if chosen not in USER_ROLES:
        allowed = ", ".join(r.value for r in USER_ROLES)
        raise InvalidInput(f"role {role!s} is not one of {allowed}")
    return chosen


def _valid_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )


def _revoke_all(session: Session, user_id: str) -> int:
    tokens = list(session.scalars(select(UserTokenRow).where(UserTokenRow.user_id == user_id)))
    for token in tokens:
        session.delete(token)
    session.flush()
    return len(tokens)


def _audit(
    session: Session,
    actor: Actor,
    action: str,
    user_id: str,
    before: Mapping[str, object] | None,
    after: Mapping[str, object] | None,
    now: datetime,
) -> None:
    record_event(
        session,
        actor=actor.user_id,
        role=actor.role.value,
        action=action,
        target=f"user {user_id}",
        before=before,
        after=after,
        at=now,
    )


def _audit_login(
    session: Session,
    user_id: str,
    role: str | None,
    action: str,
    now: datetime,
    channel: str,
    reason: str | None,
) -> None:
    after: dict[str, object] = {"channel": channel}
    if reason is not None:
        after["reason"] = reason
    record_event(
        session,
        actor=user_id or "-",
        role=role or "unknown",
        action=action,
        target=f"user {user_id}",
        before=None,
        after=after,
        at=now,
    )


def _info(row: UserRow) -> UserInfo:
    return UserInfo(
        user_id=row.user_id,
        role=Role(row.role),
        display_name=row.display_name,
        active=row.active,
        locked_until=row.locked_until,
        last_login_at=row.last_login_at,
    )


__all__ = [
    "API_KIND",
    "SESSION_KIND",
    "USER_ROLES",
    "AuthenticationFailed",
    "LoginThrottled",
    "UserInfo",
    "actor_for_token",
    "add_user",
    "authenticate",
    "disable_user",
    "issue_token",
    "list_users",
    "reset_password",
    "revoke_token",
    "token_digest",
]
