"""Sign in and sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vitrine.accounts.users import UserError
from vitrine.admin.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Viewer,
    check_login_csrf,
    new_login_csrf,
    reader_post,
    safe_next,
)
from vitrine.admin.templating import render

router = APIRouter(prefix="/admin")


def _login_page(request: Request, next_path: str, error: str = "", status: int = 200) -> Response:
    token = new_login_csrf()
    response = render(
        request,
        "login.html",
        status,
        csrf_token=token,
        next=safe_next(next_path),
        error=error,
        first_run=not request.app.state.admin.users.has_admin(),
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.runtime.settings.admin_cookie_secure,
        path="/admin/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/admin") -> Response:
    return _login_page(request, next)


@router.post("/login", dependencies=[Depends(check_login_csrf)])
def login(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/admin",
) -> Response:
    admin = request.app.state.admin
    result = admin.users.authenticate(username.strip(), password)
    if result.user is None:
        if result.reason == "locked":
            until = result.locked_until.strftime("%H:%M UTC") if result.locked_until else ""
            message = (
                "Too many failed sign-ins: this account is locked until "
                f"{until}. An admin can unlock it with `vitrine users unlock`."
            )
            return _login_page(request, next, message, 429)
        return _login_page(request, next, "Wrong user name or password.", 401)
    return _signed_in(request, result.user.id, next)


def _signed_in(request: Request, user_id: int, next_path: str) -> Response:
    """A new session for the user, and the browser sent on to ``next_path``."""
    admin = request.app.state.admin
    token, _csrf = admin.sessions.create(user_id)
    response = RedirectResponse(safe_next(next_path), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(admin.sessions.lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.app.state.runtime.settings.admin_cookie_secure,
        path="/admin",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin/login")
    return response


@router.post("/logout")
def logout(request: Request, who: Annotated[Viewer, Depends(reader_post)]) -> Response:
    request.app.state.admin.sessions.end(who.token)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    if request.headers.get("hx-request"):
        response = Response(status_code=204, headers={"HX-Redirect": "/admin/login"})
        response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


def _setup_page(
    request: Request, token: str, error: str = "", status: int = 200, username: str = ""
) -> Response:
    """The form again as it was typed (but for the passwords), the error above it."""
    return render(request, "setup.html", status, token=token, error=error, username=username)


def _setup_refused(request: Request) -> Response | None:
    """Setup is over once an admin exists; a wrong token gets a plain 403."""
    admin = request.app.state.admin
    if admin.users.has_admin():
        admin.setup.void()
        return RedirectResponse("/admin/login", status_code=303)
    return None


@router.get("/setup", response_class=HTMLResponse)
def setup_form(request: Request, token: str = "") -> Response:
    """The one-time form that creates the first admin (link printed by `vitrine serve`)."""
    refused = _setup_refused(request)
    if refused is not None:
        return refused
    if not request.app.state.admin.setup.matches(token):
        return render(
            request,
            "error.html",
            403,
            title="Setup link not valid",
            message="Open the setup link that `vitrine serve` printed on its terminal; "
            "its token is also kept in the file setup-token of the data directory.",
        )
    return _setup_page(request, token)


@router.post("/setup")
def setup(
    request: Request,
    token: Annotated[str, Form()],
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    confirm: Annotated[str, Form()],
) -> Response:
    """Create the first admin, end the setup for good, and sign the admin in."""
    refused = _setup_refused(request)
    if refused is not None:
        return refused
    admin = request.app.state.admin
    if not admin.setup.matches(token):
        return render(
            request,
            "error.html",
            403,
            title="Setup link not valid",
            message=("The setup token is wrong or was already used."),
        )
    if password != confirm:
        return _setup_page(request, token, "The two passwords differ.", 422, username)
    try:
        user = admin.users.create(username, password, "admin")
    except UserError as exc:
        return _setup_page(request, token, str(exc).capitalize() + ".", 422, username)
    admin.setup.void()
    return _signed_in(request, user.id, "/admin")
