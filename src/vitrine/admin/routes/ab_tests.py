"""A/B tests of recommendation strategies: start, pause and resume, change the split,
stop, and declare a winner; each answers the tests panel again with their numbers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.ports import RecommendationAdmin
from vitrine.admin.security import Viewer, editor
from vitrine.admin.templating import render

router = APIRouter(prefix="/admin/recommendations/ab-tests")


def _panel(
    request: Request, backend: RecommendationAdmin, status: int = 200, **extra: str
) -> HTMLResponse:
    return render(
        request,
        "partials/ab_tests.html",
        status,
        ab_tests=backend.ab_tests(),
        message=extra.get("message", ""),
        error=extra.get("error", ""),
    )


def _split(form: dict[str, str]) -> float:
    """The share to B: ``split_percent`` (1-99) from the page, or ``split`` (0-1)."""
    if form.get("split_percent", "").strip():
        raw, scale = form["split_percent"].strip(), 100.0
    else:
        raw, scale = (form.get("split") or "0.5").strip(), 1.0
    try:
        value = float(raw) / scale
    except ValueError:
        raise ValueError(f"the share to B must be a number, not {raw!r}") from None
    if not math.isfinite(value) or not 0 < value < 1:
        raise ValueError("the share of customers sent to B must be between 1 % and 99 %")
    return value


async def _act(
    request: Request,
    action: Callable[[RecommendationAdmin, dict[str, str]], str],
) -> HTMLResponse:
    """Run one change with the posted fields; the panel with its message or error."""
    backend: RecommendationAdmin | None = request.app.state.admin.backends.recommendations
    if backend is None:
        return render(
            request, "partials/strategy_alert.html", 404, error="No recommendation service."
        )
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        message = action(backend, form)
    except LookupError as exc:
        return _panel(request, backend, 404, error=str(exc.args[0]))
    except ValueError as exc:
        return _panel(request, backend, 422, error=str(exc))
    return _panel(request, backend, message=message)


@router.post("/new", response_class=HTMLResponse)
async def start(request: Request, _: Annotated[Viewer, Depends(editor)]) -> HTMLResponse:
    def run(backend: RecommendationAdmin, form: dict[str, str]) -> str:
        name, a, b = (form.get(k, "").strip() for k in ("name", "a", "b"))
        if not name:
            raise ValueError("give the test a name (the storefront asks for it)")
        backend.start_ab_test(name, a, b, _split(form))
        return f"Started {name}: {a} against {b}."

    return await _act(request, run)


@router.post("/{name}/pause", response_class=HTMLResponse)
async def pause(request: Request, name: str, _: Annotated[Viewer, Depends(editor)]) -> HTMLResponse:
    def run(backend: RecommendationAdmin, form: dict[str, str]) -> str:
        backend.pause_ab_test(name, True)
        return f"Paused {name}: everyone gets its parent configuration."

    return await _act(request, run)


@router.post("/{name}/resume", response_class=HTMLResponse)
async def resume(
    request: Request, name: str, _: Annotated[Viewer, Depends(editor)]
) -> HTMLResponse:
    def run(backend: RecommendationAdmin, form: dict[str, str]) -> str:
        backend.pause_ab_test(name, False)
        return f"Resumed {name}."

    return await _act(request, run)


@router.post("/{name}/split", response_class=HTMLResponse)
async def split(request: Request, name: str, _: Annotated[Viewer, Depends(editor)]) -> HTMLResponse:
    def run(backend: RecommendationAdmin, form: dict[str, str]) -> str:
        share = _split(form)
        backend.set_ab_split(name, share)
        return f"{name} now sends {100 * share:.0f} % of customers to B."

    return await _act(request, run)


@router.post("/{name}/stop", response_class=HTMLResponse)
async def stop(request: Request, name: str, _: Annotated[Viewer, Depends(editor)]) -> HTMLResponse:
    def run(backend: RecommendationAdmin, form: dict[str, str]) -> str:
        backend.stop_ab_test(name)
        return f"Stopped {name}: it serves its parent configuration and is a strategy now."

    return await _act(request, run)


@router.post("/{name}/winner", response_class=HTMLResponse)
async def winner(
    request: Request, name: str, _: Annotated[Viewer, Depends(editor)]
) -> HTMLResponse:
    def run(backend: RecommendationAdmin, form: dict[str, str]) -> str:
        chosen = form.get("winner", "").strip()
        backend.declare_ab_winner(name, chosen)
        return f"{chosen} won: {name} now serves {chosen}'s configuration."

    return await _act(request, run)
