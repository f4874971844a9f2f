"""Visual search ads in the admin: campaigns (create, edit, pause, delete), their funnel
per campaign and per shared photo, and a campaign tried on a photo."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from vitrine.admin.scene_view import preview, scene_boxes
from vitrine.admin.security import Viewer, editor, reader_post, viewer
from vitrine.admin.templating import render
from vitrine.ads.service import (
    AdService,
    CampaignError,
    CampaignExists,
    CampaignNotFound,
    CampaignPaused,
)
from vitrine.catalog.feed import ProductLinks
from vitrine.index import Hit
from vitrine.index.scene_search import SceneObject
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(prefix="/admin/ads")
MAX_CATEGORY_CHOICES = 400


def _ads(request: Request) -> AdService:
    return request.app.state.admin.vitrine.ads


def _categories(request: Request, field: str) -> list[str]:
    """The values of the category field in the catalog, most products first."""
    values = request.app.state.admin.vitrine.search.attributes.values(field)
    return sorted(values, key=lambda v: (-values[v], v))[:MAX_CATEGORY_CHOICES]


def _page(request: Request, status: int = 200, **extra: Any) -> HTMLResponse:
    ads = _ads(request)
    return render(
        request, "ads.html", status, page="ads", rows=ads.campaign_rows(),
        sources=ads.source_rows(limit=24), categories=_categories(request, ads.default_field),
        category_field=ads.default_field, error=extra.get("error", ""),
        message=extra.get("message", ""), form=extra.get("form", {}),
    )  # fmt: skip


async def _rules(request: Request) -> dict[str, Any]:
    """A campaign's rules from the admin's form (names as the API's)."""
    form = await request.form()
    rules: dict[str, Any] = {
        key: str(form.get(key, "")).strip()
        for key in ("name", "description", "min_price", "max_price", "max_per_object")
    }
    rules["categories"] = [str(c) for c in form.getlist("categories")]
    rules["active"] = form.get("active") == "on"
    return rules


@router.get("", response_class=HTMLResponse)
def ads_page(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    return _page(request)


@router.post("/campaigns", response_class=HTMLResponse)
async def create_campaign(request: Request, _: Annotated[Viewer, Depends(editor)]) -> Response:
    rules = await _rules(request)
    try:
        await run_in_threadpool(_ads(request).create, rules)
    except (CampaignError, CampaignExists) as exc:
        return _page(request, 422 if isinstance(exc, CampaignError) else 409,
                     error=str(exc), form=rules)  # fmt: skip
    return RedirectResponse(f"/admin/ads?created={rules['name']}#campaigns", status_code=303)


@router.get("/campaigns/{name}", response_class=HTMLResponse)
def campaign_page(
    request: Request, name: str, _: Annotated[Viewer, Depends(viewer)]
) -> HTMLResponse:
    ads = _ads(request)
    try:
        campaign = ads.campaign(name)
    except CampaignNotFound as exc:
        return render(request, "error.html", 404, title="Not found", message=str(exc))
    return render(
        request, "ad_campaign.html", page="ads", campaign=campaign.to_json(),
        categories=_categories(request, campaign.category_field), error="",
        analytics=ads.analytics(campaign=name, sources=24),
    )  # fmt: skip


@router.post("/campaigns/{name}", response_class=HTMLResponse)
async def save_campaign(
    request: Request, name: str, _: Annotated[Viewer, Depends(editor)]
) -> Response:
    ads = _ads(request)
    rules = await _rules(request)
    rules.pop("name")
    for bound in ("min_price", "max_price"):
        rules[bound] = rules[bound] or None  # an empty bound removes it
    try:
        await run_in_threadpool(ads.update, name, rules)
    except CampaignNotFound as exc:
        return render(request, "error.html", 404, title="Not found", message=str(exc))
    except CampaignError as exc:
        campaign = {**ads.campaign(name).to_json(), **rules}
        return render(
            request, "ad_campaign.html", 422, page="ads", campaign=campaign, error=str(exc),
            categories=_categories(request, campaign["category_field"]),
            analytics=ads.analytics(campaign=name, sources=24),
        )  # fmt: skip
    return RedirectResponse(f"/admin/ads/campaigns/{name}?saved=1", status_code=303)


@router.post("/campaigns/{name}/{action}", response_class=HTMLResponse)
def campaign_action(
    request: Request, name: str, action: str, _: Annotated[Viewer, Depends(editor)]
) -> Response:
    """Pause, resume or delete a campaign."""
    ads = _ads(request)
    try:
        if action == "delete":
            ads.delete(name)
            return _page(request, message=f"Deleted campaign {name}; its past ads stay counted.")
        if action not in ("pause", "resume"):
            return render(request, "error.html", 404, title="Not found",
                          message=f"no action {action!r}")  # fmt: skip
        ads.update(name, {"active": action == "resume"})
    except CampaignNotFound as exc:
        return _page(request, 404, error=str(exc))
    done = "Paused" if action == "pause" else "Resumed"
    return _page(request, message=f"{done} campaign {name}.")


@router.post("/match", response_class=HTMLResponse)
async def try_campaign(
    request: Request,
    _: Annotated[Viewer, Depends(reader_post)],
    photo: Annotated[UploadFile | None, File()] = None,
    campaign: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """A preview of the campaign's ads for a photo, drawn as the scene search draws its
    boxes (not served: no impressions counted)."""
    vitrine = request.app.state.admin.vitrine
    started = time.perf_counter()

    def failed(message: str, status: int = 422) -> HTMLResponse:
        return render(request, "partials/ad_match.html", status, error=message)

    if photo is None or not photo.filename:
        return failed("Choose a photo a customer shared.")
    limit = vitrine.settings.max_image_bytes
    data = await photo.read(limit + 1)
    if len(data) > limit:
        return failed(f"{photo.filename}: larger than the limit of {limit:,} bytes", 413)
    links = ProductLinks.from_settings(vitrine.settings, str(request.base_url))
    try:
        found = await run_in_threadpool(
            vitrine.ads.match, data, campaign, links, photo.filename, record=False
        )
    except ImageDecodeError as exc:
        return failed(str(exc), exc.status)
    except CampaignNotFound as exc:
        return failed(str(exc), 404)
    except CampaignPaused as exc:
        return failed(f"{exc}: resume it to serve ads.", 409)
    objects = [
        SceneObject(tuple(o["box"]), o["score"], o["category"],  # type: ignore[arg-type]
                    [Hit(a["product_id"], a["score"]) for a in o["ads"]])
        for o in found.objects
    ]  # fmt: skip
    image, width, height = preview(data)
    return render(
        request, "partials/ad_match.html", error="", match=found, photo=image,
        took_ms=round((time.perf_counter() - started) * 1000, 1),
        boxes=scene_boxes(objects, width, height, request.app.state.admin.browser),
    )  # fmt: skip


@router.get("/sources/{source}.jpg")
def source_photo(request: Request, source: str, _: Annotated[Viewer, Depends(viewer)]) -> Response:
    data = _ads(request).source_thumbnail(source)
    if data is None:
        return Response(status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})
