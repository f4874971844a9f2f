"""Recommendations: the strategy list (create, duplicate, delete), the editor of one
strategy with a live preview of its unsaved edits, and side-by-side previews, through the
recommendation service's admin interface. A/B tests are in :mod:`.ab_tests`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vitrine.admin.ports import RecommendationAdmin
from vitrine.admin.security import Viewer, editor, reader_post, viewer
from vitrine.admin.strategy_form import ASPECTS, StrategyForm
from vitrine.admin.templating import render
from vitrine.catalog.browse import BrowseFilter
from vitrine.recommend.algorithm_params import params_of, uses_aspect_weights

router = APIRouter(prefix="/admin/recommendations")
PREVIEW_K = 12


def _backend(request: Request) -> RecommendationAdmin | None:
    return request.app.state.admin.backends.recommendations


def _not_found(request: Request, what: str) -> HTMLResponse:
    return render(request, "error.html", 404, title="Not found", message=what)


def _to(path: str, request: Request) -> Response:
    """Go to ``path``: an htmx redirect for htmx requests, else a plain one."""
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": path})
    return RedirectResponse(path, status_code=303)


def _table(
    request: Request, backend: RecommendationAdmin, status: int = 200, **extra: str
) -> HTMLResponse:
    return render(
        request,
        "partials/strategy_table.html",
        status,
        rows=backend.strategy_rows(),
        message=extra.get("message", ""),
        error=extra.get("error", ""),
    )


@router.get("", response_class=HTMLResponse)
def strategies(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    backend = _backend(request)
    context: dict[str, Any] = {"page": "recommendations", "installed": backend is not None}
    if backend is not None:
        rows = backend.strategy_rows()
        context.update(
            rows=rows,
            names=[r["name"] for r in rows],
            ab_tests=backend.ab_tests(),
            algorithms=backend.algorithms(),
            customers=backend.recent_customers(),
            message="",
            error="",
        )
    return render(request, "recommendations.html", **context)


@router.post("/strategies", response_class=HTMLResponse)
def create_strategy(
    request: Request,
    _: Annotated[Viewer, Depends(editor)],
    name: Annotated[str, Form()] = "",
    algorithm: Annotated[str, Form()] = "",
    fallback: Annotated[str, Form()] = "",
) -> Response:
    backend = _backend(request)
    if backend is None:
        return _not_found(request, "No recommendation service.")
    name = name.strip()
    chain = [a.strip() for a in fallback.split(",") if a.strip()]
    try:
        if not name:
            raise ValueError("give the new strategy a name")
        backend.create_strategy(name, algorithm.strip(), chain)
    except ValueError as exc:
        return render(request, "partials/strategy_alert.html", 422, error=str(exc))
    return _to(f"/admin/recommendations/strategies/{name}", request)


@router.post("/strategies/{name}/duplicate", response_class=HTMLResponse)
def duplicate_strategy(
    request: Request,
    name: str,
    _: Annotated[Viewer, Depends(editor)],
    new_name: Annotated[str, Form()] = "",
) -> Response:
    backend = _backend(request)
    if backend is None:
        return _not_found(request, "No recommendation service.")
    copy = new_name.strip()
    try:
        if not copy:
            raise ValueError("give the copy a name")
        backend.create_strategy(copy, "", [], copy_of=name)
    except ValueError as exc:
        return _table(request, backend, 422, error=str(exc))
    return _to(f"/admin/recommendations/strategies/{copy}", request)


@router.post("/strategies/{name}/delete", response_class=HTMLResponse)
def delete_strategy(
    request: Request, name: str, _: Annotated[Viewer, Depends(editor)]
) -> HTMLResponse:
    backend = _backend(request)
    if backend is None:
        return _not_found(request, "No recommendation service.")
    try:
        backend.delete_strategy(name)
    except LookupError as exc:
        return _table(request, backend, 404, error=str(exc.args[0]))
    except ValueError as exc:
        return _table(request, backend, 409, error=str(exc))
    return _table(request, backend, message=f"Deleted {name}.")


def _editor_context(
    backend: RecommendationAdmin, form: StrategyForm, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "form": form,
        "v": form.values,
        "config": config,
        "algorithms": backend.algorithms(),
        "params": params_of(form.algorithm),
        "weights_used": uses_aspect_weights(form.algorithm),
        "aspects": ASPECTS,
    }


@router.get("/strategies/{name}", response_class=HTMLResponse)
def strategy_editor(
    request: Request, name: str, _: Annotated[Viewer, Depends(viewer)]
) -> HTMLResponse:
    backend = _backend(request)
    config = backend.strategy_config(name) if backend is not None else None
    if backend is None or config is None or config["variants"]:
        return _not_found(request, f"No strategy {name!r}.")
    form = StrategyForm.from_config(name, config, config["description"])
    return render(
        request,
        "strategy.html",
        page="recommendations",
        customers=backend.recent_customers(),
        message="",
        error="",
        **_editor_context(backend, form, config),
    )


@router.get("/strategies/{name}/fields", response_class=HTMLResponse)
def algorithm_fields(
    request: Request, name: str, _: Annotated[Viewer, Depends(viewer)], algorithm: str = ""
) -> HTMLResponse:
    """The parameter and weight fields of another algorithm (when the select changes)."""
    backend = _backend(request)
    config = backend.strategy_config(name) if backend is not None else None
    if backend is None or config is None:
        return _not_found(request, f"No strategy {name!r}.")
    if algorithm not in backend.algorithms():
        return render(
            request, "partials/strategy_alert.html", 422, error=f"unknown algorithm {algorithm!r}"
        )
    form = StrategyForm.from_post(name, {"algorithm": algorithm}, config, config["description"])
    return render(
        request, "partials/strategy_fields.html", **_editor_context(backend, form, config)
    )


@router.post("/strategies/{name}", response_class=HTMLResponse)
async def save_strategy(
    request: Request, name: str, _: Annotated[Viewer, Depends(editor)]
) -> HTMLResponse:
    backend = _backend(request)
    config = backend.strategy_config(name) if backend is not None else None
    if backend is None or config is None:
        return _not_found(request, f"No strategy {name!r}.")
    form = StrategyForm.from_post(name, await request.form(), config, config["description"])
    try:
        backend.save_strategy_config(name, form.to_config(config), form.description)
    except LookupError as exc:
        return _not_found(request, str(exc.args[0]))
    except ValueError as exc:
        context = _editor_context(backend, form, config)
        return render(request, "partials/strategy_form.html", 422, error=str(exc), **context)
    saved = backend.strategy_config(name) or config
    form = StrategyForm.from_config(name, saved, saved["description"])
    context = _editor_context(backend, form, saved)
    return render(request, "partials/strategy_form.html", message="Saved.", error="", **context)


def _cards(request: Request, ids: list[str]) -> dict[str, Any]:
    """The catalog cards of these products, in one query."""
    browser = request.app.state.admin.browser
    return {c.id: c for c in browser.cards(BrowseFilter(), ids=ids, limit=max(1, len(ids)))}


@router.post("/strategies/{name}/preview", response_class=HTMLResponse)
async def preview_edits(
    request: Request, name: str, _: Annotated[Viewer, Depends(reader_post)]
) -> HTMLResponse:
    """The unsaved edits' list next to the saved strategy's, for a customer or a product."""
    backend = _backend(request)
    config = backend.strategy_config(name) if backend is not None else None
    if backend is None or config is None:
        return render(request, "partials/preview.html", 404, error=f"No strategy {name!r}.")
    posted = await request.form()
    customer_id = str(posted.get("customer_id") or "").strip() or None
    product_id = str(posted.get("product_id") or "").strip() or None
    if not customer_id and not product_id:
        return render(
            request, "partials/preview.html", 422, error="Give a customer id or a product id."
        )
    form = StrategyForm.from_post(name, posted, config, config["description"])
    try:
        result = backend.preview_config(
            name,
            form.to_config(config),
            customer_id=customer_id,
            product_id=product_id,
            k=PREVIEW_K,
        )
    except ValueError as exc:
        return render(request, "partials/preview.html", 422, error=str(exc))
    cards = _cards(request, [i.product_id for i in [*result.draft, *result.saved]])
    columns = [
        ("Unsaved edits", [(i, cards.get(i.product_id)) for i in result.draft]),
        ("Saved", [(i, cards.get(i.product_id)) for i in result.saved]),
    ]
    return render(request, "partials/preview.html", columns=columns, note=result.note, error="")


@router.post("/preview/compare", response_class=HTMLResponse)
def preview(
    request: Request,
    _: Annotated[Viewer, Depends(reader_post)],
    left: Annotated[str, Form()],
    right: Annotated[str, Form()],
    customer_id: Annotated[str, Form()] = "",
    product_id: Annotated[str, Form()] = "",
    k: Annotated[int, Form(ge=1, le=50)] = PREVIEW_K,
) -> HTMLResponse:
    backend = _backend(request)
    if backend is None:
        return render(request, "partials/preview.html", 404, error="No recommendation service.")
    if not customer_id.strip() and not product_id.strip():
        return render(request, "partials/preview.html", 422, error="Give a customer or a product.")
    known = {s.name: s for s in backend.strategies()}
    columns = []
    for name in (left, right):
        strategy = known.get(name)
        if strategy is None:
            return render(request, "partials/preview.html", 422, error=f"No strategy {name!r}.")
        try:
            items = backend.preview(
                strategy,
                customer_id=customer_id.strip() or None,
                product_id=product_id.strip() or None,
                k=k,
            )
        except ValueError as exc:
            return render(request, "partials/preview.html", 422, error=str(exc))
        cards = _cards(request, [i.product_id for i in items])
        columns.append((name, [(i, cards.get(i.product_id)) for i in items]))
    return render(request, "partials/preview.html", columns=columns, note="", error="")
