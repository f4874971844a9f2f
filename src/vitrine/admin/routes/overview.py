"""Overview: catalog size, photos processed, model versions (the CNN, the active
classifiers), recommendations, charts."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.models_view import ModelsView
from vitrine.admin.security import Viewer, viewer
from vitrine.admin.templating import render
from vitrine.catalog.models import utcnow
from vitrine.vision.features import FEATURE_VERSION

router = APIRouter(prefix="/admin")
DAYS = 30


def recommendation_summary(request: Request) -> dict[str, Any] | None:
    backend = request.app.state.admin.backends.recommendations
    return backend.metrics(days=DAYS) if backend is not None else None


@router.get("", response_class=HTMLResponse)
def overview(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    admin = request.app.state.admin
    vitrine = admin.vitrine
    browser = admin.browser
    midnight = datetime.combine(utcnow().date(), time.min, tzinfo=utcnow().tzinfo)
    search = vitrine.search
    snapshot = admin.monitor.latest()
    stats = {
        "products": browser.count_products(),
        "photos_today": browser.images_since(midnight),
        "analysed_since_start": int(snapshot.images) if snapshot is not None else 0,
        "indexed": len(search),
        "index_kind": search.vectors.kind,
    }
    growth = browser.catalog_growth(DAYS)
    charts = {
        "growth": {
            "type": "line",
            "labels": growth["days"],
            "datasets": [{"label": "Products in the catalog", "data": growth["size"]}],
        },
        "daily": {
            "type": "bar",
            "labels": growth["days"],
            "datasets": [
                {"label": "Products added", "data": growth["products"]},
                {"label": "Photos processed", "data": growth["images"]},
            ],
        },
    }
    return render(
        request,
        "overview.html",
        page="overview",
        stats=stats,
        charts=charts,
        models={"embedding": search.model_version, "features": FEATURE_VERSION},
        classifiers=ModelsView(vitrine, browser).active_classifiers(),
        recommendations=recommendation_summary(request),
    )
