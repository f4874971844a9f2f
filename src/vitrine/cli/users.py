"""``vitrine users``: the people who sign in to the admin UI."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from vitrine.cli.common import fail, open_vitrine, print_json

users_app = typer.Typer(help="People who sign in to the admin UI.", no_args_is_help=True)


def _users() -> Any:
    from vitrine.accounts.users import UserService

    vitrine = open_vitrine()
    s = vitrine.settings
    return UserService(vitrine.engine, s.admin_lockout_attempts, s.admin_lockout_minutes)


def _change(action: Callable[[Any], None], done: str) -> None:
    """Apply ``action`` to the users; a UserError is the command's error message."""
    from vitrine.accounts.users import UserError

    try:
        action(_users())
    except UserError as exc:
        fail(str(exc))
    typer.echo(done)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: pass --password-stdin and pipe it in")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="User name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Role admin (everything).")] = False,
    role: Annotated[str, typer.Option(help="admin or analyst (read-only).")] = "analyst",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create an admin UI user; the password is asked at a prompt (or read from stdin)."""
    from vitrine.accounts.users import UserError

    users = _users()
    password = _read_password(password_stdin)
    try:
        user = users.create(name, password, "admin" if admin else role)
    except UserError as exc:
        fail(str(exc))
    typer.echo(f"created user {user.username} (role {user.role})")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a user's password (and unlock the account)."""
    password = _read_password(password_stdin)
    _change(lambda users: users.set_password(name, password), f"password of {name} changed")


@users_app.command("unlock")
def users_unlock(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Unlock an account locked after failed sign-ins."""
    _change(lambda users: users.unlock(name), f"{name} unlocked")


@users_app.command("delete")
def users_delete(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Delete a user (their sessions end)."""
    _change(lambda users: users.delete(name), f"{name} deleted")


@users_app.command("list")
def users_list() -> None:
    """List users: names, roles, lock state (never passwords)."""
    print_json(
        [
            {
                "name": u.username,
                "role": u.role,
                "locked_until": u.locked_until,
                "last_login_at": u.last_login_at,
            }
            for u in _users().list()
        ]
    )
