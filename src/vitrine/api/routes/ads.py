"""/v1/ads: visual search ad campaigns, ads for the products in a shared photo, and the
funnel per campaign and per photo; /v1/feed: the catalog as a product feed;
/images/{id}.jpg: product photos without a key (when the shop turns them on)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from vitrine.ads.campaigns import MAX_PER_OBJECT, CampaignError
from vitrine.ads.service import AdService, CampaignExists, CampaignNotFound, CampaignPaused
from vitrine.api.auth import require
from vitrine.api.openapi import (
    UPLOAD_IMAGE_TYPES,
    UPLOAD_PROBLEMS,
    DateTimeParam,
    UTCDateTime,
    form_parts,
    problems,
)
from vitrine.api.problems import Problem, image_problem
from vitrine.api.routes.products import read_uploads
from vitrine.api.schemas import NotBoolean
from vitrine.catalog.feed import FeedError, ProductLinks
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(tags=["ads"])
CampaignName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False), NotBoolean]
Category = Annotated[str, Field(min_length=1, max_length=128)]


class CampaignRules(BaseModel):
    """What a campaign may advertise: in-stock products of these categories (values of
    ``category_field``; none: every category) in a price range, at most
    ``max_per_object`` for each object found in a photo."""

    model_config = {"extra": "forbid"}

    description: str | None = Field(default=None, max_length=2000)
    category_field: str | None = Field(default=None, min_length=1, max_length=64)
    categories: list[Category] | None = Field(default=None, max_length=200)
    min_price: Price | None = None
    max_price: Price | None = None
    max_per_object: Annotated[int, Field(ge=1, le=MAX_PER_OBJECT), NotBoolean] | None = None
    active: StrictBool | None = Field(default=None, description="false: paused, serves no ads")


class CampaignIn(CampaignRules):
    name: CampaignName


class CampaignOut(BaseModel):
    name: str
    description: str | None
    active: bool
    category_field: str
    categories: list[str]
    min_price: float | None
    max_price: float | None
    max_per_object: int
    created_at: UTCDateTime | None
    updated_at: UTCDateTime | None


class Ad(BaseModel):
    """One product advertised; send ``ad_id`` with the events that follow."""

    ad_id: str
    product_id: str
    score: float
    title: str | None
    price: float | None
    link: str | None = Field(description="the product page (null: no link pattern set)")
    image_link: str | None


class AdObject(BaseModel):
    box: list[int] = Field(min_length=4, max_length=4, description="[x0, y0, x1, y1]")
    score: float
    category: str | None
    ads: list[Ad]


class AdMatchOut(BaseModel):
    campaign: str
    source: str = Field(description="the photo's SHA-256: its row in the analytics")
    localized: bool = Field(description="false: no localiser yet, the photo searched whole")
    objects: list[AdObject]


class Funnel(BaseModel):
    impressions: int
    clicks: int
    carts: int
    purchases: int
    revenue: float
    ctr: float | None
    conversion: float | None = Field(description="purchases per impression")
    last_served: UTCDateTime | None


class CampaignFunnel(Funnel):
    campaign: str


class SourceFunnel(Funnel):
    source: str
    label: str | None
    campaigns: int


class AdAnalytics(BaseModel):
    campaigns: list[CampaignFunnel]
    sources: list[SourceFunnel] = Field(description="the most shown photos first")


def ads(request: Request) -> AdService:
    return request.app.state.runtime.ads


Ads = Annotated[AdService, Depends(ads)]


@contextmanager
def campaign_problems() -> Iterator[None]:
    try:
        yield
    except CampaignNotFound as exc:
        raise Problem(404, str(exc), "unknown-campaign") from exc
    except CampaignExists as exc:
        raise Problem(409, str(exc), "campaign-exists") from exc
    except CampaignPaused as exc:
        raise Problem(409, str(exc), "campaign-paused") from exc
    except CampaignError as exc:
        raise Problem(422, str(exc), "invalid-campaign") from exc


def _out(campaign: Any) -> CampaignOut:
    return CampaignOut(**campaign.to_json())


@router.get(
    "/v1/ads/campaigns",
    response_model=list[CampaignOut],
    dependencies=[Depends(require("read"))],
)
def list_campaigns(svc: Ads) -> list[CampaignOut]:
    return [_out(c) for c in svc.campaigns()]


@router.post(
    "/v1/ads/campaigns",
    status_code=201,
    response_model=CampaignOut,
    responses=problems(409),
    dependencies=[Depends(require("write"))],
)
def create_campaign(svc: Ads, body: CampaignIn) -> CampaignOut:
    """A new campaign (active unless ``active`` is false)."""
    with campaign_problems():
        return _out(svc.create(body.model_dump(exclude_none=True)))


@router.get(
    "/v1/ads/campaigns/{name}",
    response_model=CampaignOut,
    dependencies=[Depends(require("read"))],
)
def get_campaign(svc: Ads, name: str) -> CampaignOut:
    with campaign_problems():
        return _out(svc.campaign(name))


@router.patch(
    "/v1/ads/campaigns/{name}",
    response_model=CampaignOut,
    dependencies=[Depends(require("write"))],
)
def edit_campaign(svc: Ads, name: str, body: CampaignRules) -> CampaignOut:
    """Change the rules given (pause: ``{"active": false}``; a price bound of null
    removes it)."""
    with campaign_problems():
        return _out(svc.update(name, body.model_dump(exclude_unset=True)))


@router.delete(
    "/v1/ads/campaigns/{name}", status_code=204, dependencies=[Depends(require("write"))]
)
def delete_campaign(svc: Ads, name: str) -> Response:
    """Delete a campaign; its past ads keep their analytics."""
    with campaign_problems():
        svc.delete(name)
    return Response(status_code=204)


@router.post(
    "/v1/ads/match",
    response_model=AdMatchOut,
    responses={**problems(404, 409), **UPLOAD_PROBLEMS},
    openapi_extra=form_parts(image=UPLOAD_IMAGE_TYPES),
    dependencies=[Depends(require("read"))],
)
async def match_ads(
    request: Request,
    svc: Ads,
    image: Annotated[UploadFile, File(description="A photo a customer shared.")],
    campaign: Annotated[str, Form(min_length=1, max_length=64)],
    source: Annotated[
        str | None, Form(max_length=512, description="what the photo is, e.g. a post's URL")
    ] = None,
) -> AdMatchOut:
    """The campaign's in-stock products to advertise for each product seen in the photo,
    each with an ``ad_id`` for the events that follow. 404: no such campaign; 409: the
    campaign is paused."""
    upload = (await read_uploads(request, [image]))[0]
    links = ProductLinks.from_settings(request.app.state.runtime.settings, str(request.base_url))
    with campaign_problems():
        try:
            found = await run_in_threadpool(svc.match, upload.data, campaign, links, source)
        except ImageDecodeError as exc:
            raise image_problem(exc) from exc
    request.app.state.metrics.images.inc()
    return AdMatchOut(campaign=found.campaign, source=found.source, localized=found.localized,
                      objects=found.objects)  # fmt: skip


@router.get(
    "/v1/ads/analytics",
    response_model=AdAnalytics,
    responses=problems(404),
    dependencies=[Depends(require("read"))],
)
def ad_analytics(
    svc: Ads,
    campaign: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[DateTimeParam | None, Query(description="ads served since")] = None,
    sources: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AdAnalytics:
    """Impressions (ads served), clicks, carts, purchases and revenue attributed through
    ``ad_id``, per campaign and per shared photo."""
    with campaign_problems():
        return AdAnalytics(**svc.analytics(campaign, since, sources))


FEED_CONTENT = {
    "text/csv": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object"}},
}


@router.get(
    "/v1/feed",
    response_class=Response,
    responses={200: {"description": "The product feed.", "content": FEED_CONTENT}, **problems(409)},
    tags=["catalog"],
    dependencies=[Depends(require("read"))],
)
def product_feed(request: Request, format: Literal["csv", "json"] = "csv") -> StreamingResponse:
    """Every product as ad platforms read it: id, title, description, link, image_link,
    price, availability, brand, category. 409 until the link patterns are configured."""
    vitrine = request.app.state.runtime
    links = ProductLinks.from_settings(vitrine.settings, str(request.base_url))
    try:
        chunks = (vitrine.feed.csv_chunks if format == "csv" else vitrine.feed.json_chunks)(links)
        first = next(chunks)
    except FeedError as exc:
        raise Problem(409, str(exc), "feed-not-configured") from exc

    def body() -> Iterator[str]:
        yield first
        yield from chunks

    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    return StreamingResponse(body(), media_type=media)


@router.get(
    "/images/{product_id:path}.jpg",  # ids may hold a slash
    response_class=Response,
    responses={200: {"description": "The product's photo (640 px JPEG).",
                     "content": {"image/jpeg": {"schema": {"type": "string",
                                                           "format": "binary"}}}}},
    tags=["catalog"],
)  # fmt: skip
def public_image(
    request: Request,
    product_id: str,
    exp: Annotated[int | None, Query(ge=0, le=2**40, description="signed: the expiry")] = None,
    sig: Annotated[str | None, Query(max_length=64, description="signed: the signature")] = None,
) -> Response:
    """A product's photo without a key, for pages and feeds: 404 unless the shop turned
    public images on (``public_images``) or the address is signed and unexpired (product
    cards carry such addresses)."""
    data = request.app.state.runtime.public_images.photo(product_id, exp, sig)
    if data is None:
        raise Problem(404, f"no public photo of product {product_id!r}", "unknown-image")
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip
