"""Analytics: classification (distributions, confidences, corrections, per-class quality)
and recommendations (from the recommendation service, when installed) over a date range
that defaults to the span of the shop's own events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.security import Viewer, viewer
from vitrine.admin.templating import render
from vitrine.classify.label_metrics import histogram

router = APIRouter(prefix="/admin")
DAYS = 30


@router.get("/analytics", response_class=HTMLResponse)
def analytics(
    request: Request,
    _: Annotated[Viewer, Depends(viewer)],
    field: str = "",
    start: Annotated[str, Query(alias="from", max_length=40)] = "",
    end: Annotated[str, Query(alias="to", max_length=40)] = "",
) -> HTMLResponse:
    admin = request.app.state.admin
    stats = admin.label_stats
    label_fields = sorted(admin.browser.label_fields())
    attribute_fields = sorted(admin.browser.attribute_values())
    choices = [f"label:{f}" for f in label_fields] + [f"attribute:{f}" for f in attribute_fields]
    field = field if field in choices else (choices[0] if choices else "")
    kind, _sep, name = field.partition(":")
    counts = (
        (stats.label_counts(name) if kind == "label" else stats.attribute_counts(name))
        if name
        else []
    )
    source, confidences = stats.model_confidences()
    bins, binned = histogram(confidences)
    corrections = admin.browser.corrections_per_day(DAYS)
    charts = {
        "distribution": {
            "type": "bar",
            "labels": [v for v, _ in counts],
            "datasets": [{"label": f"Products per {name}", "data": [c for _, c in counts]}],
            "horizontal": True,
            "integer": True,
        },
        "confidence": {
            "type": "bar",
            "labels": bins,
            "datasets": [{"label": f"Confidence of the {source}", "data": binned}],
            "integer": True,
        },
        "corrections": {
            "type": "line",
            "labels": [d.isoformat() for d, _ in corrections],
            "datasets": [{"label": "Labels set by people", "data": [c for _, c in corrections]}],
            "integer": True,
        },
    }
    backend = admin.backends.recommendations
    activity = admin.activity.report(start, end) if backend is not None else None
    return render(
        request,
        "analytics.html",
        422 if activity is not None and activity.error else 200,
        page="analytics",
        field=field,
        choices=choices,
        charts=charts,
        confidence_source=source,
        confidence_count=len(confidences),
        class_metrics=admin.backends.classification.class_metrics(),
        activity=activity,
        offline=backend.offline_evaluation() if backend is not None else None,
    )
