"""Recommendations: strategies (algorithm, fallback chain, aspect weights, rules), side-by-side
previews and A/B tests, through the recommendation service's admin interface."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.ports import RecommendationAdmin, Strategy
from vitrine.admin.security import Viewer, editor, reader_post, viewer
from vitrine.admin.templating import render
from vitrine.catalog.browse import BrowseFilter

router = APIRouter(prefix="/admin/recommendations")
ASPECTS = ("color", "texture", "shape", "pattern", "embedding")
RULES = ("exclude_purchased", "in_stock_only", "diversity")


def _backend(request: Request) -> RecommendationAdmin | None:
    return request.app.state.admin.backends.recommendations


def _strategy(backend: RecommendationAdmin, name: str) -> Strategy | None:
    return next((s for s in backend.strategies() if s.name == name), None)


@router.get("", response_class=HTMLResponse)
def strategies(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    backend = _backend(request)
    context: dict[str, Any] = {"page": "recommendations", "installed": backend is not None}
    if backend is not None:
        context.update(
            strategies=backend.strategies(),
            ab_tests=backend.ab_tests(),
            aspects=ASPECTS,
            algorithms=backend.algorithms(),
        )
    return render(request, "recommendations.html", **context)


def _number(form: Any, key: str, default: float = 0.0) -> float:
    raw = str(form.get(key, "")).strip()
    if not raw:
        return default
    value = float(raw)  # ValueError names the bad text
    if value < 0:
        raise ValueError(f"{key.split(':')[-1]} must not be negative")
    return value


@router.post("/{name}", response_class=HTMLResponse)
async def save_strategy(
    request: Request, name: str, _: Annotated[Viewer, Depends(editor)]
) -> HTMLResponse:
    backend = _backend(request)
    current = _strategy(backend, name) if backend is not None else None
    if backend is None or current is None:
        return render(
            request, "error.html", 404, title="Not found", message=f"No strategy {name!r}."
        )
    form = await request.form()
    algorithms = backend.algorithms()
    try:
        algorithm = str(form.get("algorithm") or current.algorithm)
        raw = str(form.get("fallback", ""))
        fallback = tuple(a.strip() for a in raw.split(",") if a.strip())
        for chosen in (algorithm, *fallback):
            if chosen not in algorithms:
                raise ValueError(f"unknown algorithm {chosen!r}")
        updated = Strategy(
            name=name,
            algorithm=algorithm,
            fallback=fallback,
            description=current.description,
            aspects={a: _number(form, f"aspect:{a}") for a in ASPECTS},
            rules={
                "exclude_purchased": form.get("rule:exclude_purchased") == "on",
                "in_stock_only": form.get("rule:in_stock_only") == "on",
                "diversity": _number(form, "rule:diversity"),
            },
        )
        backend.save_strategy(updated)
    except ValueError as exc:
        return render(
            request,
            "partials/strategy.html",
            422,
            strategy=current,
            aspects=ASPECTS,
            algorithms=algorithms,
            error=str(exc),
        )
    return render(
        request,
        "partials/strategy.html",
        strategy=updated,
        aspects=ASPECTS,
        algorithms=algorithms,
        message="Saved.",
    )


@router.post("/preview/compare", response_class=HTMLResponse)
def preview(
    request: Request,
    _: Annotated[Viewer, Depends(reader_post)],
    left: Annotated[str, Form()],
    right: Annotated[str, Form()],
    customer_id: Annotated[str, Form()] = "",
    product_id: Annotated[str, Form()] = "",
    k: Annotated[int, Form(ge=1, le=50)] = 12,
) -> HTMLResponse:
    backend = _backend(request)
    if backend is None:
        return render(request, "partials/preview.html", 404, error="No recommendation service.")
    if not customer_id.strip() and not product_id.strip():
        return render(request, "partials/preview.html", 422, error="Give a customer or a product.")
    columns = []
    for name in (left, right):
        strategy = _strategy(backend, name)
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
        cards = {
            c.id: c
            for c in request.app.state.admin.browser.cards(
                BrowseFilter(), ids=[i.product_id for i in items], limit=max(1, len(items))
            )
        }
        columns.append((strategy, [(i, cards.get(i.product_id)) for i in items]))
    return render(request, "partials/preview.html", columns=columns, error="")


@router.post("/ab-tests/new", response_class=HTMLResponse)
def start_ab_test(
    request: Request,
    _: Annotated[Viewer, Depends(editor)],
    name: Annotated[str, Form()],
    a: Annotated[str, Form()],
    b: Annotated[str, Form()],
    split: Annotated[float, Form(gt=0, lt=1)] = 0.5,
) -> HTMLResponse:
    backend = _backend(request)
    if backend is None:
        return render(request, "partials/ab_tests.html", 404, ab_tests=[], error="No service.")
    error = ""
    try:
        backend.start_ab_test(name.strip(), a, b, split)
    except ValueError as exc:
        error = str(exc)
    return render(
        request,
        "partials/ab_tests.html",
        422 if error else 200,
        ab_tests=backend.ab_tests(),
        error=error,
    )
