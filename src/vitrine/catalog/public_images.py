"""Product photos for pages and feeds without a key: off unless the shop turns it on.

``<img src>`` in a storefront and an ad platform's crawler send no API key; when
``public_images`` is on, ``/images/{id}.jpg`` answers the product's primary photo as a
640-pixel JPEG (made once, kept in the blob store), cacheable by browsers and CDNs.
Otherwise only a signed, unexpired address of the photo (``image_urls``) answers it.
"""

from __future__ import annotations

from vitrine.catalog.blobs import BlobNotFoundError, BlobStore
from vitrine.catalog.image_urls import ImageSigner
from vitrine.catalog.store import CatalogStore
from vitrine.catalog.thumbnails import thumbnail

PUBLIC_SIDE = 640


class PublicImages:
    """The public photo of each product (see the module docstring)."""

    def __init__(
        self, store: CatalogStore, blobs: BlobStore, enabled: bool, signer: ImageSigner
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.enabled = enabled
        self.signer = signer

    def photo(
        self, product_id: str, expires: int | None = None, sig: str | None = None
    ) -> bytes | None:
        """The JPEG; None when public images are off and the address is not signed (or
        expired), or the product has no photo."""
        signed = (
            expires is not None and sig is not None and self.signer.valid(product_id, expires, sig)
        )
        if not (self.enabled or signed):
            return None
        keys = self.store.primary_images([product_id])
        if not keys:
            return None
        try:
            return thumbnail(self.blobs, keys[0][1], PUBLIC_SIDE)
        except BlobNotFoundError:
            return None
