"""Storefront: product cards (/v1/cards), the kit (/kit/v1/vitrine.js) and the demo shop
(/demo, off unless ``demo_storefront``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vitrine.api.auth import require
from vitrine.api.problems import Problem
from vitrine.catalog.cards import MAX_CARDS
from vitrine.storefront import KIT_DIR, KIT_FILES, KIT_VERSION
from vitrine.storefront.demo import DEMO_HEADERS, DemoPage, DemoShop

router = APIRouter(tags=["storefront"])


class Card(BaseModel):
    """What a storefront shows of a product."""

    id: str
    title: str
    price: float | None
    currency: str
    available: bool
    image: str | None = Field(description="the photo's address (signed and expiring, or public)")
    link: str | None = Field(description="the product page (product_link_pattern)")


class Cards(BaseModel):
    cards: list[Card] = Field(description="the products that exist, in the order asked")


@router.get(
    "/v1/cards",
    response_model=Cards,
    dependencies=[Depends(require("read", storefront=True))],
)
async def product_cards(
    request: Request,
    id: Annotated[
        list[str],
        Query(min_length=1, max_length=MAX_CARDS, description="product ids; repeatable"),
    ],
) -> Cards:
    """Product cards (photo, title, price, link) for storefront widgets; unknown ids are
    left out. Photos are signed addresses that ``<img src>`` loads without a key."""
    cards = request.app.state.runtime.cards
    found = await run_in_threadpool(cards.cards, id, str(request.base_url))
    return Cards(cards=[Card(**card) for card in found])


@router.get(f"/kit/{KIT_VERSION}/{{name}}", include_in_schema=False)
def kit(name: str) -> FileResponse:
    """The kit's modules (vitrine.js and what it imports), for any page: a module script
    from another origin needs CORS."""
    if name not in KIT_FILES:
        raise Problem(404, f"no kit file {name!r}", "not-found")
    return FileResponse(
        KIT_DIR / name,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )


def _demo(request: Request) -> DemoShop:
    return request.app.state.demo  # type: ignore[no-any-return]


def _html(page: DemoPage | None) -> HTMLResponse:
    if page is None:
        raise Problem(404, "the demo storefront is off (demo_storefront)", "not-found")
    return HTMLResponse(page.html, status_code=page.status, headers=DEMO_HEADERS)


@router.get("/demo", include_in_schema=False)
def demo_home(demo: Annotated[DemoShop, Depends(_demo)]) -> HTMLResponse:
    return _html(demo.page("home"))


@router.get("/demo/products/{product_id}", include_in_schema=False)
def demo_product(demo: Annotated[DemoShop, Depends(_demo)], product_id: str) -> HTMLResponse:
    return _html(demo.page("product", product_id=product_id))


@router.get("/demo/static/{name}", include_in_schema=False)
def demo_static(demo: Annotated[DemoShop, Depends(_demo)], name: str) -> Response:
    found = demo.static_file(name)
    if found is None:
        raise Problem(404, f"no demo file {name!r}", "not-found")
    data, media = found
    return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})
