"""Virtual try-on of the catalog's eyewear, headwear and tops on a shopper's photo.

Which of the shop's categories are which is configured (``tryon_*`` settings, with
defaults for a fashion catalog); a product's category is its value of
``tryon_category_field`` (its own, else the classifier's label). The product is cut out of
the background of its largest stored photo and placed by the largest face of the photo
(:mod:`vitrine.vision.tryon`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vitrine.catalog.blobs import BlobStore
from vitrine.catalog.store import CatalogStore
from vitrine.vision.decode import DecodeLimits, decode_image
from vitrine.vision.faces import find_faces
from vitrine.vision.scenes import cut_out
from vitrine.vision.tryon import Kind, place

PRODUCT_SIDE = 1024  # the product's photo is read at most this big
PHOTO_SIDE = 1600  # the answer is at most this big


class TryOnError(ValueError):
    """A try-on that cannot be made; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class TryOnCategories:
    """The shop's categories of each kind (compared case-insensitively)."""

    field: str
    kinds: dict[str, tuple[str, ...]]

    @classmethod
    def from_settings(cls, settings: Any) -> TryOnCategories:
        def names(text: str) -> tuple[str, ...]:
            return tuple(n.strip() for n in text.split(",") if n.strip())

        return cls(
            settings.tryon_category_field,
            {
                "eyewear": names(settings.tryon_eyewear),
                "headwear": names(settings.tryon_headwear),
                "top": names(settings.tryon_tops),
            },
        )

    def kind_of(self, category: str | None) -> Kind | None:
        wanted = (category or "").strip().lower()
        for kind, names in self.kinds.items():
            if wanted and wanted in {n.lower() for n in names}:
                return kind  # type: ignore[return-value]
        return None

    def all_names(self) -> list[str]:
        return [n for names in self.kinds.values() for n in names]


class TryOnService:
    """Puts a catalog product on a person's photo."""

    def __init__(
        self,
        store: CatalogStore,
        blobs: BlobStore,
        limits: DecodeLimits,
        categories: TryOnCategories,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.limits = limits
        self.categories = categories

    def category(self, product: dict[str, Any]) -> str | None:
        field = self.categories.field
        value = (product.get("attributes") or {}).get(field)
        if value is None:
            labels = [r for r in product.get("label_rows") or [] if r.get("field") == field]
            value = labels[0]["value"] if labels else None
        return None if value is None else str(value)

    def try_on(self, photo: bytes, product_id: str, source: str = "<upload>") -> bytes:
        """The JPEG of the photo with the product on; raises :class:`TryOnError`
        (404 unknown product, 422 no face / a category that cannot be tried on / no
        photo to cut the product from) or ImageDecodeError (the photo)."""
        product = self.store.get_product(product_id)
        if product is None:
            raise TryOnError(404, "unknown-product", f"product {product_id!r} does not exist")
        category = self.category(product)
        kind = self.categories.kind_of(category)
        if kind is None:
            raise TryOnError(
                422,
                "not-tryable",
                f"product {product_id!r} is {category or 'of no known category'} "
                f"({self.categories.field}); what can be tried on: "
                + ", ".join(self.categories.all_names()),
            )
        person = decode_image(photo, source=source, limits=self.limits, max_side=PHOTO_SIDE).rgb
        faces = find_faces(person)
        if not faces:
            raise TryOnError(
                422, "no-face", "no face found in the photo: use a photo of a face, upright "
                "or tilted up to about 25 degrees, looking at the camera"
            )  # fmt: skip
        item = self._cut_out(product)
        result = place(person, item, faces[0], kind)
        out = io.BytesIO()
        Image.fromarray(result.image).save(out, "JPEG", quality=90)
        return out.getvalue()

    def _cut_out(self, product: dict[str, Any]):  # type: ignore[no-untyped-def]
        images = sorted(product.get("images") or [], key=lambda i: -i["width"] * i["height"])
        if not images:
            raise TryOnError(422, "no-product-photo", f"product {product['id']!r} has no photo")
        data = self.blobs.get(images[0]["blob_key"])
        rgb = decode_image(data, source=images[0]["blob_key"], max_side=PRODUCT_SIDE).rgb
        item = cut_out(rgb, product["id"])
        if item is None:
            raise TryOnError(
                422, "no-product-cut-out", f"the photo of product {product['id']!r} has no "
                "plain background to cut the product out of"
            )  # fmt: skip
        return item
