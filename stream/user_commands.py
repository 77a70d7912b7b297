"""``amlwatch users add|reset|disable|list``: the web app's users.

Passwords are read from a prompt (hidden, asked twice) or, for scripts, from the
environment variable named by ``--password-env``; never from the command line, where
they would land in shell history and process listings. Exit codes as the other case
store commands: 0 done, 1 database failure, 2 bad input.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated

import typer

from alerts.actors import Actor, Role
from alerts.users import USER_ROLES, add_user, disable_user, list_users, reset_password
from stream.case_commands import (
    EXIT_BAD_INPUT,
    ActorOption,
    DatabaseUrlOption,
    _actor_name,
    _case_store,
    _fail,
    _failures_reported,
)

users_cli = typer.Typer(
    help="Users of the web app: add, reset a password, disable, list.", no_args_is_help=True
)

PasswordEnvOption = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        help="Read the password from this environment variable instead of a prompt.",
        show_default=False,
    ),
]


@users_cli.command("add")
def add_command(
    user_id: Annotated[str, typer.Argument(help="Sign-in id; a manager's is their manager_id.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(r.value for r in USER_ROLES)}.")],
    name: Annotated[str, typer.Option(help="Display name (default: the id).")] = "",
    password_env: PasswordEnvOption = None,
    database_url: DatabaseUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Add an active user with a password (at least 12 characters)."""
    who = Actor(_actor_name(actor), Role.ADMIN)
    password = _password(password_env)
    with _case_store(database_url) as store, _failures_reported(), store.session_scope() as s:
        info = add_user(
            s,
            user_id=user_id,
            role=role,
            password=password,
            display_name=name,
            actor=who,
            now=datetime.now(UTC),
        )
    typer.echo(f"added {info.role.value} {info.user_id}")


@users_cli.command("reset")
def reset_command(
    user_id: Annotated[str, typer.Argument(help="The user whose password is reset.")],
    password_env: PasswordEnvOption = None,
    database_url: DatabaseUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Set a new password; also re-enables, unlocks and signs the user out everywhere."""
    who = Actor(_actor_name(actor), Role.ADMIN)
    password = _password(password_env)
    with _case_store(database_url) as store, _failures_reported(), store.session_scope() as s:
        info = reset_password(s, user_id=user_id, password=password, actor=who, now=_now())
    typer.echo(f"reset the password of {info.role.value} {info.user_id}; sessions revoked")


@users_cli.command("disable")
def disable_command(
    user_id: Annotated[str, typer.Argument(help="The user who may no longer sign in.")],
    database_url: DatabaseUrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Stop a user signing in and revoke their sessions and API tokens."""
    who = Actor(_actor_name(actor), Role.ADMIN)
    with _case_store(database_url) as store, _failures_reported(), store.session_scope() as s:
        info = disable_user(s, user_id=user_id, actor=who, now=_now())
    typer.echo(f"disabled {info.role.value} {info.user_id}; sessions revoked")


@users_cli.command("list")
def list_command(database_url: DatabaseUrlOption = None) -> None:
    """Every user with role and state (no password hashes)."""
    with _case_store(database_url) as store, _failures_reported(), store.session_scope() as s:
        users = list_users(s)
    for info in users:
        state = "active" if info.active else "disabled"
        if info.locked_until is not None and info.locked_until > _now():
            state += f", locked until {info.locked_until.isoformat()}"
        typer.echo(f"{info.user_id}\t{info.role.value}\t{state}")


def _password(env_name: str | None) -> str:
    if env_name is not None:
        value = os.environ.get(env_name)
        if not value:
            _fail(f"environment variable {env_name} is not set or empty", EXIT_BAD_INPUT)
        return value
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _now() -> datetime:
    return datetime.now(UTC)


__all__ = ["users_cli"]
