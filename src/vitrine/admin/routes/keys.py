"""API keys in the admin: every key (never the key itself), a new one shown once, revoke.

Storefront keys (for shop pages) list the origins allowed to use them and their own
rate limit; see docs/storefront.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from vitrine.accounts.keys import KINDS, KeyService
from vitrine.admin.security import Viewer, editor, viewer
from vitrine.admin.templating import render

router = APIRouter(prefix="/admin/keys")


def _keys(request: Request) -> KeyService:
    return request.app.state.admin.vitrine.keys


def _page(request: Request, status: int = 200, **extra: object) -> HTMLResponse:
    keys = sorted(_keys(request).list(), key=lambda k: (k.revoked_at is not None, -k.id))
    return render(request, "keys.html", status, page="keys", keys=keys, kinds=KINDS,
                  created=extra.get("created"), new_key=extra.get("new_key", ""),
                  error=extra.get("error", ""), message=extra.get("message", ""),
                  form=extra.get("form", {}))  # fmt: skip


@router.get("", response_class=HTMLResponse)
def keys_page(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    return _page(request)


@router.post("", response_class=HTMLResponse)
async def create_key(request: Request, _: Annotated[Viewer, Depends(editor)]) -> HTMLResponse:
    form = await request.form()
    fields = {k: str(form.get(k, "")).strip() for k in ("name", "scope", "origins", "rate")}
    origins = fields["origins"].replace(",", " ").split()
    try:
        rate = float(fields["rate"]) if fields["rate"] else None
    except ValueError:
        return _page(request, 422, error=f"rate limit {fields['rate']!r} is not a number",
                     form=fields)  # fmt: skip
    try:
        info, key = await run_in_threadpool(
            _keys(request).create, fields["name"], fields["scope"], origins, rate
        )
    except ValueError as exc:
        return _page(request, 422, error=str(exc), form=fields)
    return _page(request, created=info, new_key=key)


@router.post("/{key_id}/revoke", response_class=HTMLResponse)
def revoke_key(
    request: Request, key_id: int, _: Annotated[Viewer, Depends(editor)]
) -> HTMLResponse:
    if not _keys(request).revoke_id(key_id):
        return _page(request, 404, error="no active key with that id")
    return _page(request, message="Revoked; every process refuses it within seconds.")
