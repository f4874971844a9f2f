"""Sign in and sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

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
        request, "login.html", status, csrf_token=token, next=safe_next(next_path), error=error
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
    token, _csrf = admin.sessions.create(result.user.id)
    response = RedirectResponse(safe_next(next), status_code=303)
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
