"""Who is signed in, what they may do, and CSRF protection of every state-changing request.

Sessions live server-side (``SessionService``); the cookie only carries a random token.
Every POST needs the session's CSRF token, as the form field ``csrf_token`` or the
header ``X-CSRF-Token`` (which the UI's script adds to every htmx request). The sign-in
form, before any session exists, uses a double-submit token: a cookie and the same
value in the form.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request

from vitrine.accounts.sessions import SessionInfo
from vitrine.accounts.users import UserInfo

SESSION_COOKIE = "vitrine_session"
LOGIN_CSRF_COOKIE = "vitrine_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No valid session: send the browser to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    """Signed in, but not allowed: a wrong role or a missing / wrong CSRF token."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in person of one request, with their session's CSRF token."""

    user: UserInfo
    csrf_token: str
    token: str

    @property
    def can_edit(self) -> bool:
        return self.user.is_admin


def _session(request: Request) -> tuple[SessionInfo, str] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    info = request.app.state.admin.sessions.get(token)
    return (info, token) if info is not None else None


def viewer(request: Request) -> Viewer:
    """Dependency: the signed-in person (any role)."""
    found = _session(request)
    if found is None:
        raise SignInRequired(request.url.path)
    info, token = found
    request.state.viewer = Viewer(info.user, info.csrf_token, token)
    return request.state.viewer


async def _presented_csrf(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if "form" in content_type:
        form = await request.form()  # cached: the route's own Form fields read the same
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


async def reader_post(request: Request) -> Viewer:
    """Dependency for a POST that changes nothing stored (a search): any role, CSRF checked."""
    who = viewer(request)
    if not _same(await _presented_csrf(request), who.csrf_token):
        raise Forbidden("the form's security token is missing or out of date; reload the page")
    return who


async def editor(request: Request) -> Viewer:
    """Dependency for a change: role admin, CSRF checked."""
    who = await reader_post(request)
    if not who.can_edit:
        raise Forbidden(f"role {who.user.role!r} is read-only; an admin can make this change")
    return who


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


async def check_login_csrf(request: Request) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not _same(await _presented_csrf(request), cookie):
        raise Forbidden("the sign-in form expired; reload the page and try again")


def login_redirect(next_path: str) -> str:
    return f"/admin/login?next={quote(next_path)}"


def safe_next(next_path: str | None) -> str:
    """Only paths inside the admin UI: never an open redirect."""
    if next_path and next_path.startswith("/admin") and not next_path.startswith("//"):
        return next_path
    return "/admin"
