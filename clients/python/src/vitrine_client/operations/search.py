"""Photos: analysis, search by photo or product, products in a real photo (scenes), the
localiser behind scene search, and virtual try-on."""

from __future__ import annotations

from vitrine_client.calls import Call, Filters, Upload, Weights, filter_list, present, weights_text
from vitrine_client.models import (
    Analysis,
    Job,
    LocalizerStatus,
    SceneResults,
    SearchResults,
)
from vitrine_client.operation import operation


class SearchOperations:
    """/v1/analyze, /v1/search/*, /v1/products/{id}/similar, /v1/localizer, /v1/tryon."""

    @operation("POST", "/v1/analyze")
    def analyze_image(image: Upload, *, title: str | None = None) -> Call[Analysis]:
        """The full analysis of one photo (nothing is stored); ``title`` helps the
        classifier when known."""
        return Call(Analysis, form={"title": title}, files=[("image", image)])

    @operation("POST", "/v1/search/image")
    def search_image(
        image: Upload | None = None,
        *,
        product_id: str | None = None,
        k: int | None = None,
        filter: Filters | None = None,
        min_score: float | None = None,
        weights: Weights | None = None,
    ) -> Call[SearchResults]:
        """Products that look like a photo, or like a catalog product (``product_id``):
        give exactly one of the two."""
        form = {
            "product_id": product_id,
            "k": k,
            "filter": filter_list(filter),
            "min_score": min_score,
            "weights": weights_text(weights),
        }
        files = [("image", image)] if image is not None else []
        return Call(SearchResults, form=form, files=files)

    @operation("GET", "/v1/products/{product_id}/similar")
    def similar_products(
        product_id: str,
        *,
        k: int | None = None,
        filter: Filters | None = None,
        min_score: float | None = None,
    ) -> Call[SearchResults]:
        """The catalog products that look most like this one."""
        query = {"k": k, "filter": filter_list(filter), "min_score": min_score}
        return Call(SearchResults, path={"product_id": product_id}, query=query)

    @operation("POST", "/v1/search/scene")
    def search_scene(
        image: Upload, *, k: int | None = None, filter: Filters | None = None
    ) -> Call[SceneResults]:
        """The products in a real photo, each with its box and top-k catalog matches;
        raises ``Conflict`` until a localiser is trained."""
        form = {"k": k, "filter": filter_list(filter)}
        return Call(SceneResults, form=form, files=[("image", image)])

    @operation("GET", "/v1/localizer")
    def localizer_status() -> Call[LocalizerStatus]:
        """The localiser in use for scene search, with its held-out evaluation."""
        return Call(LocalizerStatus)

    @operation("POST", "/v1/localizer/train")
    def train_localizer(*, products: int | None = None, scenes: int | None = None) -> Call[Job]:
        """Queue training a localiser on scenes composed of the catalog's photos (admin)."""
        return Call(Job, json=present(products=products, scenes=scenes))

    @operation("POST", "/v1/tryon")
    def try_on(photo: Upload, *, product_id: str) -> Call[bytes]:
        """The photo with the product (eyewear, headwear, a top) on the person, as JPEG
        bytes; raises ``ValidationFailed`` when no face is found."""
        return Call(bytes, form={"product_id": product_id}, files=[("photo", photo)])
